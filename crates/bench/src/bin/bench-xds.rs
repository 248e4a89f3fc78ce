//! `make bench-xds`: control-plane scale. Translate + snapshot time and peak RSS at 1k
//! and 10k Routes over 2k Services; one-Route edit → real Envoy ACK latency (SotW and
//! Delta); 1,000 ADS clients connecting at once. Each against a same-run baseline.
use std::{
    collections::BTreeSet,
    io::{BufRead, Write},
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use portcullis::{bootstrap::Bootstrap, envoy::Envoy};
use portcullis_api::{
    Document,
    validate::{Memo, Rules},
};
use portcullis_bench::{
    ads_clients::{Client, Clients},
    gateway, go_ads, manifests,
    report::*,
};
use portcullis_plane::publish::{to_snapshot, to_snapshot_reusing};
use portcullis_plane::reconcile::{Objects, reconcile, reconcile_with};
use portcullis_translate::{Incremental, Options, translate};
use portcullis_xds::{Cache, Snapshot, type_url};

#[path = "bench_xds/controller.rs"]
mod controller;
#[path = "bench_xds/files.rs"]
mod files;

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

/// The TLS Hosts of the HTTPS shape and their certificate.
type Tls = (Vec<portcullis_api::Host>, portcullis_api::Certificate);

/// The shape's objects as a source holds them (shared documents by key), and the
/// certificates it loaded. With `tls`, every hostname has a TLS Host, so routing is
/// split per Host.
#[derive(Clone)]
struct Shape {
    current: Objects,
    certificates: portcullis_api::Certificates,
    options: Options,
}

impl Shape {
    fn new(
        routes: &[portcullis_api::Route],
        services: &[portcullis_api::Service],
        tls: Option<&Tls>,
    ) -> Self {
        let mut options = options();
        let (hosts, certificates) = match tls {
            None => (&[][..], Default::default()),
            Some((hosts, cert)) => {
                options.https_port = Some(0);
                (&hosts[..], manifests::certificates(hosts, cert))
            }
        };
        Self {
            current: manifests::documents(routes, services, hosts),
            certificates,
            options,
        }
    }

    /// A one-Route edit, as a watch event or a file change hands it over.
    fn edit(&mut self, route: portcullis_api::Route) {
        let doc = Document::Route(Arc::new(route));
        self.current.insert(doc.key(), doc);
    }

    /// The same-run baseline of [`Kept::model`]: every object copied first, as each
    /// reconcile did before sources and validation shared them.
    fn model_copying(&self) -> portcullis_api::Model {
        let copied: Objects = self
            .current
            .iter()
            .map(|(k, d)| {
                let d = match d {
                    Document::Route(r) => Document::Route(Arc::new((**r).clone())),
                    Document::Service(s) => Document::Service(Arc::new((**s).clone())),
                    Document::Host(h) => Document::Host(Arc::new((**h).clone())),
                };
                (k.clone(), d)
            })
            .collect();
        let rules = Rules::file_mode();
        let none = BTreeSet::new();
        reconcile(&copied, &none, &Objects::new(), &self.certificates, &rules)
            .outcome
            .model
    }
}

/// What the control plane keeps from one edit to the next.
#[derive(Default)]
struct Kept {
    served: Objects,
    memo: Memo,
    incremental: Incremental,
}

impl Kept {
    /// Reconcile (validation with keep-last-good) as the controller calls it, with
    /// the memo of single-object reports it keeps.
    fn model(&mut self, shape: &Shape) -> portcullis_api::Model {
        let r = reconcile_with(
            Some(&mut self.memo),
            shape.current.clone(),
            &BTreeSet::new(),
            &self.served,
            &shape.certificates,
            &Rules::file_mode(),
        );
        self.served = r.served;
        r.outcome.model
    }

    /// What the control plane publishes after an edit: reconcile, translate
    /// incrementally, reuse the previous snapshot's encodings.
    fn rebuild(&mut self, shape: &Shape, previous: &Snapshot) -> Snapshot {
        let model = self.model(shape);
        to_snapshot_reusing(
            &self.incremental.translate(&model, &shape.options),
            previous,
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child-translate") => return child_translate(args[2].parse()?),
        Some("--child-rebuild") => {
            let baseline = !args.iter().any(|a| a == "--no-baseline");
            return child_rebuild(args[2].parse()?, args[3].parse()?, baseline);
        }
        Some("--child-controller") => {
            return controller::child_controller(args[2].parse()?, args[3].parse()?);
        }
        Some("--child-files") => {
            let one_file = args.iter().any(|a| a == "--one-file");
            return files::child_files(args[2].parse()?, args[3].parse()?, one_file);
        }
        Some("--child-idle") => {
            println!("{:.1}", peak_rss_mib());
            return Ok(());
        }
        Some("--child-server") => {
            return child_server(args[2].parse()?, args.iter().any(|a| a == "--copy"));
        }
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // `--only translate|edit|memory`: one section, for iterating on it (docs come from
    // full runs).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let want = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let mut rows = Vec::new();
    let mut storms = Vec::new();

    // 1. Translate + snapshot, and peak RSS, each in a fresh process.
    let idle: f64 = run_child(&["--child-idle"])?.trim().parse()?;
    let sizes: &[usize] = if quick { &[100, 1000] } else { &[1000, 10_000] };
    let mut per_route_1k = 0.0;
    for &n in sizes.iter().filter(|_| want("translate")) {
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
            verdict: if big {
                verdict_max(total_ms, 1000.0)
            } else {
                "ok"
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
            verdict: if big { verdict_max(rss, 150.0) } else { "ok" },
        });
    }

    // 2. Edit → Envoy ACK, at scale and at 10 Routes (baseline), SotW and Delta.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let edits = if quick { 5 } else { 50 };
    let tls = manifests::tls_hosts();
    let mut rebuilds = Vec::new();
    for delta in [false, true].into_iter().filter(|_| want("edit")) {
        let proto = if delta { "Delta" } else { "SotW" };
        // The split shape (a TLS Host per hostname: a RouteConfiguration per Host)
        // against one RouteConfiguration for every host, in the same run.
        let split = rt.block_on(edit_to_ack(sizes[1], edits, delta, Some(&tls)))?;
        let whole = rt.block_on(edit_to_ack(sizes[1], edits, delta, None))?;
        println!(
            "{proto} edit→ACK at {} routes: per Host median {:?} p99 {:?}; one configuration median {:?} p99 {:?}",
            sizes[1], split.median, split.p99, whole.median, whole.p99
        );
        rebuilds.push((proto, split.rebuild));
        rows.push(Row {
            metric: format!(
                "one-Route edit → Envoy ACK ({proto}, {} Routes / {SERVICES} Services, {} HTTPS Hosts: a RouteConfiguration per Host), median / p99 of {edits}",
                sizes[1],
                manifests::HOSTS
            ),
            value: format!("{:.0} / {:.0} ms", ms(split.median), ms(split.p99)),
            target: "p99 ≤ 100 ms".into(),
            baseline: format!(
                "{:.0} / {:.0} ms with one RouteConfiguration for every host (plain HTTP, no Hosts)",
                ms(whole.median),
                ms(whole.p99)
            ),
            ratio: format!("{:.2}× (p99)", ms(split.p99) / ms(whole.p99).max(0.1)),
            verdict: verdict_max(ms(split.p99), 100.0),
        });
    }
    for (proto, rebuild) in &rebuilds {
        println!("{proto}: rebuild median inside the edit loop (Envoy running) {rebuild:?}");
    }
    if want("edit") {
        let line = run_child(&["--child-rebuild", &sizes[1].to_string(), &edits.to_string()])?;
        let m: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [
            validate,
            translate,
            snapshot,
            full_validate,
            full_translate,
            full_snapshot,
        ] = m[..]
        else {
            anyhow::bail!("child-rebuild printed {line:?}");
        };
        println!(
            "rebuild at {} routes: validate {validate} ms, translate {translate} ms, snapshot {snapshot} ms; from nothing: validate {full_validate} ms, translate {full_translate} ms, snapshot {full_snapshot} ms",
            sizes[1]
        );
        let cpu = validate + translate + snapshot;
        let full = full_validate + full_translate + full_snapshot;
        rows.push(Row {
            metric: format!(
                "control-plane CPU per one-Route edit at {} Routes, median of {edits} (validate {validate:.0} + translate {translate:.0} + snapshot {snapshot:.0} ms)",
                sizes[1]
            ),
            value: format!("{cpu:.0} ms"),
            target: "≤ 20 ms".into(),
            baseline: format!(
                "{full:.0} ms validating, translating and encoding everything ({full_validate:.0} + {full_translate:.0} + {full_snapshot:.0} ms)"
            ),
            ratio: format!("{:.2}×", cpu / full.max(0.1)),
            verdict: verdict_max(cpu, 20.0),
        });
        rows.push(Row {
            metric: format!(
                "of which validate (memo: single-object checks only for the objects an edit changed), {} Routes",
                sizes[1]
            ),
            value: format!("{validate:.1} ms"),
            target: "—".into(),
            baseline: format!("{full_validate:.1} ms from nothing"),
            ratio: format!("{:.2}×", validate / full_validate.max(0.1)),
            verdict: "ok",
        });
        rows.push(Row {
            metric: format!(
                "of which translate + snapshot (incremental: only the virtual hosts an edit reaches), {} Routes",
                sizes[1]
            ),
            value: format!("{:.1} ms", translate + snapshot),
            target: "—".into(),
            baseline: format!("{:.1} ms full", full_translate + full_snapshot),
            ratio: format!(
                "{:.2}×",
                (translate + snapshot) / (full_translate + full_snapshot).max(0.1)
            ),
            verdict: "ok",
        });
    }

    // The same edits through the Kubernetes controller's whole reconcile, and the status
    // round the lease holder runs after it (and after every ACK).
    if want("edit") {
        let n = sizes[1];
        let line = run_child(&["--child-controller", &n.to_string(), &edits.to_string()])?;
        let m: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [edit, round, first, first_round] = m[..] else {
            anyhow::bail!("child-controller printed {line:?}");
        };
        println!(
            "controller at {n} routes: reconcile {edit} ms, status round {round} ms; first: {first} ms, {first_round} ms"
        );
        rows.push(Row {
            metric: format!(
                "Kubernetes controller: CPU per one-Route edit at {n} Routes, its whole reconcile (index, validate, endpoints, translate, snapshot, Programmed, console board), median of {edits}"
            ),
            value: format!("{edit:.0} ms"),
            target: "≤ 20 ms".into(),
            baseline: format!("{first:.0} ms for its first reconcile (everything built)"),
            ratio: format!("{:.2}×", edit / first.max(0.1)),
            verdict: verdict_max(edit, 20.0),
        });
        rows.push(Row {
            metric: format!(
                "Kubernetes controller: the lease holder's status round after each edit (every object's conditions, one Envoy ACKing), {n} Routes, median of {edits}"
            ),
            value: format!("{round:.0} ms"),
            target: "—".into(),
            baseline: format!("{first_round:.0} ms for the first round (every status offered)"),
            ratio: format!("{:.2}×", round / first_round.max(0.1)),
            verdict: "ok",
        });
        // The same edits through file mode's whole reload, from the files.
        for one_file in [false, true] {
            let mut child = vec!["--child-files".to_string(), n.to_string()];
            child.push(edits.to_string());
            if one_file {
                child.push("--one-file".into());
            }
            let child: Vec<&str> = child.iter().map(String::as_str).collect();
            let line = run_child(&child)?;
            let m: Vec<f64> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            let [edit, first] = m[..] else {
                anyhow::bail!("child-files printed {line:?}");
            };
            let shape = if one_file {
                "all in one file"
            } else {
                "a file per namespace (20 files)"
            };
            println!("file mode at {n} routes, {shape}: reload {edit} ms; first: {first} ms");
            rows.push(Row {
                metric: format!(
                    "file mode (`portcullis serve`): CPU per one-Route edit at {n} Routes, {shape}, its whole reload (read, parse, validate, translate, snapshot, console board), median of {edits}"
                ),
                value: format!("{edit:.0} ms"),
                target: if one_file { "—" } else { "≤ 20 ms" }.into(),
                baseline: format!("{first:.0} ms for its first reload (every file parsed)"),
                ratio: format!("{:.2}×", edit / first.max(0.1)),
                verdict: if one_file {
                    "ok"
                } else {
                    verdict_max(edit, 20.0)
                },
            });
        }
    }

    // 3. Connection storm and per-client memory, each against a server in its own
    // process, sharing the snapshot's encodings and (baseline) copying them per stream.
    let clients = if quick { 100 } else { 1000 };
    let (more, slope_routes) = if quick { (400, 100) } else { (4000, 1000) };
    let storm_routes = 1000;
    for shared in [false, true].into_iter().filter(|_| want("memory")) {
        let mode = if shared { Mode::Shared } else { Mode::Copy };
        // The storm is timed with frame-level clients, so that it measures the server;
        // the memory slope keeps the tonic clients it was first measured with, whose
        // first thousand also time the storm as context.
        let m = memory(
            &Server::Ours,
            storm_routes,
            clients,
            0,
            mode,
            Client::Frames,
        )?;
        let s = memory(
            &Server::Ours,
            slope_routes,
            clients,
            more,
            mode,
            Client::Tonic,
        )?;
        println!(
            "{}: {clients} frame-level clients ACKed in {:?} (CPU: clients {:?}, server {:?}), \
             tonic clients in {:?} (CPU: clients {:?}, server {:?}); \
             peak RSS {:.1} MiB (snapshot {:.1} MiB encoded); \
             {} → {} clients RSS {:.1} → {:.1} MiB",
            if shared { "shared" } else { "copy per stream" },
            m.took,
            m.clients_cpu,
            m.server_cpu,
            s.took,
            s.clients_cpu,
            s.server_cpu,
            m.peak_mib,
            m.snapshot_mib,
            clients,
            clients + more,
            s.rss_before,
            s.rss_after
        );
        storms.push((m, s));
    }
    let kib = |s: &Memory| (s.rss_after - s.rss_before) * 1024.0 / more as f64;
    let floor = if want("memory") {
        let f = memory(
            &Server::Ours,
            slope_routes,
            clients,
            more,
            Mode::Idle,
            Client::Tonic,
        )?;
        let d = memory(
            &Server::Ours,
            slope_routes,
            clients,
            more,
            Mode::Delta,
            Client::Tonic,
        )?;
        for (what, m) in [("idle connections", &f), ("delta", &d)] {
            println!(
                "{what}: {clients} → {} RSS {:.1} → {:.1} MiB",
                clients + more,
                m.rss_before,
                m.rss_after
            );
        }
        Some((f, d))
    } else {
        None
    };
    // The same clients against grpc-go (go-control-plane's transport) answering with the
    // same resources: what per-client memory costs elsewhere.
    let go = match go_ads::find().filter(|_| want("memory")) {
        Some(bin) => {
            let dir = tempfile::tempdir()?;
            let (routes, services) = manifests::objects(slope_routes, SERVICES);
            go_ads::write_responses(dir.path(), &build(&routes, &services), "portcullis")?;
            let server = Server::Go(bin, dir.path().to_owned());
            let mut kibs = [0.0; 3];
            for (k, mode) in [Mode::Shared, Mode::Delta, Mode::Idle]
                .into_iter()
                .enumerate()
            {
                let m = memory(&server, slope_routes, clients, more, mode, Client::Tonic)?;
                println!(
                    "grpc-go {}: {clients} → {} RSS {:.1} → {:.1} MiB",
                    ["sotw", "delta", "idle connections"][k],
                    clients + more,
                    m.rss_before,
                    m.rss_after
                );
                kibs[k] = kib(&m);
            }
            Some(kibs)
        }
        None => None,
    };
    if let ([old, new], Some((floor, delta))) = (&storms[..], &floor) {
        rows.push(Row {
        metric: format!(
            "{clients} ADS clients connecting at once: time to all ACKed ({storm_routes} Routes / {SERVICES} Services; frame-level clients)"
        ),
        value: format!("{:.2} s", new.0.took.as_secs_f64()),
        target: "≤ 3 s".into(),
        baseline: format!("{:.2} s with a copy per stream", old.0.took.as_secs_f64()),
        ratio: format!("{:.2}×", new.0.took.as_secs_f64() / old.0.took.as_secs_f64().max(1e-6)),
        verdict: verdict_max(new.0.took.as_secs_f64(), 3.0),
    });
        rows.push(Row {
            metric: format!(
                "the same storm timed with tonic clients (the earlier instrument, context; {slope_routes} Routes): \
                 CPU in the benchmark's process / the server's, shared",
            ),
            value: format!(
                "{:.2} s ({:.2} / {:.2} CPU-s)",
                new.1.took.as_secs_f64(),
                new.1.clients_cpu.as_secs_f64(),
                new.1.server_cpu.as_secs_f64()
            ),
            target: "—".into(),
            baseline: format!(
                "{:.2} s frame-level ({:.2} / {:.2} CPU-s)",
                new.0.took.as_secs_f64(),
                new.0.clients_cpu.as_secs_f64(),
                new.0.server_cpu.as_secs_f64()
            ),
            ratio: format!(
                "{:.2}×",
                new.1.took.as_secs_f64() / new.0.took.as_secs_f64().max(1e-6)
            ),
            verdict: "—",
        });
        rows.push(Row {
            metric: format!("control-plane peak RSS, {clients} ADS clients connecting at once"),
            value: format!("{:.1} MiB", new.0.peak_mib),
            target: "≤ 200 MiB".into(),
            baseline: format!("{:.1} MiB with a copy per stream", old.0.peak_mib),
            ratio: format!("{:.2}×", new.0.peak_mib / old.0.peak_mib.max(0.1)),
            verdict: verdict_max(new.0.peak_mib, 200.0),
        });
        rows.push(Row {
        metric: format!(
            "RSS per extra ADS client beyond the shared snapshot, {clients} → {} clients ({slope_routes} Routes)",
            clients + more
        ),
        value: format!("{:.1} KiB", kib(&new.1)),
        target: "≤ 20 KiB".into(),
        baseline: format!("{:.1} KiB with a copy per stream", kib(&old.1)),
        ratio: format!("{:.2}×", kib(&new.1) / kib(&old.1).max(0.1)),
        verdict: verdict_max(kib(&new.1), 20.0),
    });
        rows.push(Row {
            metric: format!(
                "RSS per extra Delta ADS client, {clients} → {} clients ({slope_routes} Routes)",
                clients + more
            ),
            value: format!("{:.1} KiB", kib(delta)),
            target: "≤ 20 KiB".into(),
            baseline: format!("{:.1} KiB per SotW client", kib(&new.1)),
            ratio: format!("{:.2}×", kib(delta) / kib(&new.1).max(0.1)),
            verdict: verdict_max(kib(delta), 20.0),
        });
        rows.push(Row {
            metric: format!(
                "of which the HTTP/2 transport: RSS per extra idle connection (one refused call, no stream), {clients} → {} connections",
                clients + more
            ),
            value: format!("{:.1} KiB", kib(floor)),
            target: "—".into(),
            baseline: format!("{:.1} KiB per ADS client", kib(&new.1)),
            ratio: format!("{:.2}×", kib(floor) / kib(&new.1).max(0.1)),
            verdict: "ok",
        });
        let ours = [kib(&new.1), kib(delta), kib(floor)];
        let what = [
            "RSS per extra SotW ADS client",
            "RSS per extra Delta ADS client",
            "RSS per extra idle connection",
        ];
        for k in 0..3 {
            rows.push(Row {
                metric: format!(
                    "grpc-go baseline (go-ads: go-control-plane's server options, the same clients and resources): {}",
                    what[k]
                ),
                value: go.map_or("not measured: go-ads not built (make go-ads)".into(), |g| {
                    format!("{:.1} KiB", g[k])
                }),
                target: "—".into(),
                baseline: format!("{:.1} KiB portcullis", ours[k]),
                ratio: go.map_or("—".into(), |g| {
                    format!("{:.2}× portcullis", g[k] / ours[k].max(0.1))
                }),
                verdict: "—",
            });
        }
    }

    let envoy_version = Command::new(portcullis::envoy::find_envoy()?)
        .arg("--version")
        .output()?;
    let body = format!(
        "## Control plane (`make bench-xds`)\n\nCommand: `make bench-xds` (= `cargo run --release -p portcullis-bench --bin bench-xds -- --out docs/benchmarks.md`{}).\nMachine: {}. Envoy: {}.\n\n{}\nVerdicts: ok = within the target, MISS = up to 2× over it, FAIL = more than 2× over it (the run then exits non-zero: the regression guard). Notes: p99 is by nearest rank (of 50 edits, the 50th). Edit→ACK includes validating, translating and versioning the whole model, the push, and Envoy applying and ACKing it. The ADS clients each open their own connection and subscribe CDS, EDS (all 2,000 clusters by name), LDS and RDS, ACK every response and hold their streams open; the server runs in its own process so its RSS is its own. The storm is timed with frame-level clients (`crates/bench/src/ads_frames.rs`: each one task and one socket, writing HTTP/2 frames itself and skipping the resources as they stream past, with Envoy's 256 MiB windows), so that its time is the server's, not the benchmark's own clients' on the same two cores; the memory rows and the grpc-go rows use tonic clients (`ads_clients.rs`, each response decoded whole with its resources skipped), whose first thousand also time the storm as a context row, with the CPU each side spent. The baseline is the same server with `Cache::set_copy_per_stream` on: each response carries its own copy of every resource and is written by tonic's encoder, as before responses shared the snapshot's encodings (`Any.value` cloned per response, a per-stream encode buffer). The grpc-go rows run the same clients against `go-ads` (crates/bench/go-ads, built by `make go-ads`): an ADS server on grpc-go, the stack go-control-plane serves xDS with (so Envoy Gateway, Contour and Istio), with go-control-plane's example server options, answering each subscription with the same resources, encoded once and shared by every stream; it hands freed heap back to the OS before each reading (`debug.FreeOSMemory`), its best case.\n",
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
    // The regression guard: a figure more than 2× off its target fails the run.
    guard(&rows)
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

/// The edit loop's rebuild without Envoy (also for `perf record`): `edits` one-Route
/// edits at `n` Routes in the HTTPS shape. Prints the median milliseconds of validate
/// with the memo, incremental translate, snapshot reusing the previous one, and (the
/// same-run baseline, on the same objects) validate, translate and snapshot from
/// nothing. Fails if a full rebuild's snapshot version ever differs from the
/// incremental one after the same edit. The baseline replays the edits after the
/// incremental pass rather than between its edits: interleaved, the full rebuilds'
/// garbage (allocator and cache state) slowed the incremental path in some runs,
/// which a control plane never pays. `--no-baseline` (for profiling the incremental path
/// alone): only the first three.
fn child_rebuild(n: usize, edits: usize, baseline: bool) -> anyhow::Result<()> {
    let (routes, services) = manifests::objects(n, SERVICES);
    let tls = manifests::tls_hosts();
    let edit = |e: usize| manifests::route((e * 7919) % n, SERVICES, e + 1);
    let mut times = [vec![], vec![], vec![], vec![], vec![], vec![]];
    let mut versions = Vec::new();
    let mut shape = Shape::new(&routes, &services, Some(&tls));
    drop(routes);
    // The baseline starts from the same objects (shared, as the sources share them).
    let initial = baseline.then(|| shape.clone());
    {
        let mut kept = Kept::default();
        let mut previous = Snapshot::new([]);
        for e in 0..=edits {
            shape.edit(edit(e));
            let t0 = Instant::now();
            let model = kept.model(&shape);
            let t1 = Instant::now();
            let res = kept.incremental.translate(&model, &shape.options);
            let t2 = Instant::now();
            let snapshot = to_snapshot_reusing(&res, &previous);
            let t3 = Instant::now();
            versions.push(snapshot.version().to_owned());
            previous = snapshot;
            // The first build is from nothing; the edits follow.
            if e > 0 {
                for (t, d) in times.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                    t.push(ms(d));
                }
            }
        }
    }
    if let Some(mut shape) = initial {
        // The same-run baseline: copy, validate, translate and encode everything.
        for (e, want) in versions.iter().enumerate() {
            shape.edit(edit(e));
            let t3 = Instant::now();
            let full_model = shape.model_copying();
            let t4 = Instant::now();
            let full = translate(&full_model, &shape.options);
            let t5 = Instant::now();
            let full = to_snapshot(&full);
            let t6 = Instant::now();
            anyhow::ensure!(
                full.version() == want,
                "the incremental snapshot differs from a full one after edit {e}"
            );
            if e > 0 {
                for (t, d) in times[3..].iter_mut().zip([t4 - t3, t5 - t4, t6 - t5]) {
                    t.push(ms(d));
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let shown = if baseline { times.len() } else { 3 };
    let m: Vec<String> = times[..shown]
        .iter_mut()
        .map(|t| format!("{:.1}", median(t)))
        .collect();
    println!("{}", m.join(" "));
    Ok(())
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

struct EditTimes {
    median: Duration,
    /// The largest of the samples (p99 of up to 100).
    p99: Duration,
    /// Median of the rebuild alone (validate, translate, snapshot).
    rebuild: Duration,
}

/// `edits` edit→ACK latencies with a real Envoy.
async fn edit_to_ack(
    n: usize,
    edits: usize,
    delta: bool,
    tls: Option<&Tls>,
) -> anyhow::Result<EditTimes> {
    let (routes, services) = manifests::objects(n, SERVICES.min(n.max(10)));
    let services_n = services.len();
    let mut shape = Shape::new(&routes, &services, tls);
    drop(routes);
    let registry = prometheus::Registry::new();
    let cache = Cache::new(&registry);
    let mut kept = Kept::default();
    let empty = Snapshot::new([]);
    cache.set_snapshot(kept.rebuild(&shape, &empty));
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
        shape.edit(manifests::route(i, services_n, e + 1));
        let started = Instant::now();
        let snap = kept.rebuild(&shape, &cache.snapshot());
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
    // The 99th percentile by nearest rank (the maximum below 100 samples).
    let p99 = samples[(samples.len() * 99).div_ceil(100).saturating_sub(1)];
    Ok(EditTimes {
        median: samples[samples.len() / 2],
        p99,
        rebuild: builds[builds.len() / 2],
    })
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

/// Serves a snapshot of `n` Routes (`copy`: each response copies its resources, the
/// baseline). Prints its address and the snapshot's encoded MiB; then answers each stdin
/// line "acked N" with "<nodes that ACKed all four types> <VmRSS MiB> <VmHWM MiB>" once N
/// nodes have, and exits when stdin closes.
fn child_server(n: usize, copy: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (routes, services) = manifests::objects(n, SERVICES);
        let cache = Cache::new(&prometheus::Registry::new());
        cache.set_copy_per_stream(copy);
        let snapshot = build(&routes, &services);
        let bytes: usize = snapshot
            .type_urls()
            .flat_map(|t| snapshot.resources(t))
            .map(|r| r.body.value.len())
            .sum();
        cache.set_snapshot(snapshot);
        // Bound as `portcullis serve` binds its xDS port (its listen backlog).
        let listener = portcullis_process::listen("127.0.0.1:0".parse()?)?;
        println!(
            "{} {:.2}",
            listener.local_addr()?,
            bytes as f64 / 1024.0 / 1024.0
        );
        std::io::stdout().flush()?;
        let server = tokio::spawn(portcullis_xds::serve(
            listener,
            cache.clone(),
            std::future::pending(),
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<usize>(1);
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                let want = line
                    .trim()
                    .strip_prefix("acked ")
                    .and_then(|n| n.parse().ok());
                if tx.blocking_send(want.unwrap_or(0)).is_err() {
                    break;
                }
            }
        });
        while let Some(want) = rx.recv().await {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut count = 0;
            while Instant::now() < deadline {
                count = cache
                    .nodes()
                    .iter()
                    .filter(|n| n.types.len() == 4 && n.types.values().all(|t| t.acked.is_some()))
                    .count();
                if count >= want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if count < want {
                // Which streams fell short, for whoever reads the failed run.
                for n in cache
                    .nodes()
                    .iter()
                    .filter(|n| n.types.len() != 4 || n.types.values().any(|t| t.acked.is_none()))
                {
                    eprintln!("not ACKed: {n:?}");
                }
            }
            println!("{count} {:.1} {:.1}", rss_mib(), peak_rss_mib());
            std::io::stdout().flush()?;
        }
        server.abort();
        Ok(())
    })
}

struct Memory {
    /// From the first connect to the server counting every client's ACKs.
    took: Duration,
    peak_mib: f64,
    snapshot_mib: f64,
    /// RSS with `clients`, then with `clients + more`, streams held open.
    rss_before: f64,
    rss_after: f64,
    /// CPU time over `took`: the benchmark's process (the clients), and the server's.
    clients_cpu: Duration,
    server_cpu: Duration,
}

/// What the clients of [`memory`] are, and how the server answers them.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// ADS clients; responses share the snapshot's encodings.
    Shared,
    /// As `Shared`, over incremental (Delta) xDS.
    Delta,
    /// ADS clients; each response copies its resources (the baseline).
    Copy,
    /// Connections that hold no stream: the transport's own cost.
    Idle,
}

/// The server [`memory`] measures, in its own process.
enum Server {
    /// `portcullis_xds::serve`, in a child of this benchmark.
    Ours,
    /// `go-ads` (grpc-go) at this path, answering with the responses in this directory
    /// ([`go_ads::write_responses`]).
    Go(PathBuf, PathBuf),
}

/// `clients` connect at once to a fresh server of `routes` Routes and hold their streams;
/// then `more` join.
fn memory(
    server: &Server,
    routes: usize,
    clients: usize,
    more: usize,
    mode: Mode,
    client: Client,
) -> anyhow::Result<Memory> {
    let mut command = match server {
        Server::Ours => {
            // A profiler to run the server under (e.g. a script calling heaptrack, whose
            // own lines must not reach stdout): what docs/benchmarks.md's per-client
            // breakdown was read with.
            let mut c = match std::env::var("BENCH_XDS_SERVER_WRAP") {
                Ok(w) => {
                    let mut c = Command::new(w);
                    c.arg(std::env::current_exe()?);
                    c
                }
                Err(_) => Command::new(std::env::current_exe()?),
            };
            c.args(["--child-server", &routes.to_string()]);
            if mode == Mode::Copy {
                c.arg("--copy");
            }
            c
        }
        Server::Go(bin, responses) => {
            anyhow::ensure!(mode != Mode::Copy, "go-ads has no copy-per-stream mode");
            let mut c = Command::new(bin);
            c.arg(responses);
            c
        }
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut first = String::new();
    out.read_line(&mut first)?;
    let mut words = first.split_whitespace();
    let addr = words.next().unwrap_or_default().to_owned();
    let snapshot_mib: f64 = words.next().unwrap_or("0").parse()?;
    let mut ask = |n: usize| -> anyhow::Result<(usize, f64, f64)> {
        writeln!(stdin, "acked {n}")?;
        let mut line = String::new();
        out.read_line(&mut line)?;
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        anyhow::ensure!(
            v.len() == 3 && v[0] as usize >= n,
            "server saw {line:?} of {n} ACKs"
        );
        Ok((v[0] as usize, v[1], v[2]))
    };
    let clusters: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        (0..SERVICES)
            .map(|i| format!("team-{}/svc-{i}", i % 20))
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut pool = Clients::new();
    let server_stat = format!("/proc/{}/stat", child.id());
    let cpu = || {
        let read = |p: &str| gateway::cpu_time(p).unwrap_or_default();
        (read("/proc/self/stat"), read(&server_stat))
    };
    let cpu_before = cpu();
    let started = Instant::now();
    // Idle connections ACK nothing: the server is asked for its RSS at once.
    let acks = |n: usize| if mode == Mode::Idle { 0 } else { n };
    let retried = rt.block_on(async {
        match mode {
            Mode::Idle => pool.start_idle(&addr, clients),
            _ => pool.start(
                &addr,
                0..clients,
                clusters.clone(),
                mode == Mode::Delta,
                client,
            )?,
        }
        pool.all_acked().await
    })?;
    let (_, rss_before, peak_mib) = ask(acks(clients))?;
    let took = started.elapsed();
    let cpu_after = cpu();
    if retried > 0 {
        println!("storm: {retried} reconnects (with backoff) among {clients} clients");
        print_reasons(&pool);
    }
    let mut rss_after = rss_before;
    if more > 0 {
        let retried = rt.block_on(async {
            match mode {
                Mode::Idle => pool.start_idle(&addr, more),
                _ => pool.start(
                    &addr,
                    clients..clients + more,
                    clusters,
                    mode == Mode::Delta,
                    client,
                )?,
            }
            pool.all_acked().await
        })?;
        if retried > 0 {
            println!(
                "storm: {retried} reconnects (with backoff) among the {more} clients after them"
            );
            print_reasons(&pool);
        }
        rss_after = ask(acks(clients + more))?.1;
    }
    rt.block_on(pool.stop());
    drop(stdin);
    child.wait()?;
    Ok(Memory {
        took,
        clients_cpu: cpu_after.0.saturating_sub(cpu_before.0),
        server_cpu: cpu_after.1.saturating_sub(cpu_before.1),
        peak_mib,
        snapshot_mib,
        rss_before,
        rss_after,
    })
}

/// What made the clients reconnect, so a storm's retries are explained, not only counted.
fn print_reasons(pool: &Clients) {
    for (why, n) in pool.take_reasons() {
        println!("  {n} × {why}");
    }
}
