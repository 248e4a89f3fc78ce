//! Routing split by Host, so a one-Route edit re-sends, and Envoy rebuilds, only the
//! routing of the Host it touches instead of one configuration holding every Route.
//!
//! Each HTTPS filter chain (one per Host certificate, chosen by SNI) gets its own
//! RouteConfiguration, `https/<namespace>/<name>`, with the virtual hosts a client that
//! sent that SNI can reach: the Host's hostname, the names under it (a wildcard Host),
//! wildcard virtual hosts covering it, and `*`. A request whose `Host` header names
//! another Host's domain finds no virtual host there (404): the certificate a client
//! verified decides which Routes it can reach. The plain-HTTP configuration keeps every
//! virtual host, but one whose Host redirects to HTTPS is only that redirect (no
//! routes), so edits to its Routes leave the plain configuration alone.
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost, virtual_host::TlsRequirementType,
};
use portcullis_api::{Model, precedence::covers, table::ANY_HOST};

use crate::tls::https_route_config_name;

/// Whether a client that selected the chain for `hostname` (by SNI) can be routed to
/// the virtual host for `domain`.
pub(crate) fn reachable(domain: &str, hostname: &str) -> bool {
    domain == ANY_HOST || covers(hostname, domain) || covers(domain, hostname)
}

/// `full` (every virtual host, with its Routes) split as the module says; unchanged
/// when no Host serves HTTPS.
pub fn split(
    full: RouteConfiguration,
    model: &Model,
    options: &crate::Options,
) -> Vec<RouteConfiguration> {
    let chains = crate::tls::with_certificates(model);
    if options.https_port.is_none() || chains.is_empty() {
        return vec![full];
    }
    let mut out: Vec<RouteConfiguration> = chains
        .iter()
        .map(|(key, host)| RouteConfiguration {
            name: https_route_config_name(key),
            virtual_hosts: full
                .virtual_hosts
                .iter()
                .filter(|v| {
                    v.domains
                        .iter()
                        .any(|d| reachable(d, &host.host.spec.hostname))
                })
                .cloned()
                .collect(),
            validate_clusters: full.validate_clusters,
            ..Default::default()
        })
        .collect();
    let plain = RouteConfiguration {
        virtual_hosts: full.virtual_hosts.into_iter().map(redirect_only).collect(),
        ..full
    };
    out.insert(0, plain);
    out
}

