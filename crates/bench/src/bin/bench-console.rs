//! `make bench-console`: how long the console takes to produce each page with 10,000
//! Routes, i.e. the work of one page request on the admin address (collecting the
//! problems for the navigation bar, then rendering), against serializing the same board
//! as `/debug/objects` JSON in the same run.
//!
//! The model: 10,000 Routes over 2,000 Services and 50 hosts (the control-plane
//! benchmark's), plus 100 newer copies of existing matches (Conflicted: the Problems
//! page has something to list); 100 connected Envoys in the fleet; 2,000 Services with
//! 15 minutes of sampled signals.
use std::time::{Duration, Instant};

use clap::Parser;
use portcullis_bench::{manifests, report::*};
use portcullis_plane::{
    console::{
        explain, fleet, problems,
        routes::{self, Filter},
        signals::{self, Readout, ServiceSignals},
    },
    file_source::{Board, ObjectView},
};
use portcullis_xds::{NodeStatus, Protocol, Snapshot, TypeStatus};

#[derive(Parser)]
struct Args {
    /// Markdown file to write the results into (between bench-console markers).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Renders per page; the median and the slowest are reported.
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

const TARGET_MS: f64 = 200.0;

struct Timing {
    median: Duration,
    max: Duration,
    bytes: usize,
}

fn time(runs: usize, mut page: impl FnMut() -> String) -> Timing {
    let mut samples = Vec::with_capacity(runs);
    let mut bytes = 0;
    page(); // warm up
    for _ in 0..runs {
        let started = Instant::now();
        let html = page();
        samples.push(started.elapsed());
        bytes = std::hint::black_box(html).len();
    }
    samples.sort();
    Timing {
        median: samples[samples.len() / 2],
        max: samples[samples.len() - 1],
        bytes,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut rts, svcs) = manifests::objects(args.routes, 2000);
    for i in 0..100 {
        let mut copy = manifests::route(i, 2000, 0);
        copy.metadata.name = Some(format!("copy-{i}"));
        copy.metadata.creation_timestamp = None; // newest: loses the match
        rts.push(copy);
    }
    let outcome = portcullis_api::validate::validate(&rts, &svcs);
    let mut board = Board {
        version: "0123456789abcdef".into(),
        objects: outcome
            .reports
            .iter()
            .map(|r| ObjectView {
                object: r.key.to_string(),
                served: r.is_served(),
                conditions: r.conditions(),
            })
            .collect(),
        ..Default::default()
    };
    board.carry_over(&Board::default(), &portcullis_plane::console::now_rfc3339());
    let model = outcome.model;
    let resources = portcullis_translate::translate(&model, &Default::default());
    let snapshot = portcullis_plane::publish::to_snapshot(&resources);
    let nodes = envoys(&snapshot, 100);
    let readout = readout(&model, 2000);
    let now = jiff::Timestamp::now;
    let problems = |board: &Board| problems::collect(board, &nodes, &snapshot, now());
    let found = problems(&board).len();
    anyhow::ensure!(
        found >= 100,
        "expected the 100 conflicts under Problems, got {found}"
    );

    let baseline = time(args.runs, || serde_json::to_string(&board).unwrap());
    let pages: Vec<(String, Timing)> = vec![
        (
            "Problems".into(),
            time(args.runs, || {
                let list = problems(&board);
                problems::render(&list, &board.version)
            }),
        ),
        (
            format!("Routing table (first {} entries)", routes::DEFAULT_ROWS),
            time(args.runs, || {
                let list = problems(&board);
                routes::render(&model, &board, &Filter::default(), list.len(), "t")
            }),
        ),
        (
            "Routing table, every entry (`?all=1`)".into(),
            time(args.runs, || {
                let list = problems(&board);
                let all = Filter {
                    all: Some("1".into()),
                    ..Default::default()
                };
                routes::render(&model, &board, &all, list.len(), "t")
            }),
        ),
        (
            "Routing table filtered (`?q=r4242/`)".into(),
            time(args.runs, || {
                let list = problems(&board);
                let q = Filter {
                    q: "r4242/".into(),
                    ..Default::default()
                };
                routes::render(&model, &board, &q, list.len(), "t")
            }),
        ),
        (
            "Fleet (100 Envoys)".into(),
            time(args.runs, || {
                let list = problems(&board);
                fleet::render(&snapshot, &nodes, 0, &[], list.len(), &board.version)
            }),
        ),
        (
            "Signals (2000 Services sampled)".into(),
            time(args.runs, || {
                let list = problems(&board);
                let f = signals::Filter::default();
                signals::render(&readout, &model, &f, list.len(), &board.version, "t")
            }),
        ),
        (
            "Explain".into(),
            time(args.runs, || {
                let list = problems(&board);
                let form = explain::Form {
                    method: Some("GET".into()),
                    url: Some("http://api42.example.com/v1/r4242/0/x".into()),
                    headers: None,
                };
                explain::render(&model, &form, list.len(), &board.version).1
            }),
        ),
    ];

    let rows: Vec<Row> = pages
        .iter()
        .map(|(name, t)| Row {
            metric: format!(
                "{name}, {} Routes: median / slowest of {} ({:.1} MB)",
                args.routes,
                args.runs,
                t.bytes as f64 / 1e6
            ),
            value: format!("{:.1} / {:.1} ms", ms(t.median), ms(t.max)),
            target: format!("< {TARGET_MS:.0} ms"),
            baseline: format!(
                "`/debug/objects` JSON of the same board: {:.1} ms ({:.1} MB)",
                ms(baseline.median),
                baseline.bytes as f64 / 1e6
            ),
            ratio: format!(
                "{:.2}×",
                t.median.as_secs_f64() / baseline.median.as_secs_f64()
            ),
            verdict: if ms(t.max) < TARGET_MS { "ok" } else { "MISS" },
        })
        .collect();
    let body = format!(
        "## Console (`make bench-console`)\n\nCommand: `make bench-console` (= `cargo run --release -p portcullis-bench --bin bench-console -- --out docs/benchmarks.md`).\n\
         Machine: {}.\n\n{}\nNotes: each figure is one page request's work on the admin address: collecting the problems (the navigation bar's count) and rendering the page, \
         without the network. {} Routes over 2,000 Services and 50 hosts, plus 100 Conflicted copies; 100 Envoys; 2,000 Services with 15 minutes of signals at 10 s. \
         Peak RSS of the benchmark process: {:.0} MiB.\n",
        machine(),
        table(&rows),
        args.routes,
        peak_rss_mib()
    );
    print!("{body}");
    if let Some(out) = &args.out {
        write_section(out, "bench-console", &body)?;
    }
    Ok(())
}

/// `n` Envoys that ACKed every type of `snapshot`.
fn envoys(snapshot: &Snapshot, n: usize) -> Vec<NodeStatus> {
    (0..n)
        .map(|i| NodeStatus {
            stream_id: i as u64,
            id: format!("envoy-{i}"),
            cluster: "portcullis".into(),
            protocol: Protocol::Sotw,
            peer: Some(format!("10.0.{}.{}:40000", i / 250, i % 250)),
            connected_at: "2026-12-01T00:00:00Z".into(),
            last_seen: "2026-12-01T00:00:01Z".into(),
            types: snapshot
                .type_urls()
                .filter(|t| t.starts_with("type.googleapis.com/envoy."))
                .map(|t| {
                    let v = snapshot.type_version(t).map(str::to_owned);
                    (
                        t.to_string(),
                        TypeStatus {
                            sent: v.clone(),
                            acked: v,
                            push_ms: Some(12),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

/// 15 minutes at 10 s of made-up traffic for the first `n` Services.
fn readout(model: &portcullis_api::Model, n: usize) -> Readout {
    let now = jiff::Timestamp::now().as_second();
    let services = model
        .services
        .keys()
        .take(n)
        .enumerate()
        .map(|(i, k)| ServiceSignals {
            service: portcullis_translate::cluster_name(k),
            series: std::array::from_fn(|s| {
                (0..91)
                    .map(|p| {
                        let t = now - 900 + p * 10;
                        (t, ((i + s) as f64 + (p as f64 / 7.0).sin()).abs())
                    })
                    .collect()
            }),
        })
        .collect();
    Readout {
        source: "bench".into(),
        services,
        error: None,
        untracked: 0,
        now,
    }
}
