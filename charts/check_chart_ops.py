#!/usr/bin/env python3
"""Checks what the chart does for operations, rendered with helm-python-sdk (no cluster):

- values.schema.json refuses unknown, misspelt and mistyped values (render and lint), and
  the templates refuse inconsistent ones (a grace period shorter than the drain);
- every replicated component has a PodDisruptionBudget that selects exactly its pods, and
  a single-replica one has none (it would block node drains);
- Envoy: readiness on its own /ready (through the metrics listener, to the loopback admin
  API), the preStop hook is charts/portcullis/files/envoy-prestop.sh waiting for the drain
  sidecar's done file, the sidecar runs `portcullis drain` with flags the binary declares,
  Envoy drains immediately, and the grace period outlasts the drain;
- tracing values reach every Portcullis container (OTEL_EXPORTER_OTLP_ENDPOINT) and the
  controller's Envoy settings (PORTCULLIS_OTLP_COLLECTOR, PORTCULLIS_TRACE_SAMPLING);
- NetworkPolicies: one per workload, covering exactly its container ports, each port open
  to the right pods (evaluated against the rendered workloads' labels);
- per-component pod settings, externalTrafficPolicy, and RBAC names.

Run: PYTHONPATH=tools/helm python3 charts/check_chart_ops.py   (from the repository root)
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_chart import CHART, NAMESPACE, RELEASE, ROOT, documents, helm  # noqa: E402

FAILURES = []
PORTCULLIS_CONTAINERS = ("controller", "authz", "ratelimit", "accesslog")
COMPONENT_VALUES = {"controller": ("controller",), "authz": ("authz",), "ratelimit": ("ratelimit",),
                    "accesslog": ("accessLog", "service"), "envoy": ("envoy",), "redis": ("redis",)}


def fail(case, message):
    FAILURES.append(f"[{case}] {message}")


def render(values):
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {(d["kind"], d["metadata"]["name"]): d for _, d in documents(rendered)}


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def workloads(objs):
    """component -> {kind, name, labels, pod, min}: min is the least number of pods."""
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o["spec"]["minReplicas"]
            for (k, _), o in objs.items() if k == "HorizontalPodAutoscaler"}
    out = {}
    for (kind, name), o in objs.items():
        if kind not in ("Deployment", "DaemonSet"):
            continue
        tpl = o["spec"]["template"]
        component = tpl["metadata"]["labels"]["app.kubernetes.io/component"]
        least = None if kind == "DaemonSet" else hpas.get(name, o["spec"].get("replicas", 1))
        out[component] = {"kind": kind, "name": name, "labels": tpl["metadata"]["labels"],
                          "pod": tpl["spec"], "min": least}
    return out


def of_kind(objs, kind):
    return [o for (k, _), o in objs.items() if k == kind]


def values_of(merged, component):
    v = merged
    for k in COMPONENT_VALUES[component]:
        v = v[k]
    return v


# --- schema ------------------------------------------------------------------------------

def check_schema():
    refused = [
        ({"envoy": {"replcas": 3}}, "replcas"),
        ({"controler": {"replicas": 3}}, "controler"),
        ({"controller": {"pdb": {"minAvailable": 1}}}, "minAvailable"),
        ({"authz": {"config": {"keyStor": {}}}}, "keyStor"),
        ({"envoy": {"service": {"externalTrafficPolicy": "local"}}}, "externalTrafficPolicy"),
        ({"tracing": {"otlpEndpoint": "collector:4317"}}, "otlpEndpoint"),
        ({"controller": {"xdsPort": 70000}}, "xdsPort"),
        ({"networkPolicy": {"metricsNamespaceSelector": {"matchLabel": {"a": "b"}}}}, "matchLabel"),
        ({"ratelimit": {"extraEnv": [{"value": "no name"}]}}, "extraEnv"),
        ({"envoy": {"drain": {"timeoutSeconds": "60"}}}, "timeoutSeconds"),
    ]
    for values, key in refused:
        case = f"schema {json.dumps(values)}"
        try:
            helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            fail(case, "rendered; the schema must refuse it")
        except helm.HelmValuesError as e:
            if key not in str(e):
                fail(case, f"refused without naming {key}: {e}")
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        if not any(key in e for e in report["errors"]):
            fail(case, f"helm lint does not report {key}: {report['errors']}")
    # Consistent types but inconsistent settings: the templates say what to change.
    inconsistent = [
        ({"envoy": {"terminationGracePeriodSeconds": 60}}, "terminationGracePeriodSeconds"),
        ({"envoy": {"drain": {"minSeconds": 60, "timeoutSeconds": 30}}}, "minSeconds"),
        ({"authz": {"config": {"apiKeyHeader": "x-key"}}}, "moved to the top-level value apiKeyHeader"),
    ]
    for values, message in inconsistent:
        case = f"template {json.dumps(values)}"
        try:
            render(values)
            fail(case, "rendered; the templates must refuse it")
        except helm.HelmRenderError as e:
            if message not in str(e):
                fail(case, f"refused without saying {message!r}: {e}")


# --- PodDisruptionBudgets -------------------------------------------------------------------

def check_pdbs(case, objs):
    pdbs = of_kind(objs, "PodDisruptionBudget")
    loads = workloads(objs)
    for pdb in pdbs:
        sel = pdb["spec"]["selector"]["matchLabels"]
        hit = [c for c, w in loads.items() if labels_match(sel, w["labels"])]
        if len(hit) != 1:
            fail(case, f"PDB {pdb['metadata']['name']} selects {hit}, not exactly one workload")
        if "maxUnavailable" not in pdb["spec"]:
            fail(case, f"PDB {pdb['metadata']['name']} has no maxUnavailable")
    for component, w in loads.items():
        covering = [p for p in pdbs if labels_match(p["spec"]["selector"]["matchLabels"], w["labels"])]
        replicated = w["min"] is not None and w["min"] > 1
        if replicated and len(covering) != 1:
            fail(case, f"{component} runs at least {w['min']} pods but has {len(covering)} PDBs")
        if not replicated and covering:
            fail(case, f"{component} ({w['kind']}, min {w['min']}) has a PDB: it would block node drains")


# --- Envoy: readiness, preStop, drain sidecar ------------------------------------------------

def drain_flags():
    """--flags of `portcullis drain`: the fields of DrainArgs (clap derives --kebab-case)."""
    text = open(os.path.join(ROOT, "crates/portcullis/src/drain.rs")).read()
    body = text[text.index("pub struct DrainArgs"):]
    body = body[:body.index("\n}")]
    return {"--" + f.replace("_", "-") for f in re.findall(r"pub (\w+):", body)}


def flag_values(args):
    out, i = {}, 0
    while i < len(args):
        if args[i].startswith("--"):
            if i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
                out[args[i]] = str(args[i + 1])
                i += 2
                continue
            out[args[i]] = True
        i += 1
    return out


def check_envoy_drain(case, merged, objs):
    e = merged["envoy"]
    w = workloads(objs).get("envoy")
    if not w:
        fail(case, "no Envoy workload")
        return
    pod = w["pod"]
    containers = {c["name"]: c for c in pod["containers"]}
    envoy, sidecar = containers.get("envoy"), containers.get("drain")
    if not envoy or not sidecar:
        fail(case, f"Envoy pod containers {sorted(containers)}: want envoy and drain")
        return
    # Readiness: Envoy's /ready through the metrics listener to the loopback admin API.
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    probe = (envoy.get("readinessProbe") or {}).get("httpGet") or {}
    if probe.get("path") != "/ready" or ports.get(probe.get("port")) != e["metricsPort"]:
        fail(case, f"Envoy readiness probe {probe} is not GET /ready on the metrics port {e['metricsPort']}")
    bootstrap = json.loads(objs[("ConfigMap", f"{RELEASE}-portcullis-envoy-bootstrap")]["data"]["envoy.json"])
    listener = next(l for l in bootstrap["static_resources"]["listeners"] if l["name"] == "_portcullis/metrics")
    if listener["address"]["socket_address"]["port_value"] != e["metricsPort"]:
        fail(case, "the metrics listener is not on envoy.metricsPort")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    ready = [r for r in routes if r["match"].get("path") == "/ready"]
    admin = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "_portcullis/envoy-admin")
    admin_addr = admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    if not ready or ready[0]["route"]["cluster"] != "_portcullis/envoy-admin" or \
            ready[0]["match"].get("headers") != [{"name": ":method", "string_match": {"exact": "GET"}}]:
        fail(case, f"the metrics listener does not route GET /ready (only) to the admin API: {ready}")
    if admin_addr != {"address": "127.0.0.1", "port_value": e["adminPort"]} or \
            bootstrap["admin"]["address"]["socket_address"] != admin_addr:
        fail(case, f"the admin API is not on 127.0.0.1:{e['adminPort']}: {admin_addr}")
    # The drain sidecar: `portcullis drain` with flags the binary has.
    args = sidecar.get("args") or []
    flags = flag_values(args[1:])
    known = drain_flags()
    if args[:1] != ["drain"] or not set(flags) <= known or len(known) < 4:
        fail(case, f"drain sidecar args {args}: not `drain` with flags of DrainArgs {sorted(known)}")
    want = {"--on-signal": True, "--admin": f"127.0.0.1:{e['adminPort']}",
            "--min-seconds": str(e["drain"]["minSeconds"]), "--timeout-seconds": str(e["drain"]["timeoutSeconds"])}
    for k, v in want.items():
        if flags.get(k) != v:
            fail(case, f"drain sidecar {k}={flags.get(k)!r}, want {v!r}")
    if not sidecar["image"].startswith(merged["image"]["repository"] + ":"):
        fail(case, f"drain sidecar image {sidecar['image']} is not the portcullis image")
    done = flags.get("--done-file", "")
    # Envoy's preStop hook is the script file, waiting for that done file.
    hook = ((envoy.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    script = open(os.path.join(CHART, "files/envoy-prestop.sh")).read()
    if hook[:3] != ["/bin/sh", "-c", script] or len(hook) != 6 or hook[4] != done:
        fail(case, f"Envoy's preStop hook is not files/envoy-prestop.sh waiting for {done}: {hook[:2]}…{hook[3:]}")
        return
    limit = int(hook[5])
    # The done file lives on one volume both containers mount (the sidecar writably).
    d = os.path.dirname(done)
    mounts = {n: {m["mountPath"]: m for m in c.get("volumeMounts", [])} for n, c in containers.items()}
    vol = {v["name"]: v for v in pod.get("volumes", [])}
    em, sm = mounts["envoy"].get(d), mounts["drain"].get(d)
    if not em or not sm or em["name"] != sm["name"] or "emptyDir" not in vol.get(em["name"], {}) or sm.get("readOnly"):
        fail(case, f"{d} is not one emptyDir mounted in both containers (writable for the sidecar)")
    eflags = flag_values(envoy["args"])
    if eflags.get("--drain-strategy") != "immediate":
        fail(case, "Envoy does not run with --drain-strategy immediate")
    if int(eflags.get("--drain-time-s", 0)) < e["drain"]["timeoutSeconds"]:
        fail(case, f"Envoy's --drain-time-s {eflags.get('--drain-time-s')} is shorter than the drain timeout")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not (e["drain"]["timeoutSeconds"] <= limit < grace and grace >= e["drain"]["timeoutSeconds"] + 10):
        fail(case, f"drain timeout {e['drain']['timeoutSeconds']}s, preStop limit {limit}s, grace period {grace}s: "
                   "the hook must outwait the drain and the grace period outlast both")


# --- tracing -------------------------------------------------------------------------------

def check_tracing(case, merged, objs):
    endpoint = merged["tracing"]["otlpEndpoint"]
    for component, w in workloads(objs).items():
        for c in w["pod"]["containers"]:
            env = {x["name"]: x.get("value") for x in c.get("env", [])}
            if c["name"] in PORTCULLIS_CONTAINERS:
                if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != (endpoint or None):
                    fail(case, f"{c['name']}: OTEL_EXPORTER_OTLP_ENDPOINT={env.get('OTEL_EXPORTER_OTLP_ENDPOINT')!r}, "
                               f"tracing.otlpEndpoint={endpoint!r}")
            if c["name"] == "controller":
                want = (endpoint.removeprefix("http://") or None,
                        str(merged["tracing"]["samplingPercent"]) if endpoint else None)
                got = (env.get("PORTCULLIS_OTLP_COLLECTOR"), env.get("PORTCULLIS_TRACE_SAMPLING"))
                if got != want:
                    fail(case, f"controller: Envoy's collector and sampling {got}, want {want}")


# --- NetworkPolicies -----------------------------------------------------------------------

def peers_reach(peers, loads):
    """The components whose pods a list of peers admits; "any" for no list; namespace
    peers are returned as they are."""
    if not peers:
        return "any"
    hit = set()
    for p in peers:
        if "podSelector" in p and "namespaceSelector" not in p:
            hit |= {c for c, w in loads.items() if labels_match(p["podSelector"].get("matchLabels"), w["labels"])}
        else:
            hit.add(json.dumps(p, sort_keys=True))
    return hit


def check_network_policies(case, merged, objs):
    pols = of_kind(objs, "NetworkPolicy")
    loads = workloads(objs)
    np = merged["networkPolicy"]
    if not np["enabled"]:
        if pols:
            fail(case, "networkPolicy.enabled=false still renders NetworkPolicies")
        return
    sel = np["metricsNamespaceSelector"]
    metrics = "any" if sel is None else {json.dumps({"namespaceSelector": sel}, sort_keys=True)}
    webhook = peers_reach(np["webhookFrom"], loads)
    envoy_only = {"envoy"} if "envoy" in loads else "nobody"
    xds = {"envoy"} | ({"ratelimit"} if "ratelimit" in loads else set())
    want = {
        ("envoy", merged["controller"]["listenPort"]): "any",
        ("envoy", merged["envoy"]["metricsPort"]): metrics,
        ("controller", merged["controller"]["xdsPort"]): xds,
        ("controller", merged["controller"]["adminPort"]): metrics,
        ("controller", merged["controller"]["webhookPort"]): webhook,
        ("authz", merged["authz"]["port"]): envoy_only,
        ("authz", merged["authz"]["metricsPort"]): metrics,
        ("ratelimit", merged["ratelimit"]["port"]): envoy_only,
        ("ratelimit", merged["ratelimit"]["metricsPort"]): metrics,
        ("accesslog", merged["accessLog"]["service"]["port"]): envoy_only,
        ("accesslog", merged["accessLog"]["service"]["metricsPort"]): metrics,
        ("redis", 6379): {"ratelimit"},
    }
    for component, w in loads.items():
        mine = [p for p in pols if labels_match(p["spec"]["podSelector"]["matchLabels"], w["labels"])]
        if len(mine) != 1 or mine[0]["spec"].get("policyTypes") != ["Ingress"]:
            fail(case, f"{component}: {len(mine)} NetworkPolicies (want one, ingress)")
            continue
        open_to = {}
        for rule in mine[0]["spec"].get("ingress") or []:
            for p in rule["ports"]:
                open_to[p["port"]] = peers_reach(rule.get("from"), loads)
        container_ports = {p["containerPort"] for c in w["pod"]["containers"] for p in c.get("ports", [])}
        if set(open_to) != container_ports:
            fail(case, f"{component}: the policy opens ports {sorted(open_to)}, the pods listen on {sorted(container_ports)}")
        for port, got in open_to.items():
            expected = want.get((component, port))
            if expected is None or got != expected:
                fail(case, f"{component} port {port} is open to {got}, want {expected}")
    for p in pols:
        if not any(labels_match(p["spec"]["podSelector"]["matchLabels"], w["labels"]) for w in loads.values()):
            fail(case, f"NetworkPolicy {p['metadata']['name']} selects no workload")


# --- pod settings, Service, RBAC -----------------------------------------------------------

def check_pod_settings(case, merged, objs):
    for component, w in workloads(objs).items():
        v = values_of(merged, component)
        pod, main = w["pod"], w["pod"]["containers"][0]
        env = main.get("env") or []
        for e in v["extraEnv"]:
            if e not in env:
                fail(case, f"{component}: extraEnv {e} missing from its container")
        annotations = w.get("annotations") or objs_pod_annotations(objs, w)
        for k, val in v["podAnnotations"].items():
            if annotations.get(k) != val:
                fail(case, f"{component}: pod annotation {k} missing")
        if pod.get("priorityClassName", "") != v["priorityClassName"]:
            fail(case, f"{component}: priorityClassName {pod.get('priorityClassName')!r}, want {v['priorityClassName']!r}")
        tsc = pod.get("topologySpreadConstraints") or []
        if len(tsc) != len(v["topologySpreadConstraints"]):
            fail(case, f"{component}: {len(tsc)} topologySpreadConstraints, values have {len(v['topologySpreadConstraints'])}")
        for given, got in zip(v["topologySpreadConstraints"], tsc):
            want_sel = given.get("labelSelector") or {"matchLabels": {k: x for k, x in w["labels"].items()}}
            if got.get("labelSelector") != want_sel or got["topologyKey"] != given["topologyKey"]:
                fail(case, f"{component}: topology spread {got} does not spread its own pods as given {given}")


def objs_pod_annotations(objs, w):
    return objs[(w["kind"], w["name"])]["spec"]["template"]["metadata"].get("annotations") or {}


def check_service(case, merged, objs):
    svc = objs.get(("Service", f"{RELEASE}-portcullis-envoy"))
    s = merged["envoy"]["service"]
    want = s["externalTrafficPolicy"] if s["type"] in ("LoadBalancer", "NodePort") and s["externalTrafficPolicy"] else None
    if svc and svc["spec"].get("externalTrafficPolicy") != want:
        fail(case, f"Envoy Service externalTrafficPolicy {svc['spec'].get('externalTrafficPolicy')}, want {want}")


def check_rbac(case, objs):
    role = objs[("Role", f"{RELEASE}-portcullis-controller-lease")]
    crole = objs[("ClusterRole", f"{RELEASE}-portcullis-controller")]
    lease = {e["name"]: e.get("value") for e in workloads(objs)["controller"]["pod"]["containers"][0]["env"]}["PORTCULLIS_LEASE_NAME"]
    if not any("configmaps" in r["resources"] for r in role["rules"]):
        fail(case, "the controller may not write its xDS report ConfigMap")
    for r in role["rules"] + crole["rules"]:
        if "*" in r.get("verbs", []) + r.get("resources", []) + r.get("apiGroups", []):
            fail(case, f"wildcard rule {r}")
        # Hosts' certificates and Services' CAs come from Secrets: read only, never
        # written, and not through the Lease Role of the controller's own namespace.
        if "secrets" in r.get("resources", []) and (
            set(r["verbs"]) != {"get", "list", "watch"} or r in role["rules"]
        ):
            fail(case, f"the controller may do more than read Secrets: {r}")
        if "leases" in r["resources"] and set(r["verbs"]) - {"create"} and r.get("resourceNames") != [lease]:
            fail(case, f"lease rule {r} is not limited to the Lease {lease}")
        if "configmaps" in r["resources"] and set(r["verbs"]) != {"list", "create", "patch"}:
            fail(case, f"configmap verbs {r['verbs']}: the controller applies (patch, create) and lists its reports only")
        if "validatingwebhookconfigurations" in r["resources"] and r.get("resourceNames") != [f"{RELEASE}-portcullis-controller"]:
            fail(case, f"webhook configuration rule {r} is not limited to the chart's own")


CASES = {
    "defaults": {},
    "operations": {
        "tracing": {"otlpEndpoint": "http://otel-collector.observability:4317", "samplingPercent": 7},
        "accessLog": {"mode": "grpc", "service": {
            "extraEnv": [{"name": "TZ", "value": "UTC"}], "podAnnotations": {"team": "edge"},
            "priorityClassName": "edge-critical",
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                           "whenUnsatisfiable": "ScheduleAnyway"}]}},
        "networkPolicy": {"metricsNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                          "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.10/32"}}]},
        "envoy": {"drain": {"minSeconds": 10, "timeoutSeconds": 120}, "terminationGracePeriodSeconds": 150,
                  "service": {"externalTrafficPolicy": "Cluster"},
                  "extraEnv": [{"name": "ENVOY_UID", "value": "0"}], "priorityClassName": "system-node-critical",
                  "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                 "whenUnsatisfiable": "DoNotSchedule",
                                                 "labelSelector": {"matchLabels": {"app": "custom"}}}]},
        **{c: {"extraEnv": [{"name": "EXTRA", "value": c}], "podAnnotations": {"example.com/owner": c},
               "priorityClassName": f"{c}-priority",
               "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
                                              "whenUnsatisfiable": "ScheduleAnyway"}]}
           for c in ("controller", "authz", "ratelimit", "redis")},
    },
    "single replicas": {
        "controller": {"replicas": 1}, "authz": {"autoscaling": {"enabled": False}, "replicas": 1},
        "ratelimit": {"autoscaling": {"enabled": False}, "replicas": 1},
        "envoy": {"autoscaling": {"enabled": False}, "replicas": 1, "service": {"type": "ClusterIP"}},
        "accessLog": {"mode": "grpc", "service": {"replicas": 1}},
        "networkPolicy": {"metricsNamespaceSelector": None},
    },
    "daemonset, no policies": {"envoy": {"kind": "DaemonSet"}, "networkPolicy": {"enabled": False},
                               "ratelimit": {"enabled": False}},
}


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main():
    check_schema()
    defaults = helm.Chart.load(CHART).values
    for case, values in CASES.items():
        objs = render(values)
        merged = deep_merge(defaults, values)
        check_pdbs(case, objs)
        check_envoy_drain(case, merged, objs)
        check_tracing(case, merged, objs)
        check_network_policies(case, merged, objs)
        check_pod_settings(case, merged, objs)
        check_service(case, merged, objs)
        check_rbac(case, objs)
    if not of_kind(render(CASES["single replicas"]), "PodDisruptionBudget") == []:
        fail("single replicas", "PDBs rendered for single pods")
    if len(of_kind(render({}), "PodDisruptionBudget")) != 4:
        fail("defaults", "want PDBs for controller, authz, ratelimit and Envoy")
    for f in FAILURES:
        print(f, file=sys.stderr)
    print(f"chart operations: {len(CASES)} cases, schema and template refusals, {len(FAILURES)} failures")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
