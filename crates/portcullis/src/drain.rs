//! `portcullis drain`: take an Envoy out of service without dropping a request.
//!
//! The chart runs it as a sidecar in every Envoy pod (`--on-signal`): when the pod is
//! deleted, Kubernetes sends it SIGTERM while Envoy's preStop hook waits for
//! `--done-file`; only then does Envoy get its own SIGTERM (which stops it at once).
//! The sequence, through Envoy's admin API (loopback only):
//!
//! 1. `POST /healthcheck/fail`: `/ready` answers 503, so the readiness probe takes the
//!    pod out of its Services, and every response from now on tells the client to go
//!    away (`Connection: close`, HTTP/2 GOAWAY).
//! 2. `POST /drain_listeners?graceful&skip_exit`: Envoy closes idle connections as
//!    well; the listeners keep accepting, because clients that have not yet learnt
//!    that the pod is leaving (kube-proxy, cloud load balancers: seconds) still come.
//! 3. Wait at least `--min-seconds`, then until no downstream HTTP connection is open,
//!    at most `--timeout-seconds`.
//!
//! Envoy must run with `--drain-strategy immediate` (else it only asks a growing share
//! of clients to leave over `--drain-time-s`); the chart does, and this command warns
//! when it is not so. Tested through real Envoys under load: e2e/drain.rs.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args, Clone, Debug)]
pub struct DrainArgs {
    /// Envoy's admin API, `host:port` (loopback in the chart's pods).
    #[arg(long, env = "PORTCULLIS_DRAIN_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: String,
    /// Keep serving at least this long after failing the health checks: Services and
    /// load balancers take a few seconds to stop sending new connections.
    #[arg(long, env = "PORTCULLIS_DRAIN_MIN_SECONDS", default_value_t = 5)]
    pub min_seconds: u64,
    /// Stop waiting for connections to close after this long. The pod's
    /// terminationGracePeriodSeconds must be longer.
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT_SECONDS", default_value_t = 60)]
    pub timeout_seconds: u64,
    /// Idle until SIGTERM (or Ctrl-C), then drain: the sidecar mode of the chart.
    #[arg(long, env = "PORTCULLIS_DRAIN_ON_SIGNAL")]
    pub on_signal: bool,
    /// Create this file when done (also when the drain failed), for Envoy's preStop
    /// hook to stop waiting.
    #[arg(long, env = "PORTCULLIS_DRAIN_DONE_FILE")]
    pub done_file: Option<PathBuf>,
}

/// How a drain ended.
#[derive(Debug)]
pub struct Drained {
    pub elapsed: Duration,
    /// Downstream connections still open when it stopped waiting (0 unless timed out).
    pub open: u64,
}

pub async fn run(args: DrainArgs, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let DrainArgs {
        admin,
        min_seconds,
        timeout_seconds,
        on_signal,
        done_file,
    } = args;
    if let Some(f) = &done_file {
        // Left from an earlier run of this container: Envoy must not stop early.
        let _ = std::fs::remove_file(f);
    }
    if on_signal {
        tracing::info!(%admin, "waiting for SIGTERM to drain Envoy");
        signal.await;
    }
    let result = drain(
        &admin,
        Duration::from_secs(min_seconds),
        Duration::from_secs(timeout_seconds),
    )
    .await;
    if let Some(f) = &done_file {
        std::fs::write(f, b"drained\n").with_context(|| format!("--done-file {}", f.display()))?;
    }
    let d = result?;
    // One line on stdout for people and tests; the same in the log.
    println!(
        "drained: {} open connections after {:.1}s",
        d.open,
        d.elapsed.as_secs_f64()
    );
    if d.open > 0 {
        tracing::warn!(open = d.open, "drain timed out with connections still open");
    }
    Ok(())
}

