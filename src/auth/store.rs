//! etcd's auth store (server/auth/store.go) as raft-applied state: users (bcrypt password hash,
//! roles, the no-password option), roles (key permissions), the enabled flag and the auth
//! revision, which every change raises by one (etcd's commitRevision; AuthEnable does not).
//! Applied on shard 0 by the applier, saved in the snapshot manifest; the front end checks
//! requests against a copy of it (`AuthView`, published after each change).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::perm::{valid_range, UserPerms};
use crate::error::{Error, Result};
use crate::proto::authpb::Permission;
use crate::proto::etcdserverpb::*;

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The bcrypt hash ("$2a$…"); empty for a no-password user.
    pub password: String,
    /// Sorted, as etcd keeps them.
    pub roles: Vec<String>,
    pub no_password: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perm {
    pub perm_type: i32,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl Perm {
    pub fn to_proto(&self) -> Permission {
        Permission { perm_type: self.perm_type, key: self.key.clone(), range_end: self.range_end.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthState {
    pub enabled: bool,
    /// Auth was enabled at some point: etcd's store has its `authEnabled` key only from then
    /// (a snapshot's auth bucket shows it).
    #[serde(default)]
    pub ever_enabled: bool,
    /// etcd's auth revision: 1 in a new store.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    /// Role → its permissions, sorted by key (etcd's permSlice).
    pub roles: BTreeMap<String, Vec<Perm>>,
}

impl Default for AuthState {
    fn default() -> AuthState {
        AuthState { enabled: false, ever_enabled: false, revision: 1, users: BTreeMap::new(), roles: BTreeMap::new() }
    }
}

/// Who sent a request (etcd's AuthInfo): revision 0 means nobody (no token, no certificate).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// Read (Range, compares, watches) or write (Put, DeleteRange).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    Read,
    Write,
}

/// A hashed password: base64 of the bcrypt hash, as etcd's hashedPassword, decoded as etcd's
/// selectPassword does with Go's `base64.StdEncoding` (padding required, `\r` and `\n` skipped,
/// the unused bits of the last character ignored); not base64 is etcd's ErrNoPasswordUser. The
/// front end hashes a given password; UserChangePassword without one stores the client's value:
/// empty, or bytes that are no bcrypt hash (kept lossily as text), and no password matches.
fn decode_hash(hashed: &str) -> Result<String> {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
    use base64::Engine as _;
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true).with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let text: String = hashed.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let bytes = GO_STD.decode(text).map_err(|_| Error::NoPasswordUser)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl AuthState {
    fn commit(&mut self) {
        self.revision += 1;
    }

    pub fn has_root_role(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.binary_search_by(|r| r.as_str().cmp(ROOT_ROLE)).is_ok())
    }

    /// etcd's IsAdminPermitted.
    pub fn admin(&self, who: &AuthInfo) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if who.username.is_empty() {
            return Err(Error::UserEmpty);
        }
        if !self.users.contains_key(&who.username) {
            return Err(Error::UserNotFound);
        }
        if !self.has_root_role(&who.username) {
            return Err(Error::PermissionDenied);
        }
        Ok(())
    }

    pub fn enable(&mut self) -> Result<()> {
        if self.enabled {
            return Ok(());
        }
        if !self.users.contains_key(ROOT_USER) {
            return Err(Error::RootUserNotExist);
        }
        if !self.has_root_role(ROOT_USER) {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        self.ever_enabled = true;
        Ok(())
    }

    pub fn disable(&mut self) {
        if self.enabled {
            self.enabled = false;
            self.commit();
        }
    }

    /// etcd's authStore.Authenticate (the password was checked before the proposal).
    pub fn authenticate(&self, name: &str) -> Result<()> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        match self.users.get(name) {
            Some(u) if !u.no_password => Ok(()),
            _ => Err(Error::AuthFailed),
        }
    }

    pub fn user_add(&mut self, r: &AuthUserAddRequest) -> Result<()> {
        if r.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(Error::UserAlreadyExist);
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let password = if no_password { String::new() } else { decode_hash(&r.hashed_password)? };
        self.users.insert(r.name.clone(), User { password, roles: Vec::new(), no_password });
        self.commit();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Result<()> {
        if self.enabled && name == ROOT_USER {
            return Err(Error::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(Error::UserNotFound)?;
        self.commit();
        Ok(())
    }

    pub fn user_change_password(&mut self, r: &AuthUserChangePasswordRequest) -> Result<()> {
        let user = self.users.get_mut(&r.name).ok_or(Error::UserNotFound)?;
        if !user.no_password {
            user.password = decode_hash(&r.hashed_password)?;
        }
        self.commit();
        Ok(())
    }

    pub fn user_grant_role(&mut self, r: &AuthUserGrantRoleRequest) -> Result<()> {
        if !self.users.contains_key(&r.user) {
            return Err(Error::UserNotFound);
        }
        if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
            return Err(Error::RoleNotFound);
        }
        let user = self.users.get_mut(&r.user).expect("checked above");
        match user.roles.binary_search(&r.role) {
            Ok(_) => return Ok(()), // already granted: no change, no new revision
            Err(i) => user.roles.insert(i, r.role.clone()),
        }
        self.commit();
        Ok(())
    }

    pub fn user_revoke_role(&mut self, r: &AuthUserRevokeRoleRequest) -> Result<()> {
        if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
            return Err(Error::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(&r.name).ok_or(Error::UserNotFound)?;
        let i = user.roles.iter().position(|x| *x == r.role).ok_or(Error::RoleNotGranted)?;
        user.roles.remove(i);
        self.commit();
        Ok(())
    }

    pub fn role_add(&mut self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(Error::RoleAlreadyExist);
        }
        self.roles.insert(name.to_string(), Vec::new());
        self.commit();
        Ok(())
    }

    pub fn role_delete(&mut self, name: &str) -> Result<()> {
        if self.enabled && name == ROOT_ROLE {
            return Err(Error::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(Error::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.retain(|r| r != name);
        }
        self.commit();
        Ok(())
    }

    pub fn role_grant_permission(&mut self, r: &AuthRoleGrantPermissionRequest) -> Result<()> {
        let perm = r.perm.as_ref().ok_or(Error::PermissionNotGiven)?;
        if !valid_range(&perm.key, &perm.range_end) {
            return Err(Error::InvalidAuthMgmt);
        }
        let perms = self.roles.get_mut(&r.name).ok_or(Error::RoleNotFound)?;
        let i = perms.partition_point(|p| p.key < perm.key);
        match perms.get_mut(i) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => p.perm_type = perm.perm_type,
            _ => {
                perms.push(Perm { perm_type: perm.perm_type, key: perm.key.clone(), range_end: perm.range_end.clone() });
                perms.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.commit();
        Ok(())
    }

    pub fn role_revoke_permission(&mut self, r: &AuthRoleRevokePermissionRequest) -> Result<()> {
        let perms = self.roles.get_mut(&r.role).ok_or(Error::RoleNotFound)?;
        let before = perms.len();
        perms.retain(|p| p.key != r.key || p.range_end != r.range_end);
        if perms.len() == before {
            return Err(Error::PermissionNotGranted);
        }
        self.commit();
        Ok(())
    }
}

/// A txn without compares whose ops are only such txns: etcd's checkTxnAuth checks nothing
/// in it, so it needs no user.
pub fn checks_nothing(t: &TxnRequest) -> bool {
    t.compare.is_empty()
        && t.success.iter().chain(&t.failure).all(|op| match &op.request {
            Some(request_op::Request::RequestTxn(inner)) => checks_nothing(inner),
            Some(_) => false,
            None => true,
        })
}

/// The front end's copy of the auth state, with each user's merged permissions.
#[derive(Debug, Default)]
pub struct AuthView {
    pub state: AuthState,
    perms: HashMap<String, UserPerms>,
}

impl AuthView {
    pub fn new(state: AuthState) -> AuthView {
        let perms = state
            .users
            .iter()
            .map(|(name, u)| {
                let perms = u.roles.iter().filter_map(|r| state.roles.get(r)).flatten().map(Perm::to_proto).collect::<Vec<_>>();
                (name.clone(), UserPerms::of(perms.iter()))
            })
            .collect();
        AuthView { state, perms }
    }

    /// etcd's isOpPermitted: `range_end` empty for one key.
    pub fn permitted(&self, who: &AuthInfo, key: &[u8], range_end: &[u8], access: Access) -> Result<()> {
        if !self.state.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(Error::UserEmpty);
        }
        if who.revision < self.state.revision {
            return Err(Error::AuthOldRevision);
        }
        if !self.state.users.contains_key(&who.username) {
            return Err(Error::PermissionDenied);
        }
        if self.state.has_root_role(&who.username) {
            return Ok(());
        }
        let perms = self.perms.get(&who.username).ok_or(Error::PermissionDenied)?;
        let ok = match access {
            Access::Read => perms.read.permits(key, range_end),
            Access::Write => perms.write.permits(key, range_end),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    pub fn read(&self, who: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<()> {
        self.permitted(who, key, range_end, Access::Read)
    }

    pub fn write(&self, who: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<()> {
        self.permitted(who, key, range_end, Access::Write)
    }

    /// etcd's checkPutAuth (the lease's keys are checked by the applier).
    pub fn put(&self, who: &AuthInfo, r: &PutRequest) -> Result<()> {
        self.write(who, &r.key, &[])?;
        if r.prev_kv {
            self.read(who, &r.key, &[])?;
        }
        Ok(())
    }

    pub fn delete_range(&self, who: &AuthInfo, r: &DeleteRangeRequest) -> Result<()> {
        self.write(who, &r.key, &r.range_end)?;
        if r.prev_kv {
            self.read(who, &r.key, &r.range_end)?;
        }
        Ok(())
    }

    /// etcd's checkTxnAuth: every compare is a read, every op (nested txns too) is checked.
    pub fn txn(&self, who: &AuthInfo, t: &TxnRequest) -> Result<()> {
        for c in &t.compare {
            self.read(who, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => self.read(who, &r.key, &r.range_end)?,
                Some(request_op::Request::RequestPut(p)) => self.put(who, p)?,
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.read(who, &d.key, &d.range_end)?;
                    }
                    self.write(who, &d.key, &d.range_end)?;
                }
                Some(request_op::Request::RequestTxn(inner)) => self.txn(who, inner)?,
                None => {}
            }
        }
        Ok(())
    }
}
