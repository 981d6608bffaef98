//! Shared pieces of the benchmark harness: the generated etcd v3 protos, /proc readings, a
//! latency histogram and number formatting.
//! The module names match the proto packages so generated cross-references
//! (`super::mvccpb::KeyValue`) resolve.

#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// Threads of the load generator, each a current-thread tokio runtime (see `drive_clients` in
/// kv/drive.rs and the watch clients).
pub const LOADGEN_THREADS: usize = 2;

pub mod hist;
pub mod procstat;
pub mod report;
pub mod rounds;
pub mod walsync;
