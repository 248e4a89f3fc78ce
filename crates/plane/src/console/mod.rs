//! The read-only web console on the admin address: Problems (the landing page), the
//! Routing table, the Fleet, per-Service Signals and an Explain form.
//!
//! Pages are rendered on the server from what the admin API already holds (the board
//! of object conditions, the model last published, the xDS cache); the small CSS and
//! script are compiled into the binary, so it works offline and needs no build step.
//! Everything a tenant wrote is escaped ([`html`]), a Content-Security-Policy allows no
//! inline script, and only `localhost`, IP addresses and `--console-host` names are
//! answered, so a web page cannot read the console through DNS rebinding.
pub mod explain;
pub mod fleet;
pub mod html;
pub mod problems;
pub mod routes;
pub mod signals;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{FromRef, Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::admin_state::AdminState;

/// Console flags, shared by `serve`, `up` and `controller`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConsoleArgs {
    /// Prometheus that scrapes the Envoys (http://host:port): the console's Signals are
    /// range queries to it.
    #[arg(long, env = "PORTCULLIS_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Envoy admin address (host:port) the control plane samples for the console's
    /// Signals when there is no --prometheus-url. Repeatable or comma-separated.
    #[arg(
        long = "envoy-admin",
        env = "PORTCULLIS_ENVOY_ADMIN",
        value_delimiter = ','
    )]
    pub envoy_admin: Vec<String>,
    /// How often those Envoys are sampled, in milliseconds.
    #[arg(
        long,
        env = "PORTCULLIS_ENVOY_ADMIN_INTERVAL_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(200..=600_000)
    )]
    pub envoy_admin_interval_ms: u64,
    /// Host names the console answers to besides localhost and IP addresses (e.g. an
    /// ingress name). Repeatable or comma-separated.
    #[arg(
        long = "console-host",
        env = "PORTCULLIS_CONSOLE_HOSTS",
        value_delimiter = ','
    )]
    pub console_hosts: Vec<String>,
}

/// The console's own state: where signals come from and which hosts it answers.
#[derive(Clone, Default)]
pub struct Console {
    pub signals: signals::Source,
    hosts: Arc<Vec<String>>,
}

impl Console {
    pub fn new(args: &ConsoleArgs) -> anyhow::Result<Self> {
        let admins: Vec<String> = args
            .envoy_admin
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        let signals = match (&args.prometheus_url, admins.is_empty()) {
            (Some(url), _) => {
                if !admins.is_empty() {
                    tracing::info!("--prometheus-url given: --envoy-admin is not sampled");
                }
                signals::Source::Prometheus(Arc::new(signals::prometheus::Prometheus::new(url)?))
            }
            (None, false) => signals::Source::Envoy(Arc::new(signals::sampler::Sampler::new(
                &admins,
                Duration::from_millis(args.envoy_admin_interval_ms),
            )?)),
            (None, true) => signals::Source::None,
        };
        Ok(Self {
            signals,
            hosts: Arc::new(
                args.console_hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
        })
    }

    /// Runs the Envoy sampler, if any, until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        if let signals::Source::Envoy(s) = &self.signals {
            s.run(shutdown).await;
        }
    }

    /// `localhost`, `*.localhost`, IP literals and the configured names.
    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = match host.strip_prefix('[') {
            Some(v6) => {
                return v6
                    .split(']')
                    .next()
                    .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
            }
            None => host
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
                .map_or(host.as_str(), |(h, _)| h),
        };
        name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<std::net::Ipv4Addr>().is_ok()
            || self.hosts.iter().any(|h| h == name)
    }
}

pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// Whole seconds, as Kubernetes writes times.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The console router's state: what the admin endpoint serves, and the console's own.
#[derive(Clone)]
struct Pages {
    admin: AdminState,
    console: Console,
}

impl FromRef<Pages> for AdminState {
    fn from_ref(p: &Pages) -> Self {
        p.admin.clone()
    }
}

