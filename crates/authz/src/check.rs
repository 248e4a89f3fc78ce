//! The decision: who is calling and may they use this route.
use std::sync::Arc;

use crate::cache::{IdentityCache, Outcome};
use crate::credential::{self, Credential, Missing};
use crate::identity::{Digest, Identity};
use crate::metrics::Metrics;
use crate::policy::RoutePolicy;
use crate::request::Pairs;
use crate::store::KeyStore;

/// What a Check concludes, before shadow mode is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allowed(Arc<Identity>),
    /// No credentials on a route where they are optional.
    Anonymous,
    /// 401: no credentials where required, or credentials that are not valid.
    Unauthenticated {
        code: &'static str,
        reason: String,
    },
    /// 403: a valid identity without the route's scopes.
    Forbidden {
        identity: Arc<Identity>,
        missing: Vec<String>,
    },
    /// 503: the identity backend could not answer (fail closed).
    Unavailable {
        reason: String,
    },
}

impl Decision {
    /// The `portcullis_authz_decisions_total` label.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allowed(_) => "allowed",
            Decision::Anonymous => "anonymous",
            Decision::Unauthenticated { .. } => "unauthenticated",
            Decision::Forbidden { .. } => "forbidden",
            Decision::Unavailable { .. } => "unavailable",
        }
    }

    pub fn admits(&self) -> bool {
        matches!(self, Decision::Allowed(_) | Decision::Anonymous)
    }

    pub fn identity(&self) -> Option<&Arc<Identity>> {
        match self {
            Decision::Allowed(id) | Decision::Forbidden { identity: id, .. } => Some(id),
            _ => None,
        }
    }
}

pub struct Authorizer {
    /// The header API keys are read from when the route's context does not name one.
    pub(crate) api_key_header: String,
    cache: IdentityCache,
    keys: Option<Arc<dyn KeyStore>>,
    jwt: Option<Arc<dyn KeyStore>>,
    pub(crate) metrics: Metrics,
}

impl Authorizer {
    pub fn new(
        api_key_header: &str,
        cache: IdentityCache,
        keys: Option<Arc<dyn KeyStore>>,
        jwt: Option<Arc<dyn KeyStore>>,
        metrics: Metrics,
    ) -> Authorizer {
        Authorizer {
            api_key_header: api_key_header.to_ascii_lowercase(),
            cache,
            keys,
            jwt,
            metrics,
        }
    }

    /// The header API keys are read from on this route.
    pub fn key_header<'a>(&'a self, policy: &'a RoutePolicy) -> &'a str {
        policy
            .api_key_header
            .as_deref()
            .unwrap_or(&self.api_key_header)
    }

    pub async fn decide(
        &self,
        headers: &(impl Pairs + Sync + ?Sized),
        policy: &RoutePolicy,
    ) -> Decision {
        let key_header = self.key_header(policy);
        let cred = match credential::extract(headers, key_header) {
            Ok(c) => c,
            Err(Missing::None) if !policy.required => return Decision::Anonymous,
            Err(Missing::None) => {
                return Decision::Unauthenticated {
                    code: "missing_credentials",
                    reason: format!(
                        "send an API key in the `{key_header}` header or a bearer token in Authorization"
                    ),
                };
            }
            Err(Missing::Malformed(why)) => {
                return Decision::Unauthenticated {
                    code: "invalid_credentials",
                    reason: why.to_string(),
                };
            }
        };
        let (secret, store) = match cred {
            Credential::ApiKey(s) | Credential::Opaque(s) => (s, &self.keys),
            Credential::Jwt(s) => (s, &self.jwt),
        };
        let Some(store) = store.clone() else {
            return Decision::Unauthenticated {
                code: "invalid_credentials",
                reason: "this kind of credential is not accepted here".into(),
            };
        };
        let digest = Digest::of(secret.as_bytes());
        let (answer, outcome) = self
            .cache
            .get(digest, move || async move {
                store.lookup(&secret, digest).await
            })
            .await;
        self.metrics.cache(outcome.label());
        match answer {
            Ok(Some(identity)) => {
                let missing = identity.missing_scopes(&policy.scopes);
                if missing.is_empty() {
                    Decision::Allowed(identity)
                } else {
                    let missing = missing.into_iter().map(str::to_string).collect();
                    Decision::Forbidden { identity, missing }
                }
            }
            Ok(None) => Decision::Unauthenticated {
                code: "invalid_credentials",
                reason: "the credential is unknown, revoked or expired".into(),
            },
            Err(e) => {
                debug_assert!(outcome != Outcome::Stale);
                Decision::Unavailable {
                    reason: e.to_string(),
                }
            }
        }
    }
}
