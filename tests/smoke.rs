mod common;

#[test]
fn starts_and_answers_etcdctl() {
    let s = common::Server::start(&[]);
    assert_eq!(s.ctl(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(s.ctl(&["get", "k"]), "k\nv\n");
}
