//! `make bench-tls`: HTTPS at the edge through stock Envoy, against plain HTTP on the
//! same Route in the same run (a `Host` with a certificate from PEM files, `redirect`
//! off so plain HTTP is served too).
//!
//! 1. Keep-alive requests per second, HTTP/1.1 and HTTP/2: h2load, same connection
//!    count, closed loop; only the listener (TLS or not) differs.
//! 2. New connections per second, one request each: plain TCP, TLS with a full
//!    handshake, TLS resuming a session (TLS 1.3 tickets). The client is rustls, which
//!    says whether each handshake resumed; Envoy's `ssl.session_reused` counter says
//!    the same from the server side.
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use portcullis_bench::new_conns::{self, Target};
use portcullis_bench::{gateway, h2load, report::*};

const HOST: &str = "bench.example.com";
/// Keep-alive connections (as the other through-Envoy benchmarks).
const KEEP_ALIVE: usize = 32;
/// Connection loops in flight for the new-connection runs.
const NEW_CONNS: usize = 16;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

async fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
}

/// Envoy's downstream TLS handshakes and resumed ones, summed over its listeners.
async fn ssl_counters(envoy: &portcullis::envoy::Envoy) -> anyhow::Result<(u64, u64)> {
    let v =
        get_json(&envoy.admin_url(
            "/stats?format=json&filter=^listener\\..*\\.ssl\\.(handshake|session_reused)$",
        ))
        .await?;
    let (mut handshakes, mut reused) = (0, 0);
    for s in v["stats"].as_array().context("stats")? {
        let (name, value) = (s["name"].as_str().unwrap_or(""), s["value"].as_u64());
        if name.starts_with("listener.admin.") {
            continue;
        }
        if name.ends_with(".ssl.handshake") {
            handshakes += value.unwrap_or(0);
        } else if name.ends_with(".ssl.session_reused") {
            reused += value.unwrap_or(0);
        }
    }
    Ok((handshakes, reused))
}

/// Every DownstreamTlsContext in `v`.
fn tls_contexts<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with(".DownstreamTlsContext"))
            {
                out.push(v);
            }
            m.values().for_each(|x| tls_contexts(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| tls_contexts(x, out)),
        _ => {}
    }
}