/// A virtual host that redirects every plain-HTTP request to HTTPS needs no routes.
pub(crate) fn redirect_only(vhost: VirtualHost) -> VirtualHost {
    if vhost.require_tls != TlsRequirementType::All as i32 {
        return vhost;
    }
    VirtualHost {
        name: vhost.name,
        domains: vhost.domains,
        require_tls: vhost.require_tls,
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, http_connection_manager::RouteSpecifier,
    };
    use portcullis_api::{
        Certificate, Certificates, Objects,
        certificate::PrivateKey,
        validate::{Rules, validate_objects},
    };
    use prost::Message;

    use super::*;
    use crate::{Options, translate};

    fn yaml(route_a_path: &str, redirect: bool) -> String {
        let host = |name: &str, hostname: &str| {
            format!(
                "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: t}}\nspec: {{hostname: '{hostname}', tls: {{certificateFile: c.pem, keyFile: k.pem, redirect: {redirect}}}}}\n"
            )
        };
        let route = |name: &str, hosts: &str, path: &str| {
            format!(
                "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: t}}\nspec: {{hosts: {hosts}, match: {{paths: [{{prefix: '{path}'}}]}}, backends: [{{service: s}}]}}\n"
            )
        };
        [
            "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: t}\nspec: {destinations: [{name: a, address: '10.0.0.1:80'}]}\n".to_string(),
            host("a", "a.example.com"),
            host("w", "*.w.example.com"),
            route("ra", "[a.example.com]", route_a_path),
            route("rb", "[b.example.com]", "/b"),
            route("rx", "[x.w.example.com]", "/x"),
            route("rw", "['*.w.example.com']", "/w"),
            route("any", "[]", "/any"),
        ]
        .concat()
    }

    fn model(text: &str) -> Model {
        let objects = Objects::parse(text).unwrap();
        let mut o = validate_objects(&objects, &Certificates::new(), &Rules::file_mode());
        for served in o.model.hosts.values_mut() {
            served.certificate = Some(placeholder_certificate(&served.host.spec.hostname));
        }
        o.model
    }

    /// A loaded certificate for `hostname` as translation sees it (no real PEM needed).
    pub(crate) fn placeholder_certificate(hostname: &str) -> Certificate {
        Certificate {
            chain_pem: "chain".into(),
            key: PrivateKey("key".into()),
            not_after: i64::MAX,
            fingerprint: "f".into(),
            names: vec![hostname.into()],
        }
    }

    fn https() -> Options {
        Options {
            https_port: Some(10443),
            ..Default::default()
        }
    }

    fn domains(rc: &RouteConfiguration) -> Vec<(String, usize, bool)> {
        rc.virtual_hosts
            .iter()
            .map(|v| {
                (
                    v.domains[0].clone(),
                    v.routes.len(),
                    v.require_tls == TlsRequirementType::All as i32,
                )
            })
            .collect()
    }

    fn by_name<'a>(configs: &'a [RouteConfiguration], name: &str) -> &'a RouteConfiguration {
        configs.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn without_https_there_is_one_configuration() {
        let res = translate(&model(&yaml("/a", true)), &Options::default());
        assert_eq!(res.route_configs.len(), 1);
        assert_eq!(res.route_configs[0].name, crate::ROUTE_CONFIG_NAME);
    }

    #[test]
    fn each_host_gets_what_its_sni_can_reach_and_plain_http_only_redirects() {
        let res = translate(&model(&yaml("/a", true)), &https());
        let names: Vec<&str> = res.route_configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["portcullis", "https/t/a", "https/t/w"]);
        let mut a = domains(by_name(&res.route_configs, "https/t/a"));
        a.sort();
        // Its own host (guard + one route) and `*` (guard + the host-less route).
        assert_eq!(
            a,
            [("*".into(), 2, false), ("a.example.com".into(), 3, true)]
        );
        let mut w: Vec<String> = domains(by_name(&res.route_configs, "https/t/w"))
            .into_iter()
            .map(|d| d.0)
            .collect();
        w.sort();
        assert_eq!(w, ["*", "*.w.example.com", "x.w.example.com"]);
        // Plain HTTP: the TLS Hosts' names are bare redirects, b.example.com is whole.
        for (domain, routes, tls) in domains(&res.route_configs[0]) {
            match domain.as_str() {
                "a.example.com" | "x.w.example.com" | "*.w.example.com" => {
                    assert!(tls && routes == 0, "{domain}: {routes} routes")
                }
                _ => assert!(!tls && routes > 0, "{domain}"),
            }
        }
    }

    #[test]
    fn a_host_that_does_not_redirect_keeps_its_routes_on_plain_http() {
        let res = translate(&model(&yaml("/a", false)), &https());
        let plain = domains(&res.route_configs[0]);
        let a = plain.iter().find(|d| d.0 == "a.example.com").unwrap();
        assert_eq!((a.1, a.2), (3, false));
    }

    #[test]
    fn an_edit_changes_only_the_configuration_of_its_host() {
        let before = translate(&model(&yaml("/a", true)), &https());
        let after = translate(&model(&yaml("/a2", true)), &https());
        let changed: Vec<&str> = before
            .route_configs
            .iter()
            .zip(&after.route_configs)
            .filter(|(b, a)| b.encode_to_vec() != a.encode_to_vec())
            .map(|(b, _)| b.name.as_str())
            .collect();
        assert_eq!(changed, ["https/t/a"]);
    }

    #[test]
    fn each_filter_chain_routes_with_its_hosts_configuration() {
        let res = translate(&model(&yaml("/a", true)), &https());
        let listener = res.listeners.iter().find(|l| l.name == "https").unwrap();
        let rds = |chain: &envoy_types::pb::envoy::config::listener::v3::FilterChain| {
            let any = match &chain.filters[0].config_type {
                Some(
                    envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
                        a,
                    ),
                ) => a,
                _ => panic!("no typed config"),
            };
            match HttpConnectionManager::decode(any.value.as_slice())
                .unwrap()
                .route_specifier
            {
                Some(RouteSpecifier::Rds(r)) => r.route_config_name,
                other => panic!("{other:?}"),
            }
        };
        let mut by_sni: Vec<(String, String)> = listener
            .filter_chains
            .iter()
            .map(|c| {
                (
                    c.filter_chain_match.as_ref().unwrap().server_names[0].clone(),
                    rds(c),
                )
            })
            .collect();
        by_sni.sort();
        assert_eq!(
            by_sni,
            [
                ("*.w.example.com".into(), "https/t/w".into()),
                ("a.example.com".into(), "https/t/a".into())
            ]
        );
        // No SNI: the default (oldest) Host's configuration.
        let default = rds(listener.default_filter_chain.as_ref().unwrap());
        assert!(
            default == "https/t/a" || default == "https/t/w",
            "{default}"
        );
    }
}
