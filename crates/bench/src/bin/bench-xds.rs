//! `make bench-xds`: control-plane scale. Translate + snapshot time and peak RSS at 1k
//! and 10k Routes over 2k Services; one-Route edit → real Envoy ACK latency (SotW and
//! Delta); 1,000 ADS clients connecting at once. Each against a same-run baseline.
use std::{
    io::{BufRead, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use portcullis::{bootstrap::Bootstrap, envoy::Envoy};
use portcullis_bench::{manifests, report::*};
use portcullis_plane::publish::to_snapshot;
use portcullis_translate::{Options, translate};
use portcullis_xds::{Cache, Snapshot, type_url};

const SERVICES: usize = 2000;

fn options() -> Options {
    Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        ..Default::default()
    }
}

fn build(routes: &[portcullis_api::Route], services: &[portcullis_api::Service]) -> Snapshot {
    to_snapshot(&translate(&manifests::model(routes, services), &options()))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child-translate") => return child_translate(args[2].parse()?),
        Some("--child-idle") => {
            println!("{:.1}", peak_rss_mib());
            return Ok(());
        }
        Some("--child-server") => return child_server(args[2].parse()?),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut rows = Vec::new();

    // 1. Translate + snapshot, and peak RSS, each in a fresh process.
    let idle: f64 = run_child(&["--child-idle"])?.trim().parse()?;
    let sizes: &[usize] = if quick { &[100, 1000] } else { &[1000, 10_000] };
    let mut per_route_1k = 0.0;
    for &n in sizes {
        let line = run_child(&["--child-translate", &n.to_string()])?;
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let (total_ms, rss) = (v[0] + v[1] + v[2], v[3]);
        println!(
            "{n} routes: validate {:.0} ms, translate {:.0} ms, snapshot {:.0} ms; peak RSS {rss:.1} MiB",
            v[0], v[1], v[2]
        );
        if n == sizes[0] {
            per_route_1k = total_ms / n as f64;
        }
        let big = n == sizes[1];
        rows.push(Row {
            metric: format!("validate + translate + snapshot, {n} Routes / {SERVICES} Services"),
            value: format!("{total_ms:.0} ms"),
            target: if big {
                "≤ 1000 ms".into()
            } else {
                "—".into()
            },
            baseline: format!("{:.3} ms/route at {}", per_route_1k, sizes[0]),
            ratio: format!(
                "{:.2}× per route",
                (total_ms / n as f64) / per_route_1k.max(1e-9)
            ),
            verdict: if !big || total_ms <= 1000.0 {
                "ok"
            } else {
                "MISS"
            },
        });
        rows.push(Row {
            metric: format!("control-plane peak RSS, {n} Routes"),
            value: format!("{rss:.1} MiB"),
            target: if big {
                "≤ 150 MiB".into()
            } else {
                "—".into()
            },
            baseline: format!("{idle:.1} MiB idle process"),
            ratio: format!("{:.1}×", rss / idle.max(0.1)),
            verdict: if !big || rss <= 150.0 { "ok" } else { "MISS" },
        });
    }

    // 2. Edit → Envoy ACK, at scale and at 10 Routes (baseline), SotW and Delta.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let edits = if quick { 5 } else { 20 };
    for delta in [false, true] {
        let proto = if delta { "Delta" } else { "SotW" };
        let base = rt.block_on(edit_to_ack(10, edits, delta))?;
        let big = rt.block_on(edit_to_ack(sizes[1], edits, delta))?;
        println!(
            "{proto} edit→ACK: {} routes median {:?} p99 {:?}; 10 routes median {:?}",
            sizes[1], big.0, big.1, base.0
        );
        rows.push(Row {
            metric: format!(
                "one-Route edit → Envoy ACK ({proto}, {} Routes), median / p99 of {edits}",
                sizes[1]
            ),
            value: format!("{:.0} / {:.0} ms", ms(big.0), ms(big.1)),
            target: "p99 ≤ 250 ms".into(),
            baseline: format!("{:.0} / {:.0} ms at 10 Routes", ms(base.0), ms(base.1)),
            ratio: format!("{:.1}× (p99)", ms(big.1) / ms(base.1).max(0.1)),
            verdict: if ms(big.1) <= 250.0 { "ok" } else { "MISS" },
        });
    }

    // 3. Reconnect storm: N clients at once against a server in its own process.
    let clients = if quick { 100 } else { 1000 };
    let storm_routes = 1000;
    let one = storm(storm_routes, 1)?;
    let many = storm(storm_routes, clients)?;
    println!(
        "storm: {clients} clients {:?} (server RSS {:.1} MiB); 1 client {:?}",
        many.0, many.1, one.0
    );
    rows.push(Row {
        metric: format!("{clients} ADS clients at once hold the snapshot ({storm_routes} Routes / {SERVICES} Services)"),
        value: format!("{:.2} s", many.0.as_secs_f64()),
        target: "≤ 10 s".into(),
        baseline: format!("{:.0} ms for 1 client", ms(one.0)),
        ratio: format!("{:.0}×", many.0.as_secs_f64() / one.0.as_secs_f64().max(1e-6)),
        verdict: if many.0 <= Duration::from_secs(10) { "ok" } else { "MISS" },
    });
    rows.push(Row {
        metric: format!("control-plane peak RSS serving {clients} clients"),
        value: format!("{:.1} MiB", many.1),
        target: "—".into(),
        baseline: format!("{:.1} MiB serving 1 client", one.1),
        ratio: format!("{:.1}×", many.1 / one.1.max(0.1)),
        verdict: "ok",
    });

    let envoy_version = Command::new(portcullis::envoy::find_envoy()?)
        .arg("--version")
        .output()?;
    let body = format!(
        "## Control plane (`make bench-xds`)\n\nCommand: `make bench-xds` (= `cargo run --release -p portcullis-bench --bin bench-xds -- --out docs/benchmarks.md`{}).\nMachine: {}. Envoy: {}.\n\n{}\nNotes: p99 of 20 samples is their maximum. Edit→ACK includes validating, translating and versioning the whole model, the push, and Envoy applying and ACKing it. The storm clients each open their own connection and subscribe CDS, EDS (all clusters), LDS and RDS; the server runs in its own process so its RSS is its own.\n",
        if quick { ", run with --quick" } else { "" },
        machine(),
        String::from_utf8_lossy(&envoy_version.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("?"),
        table(&rows)
    );
    println!("\n{body}");
    if let Some(out) = out {
        write_section(std::path::Path::new(&out), "bench-xds", &body)?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run_child(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "child {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Prints "validate_ms translate_ms snapshot_ms peak_rss_mib", best of 3.
fn child_translate(n: usize) -> anyhow::Result<()> {
    let (routes, services) = manifests::objects(n, SERVICES);
    let mut best = [f64::MAX; 3];
    for _ in 0..3 {
        let t0 = Instant::now();
        let model = manifests::model(&routes, &services);
        let t1 = Instant::now();
        let res = translate(&model, &options());
        let t2 = Instant::now();
        let snap = to_snapshot(&res);
        let t3 = Instant::now();
        std::hint::black_box(snap.version());
        for (b, d) in best.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
            *b = b.min(ms(d));
        }
    }
    println!(
        "{:.1} {:.1} {:.1} {:.1}",
        best[0],
        best[1],
        best[2],
        peak_rss_mib()
    );
    Ok(())
}

/// Median and max of `edits` edit→ACK latencies with a real Envoy.
async fn edit_to_ack(n: usize, edits: usize, delta: bool) -> anyhow::Result<(Duration, Duration)> {
    let (mut routes, services) = manifests::objects(n, SERVICES.min(n.max(10)));
    let services_n = services.len();
    let registry = prometheus::Registry::new();
    let cache = Cache::new(&registry);
    cache.set_snapshot(build(&routes, &services));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portcullis_xds::serve(listener, cache.clone(), async move {
        let _ = stop_rx.await;
    }));
    let mut b = Bootstrap::new(addr.to_string(), "bench");
    b.admin_port = 0;
    b.delta = delta;
    let mut envoy = Envoy::start(&b.to_yaml()?, "error").await?;
    let rds_version = |c: &Cache| {
        c.snapshot()
            .type_version(type_url::ROUTE_CONFIGURATION)
            .map(str::to_owned)
    };
    wait_acked(
        &cache,
        rds_version(&cache).unwrap(),
        Duration::from_secs(120),
    )
    .await?;
    let mut samples = Vec::new();
    let mut builds = Vec::new();
    for e in 0..edits {
        let i = (e * 7919) % n;
        routes[i] = manifests::route(i, services_n, e + 1);
        let started = Instant::now();
        let snap = build(&routes, &services);
        let want = snap
            .type_version(type_url::ROUTE_CONFIGURATION)
            .unwrap()
            .to_owned();
        let built = started.elapsed();
        cache.set_snapshot(snap);
        wait_acked(&cache, want, Duration::from_secs(30)).await?;
        samples.push(started.elapsed());
        builds.push(built);
    }
    envoy.kill().await;
    let _ = stop_tx.send(());
    let _ = server.await;
    samples.sort();
    builds.sort();
    println!(
        "  {n} routes: rebuild median {:?} of the edit→ACK median {:?}",
        builds[builds.len() / 2],
        samples[samples.len() / 2]
    );
    Ok((samples[samples.len() / 2], *samples.last().unwrap()))
}

async fn wait_acked(cache: &Cache, version: String, within: Duration) -> anyhow::Result<()> {
    let mut rx = cache.status_rx();
    let deadline = Instant::now() + within;
    loop {
        let acked = cache.nodes().iter().any(|n| {
            n.types
                .get(type_url::ROUTE_CONFIGURATION)
                .and_then(|t| t.acked.as_deref())
                == Some(version.as_str())
        });
        if acked {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(!left.is_zero(), "Envoy did not ACK {version}");
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

/// Serves a snapshot of `n` Routes; prints its address, then its peak RSS when stdin closes.
fn child_server(n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (routes, services) = manifests::objects(n, SERVICES);
        let cache = Cache::new(&prometheus::Registry::new());
        cache.set_snapshot(build(&routes, &services));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let server = tokio::spawn(portcullis_xds::serve(
            listener,
            cache,
            std::future::pending(),
        ));
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await?;
        server.abort();
        println!("{:.1}", peak_rss_mib());
        Ok(())
    })
}

/// (time until all `clients` hold CDS, EDS, LDS and RDS; server peak RSS MiB)
fn storm(routes: usize, clients: usize) -> anyhow::Result<(Duration, f64)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child-server", &routes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addr = String::new();
    out.read_line(&mut addr)?;
    let addr = addr.trim().to_owned();
    let clusters: Vec<String> = (0..SERVICES)
        .map(|i| format!("team-{}/svc-{i}", i % 20))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let took = rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let (addr, clusters) = (addr.clone(), clusters.clone());
                tokio::spawn(async move { one_client(&addr, i, clusters).await })
            })
            .collect();
        let mut retried = 0;
        for t in tasks {
            retried += t.await??;
        }
        if retried > 0 {
            println!("storm: {retried} reconnects (with backoff) among {clients} clients");
        }
        anyhow::Ok(started.elapsed())
    })?;
    drop(child.stdin.take());
    let mut rss = String::new();
    out.read_line(&mut rss)?;
    child.wait()?;
    Ok((took, rss.trim().parse().unwrap_or(0.0)))
}

