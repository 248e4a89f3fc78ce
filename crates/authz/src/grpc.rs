//! The gRPC face: `envoy.service.auth.v3.Authorization/Check` and `grpc.health.v1`.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::SERVICE_NAME;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use portcullis_process::unary::{UnaryMethod, UnaryServer};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::answer::Answer;
use crate::check::{Authorizer, Decision};
use crate::policies::Policies;
use crate::policy::RoutePolicy;
use crate::request::{CheckCall, Pairs};
use crate::response::{self, IdentityHeaders};

/// Cloned twice per call by the server: one reference count.
#[derive(Clone)]
pub struct AuthzGrpc(Arc<Inner>);

struct Inner {
    authorizer: Arc<Authorizer>,
    names: IdentityHeaders,
    policies: Policies,
}

impl AuthzGrpc {
    pub fn new(authorizer: Arc<Authorizer>, names: IdentityHeaders) -> AuthzGrpc {
        AuthzGrpc(Arc::new(Inner {
            authorizer,
            names,
            policies: Policies::default(),
        }))
    }

    /// The whole Check, without the transport (benchmarks and tests call it directly).
    pub async fn check(&self, req: &CheckRequest) -> CheckResponse {
        let attrs = req.attributes.as_ref();
        let empty = HashMap::new();
        let headers = attrs
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map_or(&empty, |h| &h.headers);
        let context = attrs.map_or(&empty, |a| &a.context_extensions);
        let policy = Arc::new(RoutePolicy::from_context(context));
        let decided = self.decide(headers, policy).await;
        self.build(&decided)
    }

    /// [`AuthzGrpc::check`] as the gRPC server answers it: an allowed identity's
    /// answer is encoded once and shared by the Checks whose Routes resolve to the same
    /// header names and credential headers ([`crate::answer::AnswerMemo`]); anything
    /// else is built for the call. The Route's policy is read once per distinct
    /// context ([`Policies`]).
    pub async fn answer(&self, req: &CheckCall) -> Answer {
        let headers = req.headers();
        let policy = self.0.policies.get(req.context());
        let decided = self.decide(&headers, policy).await;
        let (names, strip) = self.settings(&decided);
        let strip = listed(&strip);
        if let Decision::Allowed(identity) = &decided.decision {
            // An allowed answer depends on the identity, `names` and `strip` alone
            // (not on the route, the request id or the scopes asked for).
            let make = || respond(&decided, names, strip);
            if let Some(bytes) = identity.answer.get(names, strip, make) {
                return Answer::Encoded(bytes);
            }
        }
        Answer::Built(Box::new(respond(&decided, names, strip)))
    }

    /// The decision on a request's headers under its Route's policy, logged and
    /// counted.
    async fn decide<'r>(
        &self,
        headers: &'r (impl Pairs + Sync + ?Sized),
        policy: Arc<RoutePolicy>,
    ) -> Decided<'r> {
        let started = tokio::time::Instant::now();
        let request_id = headers.value("x-request-id").unwrap_or("-");
        let decision = self.0.authorizer.decide(headers, &policy).await;
        let admit = decision.admits() || policy.shadow;
        log(&decision, &policy, admit, request_id);
        self.0
            .authorizer
            .metrics
            .decision(decision.label(), policy.shadow, started.elapsed());
        Decided {
            decision,
            policy,
            admit,
            request_id,
        }
    }

    /// The identity header names this Check writes and the credential headers it
    /// removes: the Route's, else this service's own.
    fn settings<'a>(&'a self, d: &'a Decided<'_>) -> (&'a IdentityHeaders, Option<[&'a str; 2]>) {
        let names = d.policy.identity_headers.as_ref().unwrap_or(&self.0.names);
        let key_header = self.0.authorizer.key_header(&d.policy);
        (
            names,
            credential_headers(&d.decision, &d.policy, key_header),
        )
    }

    fn build(&self, d: &Decided<'_>) -> CheckResponse {
        let (names, strip) = self.settings(d);
        respond(d, names, listed(&strip))
    }
}