/// What Envoy's config_dump says about session resumption on the HTTPS listener;
/// fails if stateless tickets are off.
async fn session_tickets(envoy: &portcullis::envoy::Envoy) -> anyhow::Result<String> {
    let dump = get_json(&envoy.admin_url("/config_dump?resource=dynamic_listeners")).await?;
    let mut found = Vec::new();
    tls_contexts(&dump, &mut found);
    anyhow::ensure!(!found.is_empty(), "no DownstreamTlsContext in config_dump");
    for c in &found {
        anyhow::ensure!(
            c["disable_stateless_session_resumption"] != true,
            "Envoy has stateless session resumption off: {c}"
        );
    }
    let keys = found.iter().any(|c| {
        c.get("session_ticket_keys").is_some()
            || c.get("session_ticket_keys_sds_secret_config").is_some()
    });
    Ok(format!(
        "stateless session tickets on in Envoy's config_dump (`disable_stateless_session_resumption` unset, {})",
        if keys {
            "ticket keys configured"
        } else {
            "no `session_ticket_keys`: BoringSSL's own key, per Envoy process"
        }
    ))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let d = Duration::from_secs(if args.quick { 2 } else { 10 });
    let load_at_start = load_average();
    let h2load_version = h2load::version()?;
    let dir = tempfile::tempdir()?;
    let pki = new_conns::pki(HOST)?;
    let (crt, key) = (dir.path().join("bench.crt"), dir.path().join("bench.key"));
    std::fs::write(&crt, &pki.chain_pem)?;
    std::fs::write(&key, &pki.key_pem)?;
    let echo = gateway::echo().await?;
    let manifests = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: echo, namespace: bench}}\nspec: {{destinations: [{{name: d, address: '{echo}'}}]}}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: bench, namespace: bench}}\nspec: {{hostname: {HOST}, tls: {{certificateFile: '{}', keyFile: '{}', redirect: false}}}}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: tls, namespace: bench}}\nspec: {{hosts: [{HOST}], match: {{paths: [{{prefix: /}}]}}, backends: [{{service: echo}}]}}\n",
        crt.display(),
        key.display()
    );
    let options = portcullis_translate::Options {
        https_port: Some(0),
        ..Default::default()
    };
    let gw = gateway::start(&manifests, options).await?;
    let http = gw.port;
    let deadline = Instant::now() + Duration::from_secs(60);
    let https = loop {
        if let Some(p) =
            gateway::listener_port(&gw.envoy, portcullis_translate::tls::HTTPS_LISTENER_NAME).await
        {
            break p;
        }
        if Instant::now() > deadline {
            bail!("Envoy never got its HTTPS listener");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let plain = Target {
        port: http,
        host: HOST.into(),
        tls: None,
    };
    let full = Target {
        port: https,
        host: HOST.into(),
        tls: Some(new_conns::connector(&pki.ca_pem, false)?),
    };
    let resumed = Target {
        tls: Some(new_conns::connector(&pki.ca_pem, true)?),
        ..full.clone()
    };
    // Ready once one connection over each gets its 200 (Envoy warms the HTTPS
    // listener until the certificate arrives over SDS).
    for t in [&plain, &full] {
        while new_conns::run(t, 1, Duration::from_millis(100)).await?.bad > 0 {
            if Instant::now() > deadline {
                bail!("Envoy never answered 200 on port {}", t.port);
            }
        }
    }
    let tickets = session_tickets(&gw.envoy).await?;
    let mut rows = Vec::new();

    // 1. Keep-alive.
    let mut protocols = Vec::new();
    for h1 in [true, false] {
        let spec = |scheme: &str, port: u16| h2load::Spec {
            url: format!("{scheme}://{HOST}:{port}/keep-alive"),
            connect_to: Some(format!("127.0.0.1:{port}")),
            clients: KEEP_ALIVE,
            streams: 1,
            every: None,
            data: None,
            headers: Vec::new(),
            h1,
            duration: d,
            warm_up: Duration::from_secs(1),
        };
        // h2load is a child process: this thread waits for it, the other runs on.
        let load = |s: h2load::Spec| tokio::task::block_in_place(|| h2load::run(&s, dir.path()));
        let w0 = gateway::envoy_work(&gw.envoy).await?;
        let base = load(spec("http", http))?;
        let w1 = gateway::envoy_work(&gw.envoy).await?;
        let tls = load(spec("https", https))?;
        let w2 = gateway::envoy_work(&gw.envoy).await?;
        let (cpu_base, cpu_tls) = (
            gateway::cpu_per_request(w0, w1),
            gateway::cpu_per_request(w1, w2),
        );
        anyhow::ensure!(
            base.bad == 0 && tls.bad == 0 && base.ok > 0 && tls.ok > 0,
            "unexpected answers: plain {} bad, TLS {} bad",
            base.bad,
            tls.bad
        );
        anyhow::ensure!(
            tls.protocol.contains("TLSv1.3"),
            "h2load did not negotiate TLS 1.3: {}",
            tls.protocol
        );
        let version = if h1 { "HTTP/1.1" } else { "HTTP/2" };
        protocols.push(format!("{version}: {}", tls.protocol));
        let ratio = tls.per_sec / base.per_sec;
        println!(
            "keep-alive {version}: https {:.0}/s, http {:.0}/s",
            tls.per_sec, base.per_sec
        );
        rows.push(Row {
            metric: format!(
                "keep-alive requests/s over HTTPS, {version} ({KEEP_ALIVE} connections), p50 / p99"
            ),
            value: format!(
                "{:.0}/s, {} / {}; Envoy CPU {} per request",
                tls.per_sec,
                us(tls.p50),
                us(tls.p99),
                us(cpu_tls)
            ),
            target: "≥ 0.8× plain HTTP".into(),
            baseline: format!(
                "plain HTTP{}, same Route: {:.0}/s, {} / {}; Envoy CPU {} per request",
                if h1 { "" } else { " (h2c)" },
                base.per_sec,
                us(base.p50),
                us(base.p99),
                us(cpu_base)
            ),
            ratio: format!("{ratio:.2}×"),
            verdict: verdict_min(ratio, 0.8),
        });
    }

    // 2. New connections.
    let w0 = gateway::envoy_work(&gw.envoy).await?;
    let base = new_conns::run(&plain, NEW_CONNS, d).await?;
    let w1 = gateway::envoy_work(&gw.envoy).await?;
    let fresh = new_conns::run(&full, NEW_CONNS, d).await?;
    let w2 = gateway::envoy_work(&gw.envoy).await?;
    let before = ssl_counters(&gw.envoy).await?;
    let again = new_conns::run(&resumed, NEW_CONNS, d).await?;
    let after = ssl_counters(&gw.envoy).await?;
    let w3 = gateway::envoy_work(&gw.envoy).await?;
    let cpu = [(w0, w1), (w1, w2), (w2, w3)].map(|(a, b)| gateway::cpu_per_request(a, b));
    for (what, r) in [("plain", &base), ("full", &fresh), ("resumed", &again)] {
        anyhow::ensure!(
            r.bad == 0 && r.connections > 0,
            "{what}: {} of {} connections failed",
            r.bad,
            r.connections
        );
    }
    anyhow::ensure!(
        fresh.resumed == 0,
        "resumption off, yet a handshake resumed"
    );
    let (handshakes, reused) = (after.0 - before.0, after.1 - before.1);
    let envoy_share = reused as f64 / handshakes.max(1) as f64;
    let client_share = again.resumed as f64 / again.connections as f64;
    println!(
        "new connections: plain {:.0}/s, full {:.0}/s, resumed {:.0}/s ({:.1}% reused by Envoy's count)",
        base.per_sec,
        fresh.per_sec,
        again.per_sec,
        envoy_share * 100.0
    );
    let baseline = format!(
        "plain HTTP (TCP connect + GET + close): {:.0}/s, {} / {}; Envoy CPU {} per connection",
        base.per_sec,
        us(base.p50),
        us(base.p99),
        us(cpu[0])
    );
    let conn_row = |what: &str, r: &new_conns::Conns, cpu, target: &str, verdict| Row {
        metric: format!(
            "new connections/s over HTTPS, one request each, {what} ({NEW_CONNS} in flight), p50 / p99 per connection"
        ),
        value: format!(
            "{:.0}/s, {} / {}; Envoy CPU {} per connection",
            r.per_sec,
            us(r.p50),
            us(r.p99),
            us(cpu)
        ),
        target: target.into(),
        baseline: baseline.clone(),
        ratio: format!("{:.2}×", r.per_sec / base.per_sec),
        verdict,
    };
    rows.push(conn_row("full handshake", &fresh, cpu[1], "—", "ok"));
    let resumed_ratio = again.per_sec / base.per_sec;
    rows.push(conn_row(
        "session resumption on",
        &again,
        cpu[2],
        "≥ 0.5× plain HTTP",
        verdict_min(resumed_ratio, 0.5),
    ));
    rows.push(Row {
        metric: "handshakes that resumed a session, resumption run (Envoy's listener `ssl.session_reused` / `ssl.handshake`)".into(),
        value: format!(
            "{:.1}% ({reused} of {handshakes}; rustls: {:.1}%)",
            envoy_share * 100.0,
            client_share * 100.0
        ),
        target: "≥ 95%".into(),
        baseline: "full-handshake run: 0% (rustls)".into(),
        ratio: "—".into(),
        verdict: verdict_min(envoy_share, 0.95),
    });

    let envoy_version = Command::new(portcullis::envoy::find_envoy()?)
        .arg("--version")
        .output()?;
    let body = format!(
        "## TLS at the edge (`make bench-tls`)\n\nCommand: `make bench-tls` (= `cargo run --release -p portcullis-bench --bin bench-tls -- --out docs/benchmarks.md`).\nMachine: {}; load average {load_at_start} at the start, {} at the end (the machine is shared with other builds). Envoy: {}. {h2load_version}.\nOne Route behind a `Host` with a certificate from PEM files (ECDSA P-256 leaf signed by a local CA, made by rcgen at start); `tls.redirect: false`, so the same Route answers on Envoy's HTTP and HTTPS listeners. Negotiated: {}. Session resumption: {tickets}.\n\n{}\nVerdicts: ok = within the target, MISS = up to 2× off it, FAIL = more than 2× off it (the run then exits non-zero: the regression guard). Notes: keep-alive figures are h2load (one thread, closed loop, one request in flight per connection, {}-second runs after a 1 s warm-up) against both listeners, so only TLS differs. New connections are a Rust client (tokio + rustls, verifying the chain against the CA as a real client does): each of {NEW_CONNS} loops connects, sends one `GET` with `connection: close` and reads the answer to the close; the same loop with no TLS is the baseline. Full handshakes use a client with resumption disabled; the resumption run keeps rustls's default session store, filled in a 1 s warm-up. Envoy CPU per request or connection is its process's CPU time (all threads, /proc) over the run, warm-up included, divided by the requests its HTTP connection managers counted. Envoy runs one worker thread and shares the 2 cores with the client, the echo backend and the control plane.\n",
        machine(),
        load_average(),
        String::from_utf8_lossy(&envoy_version.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("?"),
        protocols.join("; "),
        table(&rows),
        d.as_secs(),
    );
    print!("\n{body}");
    if let Some(out) = args.out {
        write_section(std::path::Path::new(&out), "bench-tls", &body)?;
    }
    guard(&rows)
}
