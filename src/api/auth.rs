//! etcd's Auth service (etcd: server/etcdserver/v3_server.go, apply_auth.go) over gRPC.
//!
//! Changes go through raft (`auth::store` applies them on shard 0, with etcd's admin check);
//! passwords are hashed here first, on tokio's blocking pool (bcrypt at cost 10 takes tens of
//! milliseconds: never on a front-end or shard thread), as etcd's API layer hashes them.
//! Reads (AuthStatus, UserGet/List, RoleGet/List) are answered from the front end's copy of
//! the auth state, with the checks etcd's applier makes. Authenticate checks the password here,
//! proposes the login through raft (a simple token names its raft index) and retries while the
//! auth revision moved under it, as etcd's.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::auth::store::AuthInfo;
use crate::error::{Error, Result};
use crate::kv::response::Response as Applied;
use crate::proto::ballastpb::internal_request::Request as Write;
use crate::proto::ballastpb::Authenticate;
use crate::proto::etcdserverpb::auth_server;
use crate::proto::etcdserverpb::*;

/// Authenticate retries this often when the auth revision changes under it (etcd: forever).
const MAX_AUTHENTICATE_ATTEMPTS: usize = 16;

pub struct AuthService {
    ctx: Arc<Ctx>,
}

type Reply<T> = std::result::Result<Response<T>, Status>;

impl AuthService {
    pub fn new(ctx: Arc<Ctx>) -> AuthService {
        AuthService { ctx }
    }

    /// Proposes an auth change as `who` (None: auth off at the front end).
    async fn change(&self, who: Option<AuthInfo>, w: Write) -> Result<Option<ResponseHeader>> {
        let header = who.as_ref().map(crate::auth::header);
        match self.ctx.raft.propose_as(w, header).await? {
            Applied::Auth(mut h, _) => {
                self.ctx.fill(&mut h);
                Ok(h)
            }
            other => Err(other.unexpected()),
        }
    }

    /// The caller of `req`, as every auth call sees it.
    fn caller<T>(&self, req: &Request<T>) -> Result<Option<AuthInfo>> {
        self.ctx.auth.caller(req.metadata(), req.extensions())
    }

    /// Admin calls are checked again when applied; checking first spares a refused caller the
    /// bcrypt hashing.
    fn admin_first<T>(&self, req: &Request<T>) -> Result<Option<AuthInfo>> {
        let who = self.caller(req)?;
        self.ctx.auth.view().state.admin(&who.clone().unwrap_or_default())?;
        Ok(who)
    }

    async fn hash(&self, password: String) -> Result<String> {
        use base64::Engine as _;
        let cost = self.ctx.auth.bcrypt_cost;
        let hashed = tokio::task::spawn_blocking(move || bcrypt::hash_with_result(password, cost).map(|h| h.format_for_version(bcrypt::Version::TwoA)))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(hashed))
    }

    async fn authenticate(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse> {
        for _ in 0..MAX_AUTHENTICATE_ATTEMPTS {
            let view = self.ctx.auth.view();
            if !view.state.enabled {
                return Err(Error::AuthNotEnabled);
            }
            let user = view.state.users.get(&r.name).ok_or(Error::AuthFailed)?;
            if user.no_password {
                return Err(Error::NoPasswordUser);
            }
            let checked_revision = view.state.revision;
            let (password, hash) = (r.password.clone(), user.password.clone());
            let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await.unwrap_or(false);
            if !ok {
                return Err(Error::AuthFailed);
            }
            let prefix = self.ctx.auth.tokens.prefix();
            let applied = match self.ctx.raft.propose(Write::Authenticate(Authenticate { name: r.name.clone(), simple_token: prefix })).await? {
                Applied::Auth(h, Some(a)) => (h, a),
                other => return Err(other.unexpected()),
            };
            if checked_revision != self.ctx.auth.view().state.revision {
                continue; // the password may have changed since it was checked
            }
            let (mut header, a) = applied;
            let token = self.ctx.auth.tokens.token(&a.name, a.revision, &a.prefix, a.index)?;
            self.ctx.fill(&mut header);
            return Ok(AuthenticateResponse { header, token });
        }
        Err(Error::AuthOldRevision)
    }

    /// The token is checked first, the permissions after the round trip (etcd: the token
    /// before proposing, the permissions at apply).
    async fn through_raft<T>(&self, req: &Request<T>) -> Result<()> {
        self.caller(req)?;
        self.ctx.through_raft().await
    }

    fn status<T>(&self, req: &Request<T>) -> Result<AuthStatusResponse> {
        let who = self.caller(req)?.unwrap_or_default();
        let view = self.ctx.auth.view();
        view.state.admin(&who)?;
        Ok(AuthStatusResponse { header: self.ctx.header(), enabled: view.state.enabled, auth_revision: view.state.revision })
    }

    fn user_get(&self, req: &Request<AuthUserGetRequest>) -> Result<AuthUserGetResponse> {
        let who = self.caller(req)?.unwrap_or_default();
        let view = self.ctx.auth.view();
        if let Err(e) = view.state.admin(&who) {
            if req.get_ref().name != who.username {
                return Err(e);
            }
        }
        let user = view.state.users.get(&req.get_ref().name).ok_or(Error::UserNotFound)?;
        Ok(AuthUserGetResponse { header: self.ctx.header(), roles: user.roles.clone() })
    }

    fn user_list<T>(&self, req: &Request<T>) -> Result<AuthUserListResponse> {
        let who = self.caller(req)?.unwrap_or_default();
        let view = self.ctx.auth.view();
        view.state.admin(&who)?;
        Ok(AuthUserListResponse { header: self.ctx.header(), users: view.state.users.keys().cloned().collect() })
    }

    fn role_get(&self, req: &Request<AuthRoleGetRequest>) -> Result<AuthRoleGetResponse> {
        let who = self.caller(req)?.unwrap_or_default();
        let view = self.ctx.auth.view();
        let role = &req.get_ref().role;
        if let Err(e) = view.state.admin(&who) {
            if !view.state.users.get(&who.username).is_some_and(|u| u.roles.contains(role)) {
                return Err(e);
            }
        }
        let perms = view.state.roles.get(role).ok_or(Error::RoleNotFound)?;
        Ok(AuthRoleGetResponse { header: self.ctx.header(), perm: perms.iter().map(|p| p.to_proto()).collect() })
    }

    fn role_list<T>(&self, req: &Request<T>) -> Result<AuthRoleListResponse> {
        let who = self.caller(req)?.unwrap_or_default();
        let view = self.ctx.auth.view();
        view.state.admin(&who)?;
        Ok(AuthRoleListResponse { header: self.ctx.header(), roles: view.state.roles.keys().cloned().collect() })
    }
}

