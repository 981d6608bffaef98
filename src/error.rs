//! The one error type of ballast, mapped once to etcd's gRPC codes and exact messages
//! (etcd: api/v3rpc/rpctypes/error.go). Every handler returns `Result<_, Error>`; the
//! `From<Error> for tonic::Status` below is the only place a message string is written.

use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    InvalidSortOption,
    Compacted,
    FutureRev,
    NoSpace,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    RequestTooLarge,
    TooManyRequests,
    /// `SNAPSHOT_DOWNLOADS_MAX` snapshot downloads are in progress (ballast's bound: each holds
    /// a whole copy of the data on disk until its client has taken it).
    TooManySnapshotDownloads,
    NoLeader,
    /// A learner serves only Status, serializable Range and Snapshot (etcd's interceptors).
    NotSupportedForLearner,
    /// The CORRUPT alarm is raised: writes are refused at apply (etcd's applierV3Corrupt).
    Corrupt,
    /// A ReadIndex in flight when the leader changed, or a write whose entry a new leader
    /// replaced (so it will never be applied).
    LeaderChanged,
    NotLeader,
    /// MoveLeader to a member that is not a voter.
    BadLeaderTransferee,
    /// MoveLeader whose target did not become leader within the request timeout.
    LeaderTransferTimeout,
    Stopped,
    /// The recipes behind Lock and Election (answered with gRPC code Unknown, as etcd's).
    SessionExpired,
    LostWatcher,
    ElectionNotLeader,
    ElectionNoLeader,
    LeaderFieldMissing,
    /// A watch create whose range_end is not after its key (a cancel reason, not a status).
    WatchRangeEmpty,
    /// A watch create with an id its stream already uses (a cancel reason).
    DuplicateWatchId,
    Timeout,
    /// A write timed out that came in just before the current leader was elected.
    TimeoutDueToLeaderFail,
    /// A write whose request timeout passed before any leader took it: etcd's raft node takes
    /// no proposal without a leader, and its `Propose` returns the context's own error, which
    /// the gRPC layer does not map (code Unknown). clientv3 retries "request timed out"
    /// (Unavailable) on its repeatable calls (lease grant, ...) until its own deadline, but not
    /// this.
    ProposalDeadline,
    /// etcd's auth errors (server/auth/store.go, mapped in api/v3rpc/util.go).
    RootUserNotExist,
    RootRoleNotExist,
    UserAlreadyExist,
    UserEmpty,
    UserNotFound,
    RoleAlreadyExist,
    RoleNotFound,
    RoleEmpty,
    AuthFailed,
    PermissionNotGiven,
    PermissionDenied,
    RoleNotGranted,
    PermissionNotGranted,
    AuthNotEnabled,
    InvalidAuthToken,
    InvalidAuthMgmt,
    AuthOldRevision,
    /// etcd has no gRPC error for it: answered as code Unknown with the auth package's text.
    NoPasswordUser,
    /// Authenticate with a JWT pub-key and no priv-key (etcd's ErrVerifyOnly, unmapped: Unknown).
    VerifyOnly,
    /// The admin check of Snapshot, Hash, HashKV and Defragment: etcd's authMaintenanceServer
    /// returns the auth package's error unmapped, so clients see code Unknown and its text
    /// (`auth: permission denied`, `auth: invalid auth token`).
    AdminRefused(&'static str),
    /// etcd's membership errors (server/etcdserver/api/membership/errors.go, etcdserver/errors.go,
    /// mapped in api/v3rpc/util.go).
    MemberExist,
    PeerUrlExist,
    /// etcd maps it to an `EtcdError`, not a gRPC status: clients see code Unknown.
    MemberNotEnoughStarted,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    Unhealthy,
    /// A feature this build does not offer yet.
    Unimplemented(Missing),
    /// A fault inside the server that is not the client's doing.
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The features this build does not offer yet, each answered with its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Downgrade,
}

impl Missing {
    fn message(self) -> &'static str {
        match self {
            Missing::Downgrade => "ballast: downgrade is not implemented yet",
        }
    }
}

