//! Compiles the repo's etcd v3 API protos (../proto/rpc.proto, which imports kv.proto and
//! auth.proto) with tonic-prost-build, client and server. protoc comes from protoc-bin-vendored.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["../proto/rpc.proto"], &["../proto"])?;
    println!("cargo:rerun-if-changed=../proto/rpc.proto");
    println!("cargo:rerun-if-changed=../proto/kv.proto");
    println!("cargo:rerun-if-changed=../proto/auth.proto");
    Ok(())
}