/// The answer to a decided Check under its [`AuthzGrpc::settings`].
fn respond(d: &Decided<'_>, names: &IdentityHeaders, strip: &[&str]) -> CheckResponse {
    response::build(
        &d.decision,
        d.admit,
        names,
        strip,
        &d.policy.route,
        d.request_id,
    )
}

/// [`credential_headers`] as a list (kept in an array: no allocation per call).
fn listed<'a>(strip: &'a Option<[&'a str; 2]>) -> &'a [&'a str] {
    strip.as_ref().map_or(&[], |s| s)
}

struct Decided<'r> {
    decision: Decision,
    policy: Arc<RoutePolicy>,
    /// False only for an enforced (non-shadow) denial.
    admit: bool,
    request_id: &'r str,
}

/// The credential headers removed before the request goes upstream: both headers this
/// service reads credentials from, once it has admitted the request on one of them.
/// Both, because when an API key is present the Authorization header was never looked
/// at, and an unchecked token must not reach a backend that might trust it. Nothing
/// when the Route forwards credentials (`auth.forwardCredential`), and nothing in
/// shadow mode: shadow only adds (identity headers), so a backend that still checks
/// credentials itself keeps working while the Route's auth is rolled out. Anonymous
/// requests carry neither header.
fn credential_headers<'a>(
    d: &Decision,
    policy: &RoutePolicy,
    key_header: &'a str,
) -> Option<[&'a str; 2]> {
    match d {
        Decision::Allowed(_) if !policy.forward_credential && !policy.shadow => {
            Some([key_header, "authorization"])
        }
        _ => None,
    }
}

fn log(d: &Decision, policy: &RoutePolicy, admit: bool, request_id: &str) {
    let user = d.identity().map_or("-", |i| i.user.as_str());
    let key = d.identity().map_or("-", |i| i.key_id.as_str());
    let why = match d {
        Decision::Unauthenticated { reason, .. } | Decision::Unavailable { reason } => {
            reason.clone()
        }
        Decision::Forbidden { missing, .. } => format!("missing scopes {}", missing.join(" ")),
        _ => String::new(),
    };
    if d.admits() {
        tracing::debug!(request_id, route = %policy.route, user, key, decision = d.label(), "authz");
    } else if admit {
        tracing::info!(request_id, route = %policy.route, user, key, decision = d.label(), why, "authz shadow: would deny, allowed");
    } else {
        tracing::info!(request_id, route = %policy.route, user, key, decision = d.label(), why, "authz denied");
    }
}

/// Served with small per-call buffers ([`portcullis_process::unary`]) and boxed once,
/// where the generated `AuthorizationServer` starts each call with 8 KiB buffers and
/// boxes the handler again through `async_trait`.
impl UnaryMethod for AuthzGrpc {
    const SERVICE: &'static str = SERVICE_NAME;
    const METHOD: &'static str = "Check";
    type Request = CheckCall;
    type Response = Answer;

    async fn call(&self, request: Request<CheckCall>) -> Result<Response<Answer>, Status> {
        // A child of Envoy's ext_authz span: Envoy sends `traceparent` with the call.
        let md = request.metadata();
        let span = portcullis_process::call_span(
            || tracing::info_span!("authz.check", otel.kind = "server"),
            |k| md.get(k).and_then(|v| v.to_str().ok()),
        );
        // Never a gRPC error: every failure is a decision with its own HTTP status, so
        // Envoy's `status_on_error` only covers this service being unreachable.
        let response = self.answer(request.get_ref()).instrument(span).await;
        Ok(Response::new(response))
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    transport: &portcullis_tls::mtls::Transport,
    service: AuthzGrpc,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<UnaryServer<AuthzGrpc>>().await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(UnaryServer(service))
        .serve_with_incoming_shutdown(
            portcullis_tls::mtls::incoming(listener, transport),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, IdentityCache};
    use crate::identity::{Digest, Identity};
    use crate::metrics::Metrics;
    use crate::store::{KeyStore, Lookup};
    use envoy_types::pb::envoy::service::auth::v3::{
        AttributeContext, attribute_context, check_response::HttpResponse,
    };
    use portcullis_contract::authz as c;

    /// One key, `k1`, for alice.
    struct OneKey;

    impl KeyStore for OneKey {
        fn lookup<'a>(&'a self, secret: &'a str, _: Digest) -> Lookup<'a> {
            let found = (secret == "k1").then(|| Identity {
                user: "alice".into(),
                key_id: "k1-id".into(),
                ..Default::default()
            });
            Box::pin(std::future::ready(Ok(found)))
        }
        fn kind(&self) -> &'static str {
            "test"
        }
    }

