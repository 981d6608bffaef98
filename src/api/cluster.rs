//! etcd's Cluster service (server/etcdserver/api/v3rpc/member.go): MemberList from the live
//! membership, and MemberAdd/Remove/Update/Promote as raft conf changes
//! (`raft/conf_change.rs`), answered with the member list after the change, with etcd's checks
//! and errors. Membership changes need the root role when auth is on (etcd's
//! checkMembershipOperationPermission).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::raft::conf_change::MemberChange;

pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Ctx>) -> ClusterService {
        ClusterService { ctx }
    }

    async fn change<T>(&self, req: &Request<T>, change: MemberChange) -> Result<Vec<Member>> {
        self.ctx.auth.admin(req)?;
        let started = std::time::Instant::now();
        match self.ctx.raft.member_change(change).await {
            Ok(members) => Ok(members.iter().map(to_proto).collect()),
            Err(Error::ProposalDeadline) => {
                // Never proposed for lack of a leader. etcd's change waits for one on the
                // request's own context and answers its error when it ends: this answer waits
                // until just before the client's deadline too, or goes after the request
                // timeout when the client set none (etcd would wait for good).
                if let Some(left) = client_deadline(req).and_then(|d| d.checked_sub(started.elapsed() + CLIENT_DEADLINE_MARGIN)) {
                    tokio::time::sleep(left).await;
                }
                Err(Error::ProposalDeadline)
            }
            Err(e) => Err(e),
        }
    }
}

type Reply<T> = std::result::Result<Response<T>, Status>;

/// How long before its client's deadline a membership change that waited for a leader answers.
const CLIENT_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(100);

/// The client's deadline from gRPC's `grpc-timeout` header (digits and a unit: H, M, S, m, u, n).
fn client_deadline<T>(req: &Request<T>) -> Option<std::time::Duration> {
    let text = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let nanos_per_unit: u64 = match unit {
        "H" => 3_600_000_000_000,
        "M" => 60_000_000_000,
        "S" => 1_000_000_000,
        "m" => 1_000_000,
        "u" => 1_000,
        "n" => 1,
        _ => return None,
    };
    Some(std::time::Duration::from_nanos(n.saturating_mul(nanos_per_unit)))
}

fn to_proto(m: &crate::cluster::Member) -> Member {
    Member { id: m.id, name: m.name.clone(), peer_ur_ls: m.peer_urls.clone(), client_ur_ls: m.client_urls.clone(), is_learner: m.is_learner }
}

/// etcd's types.NewURLs: at least one URL, each http(s) or unix(s) with host:port and no path;
/// sorted. Anything else: "given member URLs are invalid".
fn peer_urls(urls: &[String]) -> Result<Vec<String>> {
    if urls.is_empty() {
        return Err(Error::MemberBadUrls);
    }
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let u = u.trim();
        let (scheme, rest) = u.split_once("://").ok_or(Error::MemberBadUrls)?;
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(Error::MemberBadUrls);
        }
        let host = rest.split(['?', '#']).next().unwrap_or_default();
        if host.contains('/') || !has_port(host) {
            return Err(Error::MemberBadUrls);
        }
        out.push(u.to_string());
    }
    out.sort();
    Ok(out)
}

/// Go's net.SplitHostPort accepts it: `host:port` or `[v6]:port`.
fn has_port(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").is_some(),
        None => host.matches(':').count() == 1,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, r: Request<MemberAddRequest>) -> Reply<MemberAddResponse> {
        let urls = peer_urls(&r.get_ref().peer_ur_ls)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let is_learner = r.get_ref().is_learner;
        let member = crate::cluster::Member { id: crate::cluster::added_member_id(&urls, now), name: String::new(), peer_urls: urls, client_urls: vec![], is_learner };
        let added = Member { id: member.id, peer_ur_ls: member.peer_urls.clone(), is_learner, ..Default::default() };
        let members = self.change(&r, MemberChange::Add { member }).await?;
        Ok(Response::new(MemberAddResponse { header: self.ctx.header_without_revision(), member: Some(added), members }))
    }

    async fn member_remove(&self, r: Request<MemberRemoveRequest>) -> Reply<MemberRemoveResponse> {
        let id = r.get_ref().id;
        let members = self.change(&r, MemberChange::Remove { id }).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.ctx.header_without_revision(), members }))
    }

    async fn member_update(&self, r: Request<MemberUpdateRequest>) -> Reply<MemberUpdateResponse> {
        let (id, peer_urls) = (r.get_ref().id, r.get_ref().peer_ur_ls.clone());
        let members = self.change(&r, MemberChange::Update { id, peer_urls }).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.ctx.header_without_revision(), members }))
    }

    async fn member_list(&self, r: Request<MemberListRequest>) -> Reply<MemberListResponse> {
        if r.get_ref().linearizable {
            self.ctx.raft.read_index().await?;
        }
        let members = self.ctx.membership.current().sorted_members().iter().map(to_proto).collect();
        Ok(Response::new(MemberListResponse { header: self.ctx.header_without_revision(), members }))
    }

    async fn member_promote(&self, r: Request<MemberPromoteRequest>) -> Reply<MemberPromoteResponse> {
        let id = r.get_ref().id;
        // Only the leader knows whether the learner is in sync: a follower forwards the
        // promotion to it (etcd's PromoteMember on ErrNotLeader).
        let tried = self.change(&r, MemberChange::Promote { id }).await;
        crate::metrics::count_promotion(&tried);
        let members = match tried {
            Err(Error::NotLeader) => {
                let ctx = &self.ctx;
                ctx.forward.promote(|| ctx.status.leader(), id, ctx.raft.timeout()).await?.iter().map(to_proto).collect()
            }
            other => other?,
        };
        Ok(Response::new(MemberPromoteResponse { header: self.ctx.header_without_revision(), members }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_as_etcd_new_urls() {
        let ok = |u: &[&str]| peer_urls(&u.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(ok(&["http://b:2", " http://a:1"]), Ok(vec!["http://a:1".into(), "http://b:2".into()]));
        assert_eq!(ok(&["https://[::1]:2380"]).map(|v| v.len()), Ok(1));
        for bad in [&[][..], &["ftp://a:1"], &["http://a"], &["http://a:1/path"], &["a:1"]] {
            assert_eq!(ok(bad), Err(Error::MemberBadUrls), "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeout_header_as_grpc_reads_it() {
        let with = |v: &str| {
            let mut r = Request::new(());
            r.metadata_mut().insert("grpc-timeout", v.parse().unwrap());
            client_deadline(&r)
        };
        assert_eq!(with("9999912u"), Some(std::time::Duration::from_micros(9_999_912)));
        assert_eq!(with("10S"), Some(std::time::Duration::from_secs(10)));
        assert_eq!(with("2H"), Some(std::time::Duration::from_secs(7200)));
        assert_eq!(with("5"), None);
        assert_eq!(with("x5m"), None);
        assert_eq!(client_deadline(&Request::new(())), None);
    }
}
