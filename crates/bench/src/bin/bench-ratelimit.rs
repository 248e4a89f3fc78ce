//! `make bench-ratelimit`: the rate-limit service's decisions, with the memory and the
//! Redis store, each `portcullis ratelimit` in its own process fed its limits over ADS.
//!
//! 1. ShouldRateLimit over gRPC at a fixed 20,000/s: p50/p99, against a gRPC health
//!    check at the same rate on the same server (the transport's floor, same run);
//!    for the Redis store's target, measured by a frame-level generator that costs a
//!    tenth of a core (`frame_load`), with the tonic client's figures as context.
//! 2. ShouldRateLimit over gRPC, closed loop: decisions per second, against health.
//! 3. Through Envoy: a Route limited by the service, against the same Route limited by
//!    Envoy's in-process `local_ratelimit` filter (the ceiling), same load generator.
//! 4. Against Kuadrant's Limitador (`make limitador`), same load, same Redis: closed-loop
//!    decisions per second in alternating rounds, measured by h2load (`neutral`) and,
//!    for the memory store, by the benchmark's Rust client too (`versus`).
//!
//! Limits are far above the load, so every request is decided, counted and admitted.
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{
    RateLimitRequest, RateLimitResponse, rate_limit_response::Code,
    rate_limit_service_client::RateLimitServiceClient,
};
use portcullis_bench::frame_load::{self, HEALTH_PATH, Load, serving};
use portcullis_bench::{
    gateway, h2load, limitador, local_ratelimit,
    redis::{LATENCY_THRESHOLD_MS, Redis},
    report::*,
    rpc_load,
};
use portcullis_xds::{Cache, type_url};
use prost::Message;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[path = "bench_ratelimit/neutral.rs"]
mod neutral;
#[path = "bench_ratelimit/versus.rs"]
mod versus;

const RATE: u32 = 20_000;
const LIMIT_NAME: &str = "bench/limited/per-client";
/// Distinct clients in the direct gRPC load (each its own counters).
const CLIENTS: usize = 1_000;

fn manifests(echo: SocketAddr) -> String {
    let route = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: bench}}\nspec: {{match: {{paths: [{{prefix: /{name}}}]}}, backends: [{{service: echo}}]{extra}}}\n"
        )
    };
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: echo, namespace: bench}}\nspec: {{destinations: [{{name: d, address: '{echo}'}}]}}\n{}{}{}",
        route("open", ""),
        route("local", ""),
        route(
            "limited",
            ", rateLimits: [{name: per-client, by: ['header:x-client'], limits: [{requests: 1000000000, per: 1s}]}]"
        ),
    )
}

fn model(manifests: &str) -> anyhow::Result<portcullis_api::Model> {
    let objects = portcullis_api::Objects::parse(manifests)?;
    let outcome = portcullis_api::validate::validate(&objects.routes, &objects.services);
    if let Some(p) = outcome.problems().next() {
        bail!("benchmark manifests: {p}");
    }
    Ok(outcome.model)
}

/// Envoy's resources (with `local_ratelimit` on the `local` Route) and the
/// RateLimitConfigs, Envoy's rate-limit cluster pointing at `ratelimit`.
fn snapshot(
    model: &portcullis_api::Model,
    ratelimit: SocketAddr,
) -> anyhow::Result<portcullis_xds::Snapshot> {
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        ratelimit: Some(ratelimit.to_string()),
        ..Default::default()
    };
    let mut res = portcullis_translate::translate(model, &options);
    local_ratelimit::add(&mut res, "bench/local/")?;
    Ok(portcullis_plane::publish::to_snapshot(&res))
}

