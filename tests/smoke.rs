mod common;

#[test]
fn starts_and_answers_etcdctl() {
    let s = common::Server::start(&[]);
    assert_eq!(s.ctl(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(s.ctl(&["get", "k"]), "k\nv\n");
}

/// raft-rs drops a ReadIndex until the leader has committed an entry of its term: a
/// linearizable read sent the moment the server says it is ready must still be answered.
#[tokio::test]
async fn linearizable_read_right_after_start_is_answered() {
    for _ in 0..5 {
        let s = common::Server::start(&[]);
        let mut c = s.client().await;
        let bound = std::time::Duration::from_secs(30);
        let r = tokio::time::timeout(bound, c.get("k", None)).await.expect("a linearizable read was never answered");
        assert_eq!(r.unwrap().header().unwrap().revision(), 1);
    }
}