/// The drain sequence against the admin API at `admin`.
pub async fn drain(admin: &str, min: Duration, timeout: Duration) -> anyhow::Result<Drained> {
    let start = Instant::now();
    check_options(admin, timeout).await;
    admin_call(admin, "POST", "/healthcheck/fail").await?;
    admin_call(admin, "POST", "/drain_listeners?graceful&skip_exit").await?;
    tracing::info!(%admin, "Envoy fails its health checks and is draining");
    loop {
        let open = open_connections(admin).await?;
        let elapsed = start.elapsed();
        if (open == 0 && elapsed >= min) || elapsed >= timeout {
            return Ok(Drained { elapsed, open });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Warns when Envoy's own drain settings would defeat the sequence.
async fn check_options(admin: &str, timeout: Duration) {
    let Ok(info) = admin_call(admin, "GET", "/server_info").await else {
        return;
    };
    let Ok(info) = serde_json::from_str::<serde_json::Value>(&info) else {
        return;
    };
    let opts = &info["command_line_options"];
    if opts["drain_strategy"].as_str() != Some("Immediate") {
        tracing::warn!(
            "Envoy runs with --drain-strategy {}: only some clients are asked to leave at first; start it with --drain-strategy immediate",
            opts["drain_strategy"]
        );
    }
    let drain_time = opts["drain_time"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<f64>().ok());
    if drain_time.is_some_and(|t| t < timeout.as_secs_f64()) {
        tracing::warn!(
            "Envoy's --drain-time-s {drain_time:?} is shorter than --timeout-seconds {}",
            timeout.as_secs()
        );
    }
}

/// Open downstream HTTP connections of the xDS listeners: every HTTP connection
/// manager's `downstream_cx_active` except the admin API's and the chart's own
/// `_portcullis/…` listeners (Prometheus scrapes, probes), which stay open by design.
pub async fn open_connections(admin: &str) -> anyhow::Result<u64> {
    let stats = admin_call(admin, "GET", "/stats?filter=downstream_cx_active$").await?;
    Ok(sum_open(&stats))
}

pub(crate) fn sum_open(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| {
            name.starts_with("http.")
                && name.ends_with(".downstream_cx_active")
                && !name.starts_with("http.admin.")
                && !name.contains("_portcullis")
        })
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// One request to the admin API; the body, or an error naming the call. Plain
/// HTTP/1.1 on loopback, so no client library.
async fn admin_call(admin: &str, method: &str, path: &str) -> anyhow::Result<String> {
    let call = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        stream
            .write_all(
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 5s"))
        .and_then(|r| r)
        .with_context(|| format!("{method} {path} on Envoy's admin API {admin}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{method} {path} on Envoy's admin API {admin}: HTTP {status}: {body}");
    }
    Ok(decode_chunked(head, body))
}

/// Envoy's admin API answers in chunks when the body is large.
fn decode_chunked(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            out.push_str(after.get(..n.min(after.len())).unwrap_or(""));
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_envoy_still_releases_the_pre_stop_hook() {
        // A port nothing listens on: Envoy already gone, or a wrong --admin.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        std::fs::write(&done, "stale").unwrap();
        let args = DrainArgs {
            admin: closed.to_string(),
            min_seconds: 0,
            timeout_seconds: 1,
            on_signal: true,
            done_file: Some(done.clone()),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(run(args, async move {
            let _ = rx.await;
        }));
        // Waiting for the signal: the stale file of an earlier run is gone.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!done.exists() && !run.is_finished());
        tx.send(()).unwrap();
        let err = run.await.unwrap().unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("Envoy's admin API {closed}")),
            "{msg}"
        );
        assert!(done.exists(), "the hook would wait out the grace period");
    }

    #[test]
    fn only_the_gateway_listeners_count() {
        let stats = "http.admin.downstream_cx_active: 1\n\
                     http.http.downstream_cx_active: 3\n\
                     http._portcullis/metrics.downstream_cx_active: 2\n\
                     http.other.downstream_cx_active: 4\n\
                     listener.0.0.0.0_10000.downstream_cx_active: 7\n\
                     http.http.downstream_cx_active_total: 9\n\
                     http.broken.downstream_cx_active: many\n";
        assert_eq!(sum_open(stats), 7);
        assert_eq!(sum_open(""), 0);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked";
        assert_eq!(
            decode_chunked(head, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(decode_chunked("HTTP/1.1 200 OK", "plain"), "plain");
        // A short or garbled chunk stops cleanly.
        assert_eq!(decode_chunked(head, "ff\r\nabc"), "abc");
        assert_eq!(decode_chunked(head, "zz\r\nabc"), "");
    }
}