/// Waits until node `id` has ACKed the current snapshot's version of `type_url`.
async fn acked(cache: &Cache, id: &str, type_url: &str) -> anyhow::Result<()> {
    let want = cache.snapshot().type_version(type_url).map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cache
        .nodes()
        .iter()
        .any(|n| n.id == id && n.types.get(type_url).and_then(|t| t.acked.clone()) == want)
    {
        if Instant::now() > deadline {
            bail!("{id} did not ACK {type_url}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The service runs as `portcullis --worker-threads 1 ratelimit` does: on one thread, as
/// Limitador's gRPC server does (it runs on actix's single-threaded runtime), while the
/// load client, Redis and Envoy share the other core. On this 2-core machine a pool of
/// two spends its time handing work between threads (docs/benchmarks.md).
const WORKER_THREADS: u16 = 1;

/// One `portcullis ratelimit` in a child process (this binary, `--child-ratelimit`);
/// stops when its stdin closes.
struct Service {
    child: Child,
    addr: SocketAddr,
    /// Its HTTP listener (`/metrics`).
    http: SocketAddr,
}

impl Service {
    /// As h2load's comparison reads it: its gRPC address, process and counters.
    fn target(&self) -> neutral::Target {
        neutral::Target {
            grpc: self.addr,
            pid: self.child.id(),
            store_pid: None,
            metrics: format!("http://{}/metrics", self.http),
            counters: neutral::OURS,
        }
    }

    fn start(flags: &[&str]) -> anyhow::Result<Service> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child-ratelimit")
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let parsed = line
            .split_once(' ')
            .and_then(|(g, h)| Some((g.parse().ok()?, h.trim().parse().ok()?)));
        let (addr, http) = parsed.with_context(|| format!("child said {line:?}"))?;
        Ok(Service { child, addr, http })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn child_ratelimit(flags: Vec<String>) -> anyhow::Result<()> {
    let args = portcullis_ratelimit::Args::try_parse_from(
        std::iter::once("ratelimit".to_string()).chain(flags),
    )?;
    portcullis::cli::runtime(Some(WORKER_THREADS))?.block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{} {}", grpc.local_addr()?, http.local_addr()?);
        std::io::stdout().flush()?;
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
            })
            .await;
        };
        let listeners = portcullis_ratelimit::Listeners::new(grpc, http);
        portcullis_ratelimit::run(args, listeners, stdin_closed).await
    })
}

fn decision_request(n: usize) -> RateLimitRequest {
    RateLimitRequest {
        domain: portcullis_ratelimit::DOMAIN.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: portcullis_ratelimit::LIMIT_KEY.into(),
                    value: LIMIT_NAME.into(),
                },
                Entry {
                    key: "header:x-client".into(),
                    value: format!("client-{}", n % CLIENTS),
                },
            ],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

/// A decision by the store, as opposed to a store failure, carries RateLimit-*
/// (Limitador's draft-03 headers are `X-RateLimit-*`; it fails the call when its
/// store does).
fn decided(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::Ok as i32
        && r.response_headers_to_add
            .iter()
            .any(|h| h.key == "RateLimit-Limit" || h.key == "X-RateLimit-Limit")
}

struct Direct {
    /// At a quarter of the target rate: latency when not near saturation.
    light: rpc_load::Sampled,
    fixed: rpc_load::Sampled,
    fixed_health: rpc_load::Sampled,
    closed: rpc_load::Sampled,
    closed_health: rpc_load::Sampled,
}