impl Error {
    fn code_and_message(&self) -> (Code, &str) {
        match self {
            Error::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            Error::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            Error::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            Error::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            Error::TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            Error::DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            Error::InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            Error::Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            Error::FutureRev => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            Error::NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            Error::LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            Error::LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            Error::LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            Error::RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            Error::TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
            Error::TooManySnapshotDownloads => (Code::ResourceExhausted, "ballast: too many snapshot downloads in progress (at most 4 at once); try again when one has ended"),
            Error::NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            Error::NotSupportedForLearner => (Code::Unavailable, "etcdserver: rpc not supported for learner"),
            Error::Corrupt => (Code::DataLoss, "etcdserver: corrupt cluster"),
            Error::LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
            Error::NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
            Error::BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            // Not in etcd's gRPC error map: its togRPCError answers Unknown.
            Error::LeaderTransferTimeout => (Code::Unknown, "etcdserver: request timed out, leader transfer took too long"),
            Error::Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            Error::SessionExpired => (Code::Unknown, "mutex: session is expired"),
            Error::LostWatcher => (Code::Unknown, "lost watcher waiting for delete"),
            Error::ElectionNotLeader => (Code::Unknown, "election: not leader"),
            Error::ElectionNoLeader => (Code::Unknown, "election: no leader"),
            Error::LeaderFieldMissing => (Code::Unknown, "\"leader\" field must be provided"),
            Error::WatchRangeEmpty => (Code::InvalidArgument, "mvcc: watcher range is empty"),
            Error::DuplicateWatchId => (Code::InvalidArgument, "mvcc: duplicate watch ID provided on the WatchStream"),
            Error::Timeout => (Code::Unavailable, "etcdserver: request timed out"),
            Error::TimeoutDueToLeaderFail => (Code::Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"),
            Error::ProposalDeadline => (Code::Unknown, "context deadline exceeded"),
            Error::RootUserNotExist => (Code::FailedPrecondition, "etcdserver: root user does not exist"),
            Error::RootRoleNotExist => (Code::FailedPrecondition, "etcdserver: root user does not have root role"),
            Error::UserAlreadyExist => (Code::FailedPrecondition, "etcdserver: user name already exists"),
            Error::UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
            Error::UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
            Error::RoleAlreadyExist => (Code::FailedPrecondition, "etcdserver: role name already exists"),
            Error::RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
            Error::RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
            Error::AuthFailed => (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
            Error::PermissionNotGiven => (Code::InvalidArgument, "etcdserver: permission not given"),
            Error::PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
            Error::RoleNotGranted => (Code::FailedPrecondition, "etcdserver: role is not granted to the user"),
            Error::PermissionNotGranted => (Code::FailedPrecondition, "etcdserver: permission is not granted to the role"),
            Error::AuthNotEnabled => (Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
            Error::InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
            Error::InvalidAuthMgmt => (Code::InvalidArgument, "etcdserver: invalid auth management"),
            Error::AuthOldRevision => (Code::InvalidArgument, "etcdserver: revision of auth store is old"),
            Error::NoPasswordUser => (Code::Unknown, "auth: authentication failed, password was given for no password user"),
            Error::VerifyOnly => (Code::Unknown, "auth: token signing attempted with verify-only key"),
            Error::MemberExist => (Code::FailedPrecondition, "etcdserver: member ID already exist"),
            Error::PeerUrlExist => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
            Error::MemberNotEnoughStarted => (Code::Unknown, "etcdserver: re-configuration failed due to not enough started members"),
            Error::MemberBadUrls => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
            Error::MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            Error::MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
            Error::LearnerNotReady => (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"),
            Error::TooManyLearners => (Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
            Error::Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
            Error::Unimplemented(what) => (Code::Unimplemented, what.message()),
            Error::Internal(msg) => (Code::Internal, msg),
            Error::AdminRefused(msg) => (Code::Unknown, msg),
        }
    }
}

impl Error {
    /// etcd's Lock and Election services send every error of their recipes as gRPC code Unknown
    /// with the error's message (etcd's errors reach them through its in-process client).
    pub fn into_unknown(self) -> Status {
        Status::new(Code::Unknown, self.code_and_message().1)
    }
}

impl Error {
    /// The text etcd puts in a refused watch's cancel reason: the gRPC error's own text.
    pub fn as_grpc_text(&self) -> String {
        let (code, message) = self.code_and_message();
        format!("rpc error: code = {} desc = {message}", go_code_name(code))
    }
}

/// grpc-go's names of the codes (codes.Code.String()).
fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "InvalidArgument",
        Code::PermissionDenied => "PermissionDenied",
        Code::Unauthenticated => "Unauthenticated",
        Code::FailedPrecondition => "FailedPrecondition",
        _ => "Unknown",
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code_and_message().1)
    }
}

impl std::error::Error for Error {}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let (code, message) = e.code_and_message();
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_etcd_codes_and_strings() {
        let s = Status::from(Error::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        let s = Status::from(Error::EmptyKey);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: key is not provided");
        let s = Status::from(Error::Unimplemented(Missing::Downgrade));
        assert_eq!(s.code(), Code::Unimplemented);
        assert_eq!(s.message(), "ballast: downgrade is not implemented yet");
    }
}
