//! Compiles the rate-limit config proto with protox (no system protoc needed).
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
