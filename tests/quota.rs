//! `--quota-backend-bytes`: past the quota writes fail with NOSPACE and raise the NOSPACE
//! alarm; reads, deletes and compaction keep working; the alarm survives restart; as with
//! etcd, compaction lowers dbSizeInUse, defrag then shrinks dbSize, and `etcdctl alarm disarm`
//! clears the alarm.

mod common;

use etcd_client::{DeleteOptions, GetOptions};

const QUOTA_BYTES: &str = "200000";

#[tokio::test]
async fn nospace_alarm_caps_writes_until_disarmed() {
    let mut s = common::Server::start(&["--quota-backend-bytes", QUOTA_BYTES]);
    let mut c = s.client().await;
    let (written, err) = common::fill_until_error(&mut c, 1024).await;
    assert!(err.to_string().contains("etcdserver: mvcc: database space exceeded"), "{err}");
    assert!(written > 50, "only {written} writes fit under the quota");
    assert_eq!(s.ctl(&["alarm", "list"]).trim(), format!("memberID:{} alarm:NOSPACE", s.member_id_dec()));
    // Capped: even a small put fails; reads and deletes work.
    let e = s.ctl_err(&["put", "small", "x"]);
    assert!(e.contains("etcdserver: mvcc: database space exceeded"), "{e}");
    let count = c.get("fill/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(count, written);
    let health = s.http_get("/health");
    assert!(health.contains(r#""health":"false""#) && health.contains("ALARM NOSPACE"), "{health}");

    // The alarm is raft state: it survives a restart.
    drop(c);
    s.kill();
    s.restart();
    assert!(s.ctl(&["alarm", "list"]).contains("alarm:NOSPACE"));
    let mut c = s.client().await;
    let d = c.delete("fill/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(d.deleted(), written);
    let rev = d.header().unwrap().revision();
    c.compact(rev, None).await.unwrap();
    // As etcd: compaction frees space in use, the storage keeps its size until a defrag.
    let st = c.status().await.unwrap();
    assert!(st.raft_used_db_size() < st.db_size() / 2, "in use {} of {}", st.raft_used_db_size(), st.db_size());
    assert!(st.db_size() > QUOTA_BYTES.parse::<i64>().unwrap() / 2, "db size {}", st.db_size());
    assert_eq!(s.ctl(&["defrag"]).trim(), format!("Finished defragmenting etcd member[{}]", s.endpoint));
    let st = c.status().await.unwrap();
    assert!(st.db_size() < QUOTA_BYTES.parse::<i64>().unwrap() / 4, "db size after defrag {}", st.db_size());
    assert_eq!(s.ctl(&["alarm", "disarm"]).trim(), format!("memberID:{} alarm:NOSPACE", s.member_id_dec()));
    assert_eq!(s.ctl(&["alarm", "list"]), "");
    assert_eq!(s.ctl(&["put", "small", "x"]).trim(), "OK");
    assert!(s.http_get("/health").contains(r#""health":"true""#));
}
