//! Generated protobuf and gRPC code: etcd's v3 API (proto/rpc.proto, kv.proto, auth.proto) and
//! ballast's raft entry payload (proto/ballast.proto). The module names match the proto packages
//! so the generated cross-references (`super::mvccpb::KeyValue`) resolve.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod ballastpb {
    tonic::include_proto!("ballastpb");
}
