//! etcd's range permission cache (server/auth/range_perm_cache.go): a user's permissions, the
//! union of its roles' key ranges, merged into sorted disjoint intervals per kind (read,
//! write). A single key is permitted when an interval holds it; a range when one merged interval
//! covers all of it (two adjacent permissions together cover a range neither covers alone, as
//! etcd's interval tree `Contains`); a range ending at or before its key when the key is.

use std::cmp::Ordering;

use crate::proto::authpb::permission::Type as PermType;
use crate::proto::authpb::Permission;

/// The end of an interval: a key (exclusive) or the end of the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Key(Vec<u8>),
    Infinite,
}

impl End {
    fn cmp_key(&self, key: &[u8]) -> Ordering {
        match self {
            End::Key(k) => k.as_slice().cmp(key),
            End::Infinite => Ordering::Greater,
        }
    }
}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &End) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for End {
    fn cmp(&self, other: &End) -> Ordering {
        match (self, other) {
            (End::Infinite, End::Infinite) => Ordering::Equal,
            (End::Infinite, _) => Ordering::Greater,
            (_, End::Infinite) => Ordering::Less,
            (End::Key(a), End::Key(b)) => a.cmp(b),
        }
    }
}

/// Sorted, disjoint, non-touching intervals [begin, end).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Intervals(Vec<(Vec<u8>, End)>);

/// etcd's isOpenEnded: a range end of "\0" means every key from the key on.
fn is_open_ended(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// The interval a permission stands for (etcd's getMergedPerms): a single key is
/// [key, key\0); a range end of "\0" reaches the end of the keyspace.
fn interval_of(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    if range_end.is_empty() {
        let mut next = key.to_vec();
        next.push(0);
        (key.to_vec(), End::Key(next))
    } else if is_open_ended(range_end) {
        (key.to_vec(), End::Infinite)
    } else {
        (key.to_vec(), End::Key(range_end.to_vec()))
    }
}

impl Intervals {
    fn merged(mut ivs: Vec<(Vec<u8>, End)>) -> Intervals {
        ivs.retain(|(b, e)| e.cmp_key(b) == Ordering::Greater);
        ivs.sort();
        let mut out: Vec<(Vec<u8>, End)> = Vec::with_capacity(ivs.len());
        for (b, e) in ivs {
            match out.last_mut() {
                // Touching or overlapping: contiguous, as etcd's Contains sees it.
                Some((_, last)) if last.cmp_key(&b) != Ordering::Less => {
                    if e > *last {
                        *last = e;
                    }
                }
                _ => out.push((b, e)),
            }
        }
        Intervals(out)
    }

    /// The merged interval starting at or before `key`, if any.
    fn around(&self, key: &[u8]) -> Option<&(Vec<u8>, End)> {
        let i = self.0.partition_point(|(b, _)| b.as_slice() <= key);
        i.checked_sub(1).map(|i| &self.0[i])
    }

    /// etcd's checkKeyPoint / checkKeyInterval.
    pub fn permits(&self, key: &[u8], range_end: &[u8]) -> bool {
        let Some((_, end)) = self.around(key) else { return false };
        if range_end.is_empty() {
            return end.cmp_key(key) == Ordering::Greater;
        }
        let want = if is_open_ended(range_end) { End::Infinite } else { End::Key(range_end.to_vec()) };
        if want.cmp_key(key) != Ordering::Greater {
            // An empty range ([b, a), [b, b)): etcd's tree visits the permissions that hold the
            // key (Interval.Compare), and any of them `Contains` it. (Its tree can also miss one
            // when another permission lies wholly in [end, key): it then refuses, ballast not.)
            return end.cmp_key(key) == Ordering::Greater;
        }
        *end >= want
    }
}

/// One user's merged permissions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPerms {
    pub read: Intervals,
    pub write: Intervals,
}

impl UserPerms {
    pub fn of<'a>(perms: impl Iterator<Item = &'a Permission>) -> UserPerms {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        for p in perms {
            let iv = interval_of(&p.key, &p.range_end);
            match PermType::try_from(p.perm_type) {
                Ok(PermType::Read) => read.push(iv),
                Ok(PermType::Write) => write.push(iv),
                Ok(PermType::Readwrite) => {
                    read.push(iv.clone());
                    write.push(iv);
                }
                Err(_) => {}
            }
        }
        UserPerms { read: Intervals::merged(read), write: Intervals::merged(write) }
    }
}

/// etcd's isValidPermissionRange: a key, and a range end after it (or none, or "\0").
pub fn valid_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || is_open_ended(range_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
        Permission { perm_type: t as i32, key: key.as_bytes().to_vec(), range_end: end.to_vec() }
    }

    #[test]
    fn points_ranges_prefixes_and_from_key() {
        let p = [perm(PermType::Read, "a", b""), perm(PermType::Readwrite, "b", b"c"), perm(PermType::Read, "c", b"d"), perm(PermType::Write, "x", b"\0")];
        let u = UserPerms::of(p.iter());
        assert!(u.read.permits(b"a", b""));
        assert!(!u.read.permits(b"a0", b""));
        assert!(!u.read.permits(b"a", b"b")); // only the key a itself
        assert!(u.read.permits(b"b", b"d")); // [b,c) and [c,d) touch
        assert!(!u.read.permits(b"b", b"d0"));
        assert!(u.write.permits(b"bz", b""));
        assert!(!u.write.permits(b"c", b""));
        assert!(u.write.permits(b"x", b"\0"));
        assert!(u.write.permits(b"zzz", b""));
        assert!(!u.write.permits(b"w", b"\0"));
        // An empty range is permitted when its key is, as etcd's interval tree.
        assert!(u.read.permits(b"b", b"a"));
        assert!(u.read.permits(b"b", b"b"));
        assert!(!u.read.permits(b"a0", b"a"));
        assert!(!u.write.permits(b"e", b"d"));
    }
}
