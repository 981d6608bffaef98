//! Auth on a 3-member cluster, against etcd 3.5's 3 members: a simple token that one member
//! issued is valid on every member at once. etcd assigns the token on each member as it applies
//! the Authenticate entry, and a member that has not applied that entry yet waits for it before
//! it looks the token up (isValidSimpleToken); a client with several endpoints authenticates
//! once and sends the token to whichever member it picks. The same steps run on both clusters
//! and their answers are compared. Every wait is bounded.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/peer_proxy.rs"]
mod peer_proxy;
#[path = "common/procs3.rs"]
mod procs3;

use std::time::Duration;

use ballast::proto::etcdserverpb::{auth_client::AuthClient, kv_client::KvClient, AuthenticateRequest, PutRequest, RangeRequest};
use procs3::{Cluster, Target};
use tonic::transport::Channel;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Rounds of authenticate-then-use-everywhere: each issues a token on one member and uses it
/// right away on the others, where the Authenticate entry may not be applied yet.
const ROUNDS: usize = 6;

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string()).unwrap().timeout(CALL_TIMEOUT).connect().await.expect("connect")
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("token", token.parse().unwrap());
    req
}

/// What a put and a get with `token` on a member came to: "ok <value>" or the error's code
/// and message.
async fn put_then_get(ch: &Channel, token: &str, key: &str, value: &str) -> String {
    let mut kv = KvClient::new(ch.clone());
    let put = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    if let Err(s) = kv.put(with_token(put, token)).await {
        return format!("put: {:?} {}", s.code(), s.message());
    }
    let get = RangeRequest { key: key.into(), serializable: false, ..Default::default() };
    match kv.range(with_token(get, token)).await {
        Ok(r) => format!("ok {}", r.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()).unwrap_or_default()),
        Err(s) => format!("get: {:?} {}", s.code(), s.message()),
    }
}

/// Runs the steps on a fresh 3-member cluster of `target`; returns every answer in order.
async fn tokens_across_members(target: Target) -> Vec<String> {
    let cluster = Cluster::start(target, 3).await;
    let mut admin = cluster.client(0, CALL_TIMEOUT).await;
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let mut channels = Vec::new();
    for m in &cluster.members {
        channels.push(channel(&m.endpoint()).await);
    }
    let mut answers = Vec::new();
    for round in 0..ROUNDS {
        let issuer = round % channels.len();
        let auth = AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
        let token = AuthClient::new(channels[issuer].clone()).authenticate(auth).await.expect("authenticate").into_inner().token;
        for (i, ch) in channels.iter().enumerate() {
            let (key, value) = (format!("k{round}-{i}"), format!("issued by m{issuer}, used on m{i}"));
            answers.push(format!("round {round}, token of m{issuer} on m{i}: {}", put_then_get(ch, &token, &key, &value).await));
        }
    }
    // A token no member issued is refused by every member.
    for (i, ch) in channels.iter().enumerate() {
        answers.push(format!("a forged token on m{i}: {}", put_then_get(ch, "garbage", "forged", "x").await));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_token_issued_by_one_member_is_valid_on_every_member_as_on_etcd() {
    let etcd = tokens_across_members(Target::Etcd).await;
    let ballast = tokens_across_members(Target::Ballast).await;
    assert_eq!(ballast.len(), ROUNDS * 3 + 3);
    for (e, b) in etcd.iter().zip(&ballast) {
        assert_eq!(b, e, "ballast (left) and etcd 3.5 (right) differ");
    }
    assert!(ballast[..ROUNDS * 3].iter().all(|a| a.contains(": ok issued by")), "every member takes every token: {ballast:#?}");
}
