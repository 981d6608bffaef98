//! Generated protobuf and gRPC code: etcd's v3 API (proto/rpc.proto, kv.proto, auth.proto),
//! etcd's Lock and Election services (v3lock.proto, v3election.proto), gRPC's health service
//! (health.proto), ballast's raft entry payload (proto/ballast.proto) and the peer transport
//! (proto/peer.proto). The module names match the proto packages so the generated
//! cross-references (`super::mvccpb::KeyValue`) resolve.
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
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
/// gRPC's health service (package grpc.health.v1).
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
pub mod ballastpb {
    tonic::include_proto!("ballastpb");
}
pub mod ballastpeerpb {
    tonic::include_proto!("ballastpeerpb");
}
