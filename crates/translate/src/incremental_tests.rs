//! The incremental translator gives, byte for byte, what a full translation gives,
//! through a long run of edits of every kind that can change a virtual host.
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster::LbPolicy};
use portcullis_api::{
    Certificates, Model, Objects,
    validate::{Rules, validate_objects},
};
use prost::Message;

use super::*;
use crate::{host_routes::tests::placeholder_certificate, translate};

const HOSTS: [&str; 5] = [
    "[a.example.com]",
    "[b.example.com]",
    "[x.w.example.com]",
    "['*.w.example.com']",
    "[]",
];

/// The world one edit at a time: Routes, Services and Hosts as YAML, plus which Hosts
/// have a certificate loaded.
#[derive(Clone)]
struct World {
    routes: Vec<Option<(usize, String, usize, String)>>,
    timeouts: Vec<u32>,
    /// The header each Service hashes on (consistent hashing), if any: Routes to it
    /// carry a hash policy, so a Service edit changes its Routes' virtual hosts.
    hash_header: Vec<Option<String>>,
    /// Services taken out of the world (their Routes then send nowhere).
    absent: [bool; 3],
    redirect: [bool; 2],
    certified: [bool; 2],
}

impl World {
    fn new() -> Self {
        Self {
            routes: (0..12)
                .map(|i| Some((i % HOSTS.len(), format!("/p{i}"), i % 3, String::new())))
                .collect(),
            timeouts: vec![5, 5, 5],
            hash_header: vec![None, None, None],
            absent: [false; 3],
            redirect: [true, false],
            certified: [true, true],
        }
    }

    fn yaml(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.timeouts.iter().enumerate() {
            if self.absent[i] {
                continue;
            }
            let lb = match &self.hash_header[i] {
                Some(h) => format!(", loadBalancer: {{policy: ringHash, hashOn: {{header: {h}}}}}"),
                None => String::new(),
            };
            out += &format!(
                "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s{i}, namespace: t}}\nspec: {{timeout: {t}s, destinations: [{{name: a, address: '10.0.0.{i}:80'}}]{lb}}}\n"
            );
        }
        for (i, (name, hostname)) in [("a", "a.example.com"), ("w", "*.w.example.com")]
            .iter()
            .enumerate()
        {
            out += &format!(
                "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: t}}\nspec: {{hostname: '{hostname}', tls: {{certificateFile: c.pem, keyFile: k.pem, redirect: {}}}}}\n",
                self.redirect[i]
            );
        }
        for (i, r) in self.routes.iter().enumerate() {
            let Some((host, path, svc, extra)) = r else {
                continue;
            };
            out += &format!(
                "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: r{i}, namespace: t}}\nspec: {{hosts: {}, match: {{paths: [{{prefix: '{path}'}}]}}, backends: [{{service: s{svc}}}]{extra}}}\n",
                HOSTS[*host]
            );
        }
        out
    }

    fn model(&self) -> Model {
        let objects = Objects::parse(&self.yaml()).unwrap();
        let mut outcome = validate_objects(&objects, &Certificates::new(), &Rules::file_mode());
        for (key, served) in outcome.model.hosts.iter_mut() {
            if self.certified[usize::from(key.name == "w")] {
                served.certificate = Some(placeholder_certificate(&served.host.spec.hostname));
            }
        }
        outcome.model
    }

    /// One edit chosen by `r`.
    fn edit(&mut self, r: u64) {
        let pick = (r >> 8) as usize;
        let i = pick % self.routes.len();
        match r % 11 {
            0 => self.routes[i] = None,
            1 => self.routes.push(Some((
                pick % HOSTS.len(),
                format!("/n{r}"),
                pick % 3,
                String::new(),
            ))),
            2 => {
                if let Some(route) = &mut self.routes[i] {
                    route.1 = format!("/e{}", r % 1000);
                }
            }
            3 => {
                if let Some(route) = &mut self.routes[i] {
                    route.0 = pick % HOSTS.len();
                }
            }
            4 => {
                if let Some(route) = &mut self.routes[i] {
                    route.2 = pick % 3;
                }
            }
            5 => {
                if let Some(route) = &mut self.routes[i] {
                    route.3 = if route.3.is_empty() {
                        ", timeout: 2s".into()
                    } else {
                        String::new()
                    };
                }
            }
            6 => self.timeouts[pick % 3] = 1 + (r % 30) as u32,
            7 => self.redirect[pick % 2] ^= true,
            8 => {
                let h = &mut self.hash_header[pick % 3];
                *h = match h {
                    None => Some(format!("x-k{}", r % 3)),
                    Some(_) => None,
                }
            }
            9 => self.absent[pick % 3] ^= true,
            _ => self.certified[pick % 2] ^= true,
        }
    }
}

/// What a full translation encodes, by name.
fn full(model: &Model, options: &Options) -> (crate::Resources, crate::Encoded) {
    let mut res = translate(model, options);
    let encoded = res
        .route_configs
        .drain(..)
        .map(|c| (c.name.as_str().into(), c.encode_to_vec().into()))
        .collect();
    (res, encoded)
}

