//! The YAML configuration of `portcullis authz` (flags and env override parts of it;
//! see `args.rs`). Every error names the field path and what to write instead.
//!
//! ```yaml
//! # Deprecated: the control plane owns these two (--api-key-header, --identity-headers)
//! # and sends them with every Check; here they only apply to Checks without them.
//! apiKeyHeader: x-api-key
//! identityHeaders: {user: x-portcullis-user, account: x-portcullis-account, scopes: x-portcullis-scopes}
//! cache: {ttl: 30s, negativeTtl: 5s, maxEntries: 100000, serveStaleFor: 0s}
//! keyStore:                       # one of file | introspection | postgres
//!   file: {path: /etc/portcullis/keys/keys.yaml, reloadEvery: 1s}
//! jwt:                            # optional: bearer JWTs validated locally
//!   jwksUrl: https://issuer.example/.well-known/jwks.json
//!   issuers: [https://issuer.example/]
//!   audiences: [https://api.example/]
//! ```
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::breaker::BreakerConfig;
use crate::cache::CacheConfig;
use crate::jwt::{JwksSource, JwtConfig};
use crate::response::IdentityHeaders;
use crate::store::{IntrospectionConfig, PostgresConfig};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. 250ms, 30s, 5m"
        ))
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[derive(Debug, Default)]
pub struct Config {
    pub api_key_header: Option<String>,
    pub identity_headers: Option<HeaderNames>,
    pub cache: CacheSection,
    pub key_store: Option<KeyStoreSection>,
    pub jwt: Option<JwtSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFields {
    #[serde(default)]
    api_key_header: Option<String>,
    #[serde(default)]
    identity_headers: Option<HeaderNames>,
    #[serde(default)]
    cache: CacheSection,
    #[serde(default)]
    key_store: Option<KeyStoreFields>,
    #[serde(default)]
    jwt: Option<JwtSection>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderNames {
    pub user: String,
    pub account: String,
    pub scopes: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheSection {
    #[serde(default, deserialize_with = "opt_duration")]
    pub ttl: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub negative_ttl: Option<Duration>,
    #[serde(default)]
    pub max_entries: Option<u64>,
    /// While the key store fails, keep serving identities up to this long past their
    /// TTL (0: fail closed).
    #[serde(default, deserialize_with = "opt_duration")]
    pub serve_stale_for: Option<Duration>,
    /// Distinct key-store lookups at once; more are refused with 503 (default 10000).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

/// Exactly one of the three (serde_yaml would spell an enum as a `!tag`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyStoreFields {
    #[serde(default)]
    file: Option<FileSection>,
    #[serde(default)]
    introspection: Option<IntrospectionSection>,
    #[serde(default)]
    postgres: Option<PostgresSection>,
}

#[derive(Debug)]
pub enum KeyStoreSection {
    File(FileSection),
    Introspection(IntrospectionSection),
    Postgres(PostgresSection),
}

impl KeyStoreFields {
    fn into_section(self) -> Result<KeyStoreSection, ConfigError> {
        match (self.file, self.introspection, self.postgres) {
            (Some(f), None, None) => Ok(KeyStoreSection::File(f)),
            (None, Some(i), None) => Ok(KeyStoreSection::Introspection(i)),
            (None, None, Some(p)) => Ok(KeyStoreSection::Postgres(p)),
            _ => Err(err(
                "keyStore",
                "set exactly one of file, introspection and postgres",
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSection {
    pub path: PathBuf,
    #[serde(default, deserialize_with = "opt_duration")]
    pub reload_every: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerSection {
    pub failure_threshold: u32,
    #[serde(deserialize_with = "duration")]
    pub open_for: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntrospectionSection {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Prefer `PORTCULLIS_AUTHZ_CLIENT_SECRET` over writing the secret here.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub hedge_delay: Option<Duration>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub retry_backoff: Option<Duration>,
    #[serde(default)]
    pub breaker: Option<BreakerSection>,
    #[serde(default)]
    pub account_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresSection {
    /// Prefer `PORTCULLIS_AUTHZ_POSTGRES_URL` when the URL holds a password.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub breaker: Option<BreakerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtSection {
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub refresh_every: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub leeway: Option<Duration>,
    #[serde(default)]
    pub user_claim: Option<String>,
    #[serde(default)]
    pub account_claim: Option<String>,
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let f: ConfigFields =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| err(&e.path().to_string(), e.inner().to_string()))?;
        let c = Config {
            api_key_header: f.api_key_header,
            identity_headers: f.identity_headers,
            cache: f.cache,
            key_store: f.key_store.map(KeyStoreFields::into_section).transpose()?,
            jwt: f.jwt,
        };
        c.check()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(&path.display().to_string(), e.to_string()))?;
        Config::parse(&text).map_err(|e| err(&format!("{}: {}", path.display(), e.path), e.message))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Some(h) = &self.api_key_header {
            header_name("apiKeyHeader", h)?;
        }
        if let Some(h) = &self.identity_headers {
            header_name("identityHeaders.user", &h.user)?;
            header_name("identityHeaders.account", &h.account)?;
            header_name("identityHeaders.scopes", &h.scopes)?;
        }
        if self.cache.ttl == Some(Duration::ZERO) {
            return Err(err(
                "cache.ttl",
                "must be above 0; every request would hit the key store",
            ));
        }
        if self.cache.max_entries == Some(0) {
            return Err(err("cache.maxEntries", "must be above 0"));
        }
        if self.cache.max_in_flight == Some(0) {
            return Err(err(
                "cache.maxInFlight",
                "must be above 0; every lookup would be refused",
            ));
        }
        if let Some(KeyStoreSection::Introspection(i)) = &self.key_store {
            if i.endpoints.is_empty() {
                return Err(err(
                    "keyStore.introspection.endpoints",
                    "list at least one URL",
                ));
            }
            for (n, u) in i.endpoints.iter().enumerate() {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(err(
                        &format!("keyStore.introspection.endpoints[{n}]"),
                        format!("`{u}` is not an http(s) URL"),
                    ));
                }
            }
        }
        if let Some(j) = &self.jwt {
            match (&j.jwks_file, &j.jwks_url) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(err("jwt", "set exactly one of jwksFile and jwksUrl"));
                }
                _ => {}
            }
            if j.issuers.is_empty() {
                return Err(err("jwt.issuers", "list the accepted `iss` values"));
            }
            if j.audiences.is_empty() {
                return Err(err("jwt.audiences", "list the accepted `aud` values"));
            }
        }
        Ok(())
    }

    pub fn cache(&self) -> CacheConfig {
        let d = CacheConfig::default();
        CacheConfig {
            ttl: self.cache.ttl.unwrap_or(d.ttl),
            negative_ttl: self.cache.negative_ttl.unwrap_or(d.negative_ttl),
            max_entries: self.cache.max_entries.unwrap_or(d.max_entries),
            stale_for: self.cache.serve_stale_for.unwrap_or(d.stale_for),
            max_in_flight: self.cache.max_in_flight.unwrap_or(d.max_in_flight),
        }
    }

    pub fn identity_headers(&self) -> IdentityHeaders {
        self.identity_headers
            .as_ref()
            .map_or_else(IdentityHeaders::default, |h| IdentityHeaders {
                user: h.user.to_ascii_lowercase(),
                account: h.account.to_ascii_lowercase(),
                scopes: h.scopes.to_ascii_lowercase(),
            })
    }

    pub fn api_key_header(&self) -> String {
        self.api_key_header
            .clone()
            .unwrap_or_else(|| portcullis_contract::authz::DEFAULT_API_KEY_HEADER.into())
    }
}

fn header_name(path: &str, h: &str) -> Result<(), ConfigError> {
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(err(
            path,
            format!("`{h}` is not a header name (letters, digits, -)"),
        ));
    }
    Ok(())
}

fn breaker(b: &Option<BreakerSection>) -> BreakerConfig {
    b.as_ref()
        .map_or_else(BreakerConfig::default, |b| BreakerConfig {
            failure_threshold: b.failure_threshold.max(1),
            open_for: b.open_for,
        })
}

impl IntrospectionSection {
    pub fn to_config(&self, secret_override: Option<String>) -> IntrospectionConfig {
        let d = IntrospectionConfig::default();
        IntrospectionConfig {
            endpoints: self.endpoints.clone(),
            client_id: self.client_id.clone(),
            client_secret: secret_override.or_else(|| self.client_secret.clone()),
            timeout: self.timeout.unwrap_or(d.timeout),
            hedge_delay: self.hedge_delay.unwrap_or(d.hedge_delay),
            retries: self.retries.unwrap_or(d.retries),
            retry_backoff: self.retry_backoff.unwrap_or(d.retry_backoff),
            breaker: breaker(&self.breaker),
            account_field: self.account_field.clone().unwrap_or(d.account_field),
        }
    }
}

impl PostgresSection {
    pub fn to_config(&self, url_override: Option<String>) -> Result<PostgresConfig, ConfigError> {
        let d = PostgresConfig::default();
        Ok(PostgresConfig {
            url: url_override.or_else(|| self.url.clone()).ok_or_else(|| {
                err(
                    "keyStore.postgres.url",
                    "set it, or PORTCULLIS_AUTHZ_POSTGRES_URL",
                )
            })?,
            table: self.table.clone().unwrap_or(d.table),
            timeout: self.timeout.unwrap_or(d.timeout),
            breaker: breaker(&self.breaker),
        })
    }
}

impl JwtSection {
    pub fn to_config(&self) -> JwtConfig {
        let jwks = match (&self.jwks_file, &self.jwks_url) {
            (Some(f), _) => JwksSource::File(f.clone()),
            (None, Some(u)) => JwksSource::Url(u.clone()),
            (None, None) => unreachable!("checked at parse"),
        };
        let mut c = JwtConfig::new(jwks, self.issuers.clone(), self.audiences.clone());
        c.refresh = self.refresh_every.unwrap_or(c.refresh);
        c.leeway = self.leeway.unwrap_or(c.leeway);
        c.user_claim = self.user_claim.clone().unwrap_or(c.user_claim);
        c.account_claim = self.account_claim.clone().unwrap_or(c.account_claim);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let c = Config::parse(
            "apiKeyHeader: X-Key\ncache: {ttl: 10s, serveStaleFor: 5m}\nkeyStore:\n  introspection:\n    endpoints: [http://a/introspect, http://b/introspect]\n    hedgeDelay: 20ms\n    breaker: {failureThreshold: 3, openFor: 2s}\njwt: {jwksFile: /j.json, issuers: [i], audiences: [a]}\n",
        )
        .unwrap();
        assert_eq!(c.cache().ttl, Duration::from_secs(10));
        assert_eq!(c.cache().stale_for, Duration::from_secs(300));
        let Some(KeyStoreSection::Introspection(i)) = &c.key_store else {
            panic!()
        };
        let ic = i.to_config(Some("s".into()));
        assert_eq!(ic.hedge_delay, Duration::from_millis(20));
        assert_eq!(ic.breaker.failure_threshold, 3);
        assert_eq!(ic.client_secret.as_deref(), Some("s"));
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let cases = [
            ("cache: {ttl: soon}", "cache.ttl", "write e.g. 250ms"),
            ("cache: {ttl: 0s}", "cache.ttl", "above 0"),
            ("cache: {maxInFlight: 0}", "cache.maxInFlight", "above 0"),
            (
                "keyStore: {file: {path: /k, colour: red}}",
                "keyStore.file",
                "unknown field `colour`",
            ),
            (
                "keyStore: {introspection: {endpoints: [ftp://x]}}",
                "keyStore.introspection.endpoints[0]",
                "not an http(s) URL",
            ),
            ("keyStore: {ldap: {}}", "keyStore", "unknown field `ldap`"),
            (
                "keyStore: {}",
                "keyStore",
                "exactly one of file, introspection and postgres",
            ),
            (
                "jwt: {issuers: [i], audiences: [a]}",
                "jwt",
                "exactly one of jwksFile and jwksUrl",
            ),
            (
                "jwt: {jwksFile: /j, issuers: [], audiences: [a]}",
                "jwt.issuers",
                "accepted `iss`",
            ),
            ("apiKeyHeader: 'x key'", "apiKeyHeader", "not a header name"),
        ];
        for (text, path, fix) in cases {
            let e = Config::parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text} parsed"));
            assert!(
                e.path.starts_with(path),
                "{text}: path {} should start with {path}",
                e.path
            );
            assert!(
                e.message.contains(fix),
                "{text}: {} should contain {fix}",
                e.message
            );
        }
    }
}
