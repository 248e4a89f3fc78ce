#!/usr/bin/env python3
"""Lints and renders charts/portcullis with helm-python-sdk (the Helm Go SDK, no cluster).

Checks, for default and non-default values: `helm lint --strict` is clean; every rendered
document parses; names, selectors and references agree (Services select a workload,
HPAs/PDBs/bindings point at objects that exist); every container runs non-root with a
read-only root filesystem; the Envoy bootstrap points at the xds Service and passes
`envoy --mode validate` (ENVOY_BIN); every PORTCULLIS_* env of a Portcullis container is a
clap flag of the binary (`env = "…"` in crates/*/src), the controller calls the authz and
ratelimit Services on the ports they listen on, the authz config, key file and secrets are
where its env says, and the readiness probes ask grpc.health.v1 for the real service names.
The alerts and the dashboard: charts/check_monitoring.py. Exit 1 with the reasons on any failure.

Run: PYTHONPATH=tools/helm python3 charts/check_chart.py   (from the repository root)
"""
import json
import os
import re
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
    "apiKeyHeader": "x-portcullis-key",
    "identityHeaders": {"user": "x-user-id", "scopes": "x-granted"},
    "authz": {"autoscaling": {"enabled": False}, "port": 9000,
              "config": {"cache": {"ttl": "10s"},
                         "keyStore": {"introspection": {"endpoints": ["https://idp.example/introspect"], "clientId": "gw"}}},
              "keys": {"existingSecret": "api-keys", "key": "keys.yaml"},
              "clientSecret": {"existingSecret": "idp", "key": "secret"},
              "postgresUrl": {"existingSecret": "pg", "key": "url"}},
    "accessLog": {"mode": "grpc", "headers": ["x-team"],
                  "service": {"sink": "kafka://kafka.example:9092/access-logs", "scrub": ["x-session"]}},
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                "grafanaDashboard": {"enabled": True}},
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
    objs, seen = {}, set()
    for path, doc in documents(rendered):
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        name = meta.get("name")
        if not kind or not name or not doc.get("apiVersion"):
            fail(case, f"{path}: object without apiVersion/kind/name")
            continue
        # Roles per watched namespace share a name: a duplicate is one per namespace.
        where = (kind, meta.get("namespace"), name)
        if where in seen:
            fail(case, f"{path}: duplicate {kind} {name}")
        seen.add(where)
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
            # The drain sidecar listens on nothing and idles until SIGTERM: no probe applies.
            probed = c["name"] != "drain"
            if (probed and (not c.get("readinessProbe") or not c.get("livenessProbe"))) or not c.get("resources"):
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
    check_wiring(case, values, objs)
    return objs


# Flags the chart sets that another branch adds (issue 19: the header settings). The check
# fails once a name here is declared, so this list cannot outlive the merge.


def declared_env():
    """Every `env = "…"` a clap flag of the binary declares (crates/*/src)."""
    names = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, "crates")):
        if os.sep + "src" not in dirpath:
            continue
        for f in files:
            if f.endswith(".rs"):
                names |= set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', open(os.path.join(dirpath, f)).read()))
    return names


def subset(want, got):
    """`want` (values given) is in `got` (values merged with the chart's defaults)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(subset(v, got.get(k)) for k, v in want.items())
    return want == got


def container(objs, component):
    d = objs.get(("Deployment", f"{RELEASE}-portcullis-{component}"))
    return (d["spec"]["template"]["spec"], d["spec"]["template"]["spec"]["containers"][0]) if d else (None, None)


def env_of(c):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def service_addr(case, objs, component, addr, scheme=""):
    """`addr` is host:port of the component's Service, on one of its ports."""
    svc = f"{RELEASE}-portcullis-{component}"
    want_host = f"{scheme}{svc}.{NAMESPACE}.svc"
    host, _, port = (addr or "").rpartition(":")
    if host != want_host or ("Service", svc) not in objs:
        fail(case, f"{addr!r} is not the {component} Service ({want_host}:<port>)")
    elif int(port) not in [p["port"] for p in objs[("Service", svc)]["spec"]["ports"]]:
        fail(case, f"{addr!r}: port {port} is not a port of Service {svc}")
    return int(port) if port.isdigit() else None