#[test]
fn every_edit_gives_what_a_full_translation_gives() {
    let plain = Options::default();
    let https = Options {
        https_port: Some(10443),
        ..Default::default()
    };
    let mut incremental = Incremental::new();
    let mut world = World::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        world.edit(seed);
        // Now and then the deployment changes too (it empties the memory).
        let options = if (step / 50) % 2 == 0 { &https } else { &plain };
        let model = world.model();
        let (mut expected, expected_routes) = full(&model, options);
        let mut got = incremental.translate(&model, options);
        let got_routes = std::mem::take(&mut got.encoded_route_configs);
        assert_eq!(
            got_routes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            expected_routes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "step {step}: the same RouteConfigurations"
        );
        for ((name, got), (_, want)) in got_routes.iter().zip(&expected_routes) {
            assert!(
                got == want,
                "step {step}: {name} differs from a full translation"
            );
        }
        // The Services' clusters and load assignments come encoded; the gRPC
        // service clusters stay structs, as in a full translation.
        let services = |names: &crate::Encoded| -> Vec<String> {
            names.iter().map(|(n, _)| n.to_string()).collect()
        };
        let service_clusters: Vec<String> = services(&got.encoded_clusters);
        let (from_services, grpc): (Vec<_>, Vec<_>) = std::mem::take(&mut expected.clusters)
            .into_iter()
            .partition(|c| service_clusters.contains(&c.name));
        expected.clusters = grpc;
        let want: crate::Encoded = from_services
            .iter()
            .map(|c| (c.name.as_str().into(), c.encode_to_vec().into()))
            .collect();
        assert_eq!(
            want.len(),
            model.services.len(),
            "step {step}: a cluster per Service"
        );
        assert!(
            std::mem::take(&mut got.encoded_clusters) == want,
            "step {step}: the Services' clusters"
        );
        let want: crate::Encoded = std::mem::take(&mut expected.load_assignments)
            .iter()
            .map(|a| (a.cluster_name.as_str().into(), a.encode_to_vec().into()))
            .collect();
        assert!(
            std::mem::take(&mut got.encoded_load_assignments) == want,
            "step {step}: the Services' load assignments"
        );
        expected.encoded_route_configs.clear();
        assert_eq!(got, expected, "step {step}: the other resources");
    }
}

#[test]
fn an_unchanged_model_reuses_every_virtual_host() {
    let world = World::new();
    let model = world.model();
    let options = Options {
        https_port: Some(10443),
        ..Default::default()
    };
    let mut incremental = Incremental::new();
    let first = incremental.translate(&model, &options);
    let before: Vec<Bytes> = incremental
        .vhosts
        .values()
        .map(|c| c.full.clone())
        .collect();
    let second = incremental.translate(&model, &options);
    assert_eq!(first, second);
    // Every RouteConfiguration is handed over as the bytes it was last time, so the
    // snapshot knows it without reading it.
    assert!(!second.encoded_route_configs.is_empty());
    for ((name, a), (_, b)) in first
        .encoded_route_configs
        .iter()
        .zip(&second.encoded_route_configs)
    {
        assert_eq!(a.as_ptr(), b.as_ptr(), "{name} was assembled again");
    }
    // Reused, not rebuilt: the very same buffers.
    let after: Vec<Bytes> = incremental
        .vhosts
        .values()
        .map(|c| c.full.clone())
        .collect();
    assert_eq!(before.len(), after.len());
    assert!(
        before
            .iter()
            .all(|b| after.iter().any(|a| a.as_ptr() == b.as_ptr()))
    );
}

#[test]
fn a_service_edit_re_encodes_only_its_cluster() {
    let mut world = World::new();
    let options = Options::default();
    let mut incremental = Incremental::new();
    incremental.translate(&world.model(), &options);
    let ptr = |inc: &Incremental, s: &str| {
        let key = ObjectKey::service("t", s);
        inc.clusters
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap()
            .1
            .cluster
            .1
            .as_ptr()
    };
    let (s0, s1) = (ptr(&incremental, "s0"), ptr(&incremental, "s1"));
    world.hash_header[1] = Some("x-user".into());
    // Parsed again: equal Services are new objects, recognised by their spec.
    let res = incremental.translate(&world.model(), &options);
    assert_eq!(ptr(&incremental, "s0"), s0, "s0 was reused");
    assert_ne!(ptr(&incremental, "s1"), s1, "s1 was rebuilt");
    let s1_cluster = res
        .encoded_clusters
        .iter()
        .find(|(n, _)| &**n == "t/s1")
        .map(|(_, b)| Cluster::decode(&b[..]).unwrap())
        .expect("s1's cluster is served");
    assert_eq!(
        s1_cluster.lb_policy,
        LbPolicy::RingHash as i32,
        "the new load balancing reached the cluster"
    );
}

#[test]
fn an_edit_rebuilds_only_the_hosts_it_reaches() {
    let mut world = World::new();
    let options = Options {
        https_port: Some(10443),
        ..Default::default()
    };
    let mut incremental = Incremental::new();
    incremental.translate(&world.model(), &options);
    let ptr = |inc: &Incremental, d: &str| inc.vhosts[d].full.as_ptr();
    let (a, b) = (
        ptr(&incremental, "a.example.com"),
        ptr(&incremental, "b.example.com"),
    );
    // Route r1 is on b.example.com only.
    world.routes[1].as_mut().unwrap().1 = "/changed".into();
    incremental.translate(&world.model(), &options);
    assert_eq!(
        ptr(&incremental, "a.example.com"),
        a,
        "a.example.com was reused"
    );
    assert_ne!(
        ptr(&incremental, "b.example.com"),
        b,
        "b.example.com was rebuilt"
    );
}
