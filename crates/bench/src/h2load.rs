//! h2load (nghttp2's load generator) as a neutral client: one C process drives both the
//! measured path and its baseline, so neither figure carries the benchmark's own Rust
//! HTTP or gRPC stack, and its per-request log gives the latency quantiles.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::gateway::quantile;

/// One h2load run.
#[derive(Clone)]
pub struct Spec {
    /// Request URL; with `connect_to` its host is only the SNI and `:authority`.
    pub url: String,
    /// `127.0.0.1:port` to connect to instead of the URL's host.
    pub connect_to: Option<String>,
    pub clients: usize,
    /// Streams in flight per connection (HTTP/2); 1 for HTTP/1.1.
    pub streams: usize,
    /// Open loop: each client sends one request every this often, on its own timer
    /// (a timing script; h2load's `--rps` ticks at most every 10 ms and sends what is
    /// due in one burst). `None`: closed loop for `duration` after `warm_up`.
    pub every: Option<Duration>,
    /// Request body (the method becomes POST).
    pub data: Option<PathBuf>,
    pub headers: Vec<String>,
    /// HTTP/1.1 (`--h1`); otherwise HTTP/2 (h2c prior knowledge, or ALPN over TLS).
    pub h1: bool,
    pub duration: Duration,
    pub warm_up: Duration,
}

pub struct Run {
    /// Requests answered with a 2xx during the measured period.
    pub ok: u64,
    /// Requests that failed, errored, timed out or got a non-2xx answer.
    pub bad: u64,
    pub per_sec: f64,
    /// Logged requests over the time from the first one's start to the last one's
    /// (the rate actually offered, when open loop).
    pub sent_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// The latency of every logged 2xx answer, sorted.
    pub took: Vec<Duration>,
    /// h2load's "TLS Protocol" and "Application protocol" lines, when it printed them.
    pub protocol: String,
}

