//! etcd 3.5's buckets other than `key`, with their keys and encodings as etcd 3.5.1 writes
//! them (server/mvcc/buckets, kvstore.go, lease/lessor.go, auth/store.go,
//! api/membership/store.go and confstate.go, cindex, api/v3alarm): each bucket's entries in
//! key order, from ballast's state at the export.

use prost::Message as _;

use crate::auth::store::AuthState;
use crate::cluster::Member;
use crate::proto::authpb::{Role, User, UserAddOptions};
use crate::proto::etcdserverpb::AlarmMember;

pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What the small buckets hold.
#[derive(Debug, Clone, Default)]
pub struct EtcdState {
    /// The raft index applied at the export (etcd's consistent_index) and its term.
    pub consistent_index: u64,
    pub term: u64,
    /// The compaction revision (none when nothing was compacted).
    pub compact_rev: i64,
    pub members: Vec<Member>,
    pub removed: Vec<u64>,
    /// (id, granted TTL in seconds).
    pub leases: Vec<(i64, i64)>,
    pub auth: AuthState,
    /// etcd's cluster version: major.minor.0.
    pub cluster_version: String,
    /// (member id, alarm type).
    pub alarms: Vec<(u64, i32)>,
}

fn be64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn sorted(mut entries: Entries) -> Entries {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

impl EtcdState {
    /// Every bucket but `key`, by name.
    pub fn buckets(&self) -> Vec<(&'static str, Entries)> {
        vec![
            ("alarm", self.alarm()),
            ("auth", self.auth_flags()),
            ("authRoles", self.roles()),
            ("authUsers", self.users()),
            ("cluster", vec![(b"clusterVersion".to_vec(), self.cluster_version.clone().into_bytes())]),
            ("lease", self.lease()),
            ("members", self.members()),
            ("members_removed", sorted(self.removed.iter().map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec())).collect())),
            ("meta", self.meta()),
        ]
    }

    fn meta(&self) -> Entries {
        let mut out = vec![
            (b"confState".to_vec(), self.conf_state().into_bytes()),
            (b"consistent_index".to_vec(), be64(self.consistent_index)),
            (b"term".to_vec(), be64(self.term)),
        ];
        if self.compact_rev > 0 {
            // kvstore.go: revToBytes(revision{main: rev}) under both names once finished.
            let rev = crate::mvcc::export::rev_key(crate::mvcc::Rev::main(self.compact_rev), false);
            out.push((b"finishedCompactRev".to_vec(), rev.clone()));
            out.push((b"scheduledCompactRev".to_vec(), rev));
        }
        sorted(out)
    }

    /// raftpb.ConfState as Go's encoding/json writes it (its field order; empty lists left
    /// out).
    fn conf_state(&self) -> String {
        let ids = |learner: bool| self.members.iter().filter(|m| m.is_learner == learner).map(|m| m.id).collect::<Vec<u64>>();
        let mut out = String::from("{");
        for (name, list) in [("voters", ids(false)), ("learners", ids(true))] {
            if !list.is_empty() {
                out += &format!("\"{name}\":{},", serde_json::json!(list));
            }
        }
        out + "\"auto_leave\":false}"
    }

    /// membership.Member as Go's encoding/json writes it into the backend (etcd 3.5 keeps
    /// no client URLs there).
    fn members(&self) -> Entries {
        sorted(
            self.members
                .iter()
                .map(|m| {
                    // Go's field order: id, peerURLs, isLearner, name.
                    let mut json = format!("{{\"id\":{},\"peerURLs\":{}", m.id, serde_json::json!(m.peer_urls));
                    if m.is_learner {
                        json += ",\"isLearner\":true";
                    }
                    if !m.name.is_empty() {
                        json += &format!(",\"name\":{}", serde_json::json!(m.name));
                    }
                    (format!("{:x}", m.id).into_bytes(), (json + "}").into_bytes())
                })
                .collect(),
        )
    }

    /// leasepb.Lease{ID, TTL} under the id's 8 big-endian bytes (RemainingTTL only with
    /// checkpoints, which etcd persists; left at 0 as without them).
    fn lease(&self) -> Entries {
        sorted(
            self.leases
                .iter()
                .map(|&(id, ttl)| {
                    let mut v = Vec::new();
                    prost::encoding::int64::encode(1, &id, &mut v);
                    prost::encoding::int64::encode(2, &ttl, &mut v);
                    (be64(id as u64), v)
                })
                .collect(),
        )
    }

    /// etcd writes `authEnabled` first when auth is enabled (a snapshot of a store that never
    /// had auth on holds only the revision).
    fn auth_flags(&self) -> Entries {
        let enabled = (self.auth.enabled || self.auth.ever_enabled).then(|| (b"authEnabled".to_vec(), vec![u8::from(self.auth.enabled)]));
        enabled.into_iter().chain([(b"authRevision".to_vec(), be64(self.auth.revision))]).collect()
    }

    fn users(&self) -> Entries {
        let users = self.auth.users.iter().map(|(name, u)| {
            let user = User {
                name: name.clone().into_bytes(),
                password: u.password.clone().into_bytes(),
                roles: u.roles.clone(),
                options: Some(UserAddOptions { no_password: u.no_password }),
            };
            (name.clone().into_bytes(), user.encode_to_vec())
        });
        users.collect()
    }

    fn roles(&self) -> Entries {
        let roles = self.auth.roles.iter().map(|(name, perms)| {
            let role = Role { name: name.clone().into_bytes(), key_permission: perms.iter().map(|p| p.to_proto()).collect() };
            (name.clone().into_bytes(), role.encode_to_vec())
        });
        roles.collect()
    }

    /// The marshaled AlarmMember is the key; the value is empty.
    fn alarm(&self) -> Entries {
        sorted(self.alarms.iter().map(|&(member_id, alarm)| (AlarmMember { member_id, alarm }.encode_to_vec(), Vec::new())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values etcd 3.5.1 wrote in a snapshot (see `etcdutl` on a real one).
    #[test]
    fn encodes_as_etcd() {
        let member = Member { id: 3319814642761637952, name: "default".into(), peer_urls: vec!["http://127.0.0.1:23800".into()], client_urls: vec![], is_learner: false };
        let s = EtcdState { members: vec![member], leases: vec![(0x2040a23c1eac6b09, 100)], compact_rev: 3, ..Default::default() };
        let buckets = s.buckets();
        let get = |b: &str| buckets.iter().find(|(n, _)| *n == b).unwrap().1.clone();
        assert_eq!(get("members")[0], (b"2e1259d415f2a040".to_vec(), br#"{"id":3319814642761637952,"peerURLs":["http://127.0.0.1:23800"],"name":"default"}"#.to_vec()));
        let meta = get("meta");
        assert_eq!(meta[0], (b"confState".to_vec(), br#"{"voters":[3319814642761637952],"auto_leave":false}"#.to_vec()));
        assert_eq!(meta[2].1, b"\0\0\0\0\0\0\0\x03_\0\0\0\0\0\0\0\0");
        assert_eq!(get("lease")[0], (vec![0x20, 0x40, 0xa2, 0x3c, 0x1e, 0xac, 0x6b, 0x09], b"\x08\x89\xd6\xb1\xf5\xc1\xc7\xa8\xa0\x20\x10d".to_vec()));
        let names: Vec<_> = buckets.iter().map(|(n, _)| *n).collect();
        let mut in_order = names.clone();
        in_order.sort();
        assert_eq!(names, in_order, "buckets by name, as the root bucket holds them");
    }
}
