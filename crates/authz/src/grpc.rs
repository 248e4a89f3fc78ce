//! The gRPC face: `envoy.service.auth.v3.Authorization/Check` and `grpc.health.v1`.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::check::{Authorizer, Decision};
use crate::policy::RoutePolicy;
use crate::response::{self, IdentityHeaders};

#[derive(Clone)]
pub struct AuthzGrpc {
    authorizer: Arc<Authorizer>,
    names: Arc<IdentityHeaders>,
}

impl AuthzGrpc {
    pub fn new(authorizer: Arc<Authorizer>, names: IdentityHeaders) -> AuthzGrpc {
        AuthzGrpc {
            authorizer,
            names: Arc::new(names),
        }
    }

    /// The whole Check, without the transport (benchmarks and tests call it directly).
    pub async fn check(&self, req: &CheckRequest) -> CheckResponse {
        let started = tokio::time::Instant::now();
        let attrs = req.attributes.as_ref();
        let empty = HashMap::new();
        let headers = attrs
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map_or(&empty, |h| &h.headers);
        let policy = RoutePolicy::from_context(attrs.map_or(&empty, |a| &a.context_extensions));
        let request_id = headers.get("x-request-id").map_or("-", String::as_str);
        let decision = self.authorizer.decide(headers, &policy).await;
        let admit = decision.admits() || policy.shadow;
        log(&decision, &policy, admit, request_id);
        self.authorizer
            .metrics
            .decision(decision.label(), policy.shadow, started.elapsed());
        let names = policy.identity_headers.as_ref().unwrap_or(&self.names);
        let key_header = self.authorizer.key_header(&policy);
        let strip = credential_headers(&decision, &policy, key_header);
        response::build(&decision, admit, names, &strip, &policy.route, request_id)
    }
}

/// The credential headers removed before the request goes upstream: both headers this
/// service reads credentials from, once it has admitted the request on one of them.
/// Both, because when an API key is present the Authorization header was never looked
/// at, and an unchecked token must not reach a backend that might trust it. Nothing
/// when the Route forwards credentials (`auth.forwardCredential`), and nothing in
/// shadow mode: shadow only adds (identity headers), so a backend that still checks
/// credentials itself keeps working while the Route's auth is rolled out. Anonymous
/// requests carry neither header.
fn credential_headers<'a>(d: &Decision, policy: &RoutePolicy, key_header: &'a str) -> Vec<&'a str> {
    match d {
        Decision::Allowed(_) if !policy.forward_credential && !policy.shadow => {
            vec![key_header, "authorization"]
        }
        _ => Vec::new(),
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

#[tonic::async_trait]
impl Authorization for AuthzGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // A child of Envoy's ext_authz span: Envoy sends `traceparent` with the call.
        let md = request.metadata();
        let span = portcullis_process::call_span(
            || tracing::info_span!("authz.check", otel.kind = "server"),
            |k| md.get(k).and_then(|v| v.to_str().ok()),
        );
        // Never a gRPC error: every failure is a decision with its own HTTP status, so
        // Envoy's `status_on_error` only covers this service being unreachable.
        let response = AuthzGrpc::check(self, request.get_ref())
            .instrument(span)
            .await;
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
    health.set_serving::<AuthorizationServer<AuthzGrpc>>().await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(service))
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
        let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
        let cache = IdentityCache::new(CacheConfig::default());
        let store: Arc<dyn KeyStore> = Arc::new(OneKey);
        let a = Authorizer::new("x-api-key", cache, Some(store), None, metrics);
        AuthzGrpc::new(Arc::new(a), IdentityHeaders::default())
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
