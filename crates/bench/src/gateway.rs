//! A whole gateway for the through-Envoy benchmarks: the file-mode control plane in this
//! process, a stock Envoy child, an echo backend, and a closed-loop HTTP load generator
//! (the same client for the baseline and the measured path, so only the path differs).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portcullis::{bootstrap::Bootstrap, envoy::Envoy};
use tokio::net::TcpListener;

pub struct Gateway {
    pub envoy: Envoy,
    /// Envoy's HTTP listener.
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// An echo backend on a kernel-chosen port, for the life of the runtime.
pub async fn echo() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(portcullis::echo::serve(
        listener,
        "echo".into(),
        std::future::pending(),
    ));
    Ok(addr)
}

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(url).await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// Control plane on `manifests` with `options` (listen port 0), and Envoy on it, ready.
pub async fn start(
    manifests: &str,
    mut options: portcullis_translate::Options,
) -> anyhow::Result<Gateway> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("all.yaml"), manifests)?;
    options.listen_address = "127.0.0.1".into();
    options.listen_port = 0;
    let xds = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let (xds_addr, admin_addr) = (xds.local_addr()?, admin.local_addr()?);
    let config = portcullis_plane::serve::ServeConfig {
        config_dir: dir.path().to_path_buf(),
        state_file: None,
        options,
        poll_interval: Duration::from_millis(200),
        console: Default::default(),
        extra: Vec::new(),
        require_host_ownership: false,
    };
    tokio::spawn(portcullis_plane::serve::run(
        config,
        xds,
        admin,
        std::future::pending(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(
        get(&format!("http://{admin_addr}/readyz")).await,
        Some((200, _))
    ) {
        if Instant::now() > deadline {
            bail!("control plane not ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (envoy, port) = envoy_on(xds_addr, deadline).await?;
    Ok(Gateway {
        envoy,
        port,
        _dir: dir,
    })
}

/// Stock Envoy (node `bench`) on the ADS server at `xds`, once it has a listener;
/// returns it with the listener's port.
pub async fn envoy_on(xds: SocketAddr, deadline: Instant) -> anyhow::Result<(Envoy, u16)> {
    let mut b = Bootstrap::new(xds.to_string(), "bench");
    b.admin_port = 0;
    let envoy = Envoy::start(&b.to_yaml()?, "error").await?;
    let port = loop {
        if let Some(p) = listener_port(&envoy, portcullis_translate::LISTENER_NAME).await
            && matches!(get(&envoy.admin_url("/ready")).await, Some((200, _)))
        {
            break p;
        }
        if Instant::now() > deadline {
            bail!("envoy never got a listener");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok((envoy, port))
}

/// The port Envoy's listener `name` bound, once it has one (the HTTP listener is
/// `http`, the HTTPS one `https`).
pub async fn listener_port(envoy: &Envoy, name: &str) -> Option<u16> {
    let (200, body) = get(&envoy.admin_url("/listeners?format=json")).await? else {
        return None;
    };
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)?["local_address"]["socket_address"]["port_value"]
        .as_u64()
        .filter(|p| *p > 0)
        .map(|p| p as u16)
}

pub struct Load {
    pub requests: u64,
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Answers other than `want` (a broken setup must not pass for fast).
    pub unexpected: u64,
}

/// `concurrency` keep-alive connections, each sending the next request when the
/// previous answers, for `duration` after a 1 s warm-up.
pub async fn load(
    url: &str,
    headers: &[(&str, &str)],
    want: u16,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let mut req_headers = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        req_headers.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes())?,
            v.parse()?,
        );
    }
    let run = |d: Duration| {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, headers, stop) = (
                    client.clone(),
                    url.to_string(),
                    req_headers.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut unexpected = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match client.get(&url).headers(headers.clone()).send().await {
                            Ok(r) => {
                                if r.status().as_u16() != want {
                                    unexpected += 1;
                                }
                                let _ = r.bytes().await;
                            }
                            Err(_) => unexpected += 1,
                        }
                        lat.push(t.elapsed());
                    }
                    (lat, unexpected)
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            let mut unexpected = 0;
            for t in tasks {
                let (l, u) = t.await.context("load task")?;
                all.extend(l);
                unexpected += u;
            }
            anyhow::Ok((all, unexpected, started.elapsed()))
        }
    };
    run(Duration::from_secs(1)).await?;
    let (mut lat, unexpected, took) = run(duration).await?;
    lat.sort();
    Ok(Load {
        requests: lat.len() as u64,
        per_sec: lat.len() as f64 / took.as_secs_f64(),
        p50: quantile(&lat, 0.50),
        p99: quantile(&lat, 0.99),
        unexpected,
    })
}

/// p-th quantile of sorted samples.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Envoy's CPU time so far (all threads, from /proc) and the downstream requests it has
/// answered (admin excluded): the difference of two readings is its cost per request.
pub async fn envoy_work(envoy: &Envoy) -> anyhow::Result<(Duration, u64)> {
    let pid = envoy.id().context("envoy has exited")?;
    let cpu = cpu_time(&format!("/proc/{pid}/stat")).context("envoy's /proc stat")?;
    let (200, body) =
        get(&envoy.admin_url("/stats?format=json&filter=^http\\..*\\.downstream_rq_total$"))
            .await
            .context("envoy stats")?
    else {
        bail!("envoy stats did not answer 200");
    };
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let requests = v["stats"]
        .as_array()
        .context("stats")?
        .iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| !n.starts_with("http.admin."))
        })
        .filter_map(|s| s["value"].as_u64())
        .sum();
    Ok((cpu, requests))
}

/// User + system CPU time of the process or thread whose /proc `stat` file `path`
/// is (`/proc/<pid>/stat`, `/proc/thread-self/stat`).
pub fn cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces, in parentheses): state is
    // the first, utime the 12th, stime the 13th, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// Clock ticks per second of /proc's CPU times, asked once.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Envoy CPU per request between two [`envoy_work`] readings.
pub fn cpu_per_request(before: (Duration, u64), after: (Duration, u64)) -> Duration {
    (after.0.saturating_sub(before.0)) / (after.1.saturating_sub(before.1)).max(1) as u32
}
