//! Compiles etcd's v3 API protos (proto/) and ballast's raft entry format with tonic-prost-build
//! (servers, and clients for the tests that speak raw gRPC).
//! protoc comes from the protoc-bin-vendored crate, set only here.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_client(true)
        .compile_protos(&["proto/rpc.proto", "proto/ballast.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