#[tonic::async_trait]
impl auth_server::Auth for AuthService {
    async fn auth_enable(&self, r: Request<AuthEnableRequest>) -> Reply<AuthEnableResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::AuthEnable(r.into_inner())).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }
    async fn auth_disable(&self, r: Request<AuthDisableRequest>) -> Reply<AuthDisableResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::AuthDisable(r.into_inner())).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }
    async fn auth_status(&self, r: Request<AuthStatusRequest>) -> Reply<AuthStatusResponse> {
        self.through_raft(&r).await?;
        Ok(Response::new(self.status(&r)?))
    }
    async fn authenticate(&self, r: Request<AuthenticateRequest>) -> Reply<AuthenticateResponse> {
        Ok(Response::new(self.authenticate(r.into_inner()).await?))
    }
    async fn user_add(&self, r: Request<AuthUserAddRequest>) -> Reply<AuthUserAddResponse> {
        let who = self.admin_first(&r)?;
        let mut req = r.into_inner();
        if !req.options.as_ref().is_some_and(|o| o.no_password) {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        let header = self.change(who, Write::UserAdd(req)).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }
    async fn user_get(&self, r: Request<AuthUserGetRequest>) -> Reply<AuthUserGetResponse> {
        self.through_raft(&r).await?;
        Ok(Response::new(self.user_get(&r)?))
    }
    async fn user_list(&self, r: Request<AuthUserListRequest>) -> Reply<AuthUserListResponse> {
        self.through_raft(&r).await?;
        Ok(Response::new(self.user_list(&r)?))
    }
    async fn user_delete(&self, r: Request<AuthUserDeleteRequest>) -> Reply<AuthUserDeleteResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::UserDelete(r.into_inner())).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }
    async fn user_change_password(&self, r: Request<AuthUserChangePasswordRequest>) -> Reply<AuthUserChangePasswordResponse> {
        let who = self.admin_first(&r)?;
        let mut req = r.into_inner();
        // As etcd's v3_server.go: `password` is hashed only when given; else the request's
        // hashedPassword goes to the store as sent (empty: no password logs in). A no-password
        // user ignores both when applied.
        if !req.password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        let header = self.change(who, Write::UserChangePassword(req)).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }
    async fn user_grant_role(&self, r: Request<AuthUserGrantRoleRequest>) -> Reply<AuthUserGrantRoleResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::UserGrantRole(r.into_inner())).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }
    async fn user_revoke_role(&self, r: Request<AuthUserRevokeRoleRequest>) -> Reply<AuthUserRevokeRoleResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::UserRevokeRole(r.into_inner())).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }
    async fn role_add(&self, r: Request<AuthRoleAddRequest>) -> Reply<AuthRoleAddResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::RoleAdd(r.into_inner())).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }
    async fn role_get(&self, r: Request<AuthRoleGetRequest>) -> Reply<AuthRoleGetResponse> {
        self.through_raft(&r).await?;
        Ok(Response::new(self.role_get(&r)?))
    }
    async fn role_list(&self, r: Request<AuthRoleListRequest>) -> Reply<AuthRoleListResponse> {
        self.through_raft(&r).await?;
        Ok(Response::new(self.role_list(&r)?))
    }
    async fn role_delete(&self, r: Request<AuthRoleDeleteRequest>) -> Reply<AuthRoleDeleteResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::RoleDelete(r.into_inner())).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }
    async fn role_grant_permission(&self, r: Request<AuthRoleGrantPermissionRequest>) -> Reply<AuthRoleGrantPermissionResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::RoleGrantPermission(r.into_inner())).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }
    async fn role_revoke_permission(&self, r: Request<AuthRoleRevokePermissionRequest>) -> Reply<AuthRoleRevokePermissionResponse> {
        let who = self.caller(&r)?;
        let header = self.change(who, Write::RoleRevokePermission(r.into_inner())).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
