//! File mode's whole reload per one-Route edit: what `portcullis serve` does when a
//! manifest file changes (read the directory, reconcile, publish, make the console's
//! board), on manifests written as teams keep them: a file per namespace, plus one
//! file of Hosts and their certificate. The other file-mode row starts from objects
//! already parsed; this one starts from the files.
use std::{path::Path, time::Instant};

use parking_lot::RwLock;
use portcullis_bench::manifests;
use portcullis_plane::{
    board::Board, file_source::FileSource, publish::Publisher, serve::reload_and_publish,
};
use portcullis_xds::Cache;

use super::{SERVICES, options};

/// Writes `n` Routes, the Services and the HTTPS Hosts under a temporary directory (a
/// file per namespace, or all in one file with `one_file`), reloads once, then makes
/// `edits` one-Route edits (the same as `--child-rebuild`), each rewriting the file
/// that holds the Route and reloading. Prints the median milliseconds of the reload
/// after an edit, then those of the first reload (everything parsed and built: the
/// baseline).
pub fn child_files(n: usize, edits: usize, one_file: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (routes, services) = manifests::objects(n, SERVICES);
    let (hosts, _) = manifests::tls_hosts();
    let leaf = manifests::tls_leaf();
    std::fs::write(dir.path().join("bench.crt"), &leaf.cert_pem)?;
    std::fs::write(dir.path().join("bench.key"), &leaf.key_pem)?;
    let mut hosts_yaml = String::new();
    for h in &hosts {
        push_yaml(&mut hosts_yaml, h)?;
    }
    std::fs::write(dir.path().join("hosts.yaml"), hosts_yaml)?;
    // As people write them: no creation times (file mode stamps first-seen times).
    let mut routes = routes;
    for r in &mut routes {
        r.metadata.creation_timestamp = None;
    }
    let mut files = Files::new(dir.path(), one_file);
    for s in &services {
        files.add(s.metadata.namespace.as_deref().unwrap_or_default(), s)?;
    }
    for r in &routes {
        files.add(r.metadata.namespace.as_deref().unwrap_or_default(), r)?;
    }
    files.write_all()?;

    let registry = prometheus::Registry::new();
    let mut opts = options();
    opts.https_port = Some(0);
    let publisher = Publisher::new(Cache::new(&registry), opts, None, &registry);
    let mut source = FileSource::new(dir.path().to_path_buf(), Default::default());
    let board = RwLock::new(Board::default());
    let t = Instant::now();
    let (model, mut last) = reload_and_publish(&mut source, &publisher, &board);
    let first = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        model.routes.len() == n && board.read().file_errors.is_empty(),
        "the first reload serves {} of {n} Routes; file errors: {:?}",
        model.routes.len(),
        board.read().file_errors
    );
    anyhow::ensure!(
        publisher
            .cache
            .snapshot()
            .type_len(portcullis_xds::type_url::ROUTE_CONFIGURATION)
            > 1,
        "one RouteConfiguration: the Hosts' certificate was not taken"
    );
    let mut times = Vec::with_capacity(edits);
    for e in 0..edits {
        let i = (e * 7919) % n;
        let mut route = manifests::route(i, SERVICES, e + 1);
        route.metadata.creation_timestamp = None;
        let ns = route.metadata.namespace.clone().unwrap_or_default();
        routes[i] = route;
        // The file is written before the clock starts: the watcher's wait is not
        // the control plane's CPU.
        files.rewrite(&ns, &routes, &services)?;
        let t = Instant::now();
        let (_, version) = reload_and_publish(&mut source, &publisher, &board);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(version != last, "edit {e} published nothing new");
        last = version;
    }
    times.sort_by(f64::total_cmp);
    println!("{:.1} {first:.1}", times[times.len() / 2]);
    Ok(())
}

fn push_yaml(out: &mut String, object: &impl serde::Serialize) -> anyhow::Result<()> {
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(object)?);
    Ok(())
}

/// The manifest files: one per namespace, or one for everything.
struct Files<'a> {
    dir: &'a Path,
    one_file: bool,
    texts: std::collections::BTreeMap<String, String>,
}

impl<'a> Files<'a> {
    fn new(dir: &'a Path, one_file: bool) -> Self {
        Self {
            dir,
            one_file,
            texts: Default::default(),
        }
    }

    fn name(&self, namespace: &str) -> String {
        if self.one_file {
            "all.yaml".into()
        } else {
            format!("{namespace}.yaml")
        }
    }

    fn add(&mut self, namespace: &str, object: &impl serde::Serialize) -> anyhow::Result<()> {
        let name = self.name(namespace);
        push_yaml(self.texts.entry(name).or_default(), object)
    }

    fn write_all(&self) -> anyhow::Result<()> {
        for (name, text) in &self.texts {
            std::fs::write(self.dir.join(name), text)?;
        }
        Ok(())
    }

    /// Writes again the file that holds `namespace`'s objects, from `routes` and
    /// `services` as they are now.
    fn rewrite(
        &mut self,
        namespace: &str,
        routes: &[portcullis_api::Route],
        services: &[portcullis_api::Service],
    ) -> anyhow::Result<()> {
        let name = self.name(namespace);
        let mut text = String::new();
        let holds = |ns: Option<&str>| self.one_file || ns == Some(namespace);
        for s in services
            .iter()
            .filter(|s| holds(s.metadata.namespace.as_deref()))
        {
            push_yaml(&mut text, s)?;
        }
        for r in routes
            .iter()
            .filter(|r| holds(r.metadata.namespace.as_deref()))
        {
            push_yaml(&mut text, r)?;
        }
        std::fs::write(self.dir.join(&name), &text)?;
        self.texts.insert(name, text);
        Ok(())
    }
}