    fn service() -> AuthzGrpc {
        AuthzGrpc::new(
            authorizer(&prometheus::Registry::new()),
            IdentityHeaders::default(),
        )
    }

    fn authorizer(registry: &prometheus::Registry) -> Arc<Authorizer> {
        let metrics = Metrics::new(registry).unwrap();
        let cache = IdentityCache::new(CacheConfig::default());
        let store: Arc<dyn KeyStore> = Arc::new(OneKey);
        Arc::new(Authorizer::new(
            "x-api-key",
            cache,
            Some(store),
            None,
            metrics,
        ))
    }

    /// The request as the gRPC server decodes it.
    fn lean(r: &CheckRequest) -> CheckCall {
        prost::Message::decode(prost::Message::encode_to_vec(r).as_slice()).unwrap()
    }

    /// What the gRPC server sends, decoded as Envoy would.
    fn sent(a: &Answer) -> CheckResponse {
        prost::Message::decode(prost::Message::encode_to_vec(a).as_slice()).unwrap()
    }

    #[tokio::test]
    async fn the_shared_allowed_answer_is_the_built_one_and_only_for_the_same_settings() {
        let registry = prometheus::Registry::new();
        let authorizer = authorizer(&registry);
        let svc = AuthzGrpc::new(authorizer.clone(), IdentityHeaders::default());
        let key = [("x-api-key", "k1")];
        // The service's own settings, whether the context leaves them out or names
        // them as the control plane does on every Route (other route, other scopes,
        // other request id): encoded on the first allowed Check, then shared, each
        // time the same answer as the one built for the call.
        let names = IdentityHeaders::default().to_string();
        let explicit = [
            (c::API_KEY_HEADER, "x-api-key"),
            (c::IDENTITY_HEADER_NAMES, names.as_str()),
            (c::ROUTE, "ns/other"),
            (c::SCOPES, ""),
            (c::REQUIRED, "true"),
        ];
        let with_id = [("x-api-key", "k1"), ("x-request-id", "r-2")];
        for (headers, ext) in [(&key[..], &[][..]), (&with_id[..], &explicit[..])] {
            for _ in 0..2 {
                let a = svc.answer(&lean(&request(headers, ext))).await;
                assert!(matches!(a, Answer::Encoded(_)), "{ext:?}: {a:?}");
                assert_eq!(sent(&a), svc.check(&request(headers, ext)).await);
            }
        }
        // Every per-Route setting that changes the answer gets its own, built.
        let tenant = [("x-tenant-key", "k1")];
        let cases = [
            (&key[..], (c::FORWARD_CREDENTIAL, "true")),
            (&key[..], (c::SHADOW, "true")),
            (&tenant[..], (c::API_KEY_HEADER, "x-tenant-key")),
            (&key[..], (c::IDENTITY_HEADER_NAMES, "user=x-id-user")),
        ];
        for (headers, ext) in cases {
            let a = svc.answer(&lean(&request(headers, &[ext]))).await;
            assert!(matches!(a, Answer::Built(_)), "{ext:?}: {a:?}");
            let built = svc.check(&request(headers, &[ext])).await;
            assert_eq!(sent(&a), built, "{ext:?}");
            assert_eq!(answer(&built).0, 200, "{ext:?}");
        }
        // Denials are never shared.
        let denied = svc
            .answer(&lean(&request(&[("x-api-key", "nope")], &[])))
            .await;
        assert!(matches!(denied, Answer::Built(_)));
        assert_eq!(answer(&sent(&denied)).0, 401);
        // Another service over the same identities (same cache) with other header
        // names does not get the answer made with the first one's.
        let names = IdentityHeaders::parse("user=x-other-user").unwrap();
        let other = AuthzGrpc::new(authorizer, names);
        let a = other.answer(&lean(&request(&key, &[]))).await;
        assert!(matches!(a, Answer::Built(_)), "{a:?}");
        assert_eq!(answer(&sent(&a)).1, vec!["x-other-user"]);
        // Shared answers are still decisions: counted (and logged) like built ones.
        let text = portcullis_process::render_metrics(&registry);
        let allowed: f64 = text
            .lines()
            .find(|l| {
                l.starts_with(
                    r#"portcullis_authz_decisions_total{result="allowed",shadow="false"}"#,
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap();
        // 8 from the first loop, 2 for each non-shadow case, 1 from the other service.
        assert_eq!(allowed, 15.0, "{text}");
    }

    fn request(headers: &[(&str, &str)], ext: &[(&str, &str)]) -> CheckRequest {
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        headers: map(headers),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: map(ext),
                ..Default::default()
            }),
        }
    }

