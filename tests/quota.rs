//! `--quota-backend-bytes`: past the quota writes fail with NOSPACE and raise the NOSPACE
//! alarm; reads, deletes and compaction keep working; the alarm survives restart; as with
//! etcd, compaction lowers dbSizeInUse, defrag then shrinks dbSize, and `etcdctl alarm disarm`
//! clears the alarm. Alarms raised by hand (CORRUPT, NOSPACE) act and show in Status as etcd
//! 3.5's do (compared with a real one).

mod common;
#[path = "common/etcd.rs"]
mod etcd;

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
    // Physical: the answer waits for the records to go, as etcd's waits for its compaction.
    c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
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

/// Raises `alarm` on the member behind `ch`, then sends a write of each kind, a read-only txn,
/// a range, a lease grant and a compaction, and reads Status's errors; deactivates it; a put.
/// One line per answer, the member's id masked.
async fn under_alarm(ch: tonic::transport::Channel, alarm: ballast::proto::etcdserverpb::AlarmType) -> Vec<String> {
    use ballast::proto::etcdserverpb::*;
    let mut kv = kv_client::KvClient::new(ch.clone());
    let mut maintenance = maintenance_client::MaintenanceClient::new(ch.clone());
    let mut lease = lease_client::LeaseClient::new(ch);
    let member = kv.put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.unwrap().into_inner().header.unwrap().member_id;
    let act = |action: alarm_request::AlarmAction| AlarmRequest { action: action as i32, member_id: member, alarm: alarm as i32 };
    maintenance.alarm(act(alarm_request::AlarmAction::Activate)).await.unwrap();
    let outcome = |r: Result<String, tonic::Status>| r.unwrap_or_else(|e| format!("{:?}: {}", e.code(), e.message()));
    let put = |key: &str| PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() };
    let op = |r| RequestOp { request: Some(r) };
    let range = || RangeRequest { key: b"k".to_vec(), ..Default::default() };
    let mut out = vec![
        outcome(kv.put(put("p")).await.map(|r| format!("put: rev {}", r.get_ref().header.unwrap().revision))),
        outcome(kv.delete_range(DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() }).await.map(|r| format!("delete: {}", r.get_ref().deleted))),
        outcome(kv.txn(TxnRequest { success: vec![op(request_op::Request::RequestPut(put("t")))], ..Default::default() }).await.map(|r| format!("txn: {}", r.get_ref().succeeded))),
        outcome(kv.txn(TxnRequest { success: vec![op(request_op::Request::RequestRange(range()))], ..Default::default() }).await.map(|r| format!("read txn: {}", r.get_ref().succeeded))),
        outcome(kv.range(range()).await.map(|r| format!("range: {}", r.get_ref().kvs.len()))),
        outcome(lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 5 }).await.map(|r| format!("lease: {}", r.get_ref().id))),
        outcome(kv.compact(CompactionRequest { revision: 2, physical: false }).await.map(|_| "compact: ok".into())),
    ];
    let errors = maintenance.status(StatusRequest {}).await.unwrap().into_inner().errors;
    out.push(format!("status errors: {:?}", errors.iter().map(|e| e.replace(&member.to_string(), "<id>")).collect::<Vec<_>>()));
    maintenance.alarm(act(alarm_request::AlarmAction::Deactivate)).await.unwrap();
    out.push(outcome(kv.put(put("after")).await.map(|r| format!("put after: rev {}", r.get_ref().header.unwrap().revision))));
    out
}

#[tokio::test]
async fn alarms_raised_by_hand_act_and_show_in_status_as_etcds() {
    use ballast::proto::etcdserverpb::AlarmType;
    for alarm in [AlarmType::Corrupt, AlarmType::Nospace] {
        let etcd = etcd::Etcd::start();
        let ballast = common::Server::start(&[]);
        let want = under_alarm(common::grpc_channel(&etcd.endpoint).await, alarm).await;
        let got = under_alarm(common::grpc_channel(&ballast.endpoint).await, alarm).await;
        assert_eq!(got, want, "{alarm:?}: ballast, then etcd 3.5");
        assert!(want.iter().any(|l| l.contains("alarm:")), "{want:?}");
    }
}

/// Over the quota, an invalid write that does not fit is refused for the space first, as
/// etcd's quotaKVServer checks before anything else (ballast validated first: "key is not
/// provided"), and so is a lease grant. Compared with etcd 3.5, both filled to their quota.
#[tokio::test]
async fn over_the_quota_space_is_checked_before_validation_as_by_etcd() {
    use ballast::proto::etcdserverpb::*;
    async fn answers(endpoint: &str) -> Vec<String> {
        let mut c = etcd_client::Client::connect([endpoint], None).await.unwrap();
        let (_, err) = common::fill_until_error(&mut c, 1024).await;
        assert!(err.to_string().contains("database space exceeded"), "{err}");
        let mut kv = kv_client::KvClient::new(common::grpc_channel(endpoint).await);
        let mut lease = lease_client::LeaseClient::new(common::grpc_channel(endpoint).await);
        let big = vec![b'b'; 100 << 10];
        let put = |key: &str| RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key: key.into(), value: big.clone(), ..Default::default() })) };
        let outcome = |r: Result<String, tonic::Status>| r.unwrap_or_else(|e| format!("{:?}: {}", e.code(), e.message()));
        vec![
            outcome(kv.put(PutRequest { key: Vec::new(), value: big.clone(), ..Default::default() }).await.map(|_| "put".into())),
            outcome(kv.txn(TxnRequest { success: vec![put("d"), put("d")], ..Default::default() }).await.map(|_| "txn".into())),
            outcome(kv.put(PutRequest { key: b"k".to_vec(), value: big.clone(), lease: 12345, ..Default::default() }).await.map(|_| "put with lease".into())),
            // A lease grant costs 64 bytes (etcd's leaseOverhead), checked as a put is.
            outcome(lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.map(|_| "lease grant".into())),
        ]
    }
    let etcd = etcd::Etcd::start_with(&["--quota-backend-bytes", QUOTA_BYTES]);
    let ballast = common::Server::start(&["--quota-backend-bytes", QUOTA_BYTES]);
    let want = answers(&etcd.endpoint).await;
    assert_eq!(answers(&ballast.endpoint).await, want, "ballast, then etcd 3.5");
    assert!(want.iter().all(|a| a == "ResourceExhausted: etcdserver: mvcc: database space exceeded"), "{want:?}");
}