/// Like an Envoy, a client whose connection fails retries with backoff and jitter.
async fn one_client(addr: &str, i: usize, clusters: Vec<String>) -> anyhow::Result<u32> {
    let mut retries = 0;
    loop {
        match try_client(addr, i, clusters.clone()).await {
            Ok(()) => return Ok(retries),
            Err(e) if retries < 8 => {
                retries += 1;
                let backoff = 50u64 << retries.min(6);
                let jitter = (i as u64 * 7919 + retries as u64 * 104_729) % backoff;
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                if retries == 8 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_client(addr: &str, i: usize, clusters: Vec<String>) -> anyhow::Result<()> {
    use envoy_types::pb::envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        },
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(portcullis_xds::MAX_MESSAGE_SIZE);
    let node = Some(Node {
        id: format!("storm-{i}"),
        cluster: "bench".into(),
        ..Default::default()
    });
    let req = |t: &str, names: Vec<String>| DiscoveryRequest {
        node: node.clone(),
        type_url: t.into(),
        resource_names: names,
        ..Default::default()
    };
    let requests = vec![
        req(type_url::CLUSTER, vec![]),
        req(type_url::CLUSTER_LOAD_ASSIGNMENT, clusters),
        req(type_url::LISTENER, vec![]),
        req(type_url::ROUTE_CONFIGURATION, vec!["portcullis".into()]),
    ];
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for r in requests {
        tx.send(r).await?;
    }
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 {
        let Some(resp) = stream.message().await? else {
            anyhow::bail!("stream closed")
        };
        seen.insert(resp.type_url);
    }
    drop(tx);
    Ok(())
}
