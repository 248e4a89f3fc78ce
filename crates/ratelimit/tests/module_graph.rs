//! The crate's modules import each other one way only: this reads `src/` and fails on
//! any cycle of `crate::` imports (test modules excluded), printing the graph.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    // A module's extra files (`#[path]`) belong to it.
    name.strip_suffix("_names")
        .map(str::to_string)
        .unwrap_or(name)
}

fn imports(src: &str) -> BTreeSet<String> {
    let code = src.split("#[cfg(test)]").next().unwrap_or("");
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty() && m != "pb")
        .collect()
}

fn walk(dir: &Path, root: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            walk(&path, root, graph);
            continue;
        }
        let rel = path.strip_prefix(root).unwrap();
        let name = rel.to_string_lossy();
        if !name.ends_with(".rs") || name.contains("tests") {
            continue;
        }
        let module = module_of(rel);
        let deps = imports(&std::fs::read_to_string(&path).unwrap());
        graph
            .entry(module.clone())
            .or_default()
            .extend(deps.into_iter().filter(|d| *d != module));
    }
}

#[test]
fn modules_have_no_import_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    walk(&root, &root, &mut graph);
    for (m, deps) in &graph {
        eprintln!(
            "{m:18} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    // Depth-first search; a module met again while on the stack closes a cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| s == m) {
            panic!("import cycle: {} -> {m}", stack[at..].join(" -> "));
        }
        if !done.insert(m.to_string()) {
            return;
        }
        stack.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, stack, done);
        }
        stack.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.len() > 20, "the crate's modules were found");
}
