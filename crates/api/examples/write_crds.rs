//! `make crds`: writes crds/*.yaml from the Rust types.
fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in portcullis_api::crds::all() {
        std::fs::write(dir.join(file), yaml)?;
    }
    Ok(())
}
