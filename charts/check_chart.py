#!/usr/bin/env python3
"""Lints and renders charts/portcullis with helm-python-sdk (the Helm Go SDK, no cluster).

Checks, for default and non-default values: `helm lint --strict` is clean; every rendered
document parses; names, selectors and references agree (Services select a workload,
HPAs/PDBs/bindings point at objects that exist); every container runs non-root with a
read-only root filesystem; the Envoy bootstrap points at the xds Service and passes
`envoy --mode validate` (ENVOY_BIN). Exit 1 with the reasons on any failure.

Run: PYTHONPATH=tools/helm python3 charts/check_chart.py   (from the repository root)
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import helm_python as helm
except ImportError:
    sys.exit(
        "helm-python-sdk is missing: python3 -m pip install --target tools/helm helm-python-sdk "
        "and run with PYTHONPATH=tools/helm"
    )

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "portcullis")
RELEASE, NAMESPACE = "edge", "gateway"
FAILURES = []

NON_DEFAULT = {
    "image": {"repository": "registry.example/portcullis", "tag": "1.2.3"},
    "controller": {"replicas": 3, "namespaces": ["team-a", "team-b"], "labelSelector": "gateway=public"},
    "webhook": {"failurePolicy": "Ignore", "certManager": {"enabled": True}},
    "redis": {"enabled": False, "externalUrl": "redis://redis.example:6379"},
    "envoy": {"kind": "DaemonSet", "delta": True, "image": {"repository": "mirror.example/envoy", "tag": "v1.36.2"}},
    "authz": {"autoscaling": {"enabled": False}},
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
}


def fail(case, message):
    FAILURES.append(f"[{case}] {message}")


def documents(rendered):
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for chunk in text.split("\n---"):
            if not chunk.strip() or all(l.strip().startswith("#") or not l.strip() for l in chunk.splitlines()):
                continue
            yield path, helm.values_from_yaml(chunk)


def check(case, values):
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    for m in report["messages"]:
        if m["severity"] >= 2:
            fail(case, f"lint: {m['path']}: {m['error']}")
    for e in report["errors"]:
        fail(case, f"lint: {e}")
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    if not rendered.get("portcullis/templates/NOTES.txt", "").strip():
        fail(case, "NOTES.txt renders empty")
    objs = {}
    for path, doc in documents(rendered):
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        name = meta.get("name")
        if not kind or not name or not doc.get("apiVersion"):
            fail(case, f"{path}: object without apiVersion/kind/name")
            continue
        if (kind, name) in objs:
            fail(case, f"{path}: duplicate {kind} {name}")
        objs[(kind, name)] = doc
        labels = meta.get("labels") or {}
        if labels.get("app.kubernetes.io/instance") != RELEASE or labels.get("app.kubernetes.io/name") != "portcullis":
            fail(case, f"{kind} {name}: missing app.kubernetes.io labels")
        if not name.startswith(f"{RELEASE}-portcullis") and kind != "ValidatingWebhookConfiguration":
            fail(case, f"{kind} {name}: not named after the release")
    workloads = {k: v for k, v in objs.items() if k[0] in ("Deployment", "DaemonSet")}
    for (kind, name), w in workloads.items():
        spec = w["spec"]
        pod_labels = spec["template"]["metadata"]["labels"]
        if any(pod_labels.get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
            fail(case, f"{kind} {name}: selector does not match its pod labels")
        pod = spec["template"]["spec"]
        if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
            fail(case, f"{kind} {name}: pod may run as root")
        for c in pod["containers"]:
            sc = c.get("securityContext") or {}
            if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
                fail(case, f"{kind} {name}/{c['name']}: root filesystem writable or privilege escalation allowed")
            if not c.get("readinessProbe") or not c.get("livenessProbe") or not c.get("resources"):
                fail(case, f"{kind} {name}/{c['name']}: probes or resources missing")
        for v in pod.get("volumes", []):
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in objs:
                fail(case, f"{kind} {name}: ConfigMap {v['configMap']['name']} not rendered")
        sa = pod.get("serviceAccountName")
        if sa and ("ServiceAccount", sa) not in objs:
            fail(case, f"{kind} {name}: ServiceAccount {sa} not rendered")
    for (kind, name), o in objs.items():
        if kind == "Service":
            sel = o["spec"]["selector"]
            if not any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items()) for w in workloads.values()):
                fail(case, f"Service {name} selects no workload")
        if kind == "HorizontalPodAutoscaler":
            ref = o["spec"]["scaleTargetRef"]
            if (ref["kind"], ref["name"]) not in objs:
                fail(case, f"HPA {name} targets missing {ref['kind']} {ref['name']}")
        if kind in ("ClusterRoleBinding", "RoleBinding"):
            role = o["roleRef"]
            if (role["kind"], role["name"]) not in objs:
                fail(case, f"{kind} {name} binds missing {role['kind']} {role['name']}")
        if kind == "ValidatingWebhookConfiguration":
            for wh in o["webhooks"]:
                svc = wh["clientConfig"]["service"]["name"]
                if ("Service", svc) not in objs:
                    fail(case, f"webhook calls missing Service {svc}")
            if wh["failurePolicy"] != values.get("webhook", {}).get("failurePolicy", "Fail"):
                fail(case, "failurePolicy does not follow values")
    check_images(case, values, workloads)
    check_bootstrap(case, values, objs)
    return objs


def check_images(case, values, workloads):
    repo = values.get("image", {}).get("repository", "ghcr.io/portcullis-dev/portcullis")
    for (_, name), w in workloads.items():
        for c in w["spec"]["template"]["spec"]["containers"]:
            if c["name"] in ("controller", "authz", "ratelimit") and not c["image"].startswith(repo + ":"):
                fail(case, f"{name}: image {c['image']} is not from {repo}")
            if c["name"] == "envoy":
                want = values.get("envoy", {}).get("image", {}).get("repository", "envoyproxy/envoy")
                if not c["image"].startswith(want + ":"):
                    fail(case, f"{name}: Envoy image {c['image']} is not from {want}")


def check_bootstrap(case, values, objs):
    cm = objs.get(("ConfigMap", f"{RELEASE}-portcullis-envoy-bootstrap"))
    if not cm:
        fail(case, "Envoy bootstrap ConfigMap not rendered")
        return
    bootstrap = json.loads(cm["data"]["envoy.json"])
    addr = bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    xds_service = f"{RELEASE}-portcullis-xds"
    if addr["address"] != f"{xds_service}.{NAMESPACE}.svc" or ("Service", xds_service) not in objs:
        fail(case, f"bootstrap points at {addr['address']}, not the xds Service")
    ports = [p["port"] for p in objs[("Service", xds_service)]["spec"]["ports"]]
    if addr["port_value"] not in ports:
        fail(case, f"bootstrap port {addr['port_value']} is not a port of the xds Service {ports}")
    api_type = bootstrap["dynamic_resources"]["ads_config"]["api_type"]
    if api_type != ("DELTA_GRPC" if values.get("envoy", {}).get("delta") else "GRPC"):
        fail(case, f"ads api_type {api_type} does not follow envoy.delta")
    envoy = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, "tools/envoy/envoy/_bin/envoy")
    if not os.access(envoy, os.X_OK):
        fail(case, f"no Envoy at {envoy} to validate the bootstrap: run `make tools` or set ENVOY_BIN")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(bootstrap, f)
        f.flush()
        r = subprocess.run([envoy, "--mode", "validate", "-c", f.name, "--service-node", "check", "--log-level", "error"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail(case, f"envoy --mode validate failed: {r.stdout}{r.stderr}")


def main():
    defaults = check("defaults", {})
    for kind in ("Deployment", "HorizontalPodAutoscaler"):
        if (kind, f"{RELEASE}-portcullis-redis") in defaults and kind == "HorizontalPodAutoscaler":
            fail("defaults", "Redis must not autoscale")
    if ("Deployment", f"{RELEASE}-portcullis-redis") not in defaults:
        fail("defaults", "Redis not rendered by default")
    custom = check("non-default", NON_DEFAULT)
    for kind, name in [("DaemonSet", "envoy"), ("Certificate", "controller-webhook"), ("ServiceMonitor", "ratelimit"), ("PrometheusRule", "controller")]:
        if (kind, f"{RELEASE}-portcullis-{name}") not in custom:
            fail("non-default", f"{kind} {name} not rendered")
    if ("Deployment", f"{RELEASE}-portcullis-redis") in custom:
        fail("non-default", "Redis rendered although an external URL is set")
    rl = custom[("Deployment", f"{RELEASE}-portcullis-ratelimit")]["spec"]["template"]["spec"]["containers"][0]["env"]
    if {"name": "PORTCULLIS_RATELIMIT_REDIS_URLS", "value": "redis://redis.example:6379"} not in rl:
        fail("non-default", "ratelimit does not use the external Redis URL")
    for f in FAILURES:
        print(f, file=sys.stderr)
    print(f"chart: {2 - len({f.split(']')[0] for f in FAILURES})} passed, {len({f.split(']')[0] for f in FAILURES})} failed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