    /// (status, headers set, headers removed)
    fn answer(r: &CheckResponse) -> (u32, Vec<String>, Vec<String>) {
        match &r.http_response {
            Some(HttpResponse::OkResponse(ok)) => (
                200,
                ok.headers
                    .iter()
                    .map(|h| h.header.as_ref().unwrap().key.clone())
                    .collect(),
                ok.headers_to_remove.clone(),
            ),
            Some(HttpResponse::DeniedResponse(d)) => {
                (d.status.as_ref().unwrap().code as u32, vec![], vec![])
            }
            _ => (0, vec![], vec![]),
        }
    }

    #[tokio::test]
    async fn the_consumed_credential_is_removed_unless_forwarded_or_shadowed() {
        let svc = service();
        let key = [("x-api-key", "k1"), ("authorization", "Bearer unchecked")];
        let (status, _, removed) = answer(&svc.check(&request(&key, &[])).await);
        assert_eq!(status, 200);
        assert!(
            removed.contains(&"x-api-key".into()) && removed.contains(&"authorization".into()),
            "{removed:?}"
        );
        let bearer = [("authorization", "Bearer k1")];
        let (_, _, removed) = answer(&svc.check(&request(&bearer, &[])).await);
        assert!(removed.contains(&"authorization".into()), "{removed:?}");

        for ext in [(c::FORWARD_CREDENTIAL, "true"), (c::SHADOW, "true")] {
            let (status, set, removed) = answer(&svc.check(&request(&key, &[ext])).await);
            assert_eq!(status, 200);
            assert_eq!(
                set,
                vec!["x-portcullis-user"],
                "{ext:?}: identity still set"
            );
            assert!(
                !removed
                    .iter()
                    .any(|h| h == "x-api-key" || h == "authorization"),
                "{ext:?}: {removed:?}"
            );
        }
        // Anonymous on an optional route: nothing to remove but the identity headers.
        let (status, _, removed) =
            answer(&svc.check(&request(&[], &[(c::REQUIRED, "false")])).await);
        assert_eq!(status, 200);
        assert_eq!(removed, c::IDENTITY_HEADERS);
        // A shadow denial admits with the credential untouched and no identity.
        let (status, set, removed) = answer(
            &svc.check(&request(&[("x-api-key", "wrong")], &[(c::SHADOW, "true")]))
                .await,
        );
        assert_eq!((status, set.len()), (200, 0));
        assert_eq!(removed, c::IDENTITY_HEADERS);
    }

    #[tokio::test]
    async fn header_names_in_the_context_win_over_the_service_setting() {
        let svc = service();
        let ext = [
            (c::API_KEY_HEADER, "x-tenant-key"),
            (
                c::IDENTITY_HEADER_NAMES,
                "user=x-id-user,account=x-id-account,scopes=x-id-scopes",
            ),
        ];
        let (status, set, removed) =
            answer(&svc.check(&request(&[("x-tenant-key", "k1")], &ext)).await);
        assert_eq!(status, 200);
        assert_eq!(set, vec!["x-id-user"]);
        assert_eq!(
            removed,
            vec![
                "x-tenant-key",
                "authorization",
                "x-id-account",
                "x-id-scopes"
            ]
        );
        // The service's own header is not a credential on this route.
        let (status, ..) = answer(&svc.check(&request(&[("x-api-key", "k1")], &ext)).await);
        assert_eq!(status, 401);
    }
}
