//! The old names still configure the same settings, the new ones win, and every use
//! of an old name is reported.
use std::{collections::HashMap, ffi::OsString};

use clap::Parser;

use super::{Cli, Command};
use crate::renamed::rewrite;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Cli, Vec<String>) {
    let env: HashMap<String, OsString> = env
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    let args = args.iter().map(OsString::from).collect();
    let (args, warnings) = rewrite(args, |k| env.get(k).cloned());
    // clap reads the real environment too: these tests set none of the names.
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
    (cli, warnings)
}

fn gateway(cli: Cli) -> portcullis_plane::args::GatewayArgs {
    match cli.command {
        Command::Serve(s) => s.gateway,
        Command::Controller(c) => c.gateway,
        _ => panic!("not a control-plane command"),
    }
}

#[test]
fn old_environment_names_still_reach_the_control_plane_with_a_warning() {
    let (cli, warnings) = run(
        &["portcullis", "--log", "debug", "controller"],
        &[
            ("PORTCULLIS_ACCESS_LOG_SERVICE", "als.gw.svc:18090"),
            ("PORTCULLIS_ACCESS_LOG_HEADERS", "X-Team,x-trace"),
            ("PORTCULLIS_ACCESS_LOG", "/dev/stdout"),
        ],
    );
    let o = gateway(cli);
    assert_eq!(o.access_log_service.as_deref(), Some("als.gw.svc:18090"));
    assert_eq!(o.access_log_headers, ["X-Team", "x-trace"]);
    assert_eq!(o.access_log.as_deref(), Some("/dev/stdout"));
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w
            == "PORTCULLIS_ACCESS_LOG_SERVICE is deprecated and will be removed; rename it PORTCULLIS_ACCESSLOG_ADDR"),
        "{warnings:?}"
    );
}

#[test]
fn old_flags_are_rewritten_in_both_spellings() {
    let (cli, warnings) = run(
        &[
            "portcullis",
            "serve",
            "--config",
            "/etc/portcullis",
            "--access-log-service",
            "als:1",
            "--access-log-headers=x-a",
            "--access-log=/tmp/access.log",
        ],
        &[],
    );
    let o = gateway(cli);
    assert_eq!(o.access_log_service.as_deref(), Some("als:1"));
    assert_eq!(o.access_log_headers, ["x-a"]);
    assert_eq!(o.access_log.as_deref(), Some("/tmp/access.log"));
    assert_eq!(
        warnings,
        [
            "--access-log is deprecated and will be removed; use --accesslog-file",
            "--access-log-service is deprecated and will be removed; use --accesslog-addr",
            "--access-log-headers is deprecated and will be removed; use --accesslog-headers",
        ]
    );
}

#[test]
fn the_new_name_wins_over_the_old_one() {
    let (cli, warnings) = run(
        &[
            "portcullis",
            "serve",
            "--config",
            "c",
            "--accesslog-addr",
            "new:1",
        ],
        &[("PORTCULLIS_ACCESS_LOG_SERVICE", "old:1")],
    );
    assert_eq!(gateway(cli).access_log_service.as_deref(), Some("new:1"));
    assert_eq!(
        warnings,
        [
            "PORTCULLIS_ACCESS_LOG_SERVICE is deprecated and ignored because --accesslog-addr is given; remove it"
        ]
    );
    let (_, warnings) = rewrite(vec!["portcullis".into(), "serve".into()], |k| match k {
        "PORTCULLIS_ACCESS_LOG_SERVICE" => Some("old:1".into()),
        "PORTCULLIS_ACCESSLOG_ADDR" => Some("new:1".into()),
        _ => None,
    });
    assert_eq!(
        warnings,
        [
            "PORTCULLIS_ACCESS_LOG_SERVICE is deprecated and ignored because PORTCULLIS_ACCESSLOG_ADDR is set; remove it"
        ]
    );
}

#[test]
fn the_access_log_service_reads_its_old_listen_address_name() {
    let (cli, warnings) = run(
        &["portcullis", "accesslog"],
        &[("PORTCULLIS_ACCESSLOG_ADDR", "127.0.0.1:4444")],
    );
    let Command::Accesslog(a) = cli.command else {
        panic!("not accesslog")
    };
    assert_eq!(a.grpc_addr, "127.0.0.1:4444".parse().unwrap());
    assert_eq!(warnings.len(), 1);
}

#[test]
fn names_that_mean_something_else_elsewhere_are_left_alone() {
    // On the control plane PORTCULLIS_ACCESSLOG_ADDR is the new pointer to the
    // service, not the service's old listen address.
    let env = |k: &str| (k == "PORTCULLIS_ACCESSLOG_ADDR").then(|| OsString::from("als:1"));
    let args: Vec<OsString> = ["portcullis", "controller"]
        .iter()
        .map(OsString::from)
        .collect();
    assert_eq!(rewrite(args.clone(), env), (args, vec![]));
    // Other commands, odd arguments and no subcommand at all pass through untouched.
    for args in [
        vec!["portcullis", "validate", "--access-log-service", "x"],
        vec!["portcullis", "--log"],
        vec!["portcullis"],
        vec!["portcullis", "--access-log-servicex", "serve"],
    ] {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let (out, warnings) = rewrite(args.clone(), |_| None);
        assert_eq!(out, args);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
