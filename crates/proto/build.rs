//! Compiles the project's .proto files with protox (no system protoc needed). Messages
//! only: nothing here is a gRPC service, so no tonic code is generated.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let file = "../../proto/portcullis/ratelimit/v1/config.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], [proto_root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .compile_fds(fds)?;
    Ok(())
}
