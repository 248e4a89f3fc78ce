//! Kuadrant's `limitador-server` as a child process, the reference the rate-limit
//! service is compared with (same gRPC load, same Redis). It is built by
//! `make limitador` into `tools/limitador` for the benchmark only.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// `$LIMITADOR_BIN`, else `tools/limitador/target/release/limitador-server` above
/// this crate; `None` when neither exists.
pub fn find() -> Option<PathBuf> {
    crate::find_tool(
        "LIMITADOR_BIN",
        "tools/limitador/target/release/limitador-server",
    )
}

/// What Limitador should do with the descriptor the benchmark sends: one limit per
/// value of `variable` in `namespace` when `condition_key` equals `condition_value`.
pub struct LimitSpec<'a> {
    pub namespace: &'a str,
    pub condition_key: &'a str,
    pub condition_value: &'a str,
    pub variable: &'a str,
    pub max_value: u64,
    pub seconds: u64,
}

/// Killed on drop.
pub struct Limitador {
    pub addr: std::net::SocketAddr,
    /// Its HTTP API (`/metrics`).
    pub http: std::net::SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Limitador {
    /// Starts `bin` with `storage` (`memory`, or `redis <url>`, `redis_cached <url>` as
    /// separate words) and RateLimit headers on, as the Portcullis service sends them.
    pub fn start(bin: &Path, limit: &LimitSpec, storage: &[&str]) -> anyhow::Result<Limitador> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("limits.yaml");
        std::fs::write(&file, limits_yaml(limit))?;
        let free = || -> std::io::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (rls, http) = (free()?, free()?);
        let child = Command::new(bin)
            .args(["--rls-ip", "127.0.0.1", "--rls-port", &rls.to_string()])
            .args(["--http-ip", "127.0.0.1", "--http-port", &http.to_string()])
            .args(["--rate-limit-headers", "DRAFT_VERSION_03"])
            .arg(&file)
            .args(storage)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Limitador {
            addr: ([127, 0, 0, 1], rls).into(),
            http: ([127, 0, 0, 1], http).into(),
            child,
            _dir: dir,
        })
    }
}

impl Limitador {
    /// The server's process id (for its CPU time in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Limitador {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Limitador's limits file (a YAML list of limits with CEL conditions and variables).
fn limits_yaml(l: &LimitSpec) -> String {
    format!(
        "- namespace: \"{}\"\n  max_value: {}\n  seconds: {}\n  conditions:\n    - \"descriptors[0]['{}'] == '{}'\"\n  variables:\n    - \"descriptors[0]['{}']\"\n",
        l.namespace, l.max_value, l.seconds, l.condition_key, l.condition_value, l.variable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_file_names_the_descriptor_entries() {
        let y = limits_yaml(&LimitSpec {
            namespace: "ns",
            condition_key: "k.limit",
            condition_value: "a/b",
            variable: "header:x-client",
            max_value: 10,
            seconds: 1,
        });
        assert!(y.contains("descriptors[0]['k.limit'] == 'a/b'"), "{y}");
        assert!(y.contains("- \"descriptors[0]['header:x-client']\""), "{y}");
        assert!(y.contains("max_value: 10\n  seconds: 1\n"), "{y}");
    }
}
