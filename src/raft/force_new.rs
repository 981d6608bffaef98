//! `--force-new-cluster` (etcd's restartAsStandaloneNode): a member restarted on its data
//! becomes the only member of its cluster, keeping its data, its member id and the cluster id.
//!
//! As etcd, the member appends to its log one conf change entry removing each other member
//! (learners too) of the configuration its log ends with, at its current term, and counts
//! everything up to them committed; applying them (the usual path, `Core::apply_conf_change`)
//! leaves it the only voter, and it elects itself after an election timeout. The entries go
//! to the WAL in the first batch, before anything is applied (so a restart without the flag
//! replays the removals).
//!
//! One difference: etcd first drops the entries after the commit index its WAL records.
//! ballast writes no hard state that only moves the commit index (`Core::must_sync`), so the
//! recorded commit index of a follower may lag what it acknowledged; dropping the entries
//! after it would lose acknowledged writes. ballast keeps every durable entry (a write never
//! acknowledged may then take effect, as one that timed out may in etcd), unless they remove
//! this member: then it drops those after the recorded commit index, as etcd (were the removal
//! committed, etcd would add the member back; ballast refuses to start instead).

use raft::eraftpb::{Entry, EntryType, HardState};
use raft::Storage as _;

use super::conf_change::{self, MemberChange};
use super::storage::LogStore;
use crate::cluster::Cluster;

/// Appends the removal entries to `store` (whose log and hard state are the recovered ones)
/// and marks them committed. `members`: the member list at the log's first entry (the
/// snapshot's, or the initial one). Returns the WAL batch to write first: (entries, hard state).
pub fn append_removals(store: &LogStore, members: &Cluster, id: u64) -> Result<(Vec<Entry>, HardState), String> {
    let first = store.first_index().map_err(|e| e.to_string())?;
    let last = store.last_index().map_err(|e| e.to_string())?;
    let log = if last >= first { store.entries(first, last + 1, None, raft::GetEntriesContext::empty(false)).map_err(|e| e.to_string())? } else { Vec::new() };
    let mut hs = store.initial_state().map_err(|e| e.to_string())?.hard_state;
    let mut base = last;
    let mut current = configuration_at_end(members, &log);
    if current.member(id).is_none() && hs.commit < last {
        // The kept entries remove this member: as etcd, those after the recorded commit go.
        current = configuration_at_end(members, &log[..(hs.commit + 1).saturating_sub(first) as usize]);
        base = hs.commit;
        crate::log::info(
            "discarding uncommitted WAL entries",
            &[("entry-index", (base + 1).to_string()), ("commit-index-from-wal", base.to_string()), ("number-of-discarded-entries", (last - base).to_string())],
        );
    }
    let others: Vec<u64> = current.sorted_members().iter().map(|m| m.id).filter(|&m| m != id).collect();
    if current.member(id).is_none() || (base < last && others.is_empty()) {
        return Err(format!("cannot force a new cluster: this member ({id:x}) is not a member of its cluster any more"));
    }
    // Removing every voter but a learner would leave a cluster raft cannot elect a leader in
    // (etcd makes the member a voter; ballast refuses: promote it, or force a voter).
    if current.member(id).is_some_and(|m| m.is_learner) {
        return Err(format!("cannot force a new cluster: this member ({id:x}) is a learner; force a voting member instead"));
    }
    let mut entries = Vec::new();
    for (i, &other) in others.iter().enumerate() {
        let (context, cc) = conf_change::encode(0, &MemberChange::Remove { id: other });
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.term = hs.term;
        e.index = base + 1 + i as u64;
        e.data = protobuf::Message::write_to_bytes(&cc).map_err(|e| e.to_string())?.into();
        e.context = context.into();
        entries.push(e);
    }
    hs.commit = base + entries.len() as u64;
    let mut core = store.wl();
    // Entries after `base` (if any) are replaced.
    core.append(&entries).map_err(|e| format!("cannot append the removals to the raft log: {e}"))?;
    core.set_hardstate(hs.clone());
    drop(core);
    crate::log::info(
        "forcing restart member",
        &[
            ("cluster-id", format!("{:x}", current.id)),
            ("local-member-id", format!("{id:x}")),
            ("commit-index", hs.commit.to_string()),
            ("removed-members", entries.len().to_string()),
        ],
    );
    Ok((entries, hs))
}

/// The member list after the conf changes in `log`, each validated as when applied.
fn configuration_at_end(members: &Cluster, log: &[Entry]) -> Cluster {
    let mut current = members.clone();
    for e in log.iter().filter(|e| e.get_entry_type() == EntryType::EntryConfChange) {
        let ctx = conf_change::decode(&e.context, e.index);
        if conf_change::validate(&current, &ctx.change).is_ok() {
            conf_change::apply(&mut current, &ctx.change);
        }
    }
    current
}