def check_wiring(case, values, objs):
    """The Portcullis containers get the flags the binary really has, pointing at what
    the chart renders: env names from the clap declarations, addresses of the Services,
    the authz config, key file and secrets where they are mounted, gRPC health probes."""
    declared = declared_env()
    if len(declared) < 20:
        fail(case, f"found only {len(declared)} clap env declarations under crates/*/src")
    for component in ("controller", "authz", "ratelimit", "accesslog"):
        _, c = container(objs, component)
        if c is None:
            continue
        for name in env_of(c):
            if name.startswith("PORTCULLIS_") and name not in declared:
                fail(case, f"{component}: env {name} is not a flag of `portcullis {component}` (no env = \"{name}\" in crates/*/src)")
    _, ctl = container(objs, "controller")
    cenv = env_of(ctl)
    az = helm.Chart.load(CHART).merge_values(values)["authz"]
    pod, c = container(objs, "authz")
    if c:
        env = env_of(c)
        port = service_addr(case, objs, "authz", cenv.get("PORTCULLIS_AUTHZ_ADDR"))
        if env.get("PORTCULLIS_AUTHZ_GRPC_ADDR") != f"0.0.0.0:{port}":
            fail(case, f"authz listens on {env.get('PORTCULLIS_AUTHZ_GRPC_ADDR')}, the controller calls port {port}")
        check_probe(case, "authz", c, port, "envoy.service.auth.v3.Authorization")
    header = values.get("apiKeyHeader", "x-api-key")
    if cenv.get("PORTCULLIS_API_KEY_HEADER") != header:
        fail(case, f"controller's API key header {cenv.get('PORTCULLIS_API_KEY_HEADER')}, values say {header}")
    ids = values.get("identityHeaders") or {}
    want_ids = ",".join(f"{k}={v}" for k, v in sorted(ids.items())) or None
    if cenv.get("PORTCULLIS_IDENTITY_HEADERS") != want_ids:
        fail(case, f"PORTCULLIS_IDENTITY_HEADERS={cenv.get('PORTCULLIS_IDENTITY_HEADERS')}, values say {want_ids}")
    if c:
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}

        def mounted(path):
            d, _, f = path.rpartition("/")
            return volumes.get(mounts.get(d)), f

        if az.get("config"):
            vol, f = mounted(env.get("PORTCULLIS_AUTHZ_CONFIG", ""))
            cm = vol and objs.get(("ConfigMap", vol.get("configMap", {}).get("name")))
            if not cm or f not in cm.get("data", {}):
                fail(case, f"PORTCULLIS_AUTHZ_CONFIG={env.get('PORTCULLIS_AUTHZ_CONFIG')} is not a key of a mounted ConfigMap")
            elif not subset(az["config"], helm.values_from_yaml(cm["data"][f])):
                fail(case, f"the authz ConfigMap {cm['data'][f]!r} does not hold authz.config {az['config']}")
        keys = (az.get("keys") or {}).get("existingSecret")
        if keys:
            vol, f = mounted(env.get("PORTCULLIS_AUTHZ_KEYS_FILE", ""))
            secret = (vol or {}).get("secret") or {}
            if secret.get("secretName") != keys or f not in [i["path"] for i in secret.get("items", [])]:
                fail(case, f"PORTCULLIS_AUTHZ_KEYS_FILE={env.get('PORTCULLIS_AUTHZ_KEYS_FILE')} is not the file of Secret {keys}")
        elif "PORTCULLIS_AUTHZ_KEYS_FILE" in env:
            fail(case, "a key file is passed without authz.keys.existingSecret")
        for key, var in (("clientSecret", "PORTCULLIS_AUTHZ_CLIENT_SECRET"), ("postgresUrl", "PORTCULLIS_AUTHZ_POSTGRES_URL")):
            want = (az.get(key) or {}).get("existingSecret") or None
            got = ((env.get(var) or {}).get("secretKeyRef") or {}).get("name") if isinstance(env.get(var), dict) else None
            if want != got:
                fail(case, f"{var} comes from Secret {got}, values say {want}")
    mode = values.get("accessLog", {}).get("mode", "file")
    _, c = container(objs, "accesslog")
    if (c is not None) != (mode == "grpc"):
        fail(case, f"accessLog.mode {mode}: the accesslog Deployment is {'missing' if c is None else 'rendered'}")
    if c:
        env = env_of(c)
        port = service_addr(case, objs, "accesslog", cenv.get("PORTCULLIS_ACCESSLOG_ADDR"))
        if env.get("PORTCULLIS_ACCESSLOG_GRPC_ADDR") != f"0.0.0.0:{port}":
            fail(case, f"accesslog listens on {env.get('PORTCULLIS_ACCESSLOG_GRPC_ADDR')}, Envoy is sent to port {port}")
        want = values["accessLog"].get("service", {}).get("sink", "stdout")
        if env.get("PORTCULLIS_ACCESSLOG_SINK") != want:
            fail(case, f"accesslog sink {env.get('PORTCULLIS_ACCESSLOG_SINK')}, values say {want}")
        if "PORTCULLIS_ACCESSLOG_FILE" in cenv:
            fail(case, "grpc mode also turns on Envoy's file access log")
    elif mode == "file" and cenv.get("PORTCULLIS_ACCESSLOG_FILE") != "/dev/stdout":
        fail(case, "file mode: the controller does not give Envoy a file access log")
    pod, c = container(objs, "ratelimit")
    if c:
        env = env_of(c)
        port = service_addr(case, objs, "ratelimit", cenv.get("PORTCULLIS_RATELIMIT_ADDR"))
        if env.get("PORTCULLIS_RATELIMIT_GRPC_ADDR") != f"0.0.0.0:{port}":
            fail(case, f"ratelimit listens on {env.get('PORTCULLIS_RATELIMIT_GRPC_ADDR')}, the controller calls port {port}")
        check_probe(case, "ratelimit", c, port, "envoy.service.ratelimit.v3.RateLimitService")
        # tonic needs the scheme: https when the components speak mTLS.
        scheme = "http://" if "PORTCULLIS_INSECURE" in env else "https://"
        xds = service_addr(case, objs, "xds", env.get("PORTCULLIS_RATELIMIT_XDS_ADDR"), scheme=scheme)
        if xds is not None and xds != values.get("controller", {}).get("xdsPort", 18000):
            fail(case, f"ratelimit subscribes on port {xds}, not the xDS port")


