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
        response::build(&decision, admit, &self.names, &policy.route, request_id)
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
        let span = tracing::info_span!("authz.check", otel.kind = "server");
        let md = request.metadata();
        portcullis_telemetry::continue_trace(&span, |k| md.get(k).and_then(|v| v.to_str().ok()));
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
    service: AuthzGrpc,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuthorizationServer<AuthzGrpc>>().await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(service))
        .serve_with_incoming_shutdown(portcullis_telemetry::incoming_nodelay(listener), shutdown)
        .await
}
