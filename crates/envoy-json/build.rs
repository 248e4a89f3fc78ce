//! Compiles the Envoy .proto files that ship inside the `envoy-types` package into a
//! `FileDescriptorSet` (`$OUT_DIR/envoy.fds`) with protox, so no system protoc is needed.
//! The package directory is found with `cargo metadata`, so any `CARGO_HOME`, registry
//! or vendored source works.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

type BoxError = Box<dyn std::error::Error>;

/// Roots of the files we render; protox pulls in everything they import.
const FILES: &[&str] = &[
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/trace/v3/opentelemetry.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto",
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/filters/http/health_check/v3/health_check.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/access_loggers/grpc/v3/als.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
];

/// Include roots under `envoy-types-*/proto/`, in lookup order.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "opentelemetry-proto",
    "client_model",
    "cel-spec/proto",
    "ratelimit/api",
];

fn main() -> Result<(), BoxError> {
    println!("cargo:rerun-if-changed=build.rs");
    let (workspace_root, envoy_types) = locate_envoy_types()?;
    // A new envoy-types version only shows up in Cargo.lock.
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("Cargo.lock").display()
    );
    let proto = envoy_types.join("proto");
    let includes: Vec<PathBuf> = INCLUDES
        .iter()
        .map(|d| proto.join(d))
        .filter(|p| p.is_dir())
        .collect();
    if includes.is_empty() {
        return Err(format!("no .proto include roots under {}", proto.display()).into());
    }
    let files: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| {
            let found = includes.iter().any(|i| i.join(f).is_file());
            if !found {
                println!("cargo:warning=envoy-types has no {f}; skipped");
            }
            found
        })
        .collect();
    let mut compiler = protox::Compiler::new(&includes)?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(&files)?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("envoy.fds");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}

/// Returns (workspace root, directory of the envoy-types package this crate depends on).
fn locate_envoy_types() -> Result<(PathBuf, PathBuf), BoxError> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let meta = cargo_metadata(&manifest)?;
    let str_of = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_owned);
    let packages = meta["packages"].as_array().ok_or("metadata: no packages")?;
    let package_by_id = |id: &str| packages.iter().find(|p| p["id"] == id);

    let self_name = env::var("CARGO_PKG_NAME")?;
    let self_id = packages
        .iter()
        .find(|p| {
            // Local (path) packages have no source; names are unique among them.
            p["name"] == self_name.as_str() && p["source"].is_null()
        })
        .and_then(|p| str_of(p, "id"))
        .ok_or("metadata: this package not found")?;
    let node = meta["resolve"]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == self_id.as_str()))
        .ok_or("metadata: no resolve node for this package")?;
    let dep = node["deps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| package_by_id(d["pkg"].as_str()?))
        .find(|p| p["name"] == "envoy-types")
        .ok_or("metadata: envoy-types is not a dependency")?;
    let manifest_path = str_of(dep, "manifest_path").ok_or("metadata: no manifest_path")?;
    let dir = Path::new(&manifest_path)
        .parent()
        .ok_or("metadata: bad manifest_path")?
        .to_owned();
    let root = str_of(&meta, "workspace_root").ok_or("metadata: no workspace_root")?;
    Ok((PathBuf::from(root), dir))
}

/// `cargo metadata`, offline first. `--filter-platform` limits it to the crates this
/// build already has; without it `--offline` fails on other platforms' crates.
fn cargo_metadata(manifest: &Path) -> Result<serde_json::Value, BoxError> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = env::var("TARGET")?;
    let run = |offline: bool| -> Result<Vec<u8>, String> {
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ])
        .arg("--manifest-path")
        .arg(manifest);
        if offline {
            cmd.arg("--offline");
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let stdout = run(true).or_else(|offline_err| {
        println!(
            "cargo:warning=`cargo metadata --offline` failed ({}); retrying online",
            offline_err.trim()
        );
        run(false)
    })?;
    Ok(serde_json::from_slice(&stdout)?)
}
