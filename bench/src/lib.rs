//! Shared pieces of the benchmark harness: the generated etcd v3 protos.
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
