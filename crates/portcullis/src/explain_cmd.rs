//! `portcullis explain METHOD URL`: which Route serves a request and why, from a
//! directory of manifests (offline) or a running control plane (`--admin-addr`).
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use portcullis_api::{
    explain::{self, Explanation},
    validate::{Rules, validate_objects},
};

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// HTTP method, e.g. GET.
    pub method: String,
    /// `http://host/path?query`, or `/path` with `-H 'host: …'`.
    pub url: String,
    /// Request headers, `name: value`; repeat for more.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Explain against these manifests (files or directories) instead of a running
    /// control plane.
    #[arg(long)]
    pub config: Vec<PathBuf>,
    /// The control plane's admin address (used when --config is not given).
    #[arg(long, env = "PORTCULLIS_ADMIN_ADDR", default_value = "127.0.0.1:18001")]
    pub admin_addr: SocketAddr,
    /// `text` or `json`.
    #[arg(long, short, default_value = "text")]
    pub output: String,
}

pub async fn run(args: ExplainArgs) -> ExitCode {
    let ExplainArgs {
        method,
        url,
        headers,
        config,
        admin_addr,
        output,
    } = args;
    let mut pairs = Vec::new();
    for h in &headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("error: header {h:?} is not `name: value`");
            return ExitCode::from(2);
        };
        pairs.push((name.trim().to_string(), value.trim().to_string()));
    }
    let answer = if config.is_empty() {
        remote(admin_addr, &method, &url, &pairs).await
    } else {
        local(&config, &method, &url, pairs)
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match output.as_str() {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        ),
        "text" => print!("{answer}"),
        other => {
            eprintln!("error: --output {other:?}: use text or json");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Offline: the manifests as file mode would serve them.
fn local(
    paths: &[PathBuf],
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
) -> anyhow::Result<Explanation> {
    let (objects, errors) = crate::validate_cmd::load(paths);
    for e in &errors {
        eprintln!("warning: {e}");
    }
    let certificates = crate::certs::load_for(&objects, paths);
    let outcome = validate_objects(&objects, &certificates, &Rules::file_mode());
    for p in outcome.problems() {
        eprintln!("warning: not served: {p}");
    }
    let request = explain::Request {
        method: method.to_string(),
        target: url.to_string(),
        headers,
    };
    Ok(explain::explain(&outcome.model, &request))
}

/// Online: the control plane's `/debug/explain`, which answers from what it serves.
async fn remote(
    admin: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(String, String)],
) -> anyhow::Result<Explanation> {
    let mut query = vec![("method", method.to_string()), ("url", url.to_string())];
    query.extend(headers.iter().map(|(k, v)| ("header", format!("{k}: {v}"))));
    let response = reqwest::Client::new()
        .get(format!("http://{admin}/debug/explain"))
        .query(&query)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "no control plane at {admin} ({e}); start one (make run) or pass --config DIR"
            )
        })?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("{admin} answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}