def check_probe(case, component, c, port, service):
    """Plaintext: grpc.health.v1 of the real service. mTLS: the kubelet's gRPC probe
    cannot speak TLS, so the gRPC port accepting is readiness."""
    probe = c.get("readinessProbe") or {}
    if "PORTCULLIS_INSECURE" in env_of(c):
        if probe.get("grpc") != {"port": port, "service": service}:
            fail(case, f"{component} readiness probe {probe} is not grpc.health.v1 of {service} on {port}")
    elif probe.get("tcpSocket") != {"port": "grpc"}:
        fail(case, f"{component} readiness probe {probe} is not a TCP check of the grpc port (mTLS)")


def check_images(case, values, workloads):
    repo = values.get("image", {}).get("repository", "ghcr.io/portcullis-dev/portcullis")
    for (_, name), w in workloads.items():
        for c in w["spec"]["template"]["spec"]["containers"]:
            if c["name"] in ("controller", "authz", "ratelimit", "accesslog", "drain") and not c["image"].startswith(repo + ":"):
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
    with tempfile.TemporaryDirectory() as d, tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        # The mounted mTLS Secret's files: a throwaway certificate where they would be.
        text = json.dumps(bootstrap)
        if "/etc/portcullis/mtls/" in text or len(cm["data"]) > 1:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-subj", "/CN=check", "-days", "1", "-keyout", f"{d}/tls.key",
                            "-out", f"{d}/tls.crt"], check=True, capture_output=True)
            subprocess.run(["cp", f"{d}/tls.crt", f"{d}/ca.crt"], check=True)
            text = text.replace("/etc/portcullis/mtls/", d + "/")
            # The path-based SDS files next to the bootstrap, pointing at the same files.
            for key, sds in cm["data"].items():
                if key != "envoy.json":
                    with open(os.path.join(d, key), "w") as out:
                        out.write(sds.replace("/etc/portcullis/mtls", d))
            text = text.replace("/etc/envoy/", d + "/")
        f.write(text)
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
    if ("ConfigMap", f"{RELEASE}-portcullis-dashboard") not in custom or ("ConfigMap", f"{RELEASE}-portcullis-dashboard") in defaults:
        fail("non-default", "the dashboard ConfigMap does not follow metrics.grafanaDashboard.enabled")
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