/// Fails with a hint when h2load is missing (`make h2load` installs it).
pub fn version() -> anyhow::Result<String> {
    let out = Command::new("h2load")
        .arg("--version")
        .output()
        .context("h2load is not installed (`make h2load`, Debian package nghttp2-client)")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run(spec: &Spec, scratch: &Path) -> anyhow::Result<Run> {
    if let Some(every) = spec.every {
        // The warm-up is a run of its own: a timing script has no warm-up phase.
        let warm = Spec {
            duration: spec.warm_up,
            warm_up: Duration::ZERO,
            ..spec.clone()
        };
        if !warm.duration.is_zero() {
            run_once(&warm, scratch, Some(every))?;
        }
        return run_once(spec, scratch, Some(every));
    }
    run_once(spec, scratch, None)
}

fn run_once(spec: &Spec, scratch: &Path, every: Option<Duration>) -> anyhow::Result<Run> {
    let log = scratch.join("h2load.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new("h2load");
    cmd.args(["-t", "1", "-c", &spec.clients.to_string()])
        .args(["-m", &spec.streams.to_string()])
        .arg(format!("--log-file={}", log.display()));
    match every {
        Some(every) => {
            let n = (spec.duration.as_secs_f64() / every.as_secs_f64()) as usize;
            let script: String = (0..n)
                .map(|i| {
                    let at = every.as_secs_f64() * 1e3 * i as f64;
                    format!("{at:.3}\t{}\n", spec.url)
                })
                .collect();
            let path = scratch.join("h2load.script");
            std::fs::write(&path, script)?;
            cmd.arg(format!("--timing-script-file={}", path.display()));
        }
        None => {
            cmd.arg(&spec.url)
                .arg(format!("--duration={}", spec.duration.as_secs()))
                .arg(format!("--warm-up-time={}", spec.warm_up.as_secs()));
        }
    }
    if let Some(c) = &spec.connect_to {
        cmd.arg(format!("--connect-to={c}"));
    }
    if let Some(d) = &spec.data {
        cmd.arg("-d").arg(d);
    }
    if spec.h1 {
        cmd.arg("--h1");
    }
    for h in &spec.headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "h2load failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text, &std::fs::read_to_string(&log).unwrap_or_default())
        .with_context(|| format!("reading h2load's output:\n{text}"))
}

/// The summary lines of h2load's output, and its log (start µs, status, µs to the end
/// of the response). Only logged 2xx answers count for latency.
fn parse(text: &str, log: &str) -> anyhow::Result<Run> {
    let field = |line: &str, after: &str| -> Option<f64> {
        let rest = &line[line.find(after)? + after.len()..];
        rest.split(|c: char| c == ',' || c.is_whitespace())
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    let line = |prefix: &str| text.lines().find(|l| l.trim_start().starts_with(prefix));
    let finished = line("finished in").context("no `finished in` line")?;
    let per_sec = field(finished, "s, ").context("no req/s")?;
    let requests = line("requests:").context("no `requests:` line")?;
    let count = |word: &str| -> u64 {
        requests
            .split(',')
            .find(|p| p.trim().ends_with(word))
            .and_then(|p| p.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let codes = line("status codes:").context("no `status codes:` line")?;
    let twoxx = field(codes, "status codes:").unwrap_or(0.0) as u64;
    let (succeeded, failed, errored, timeout) = (
        count("succeeded"),
        count("failed"),
        count("errored"),
        count("timeout"),
    );
    let rows: Vec<(u64, Duration)> = log
        .lines()
        .filter_map(|l| {
            let mut c = l.split('\t');
            let (start, status, us) = (c.next()?, c.next()?, c.next()?);
            if !status.starts_with('2') {
                return None;
            }
            Some((
                start.trim().parse().ok()?,
                Duration::from_micros(us.trim().parse().ok()?),
            ))
        })
        .collect();
    let first = rows.iter().map(|r| r.0).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let sent_per_sec = rows.len() as f64 / ((last - first) as f64 / 1e6).max(1e-6);
    let mut took: Vec<Duration> = rows.into_iter().map(|r| r.1).collect();
    took.sort();
    let protocol = text
        .lines()
        .filter(|l| {
            [
                "TLS Protocol",
                "Cipher",
                "Server Temp Key",
                "Application protocol",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Run {
        ok: twoxx.min(succeeded),
        bad: failed + errored + timeout + succeeded.saturating_sub(twoxx),
        per_sec,
        sent_per_sec,
        p50: quantile(&took, 0.5),
        p99: quantile(&took, 0.99),
        took,
        protocol,
    })
}

/// Runs of the same load as one: counts added, rates averaged, quantiles over every
/// answer of every run.
pub fn pooled(runs: &[Run]) -> Run {
    let n = runs.len().max(1) as f64;
    let mut took: Vec<Duration> = runs.iter().flat_map(|r| r.took.iter().copied()).collect();
    took.sort();
    Run {
        ok: runs.iter().map(|r| r.ok).sum(),
        bad: runs.iter().map(|r| r.bad).sum(),
        per_sec: runs.iter().map(|r| r.per_sec).sum::<f64>() / n,
        sent_per_sec: runs.iter().map(|r| r.sent_per_sec).sum::<f64>() / n,
        p50: quantile(&took, 0.5),
        p99: quantile(&took, 0.99),
        took,
        protocol: runs.first().map(|r| r.protocol.clone()).unwrap_or_default(),
    }
}

/// The request headers of a gRPC call, as h2load `-H` arguments.
pub fn grpc_headers() -> Vec<String> {
    vec![
        "content-type: application/grpc".into(),
        "te: trailers".into(),
    ]
}

/// A gRPC message as it travels in an HTTP/2 DATA frame: uncompressed flag, 4-byte
/// big-endian length, the encoded message.
pub fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Passes message bytes through unchanged, so a call sends exactly the bytes h2load
/// will send and returns the answer's bytes.
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

/// Calls `path` with the message inside `frame` (as [`grpc_frame`] made it) through
/// tonic: the gRPC status h2load cannot see, and the answer's bytes.
pub async fn grpc_call(
    channel: tonic::transport::Channel,
    path: &'static str,
    frame: &[u8],
) -> Result<Vec<u8>, tonic::Status> {
    let len = frame
        .get(1..5)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if frame.first() != Some(&0) || len != Some(frame.len() - 5) {
        return Err(tonic::Status::invalid_argument(
            "not one uncompressed gRPC frame",
        ));
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let message = tonic::Request::new(frame[5..].to_vec());
    Ok(grpc.unary(message, path, Raw).await?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_and_the_log() {
        let text = "finished in 10.00s, 4999.70 req/s, 1.02MB/s\nrequests: 49997 total, 49997 started, 49997 done, 49990 succeeded, 7 failed, 0 errored, 0 timeout\nstatus codes: 49990 2xx, 0 3xx, 0 4xx, 7 5xx\nTLS Protocol: TLSv1.3\n";
        let log = "1\t200\t100\n2\t200\t300\n3\t503\t9000\n4\t200\t200\n";
        let r = parse(text, log).unwrap();
        assert_eq!((r.ok, r.bad), (49990, 7));
        assert!((r.per_sec - 4999.70).abs() < 0.01);
        assert_eq!(r.p50, Duration::from_micros(200));
        assert_eq!(r.p99, Duration::from_micros(300));
        // Three 2xx answers started over 3 µs.
        assert!((r.sent_per_sec - 1e6).abs() < 1.0);
        assert_eq!(r.protocol, "TLS Protocol: TLSv1.3");
    }

    #[test]
    fn a_missing_summary_is_an_error() {
        assert!(parse("connect refused\n", "").is_err());
    }

    #[test]
    fn frames_a_message() {
        let f = grpc_frame(&tonic_health::pb::HealthCheckRequest {
            service: "a".into(),
        });
        assert_eq!(f, [0, 0, 0, 0, 3, 10, 1, b'a']);
    }
}
