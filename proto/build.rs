//! Compiles the `.proto` files under `vmcloud/v1/` with protox (a pure-Rust protobuf compiler,
//! so building this crate needs no `protoc`) and generates Rust types with prost.

fn main() {
    let files = [
        "vmcloud/v1/agent.proto",
        "vmcloud/v1/billing.proto",
        "vmcloud/v1/gaming.proto",
        "vmcloud/v1/log.proto",
        "vmcloud/v1/raft.proto",
        "vmcloud/v1/tenancy.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])
        .expect("the .proto files under proto/vmcloud/v1 must compile");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost code generation for vmcloud.v1");
}