impl FromRef<Pages> for Console {
    fn from_ref(p: &Pages) -> Self {
        p.console.clone()
    }
}

/// The console's pages and assets, behind the host check and security headers.
pub fn router<S>(admin: AdminState, console: Console) -> Router<S> {
    let state = Pages { admin, console };
    Router::new()
        .route("/", get(problems_page))
        .route("/problems", get(problems_page))
        .route("/routes", get(routes_page))
        .route("/fleet", get(fleet_page))
        .route("/signals", get(signals_page))
        .route("/explain", get(explain_page))
        .route("/console/token", get(token))
        .route(
            "/console/console.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("assets/console.css"),
                )
            }),
        )
        .route(
            "/console/console.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("assets/console.js"),
                )
            }),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn guard(State(c): State<Console>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string();
    if !c.allows_host(&host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "the console answers only for localhost, IP addresses and --console-host names \
             (a page on another site must not read it through DNS rebinding); \
             add --console-host NAME to reach it by that name\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The problems right now, and the version served.
fn current_problems(s: &AdminState) -> (Vec<problems::Problem>, String) {
    let board = s.board.read();
    let nodes = s.cache.nodes();
    let list = problems::collect(&board, &nodes, &s.cache.snapshot(), jiff::Timestamp::now());
    (list, board.version.clone())
}

async fn problems_page(State(s): State<AdminState>) -> Response {
    let (list, version) = current_problems(&s);
    html(StatusCode::OK, problems::render(&list, &version))
}

async fn routes_page(
    State(s): State<AdminState>,
    Query(filter): Query<routes::Filter>,
) -> Response {
    let (list, _) = current_problems(&s);
    let model = s.model.read().clone();
    let board = s.board.read();
    let token = routes_token(&board.version, &list);
    html(
        StatusCode::OK,
        routes::render(&model, &board, &filter, list.len(), &token),
    )
}

fn routes_token(version: &str, list: &[problems::Problem]) -> String {
    format!(
        "{}-{}",
        html::short_version(version),
        problems::token(list, version)
    )
}

async fn fleet_page(State(s): State<AdminState>, State(c): State<Console>) -> Response {
    let (list, version) = current_problems(&s);
    let body = fleet::render(
        &s.cache.snapshot(),
        &s.cache.nodes(),
        s.cache.nacks_total(),
        &c.signals.status(),
        list.len(),
        &version,
    );
    html(StatusCode::OK, body)
}

async fn signals_page(
    State(s): State<AdminState>,
    State(c): State<Console>,
    Query(filter): Query<signals::Filter>,
) -> Response {
    let readout = c.signals.read().await;
    let (list, version) = current_problems(&s);
    let model = s.model.read().clone();
    let token = c.signals.token();
    html(
        StatusCode::OK,
        signals::render(&readout, &model, &filter, list.len(), &version, &token),
    )
}

async fn explain_page(State(s): State<AdminState>, Query(form): Query<explain::Form>) -> Response {
    let (list, version) = current_problems(&s);
    let model = s.model.read().clone();
    let (ok, body) = explain::render(&model, &form, list.len(), &version);
    html(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        },
        body,
    )
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    page: String,
}

/// What the script polls: a short fingerprint of what `page` shows, and the problem
/// count for the navigation bar.
async fn token(
    State(s): State<AdminState>,
    State(c): State<Console>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let (list, version) = current_problems(&s);
    let token = match q.page.as_str() {
        "problems" => problems::token(&list, &version),
        "routes" => routes_token(&version, &list),
        "fleet" => fleet::token(&s.cache.snapshot(), &s.cache.nodes()),
        "signals" => c.signals.token(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "page: problems, routes, fleet or signals",
            )
                .into_response();
        }
    };
    axum::Json(serde_json::json!({"token": token, "problems": list.len()})).into_response()
}

#[cfg(test)]
mod tests;