async fn direct(addr: SocketAddr, d: Duration) -> anyhow::Result<Direct> {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let decide = |n: usize| {
        let mut c = RateLimitServiceClient::new(channels[n % channels.len()].clone());
        async move {
            c.should_rate_limit(decision_request(n))
                .await
                .inspect_err(|e| first_error(&e.to_string()))
                .is_ok_and(|r| decided(r.get_ref()))
        }
    };
    let health = |n: usize| {
        let mut c = HealthClient::new(channels[n % channels.len()].clone());
        async move {
            c.check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .inspect_err(|e| first_error(&e.to_string()))
            .is_ok()
        }
    };
    // Ready: the limits arrived and (for Redis) the store answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !decide(0).await {
        if Instant::now() > deadline {
            bail!("the rate-limit service at {addr} never decided");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rpc_load::closed_loop(64, Duration::from_secs(1), decide).await;
    Ok(Direct {
        light: rpc_load::fixed_rate(RATE / 4, d, decide).await,
        fixed_health: rpc_load::fixed_rate(RATE, d, health).await,
        fixed: rpc_load::fixed_rate(RATE, d, decide).await,
        closed_health: rpc_load::closed_loop(64, d, health).await,
        closed: rpc_load::closed_loop(64, d, decide).await,
    })
}

/// Prints the first gRPC error of the run: a failed call must be explained, once.
fn first_error(e: &str) {
    static SEEN: std::sync::Once = std::sync::Once::new();
    SEEN.call_once(|| eprintln!("first failed call: {e}"));
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

/// Calls per second the store decided. The rest were answered by the failure policy
/// after the store timeout (answered, but not decisions), or failed: an overloaded
/// server's HTTP/2 layer sends GOAWAY (ENHANCE_YOUR_CALM) once too many request DATA
/// frames wait unread.
fn decided_per_sec(s: &rpc_load::Sampled) -> f64 {
    s.per_sec * (s.calls - s.failed) as f64 / s.calls.max(1) as f64
}

fn unanswered(s: &rpc_load::Sampled) -> String {
    match s.failed {
        0 => String::new(),
        n => format!(", {:.1}% not decided", n as f64 * 100.0 / s.calls as f64),
    }
}

fn failed(s: &rpc_load::Sampled) -> String {
    match s.failed {
        0 => String::new(),
        n => format!(" ({n} failed)"),
    }
}

fn direct_rows(store: &str, r: &Direct, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let redis = store == "Redis";
    println!(
        "{store}: {RATE}/s p50 {:?} p99 {:?} ({:.0}/s sent, {} not decided); closed loop {:.0}/s ({} not decided)",
        r.fixed.p50,
        r.fixed.p99,
        r.fixed.per_sec,
        r.fixed.failed,
        r.closed.per_sec,
        r.closed.failed
    );
    // The Redis store's target is judged by the frame-level generator's row
    // (`open_loop_row`); through this client the row is context.
    let fixed_verdict = if r.fixed.failed == 0 { "ok" } else { "MISS" };
    rows.push(Row {
        metric: format!("ShouldRateLimit over gRPC, {store} store, at {RATE}/s: p50 / p99"),
        value: format!(
            "{} / {} ({:.0}/s sent{})",
            us(r.fixed.p50),
            us(r.fixed.p99),
            r.fixed.per_sec,
            unanswered(&r.fixed)
        ),
        target: if redis {
            "— (context: the tonic client; the target's row is the frame-level one)"
        } else {
            "—"
        }
        .into(),
        baseline: format!(
            "gRPC health check, same rate: {} / {}{}",
            us(r.fixed_health.p50),
            us(r.fixed_health.p99),
            failed(&r.fixed_health)
        ),
        ratio: format!(
            "{:.2}× (p99)",
            r.fixed.p99.as_secs_f64() / r.fixed_health.p99.as_secs_f64().max(1e-9)
        ),
        verdict: fixed_verdict,
    });
    rows.push(Row {
        metric: format!(
            "ShouldRateLimit over gRPC, {store} store, at {}/s: p50 / p99",
            RATE / 4
        ),
        value: format!(
            "{} / {}{}",
            us(r.light.p50),
            us(r.light.p99),
            unanswered(&r.light)
        ),
        target: "—".into(),
        baseline: "—".into(),
        ratio: "—".into(),
        verdict: if r.light.failed == 0 { "ok" } else { "MISS" },
    });
    let decided = decided_per_sec(&r.closed);
    rows.push(Row {
        metric: format!("ShouldRateLimit decisions per second, {store} store (64 in flight)"),
        value: format!(
            "{decided:.0}/s, p50 / p99 {} / {}{}",
            us(r.closed.p50),
            us(r.closed.p99),
            unanswered(&r.closed)
        ),
        target: if redis {
            "— (context: the tonic client; the target's row is h2load's)"
        } else {
            "—"
        }
        .into(),
        baseline: format!(
            "gRPC health checks: {:.0}/s{}",
            r.closed_health.per_sec,
            failed(&r.closed_health)
        ),
        ratio: format!("{:.2}×", decided / r.closed_health.per_sec),
        verdict: if r.closed.failed == 0 { "ok" } else { "MISS" },
    });
    Ok(())
}

/// The Redis store's open loop at [`RATE`], the row, measured by the
/// frame-level generator (`frame_load`: about a tenth of a core, on a thread of its
/// own) against its health checks at the same rate on the same server. The tonic
/// client's row above is context: at this rate it takes most of a core of the two.
async fn open_loop_row(addr: SocketAddr, redis: &Redis, d: Duration) -> anyhow::Result<Row> {
    let load = |path, bodies, accept, duration| Load {
        addr,
        path,
        bodies,
        rate: RATE,
        connections: 4,
        duration,
        accept,
    };
    let decisions = || {
        (0..CLIENTS)
            .map(|n| h2load::grpc_frame(&decision_request(n)))
            .collect()
    };
    let checks = vec![h2load::grpc_frame(&HealthCheckRequest {
        service: String::new(),
    })];
    let warm = Duration::from_secs(1);
    frame_load::open_loop(load(neutral::PATH, decisions(), decided_message, warm)).await?;
    // Alternating rounds, as against Limitador: a stall of the shared host lands in
    // one round, not in the figure.
    let round = d / 2;
    tokio::task::block_in_place(|| redis.cli(&["LATENCY", "RESET"]))?;
    let scripts_before = tokio::task::block_in_place(|| redis.script_calls())?;
    let rounds = frame_load::alternating(
        OPEN_ROUNDS,
        || load(HEALTH_PATH, checks.clone(), serving, round),
        || load(neutral::PATH, decisions(), decided_message, round),
    )
    .await?;
    for (r, (base, ours)) in rounds.iter().enumerate() {
        // Where the tail starts, for the reading (the row keeps p50 and p99).
        let at = |q| gateway::quantile(&ours.took, q);
        println!(
            "Redis, frame-level open loop, round {r}: {RATE}/s p50 {:?} p90 {:?} p95 {:?} p99 {:?} p99.9 {:?} ({:.0}/s sent, {} not decided); health p99 {:?}",
            ours.sampled.p50,
            at(0.9),
            at(0.95),
            ours.sampled.p99,
            at(0.999),
            ours.sent_per_sec,
            ours.sampled.failed,
            base.sampled.p99
        );
    }
    // Whether Redis itself was ever slow in these rounds, or the wait was elsewhere
    // (the service, the host).
    let events = tokio::task::block_in_place(|| redis.latency_events())?;
    println!("Redis's own latency events over the open-loop rounds: {events:?}");
    // How many decisions shared each script call (the batcher's coalescing at this
    // rate), and Redis's own time per decision inside the script.
    let scripts = tokio::task::block_in_place(|| redis.script_calls())? - scripts_before;
    let redis_slow = match &events[..] {
        [] => format!("; Redis's own slowest event < {LATENCY_THRESHOLD_MS} ms"),
        e => {
            let e: Vec<String> = e
                .iter()
                .map(|(what, ms)| format!("{what} {ms} ms"))
                .collect();
            format!("; Redis's own slowest events: {}", e.join(", "))
        }
    };
    let (base, ours) = rounds
        .iter()
        .min_by_key(|(_, o)| o.sampled.p99)
        .context("no open-loop round")?;
    let (s, b) = (&ours.sampled, &base.sampled);
    let calls: usize = rounds.iter().map(|(_, o)| o.sampled.calls).sum();
    let undecided: usize = rounds.iter().map(|(_, o)| o.sampled.failed).sum();
    let slowest_sent = rounds
        .iter()
        .map(|(_, o)| o.sent_per_sec)
        .fold(f64::INFINITY, f64::min);
    let p99s = rounds
        .iter()
        .map(|(_, o)| format!("{:.1}", o.sampled.p99.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(" / ");
    let cpu = ours.cpu_per_call.map_or(String::new(), |c| {
        format!("; client {} µs CPU per call", c.as_micros())
    });
    let decided = calls.saturating_sub(undecided) as f64;
    let batching = format!(
        "; {:.1} decisions per Redis script call, Redis {:.1} µs in the script per decision",
        decided / scripts.calls.max(1) as f64,
        scripts.usec as f64 / decided.max(1.0)
    );
    println!("open loop: {scripts:?} script calls for {decided} decisions{batching}");
    // p99 ≤ 5 ms in the best round, nothing undecided in any, every round at the rate
    // asked; FAIL (the guard) past 10 ms or 1% undecided.
    let share = undecided as f64 / calls.max(1) as f64;
    let sent_all = slowest_sent >= f64::from(RATE) * 0.98;
    let verdict = if undecided == 0 && s.p99 <= Duration::from_millis(5) && sent_all {
        "ok"
    } else if share <= 0.01 && s.p99 <= Duration::from_millis(10) {
        "MISS"
    } else {
        "FAIL"
    };
    let not_decided = match undecided {
        0 => String::new(),
        n => format!(
            ", {:.2}% not decided over all rounds",
            n as f64 * 100.0 / calls.max(1) as f64
        ),
    };
    Ok(Row {
        metric: format!(
            "ShouldRateLimit over gRPC, Redis store, open loop at {RATE}/s measured by the frame-level generator (4 connections, one write per connection per ms; best of {OPEN_ROUNDS} alternating rounds of {} s): p50 / p99",
            round.as_secs()
        ),
        value: format!(
            "{} / {} (rounds' p99 {p99s} ms; ≥ {slowest_sent:.0}/s sent{not_decided}{cpu}{redis_slow}{batching})",
            us(s.p50),
            us(s.p99),
        ),
        target: "p99 ≤ 5 ms, 0 not decided".into(),
        baseline: format!(
            "gRPC health check, same generator, rate and round: {} / {}{}",
            us(b.p50),
            us(b.p99),
            failed(b)
        ),
        ratio: format!(
            "{:.2}× (p99)",
            s.p99.as_secs_f64() / b.p99.as_secs_f64().max(1e-9)
        ),
        verdict,
    })
}

/// Rounds of the Redis open loop (the best one is the figure).
const OPEN_ROUNDS: u32 = 3;

fn decided_message(m: &[u8]) -> bool {
    RateLimitResponse::decode(m).is_ok_and(|r| decided(&r))
}

/// One request, to check the path really goes through the limiter (or not).
async fn limited_headers(url: &str) -> anyhow::Result<bool> {
    let r = reqwest::Client::new()
        .get(url)
        .header("x-client", "bench")
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "{url}: {}", r.status());
    Ok(r.headers().contains_key("ratelimit-limit"))
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child-ratelimit") {
        return child_ratelimit(argv[2..].to_vec());
    }
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let d = Duration::from_secs(if args.quick { 2 } else { 10 });
    let redis = tokio::task::spawn_blocking(Redis::start).await??;

    // The control plane's ADS server, with the snapshot the benchmark builds.
    let cache = Cache::new(&prometheus::Registry::new());
    let ads = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ads_addr = ads.local_addr()?;
    tokio::spawn(portcullis_xds::serve(
        ads,
        cache.clone(),
        std::future::pending(),
    ));
    let xds_flag = format!("http://{ads_addr}");
    let memory = Service::start(&[
        "--store",
        "memory",
        "--xds-addr",
        &xds_flag,
        "--node-id",
        "bench-memory",
    ])?;
    let redis_url = redis.url();
    let redis_svc = Service::start(&[
        "--store",
        "redis",
        "--redis-url",
        &redis_url,
        "--xds-addr",
        &xds_flag,
        "--node-id",
        "bench-redis",
    ])?;
    let model = model(&manifests(gateway::echo().await?))?;
    cache.set_snapshot(snapshot(&model, memory.addr)?);
    let rl_type = portcullis_translate::RATE_LIMIT_CONFIG_TYPE_URL;
    acked(&cache, "bench-memory", rl_type).await?;
    acked(&cache, "bench-redis", rl_type).await?;

    let mut rows = Vec::new();
    // 1 and 2: directly over gRPC.
    let mem = direct(memory.addr, d).await?;
    direct_rows("memory", &mem, &mut rows)?;
    let red = direct(redis_svc.addr, d).await?;
    direct_rows("Redis", &red, &mut rows)?;
    // The closed loop's target, measured by h2load: through the tonic client above it
    // measures that client (about as much CPU per call as the service).
    let round = Duration::from_secs(if args.quick { 1 } else { 4 });
    let scratch = tempfile::tempdir()?;
    let alone = neutral::alone(&redis_svc.target(), round.as_secs(), scratch.path()).await?;
    println!(
        "Redis, h2load closed loop: {:.0} decisions/s, health {:.0}/s",
        alone.0.best.map_or(0.0, |b| b.0),
        alone.1
    );
    rows.push(neutral::alone_row("Redis store", f64::from(RATE), &alone));
    rows.push(open_loop_row(redis_svc.addr, &redis, d).await?);

    // 3: through Envoy, its rate-limit cluster on the memory service, then on Redis's.
    let (envoy, port) =
        gateway::envoy_on(ads_addr, Instant::now() + Duration::from_secs(60)).await?;
    acked(&cache, "bench", type_url::ROUTE_CONFIGURATION).await?;
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let client = [("x-client", "bench")];
    anyhow::ensure!(
        !limited_headers(&url("/local")).await?,
        "/local went to the service"
    );
    anyhow::ensure!(
        limited_headers(&url("/limited")).await?,
        "/limited is not limited"
    );
    let open = gateway::load(&url("/open"), &client, 200, 32, d).await?;
    let local = gateway::load(&url("/local"), &client, 200, 32, d).await?;
    let through_memory = gateway::load(&url("/limited"), &client, 200, 32, d).await?;
    cache.set_snapshot(snapshot(&model, redis_svc.addr)?);
    acked(&cache, "bench", type_url::CLUSTER).await?;
    anyhow::ensure!(
        limited_headers(&url("/limited")).await?,
        "/limited is not limited"
    );
    let through_redis = gateway::load(&url("/limited"), &client, 200, 32, d).await?;
    for (what, l) in [
        ("open", &open),
        ("local", &local),
        ("memory", &through_memory),
        ("redis", &through_redis),
    ] {
        anyhow::ensure!(
            l.unexpected == 0,
            "{what}: {} unexpected answers",
            l.unexpected
        );
    }
    let (_, stats) = fetch_text(&envoy.admin_url("/stats?filter=http_local_rate_limit")).await?;
    let local_ok: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("bench_local.http_local_rate_limit.ok: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    anyhow::ensure!(
        local_ok >= local.requests,
        "Envoy's local_ratelimit decided {local_ok} of {} requests: {stats}",
        local.requests
    );
    println!(
        "through envoy: open {:.0}/s, local_ratelimit {:.0}/s, memory {:.0}/s, redis {:.0}/s",
        open.per_sec, local.per_sec, through_memory.per_sec, through_redis.per_sec
    );
    for (store, l) in [("memory", &through_memory), ("Redis", &through_redis)] {
        let ratio = l.per_sec / local.per_sec;
        rows.push(Row {
            metric: format!(
                "through Envoy, Route limited by the service ({store} store, 32 connections): req/s, p50 / p99"
            ),
            value: format!("{:.0}/s, {} / {}", l.per_sec, us(l.p50), us(l.p99)),
            target: "≥ 60% of Envoy with local_ratelimit".into(),
            baseline: format!(
                "same Route with Envoy's local_ratelimit: {:.0}/s, {} / {}",
                local.per_sec,
                us(local.p50),
                us(local.p99)
            ),
            ratio: format!("{:.0}%", ratio * 100.0),
            verdict: if ratio >= 0.6 { "ok" } else { "MISS" },
        });
    }
    rows.push(Row {
        metric: "through Envoy, Route with Envoy's local_ratelimit (the ceiling above)".into(),
        value: format!("{:.0}/s", local.per_sec),
        target: "—".into(),
        baseline: format!(
            "same Route without any limit: {:.0}/s, {} / {}",
            open.per_sec,
            us(open.p50),
            us(open.p99)
        ),
        ratio: format!("{:.0}%", local.per_sec / open.per_sec * 100.0),
        verdict: "ok",
    });
    drop(envoy);

    // 4: against Limitador, same client and descriptors, same Redis.
    let lim_bin = limitador::find();
    match &lim_bin {
        Some(b) => println!("limitador-server: {}", b.display()),
        None => println!("limitador-server not built (make limitador): not measured"),
    }
    let compare = async |ours: neutral::Target, storage: &[&str], tonic: bool| match &lim_bin {
        Some(bin) => versus::against(bin, &ours, storage, round, tonic, scratch.path())
            .await
            .map(Some),
        None => Ok(None),
    };
    let on_redis = neutral::Target {
        store_pid: Some(redis.pid()),
        ..redis_svc.target()
    };
    let vs_memory = compare(memory.target(), &["memory"], true).await?;
    let vs_redis = compare(on_redis.clone(), &["redis", &redis_url], false).await?;
    let vs_cached = compare(on_redis, &["redis_cached", &redis_url], false).await?;
    rows.push(neutral::row(
        "memory store",
        1.2,
        vs_memory.as_ref().map(|c| &c.neutral),
        "memory",
    ));
    let tonic = vs_memory.as_ref().and_then(|c| c.tonic.as_ref());
    rows.extend(versus::row("memory store", tonic, "memory"));
    rows.extend(versus::cpu_row("memory store", tonic, "memory"));
    rows.push(neutral::row(
        "Redis store",
        2.0,
        vs_redis.as_ref().map(|c| &c.neutral),
        "redis",
    ));
    rows.push(neutral::row(
        "Redis store",
        1.0,
        vs_cached.as_ref().map(|c| &c.neutral),
        "redis_cached",
    ));

    let body = format!(
        "## Rate limiting (`make bench-ratelimit`)\n\nCommand: `make bench-ratelimit` (= `cargo run --release -p portcullis-bench --bin bench-ratelimit -- --out docs/benchmarks.md`).\nMachine: {}. Each `portcullis ratelimit` runs in its own process, on one thread (`--worker-threads 1`, as Limitador's gRPC server), with its limits from the control plane over ADS; Redis is a local `redis-server`.\n\n{}\nNotes: \"not decided\" counts calls answered by the failure policy after the 20 ms store timeout or failed by the server's HTTP/2 flood guard (GOAWAY ENHANCE_YOUR_CALM when too many requests wait unread); an open-loop rate above what the service sustains makes both grow without bound. Every request is decided and counted (one descriptor, one 1 s window, limit far above the load; {CLIENTS} distinct clients over gRPC, one through Envoy), none is refused. Fixed-rate latency is timed by a client in the benchmark process from each call's send to its answer ({} calls per 1 ms tick over 4 HTTP/2 connections), so it includes that client's gRPC stack; the health check on the same server at the same rate is that floor. Through Envoy, one load generator (32 keep-alive connections, closed loop) drives the same Route shape limited by the service and by Envoy's in-process `local_ratelimit`; Envoy runs one worker thread and shares the 2 cores with the generator, the echo backend, the service and Redis. Against Limitador (`limitador-server`, built by `make limitador` from Kuadrant/limitador {}, `--rate-limit-headers DRAFT_VERSION_03` as the service always sends RateLimit headers), each server is driven in turn, one equivalent limit per client (1e9 per 1 s), on the same `redis-server`. The rows with the targets are measured by h2load (one C process, one thread, the gRPC frame of one client's request, closed loop after a 1 s warm-up of each server), so neither side carries the benchmark's own Rust gRPC client; h2load sees only HTTP status, so a round counts only the calls the server's own counters (`portcullis_ratelimit_decisions_total{{outcome=\"ok\"}}`, Limitador's `authorized_calls` + `limited_calls`, read before and after) say it decided. The Rust client's closed loop (1,000 clients' descriptors) is kept beside it for context, with its server CPU time from /proc. The Redis store's own closed-loop target (≥ 20,000/s, 64 calls in flight) is read by the same h2load closed loop, in 3 rounds alternating with h2load's health checks on the same server (after a 1 s warm-up of each), the best round of each side; through the tonic client that row is context, as the client costs about as much CPU per call as the service. In the Redis rows, Redis's own CPU time (/proc, over the same rounds) per decision is given for both servers. The Redis store's open-loop target is measured by the frame-level generator (`crates/bench/src/frame_load.rs`): one thread of its own, 4 HTTP/2 connections, each sending the calls due since its last 1 ms tick in one write, each call timed from that tick to its answer's end and counted decided only when its RateLimitResponse carries a decision; it costs about a tenth of a core, 6 µs of CPU per call at 20,000/s (its own thread's CPU from /proc, in the row), where the tonic client above costs ~45 µs, most of a core at 20,000/s, so the row measures the service and not its client. It runs 3 rounds after a 1 s warm-up, each a run of health checks and a run of decisions (5 s each, each side first in turn), at the same rate from the same generator; the figure is the round with the lowest decision p99, beside that round's health checks, with every round's p99 in the value and \"not decided\" counted over all rounds (as the Limitador rows take the best of 3 alternating rounds, so one stall of the shared host lands in one round). The row also reads Redis itself over its rounds: its slowest event (`LATENCY LATEST`, threshold 5 ms, after a `LATENCY RESET`), how many decisions shared each script call and Redis's time inside the script per decision (`INFO commandstats`, `EVALSHA` calls and microseconds, read before and after). Verdicts: ok = target met, MISS = up to 2× off, FAIL = more than 2× off (the run then exits non-zero: the regression guard).\n",
        machine(),
        table(&rows),
        RATE / 1000,
        lim_version(lim_bin.as_deref()),
    );
    print!("{body}");
    if let Some(out) = args.out {
        write_section(std::path::Path::new(&out), "bench-ratelimit", &body)?;
    }
    drop((memory, redis_svc, redis));
    // The regression guard: a figure more than 2× off its target fails the run.
    guard(&rows)
}

/// `limitador-server --version`, or why there is none.
fn lim_version(bin: Option<&std::path::Path>) -> String {
    bin.and_then(|b| Command::new(b).arg("--version").output().ok())
        // "Limitador Server v2.4.0-dev (<sha>) …": the sha is whatever git repository
        // the build ran in (not Limitador's when built from an archive), so drop it.
        .map(|o| {
            let v = String::from_utf8_lossy(&o.stdout);
            v.split(" (").next().unwrap_or("").trim().to_string()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(not built here)".into())
}

async fn fetch_text(url: &str) -> anyhow::Result<(u16, String)> {
    let r = reqwest::get(url).await?;
    Ok((r.status().as_u16(), r.text().await?))
}
