#!/usr/bin/env python3
"""Checks the chart's monitoring: the PrometheusRule alerts and the Grafana dashboard.

With helm-python-sdk (no cluster), promtool (Debian `prometheus`) and Envoy (ENVOY_BIN):

1. Renders charts/portcullis with the PrometheusRule, ServiceMonitors and dashboard enabled
   (defaults, and with a label selector), extracts the rule groups and runs
   `promtool check rules` on them. Every alert has a severity, summary, description and a
   runbook_url whose anchor is a heading of docs/observability.md.
2. Runs `promtool test rules` with charts/monitoring/alerts_test.yaml against the rendered
   rules: input series -> the alerts that must (and must not) fire.
3. The dashboard JSON parses, the rendered ConfigMap carries it with the sidecar label, every
   panel has a query, every query parses (promtool, after Grafana variables are
   substituted), and every metric name and label in the dashboard and the rules is in
   charts/monitoring/exported-metrics.txt.
4. Every line of exported-metrics.txt is true: Portcullis metrics are registered in the
   named source file (name and labels as string literals); Envoy metrics are exported by a
   real Envoy with that type and those labels: Envoy runs the chart's own bootstrap, and its
   metrics port serves GET /stats/prometheus and GET /ready (the readiness probe: 200 while
   live, 503 once health checks fail, as during the drain) and nothing else of the admin API.

Exit 1 with the reasons on any failure.
Run: PYTHONPATH=tools/helm python3 charts/check_monitoring.py   (from the repository root)
"""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

try:
    import helm_python as helm
except ImportError:
    sys.exit(
        "helm-python-sdk is missing: python3 -m pip install --target tools/helm helm-python-sdk "
        "and run with PYTHONPATH=tools/helm"
    )

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "portcullis")
HERE = os.path.join(ROOT, "charts", "monitoring")
RELEASE, NAMESPACE = "edge", "gateway"
FAILURES = []
# Labels Prometheus (or the Prometheus Operator's ServiceMonitor) adds to every scraped series.
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container"}
ENABLED = {"metrics": {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True},
                       "grafanaDashboard": {"enabled": True}}}


def fail(message):
    FAILURES.append(message)


def promtool():
    for p in (shutil.which("promtool"), "/usr/bin/promtool"):
        if p and os.access(p, os.X_OK):
            return p
    sys.exit("promtool is missing: `make prometheus` (as root) or apt-get install prometheus")


def render(values):
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for chunk in text.split("\n---"):
            if chunk.strip() and not all(l.strip().startswith("#") or not l.strip() for l in chunk.splitlines()):
                objs.append(helm.values_from_yaml(chunk))
    return objs


def one(objs, kind):
    found = [o for o in objs if o.get("kind") == kind]
    if len(found) != 1:
        fail(f"expected one {kind}, rendered {len(found)}")
        return None
    return found[0]


# --- the list of exported metrics ------------------------------------------------------


def load_exported():
    """name -> (type, labels, source)"""
    out = {}
    with open(os.path.join(HERE, "exported-metrics.txt")) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 4:
                fail(f"exported-metrics.txt:{n}: want `name type labels source`, got {line!r}")
                continue
            name, typ, labels, source = parts
            out[name] = (typ, set() if labels == "-" else set(labels.split(",")), source)
    if len(out) < 20:
        fail(f"exported-metrics.txt lists only {len(out)} metrics")
    return out


def series_names(exported):
    """Every series name an expression may use -> (base name, labels)."""
    names = {}
    for name, (typ, labels, _) in exported.items():
        if typ == "histogram":
            names[name + "_bucket"] = (name, labels | {"le"})
            names[name + "_count"] = (name, labels)
            names[name + "_sum"] = (name, labels)
        else:
            names[name] = (name, labels)
    return names


def check_sources(exported):
    """Each Portcullis metric is registered where the list says."""
    for name, (_, labels, source) in exported.items():
        if source == "envoy":
            continue
        path = os.path.join(ROOT, source)
        if not os.path.isfile(path):
            fail(f"{name}: source {source} does not exist")
            continue
        text = open(path).read()
        if f'"{name}"' not in text:
            fail(f'{name}: {source} does not register it (no "{name}" literal): renamed or removed?')
        for label in labels:
            if f'"{label}"' not in text:
                fail(f'{name}: label {label} is not in {source}')


class Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = {"/ok": 200, "/fail": 503}.get(self.path, 503)  # /health fails: HC failures
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def envoy_stats(envoy, tmp):
    """Starts Envoy on the chart's own bootstrap (its metrics listener included) plus a
    health-checked, outlier-detected cluster `demo/echo` behind a listener, sends /ok and
    /fail through it and returns /stats/prometheus as served by the chart's metrics port."""
    admin_port, metrics_port = free_port(), free_port()
    # Plaintext xDS: the metrics are the same, and no component certificate exists here.
    cm = [o for o in render({"componentTLS": {"mode": "insecure"},
                             "envoy": {"adminPort": admin_port, "metricsPort": metrics_port}})
          if o.get("kind") == "ConfigMap" and "envoy.json" in (o.get("data") or {})]
    bootstrap = json.loads(cm[0]["data"]["envoy.json"])
    # No control plane here: give up on the initial CDS/LDS fetch after 1s, not 15s + 15s.
    for key in ("cds_config", "lds_config"):
        bootstrap["dynamic_resources"][key]["initial_fetch_timeout"] = "1s"
    bootstrap["stats_flush_interval"] = "0.2s"
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    cluster = "demo/echo"
    bootstrap["static_resources"]["listeners"].append({
        "name": "http",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "http",
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
            }}]}],
    })
    bootstrap["static_resources"]["clusters"].append(
        {"name": cluster, "type": "STATIC", "connect_timeout": "1s",
         "health_checks": [{"timeout": "1s", "interval": "0.2s", "unhealthy_threshold": 1,
                            "healthy_threshold": 1, "http_health_check": {"path": "/health"}}],
         "outlier_detection": {"consecutive_5xx": 100},
         "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {
             "address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream.server_address[1]}}}}]}]}})
    path = os.path.join(tmp, "envoy.json")
    with open(path, "w") as f:
        json.dump(bootstrap, f)
    proc = subprocess.Popen([envoy, "-c", path, "--service-node", "check", "--log-level", "error", "--disable-hot-restart"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = f"http://127.0.0.1:{metrics_port}"
    try:
        deadline = time.time() + 60
        listener = None
        while time.time() < deadline and listener is None:
            if proc.poll() is not None:
                raise RuntimeError(f"Envoy exited: {proc.stderr.read()}")
            try:
                listeners = json.loads(get(f"http://127.0.0.1:{admin_port}/listeners?format=json")[1])
                for ls in listeners["listener_statuses"]:
                    if ls["name"] == "http":
                        sa = ls["local_address"]["socket_address"]
                        if get(f"{metrics}/stats/prometheus")[0] == 200:
                            listener = f"{sa['address']}:{sa['port_value']}"
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        if listener is None:
            raise RuntimeError("Envoy did not start its listeners within 60s")
        for p in ("/ok", "/fail"):
            for _ in range(3):
                get(f"http://{listener}{p}")
        time.sleep(1.5)  # health checks run, histograms flush
        # The chart's metrics port is for Prometheus only: the rest of the admin API
        # (which can stop Envoy or dump its configuration) is not reachable through it.
        for method, p in (("POST", "/quitquitquit"), ("GET", "/config_dump"), ("GET", "/stats"),
                          ("POST", "/stats/prometheus"), ("POST", "/healthcheck/fail")):
            status = get(f"{metrics}{p}", method)[0]
            if status != 404:
                fail(f"chart's Envoy metrics port answers {method} {p} with {status}, not 404")
        status, text = get(f"{metrics}/stats/prometheus")
        if status != 200:
            raise RuntimeError(f"GET /stats/prometheus on the chart's metrics port: {status}")
        # The readiness probe asks Envoy itself through the same port: LIVE now, and 503
        # once the drain (`portcullis drain`, on the loopback admin API) fails its checks.
        if get(f"{metrics}/ready")[0] != 200:
            fail("GET /ready on the chart's Envoy metrics port does not answer 200 while Envoy is live")
        if get(f"{metrics}/ready", "POST")[0] != 404:
            fail("the chart's Envoy metrics port answers POST /ready")
        get(f"http://127.0.0.1:{admin_port}/healthcheck/fail", "POST")
        if get(f"{metrics}/ready")[0] != 503:
            fail("GET /ready on the chart's Envoy metrics port does not answer 503 while Envoy drains")
        return text
    finally:
        proc.kill()
        proc.wait()
        upstream.shutdown()


def check_envoy(exported, tmp):
    envoy = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, "tools/envoy/envoy/_bin/envoy")
    if not os.access(envoy, os.X_OK):
        fail(f"no Envoy at {envoy} to check Envoy's metric names: run `make tools` or set ENVOY_BIN")
        return
    try:
        text = envoy_stats(envoy, tmp)
    except (RuntimeError, OSError) as e:
        fail(f"Envoy metrics check: {e}")
        return
    types, labels = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            types[name] = typ
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", line)
            if m:
                name = re.sub(r"_(bucket|count|sum)$", "", m.group(1)) if m.group(1) not in types else m.group(1)
                keys = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or "")) - {"le"}
                labels.setdefault(name, set()).update(keys)
    checked = 0
    for name, (typ, want, source) in exported.items():
        if source != "envoy":
            continue
        checked += 1
        if name not in types:
            fail(f"{name}: this Envoy does not export it (Envoy {envoy})")
        elif types[name] != typ:
            fail(f"{name}: Envoy exports it as a {types[name]}, the list says {typ}")
        elif not want <= labels.get(name, set()):
            fail(f"{name}: Envoy's labels are {sorted(labels.get(name, set()))}, the list says {sorted(want)}")
    if checked < 5:
        fail(f"only {checked} Envoy metrics listed")
    print(f"envoy: {checked} listed metrics checked against {len(types)} exported by Envoy on the chart's bootstrap")


# --- PromQL: the metric names and labels an expression uses ----------------------------

TOKEN = re.compile(r'''"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\[[^\]]*\]|\d+(?:ms|[smhdwy])\b|'''
                   r'''\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[a-zA-Z_:][a-zA-Z0-9_:]*|=~|!~|!=|==|>=|<=|\S''')
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}
# Aggregations may put `by (...)` between their name and their parentheses.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


def grafana_to_promql(expr):
    """Grafana's variables become values Prometheus can parse."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?", r"\1", expr)


def uses(expr):
    """([(metric, {matcher labels})], {grouping labels}) of a PromQL expression."""
    toks = [m.group(0) for m in TOKEN.finditer(expr)]
    metrics, grouping = [], set()
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", t):
            if t in GROUPING and nxt == "(":
                j = i + 2
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        grouping.add(toks[j])
                    j += 1
                i = j + 1
                continue
            # `group_left` may stand without a label list.
            if nxt == "(" or t in KEYWORDS or t in AGGREGATIONS or t in GROUPING:
                i += 1
                continue
            matchers = set()
            if nxt == "{":
                j = i + 2
                while j < len(toks) and toks[j] != "}":
                    if re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", toks[j]) and j + 1 < len(toks) and toks[j + 1] in ("=", "!=", "=~", "!~"):
                        matchers.add(toks[j])
                    j += 1
                i = j + 1
            else:
                i += 1
            metrics.append((t, matchers))
            continue
        if t == "{":
            fail(f"a selector without a metric name: {expr!r}")
        i += 1
    return metrics, grouping


def check_expr(where, expr, allowed, recorded):
    metrics, grouping = uses(expr)
    if not metrics:
        fail(f"{where}: no metric name found in {expr!r}")
    known = set(TARGET_LABELS)
    for name, matchers in metrics:
        if name in recorded:
            known |= recorded[name]
            continue
        if name not in allowed:
            fail(f"{where}: {name} is not a metric the code exports (charts/monitoring/exported-metrics.txt)")
            continue
        labels = allowed[name][1] | TARGET_LABELS
        known |= labels
        for label in matchers - labels:
            fail(f"{where}: {name} has no label {label}")
    for label in grouping - known:
        fail(f"{where}: groups by {label}, which none of its metrics has")
    return metrics


def promtool_check(tool, tmp, groups, what):
    path = os.path.join(tmp, f"{what}.yaml")
    with open(path, "w") as f:
        json.dump({"groups": groups}, f)  # JSON is YAML
    r = subprocess.run([tool, "check", "rules", path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"promtool check rules ({what}):\n{r.stdout}{r.stderr}")
    return path, r.stdout


# --- the checks ------------------------------------------------------------------------


def check_rules(tool, tmp, allowed):
    objs = render(ENABLED)
    rule = one(objs, "PrometheusRule")
    if not rule:
        return None
    groups = rule["spec"]["groups"]
    path, out = promtool_check(tool, tmp, groups, "rules")
    print(out.strip())
    docs = open(os.path.join(ROOT, "docs", "observability.md")).read()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.*)$", docs, re.M)}
    recorded = {}
    alerts = set()
    for g in groups:
        for r in g["rules"]:
            if "record" in r:
                recorded[r["record"]] = uses(r["expr"])[1] or set()
    for g in groups:
        for r in g["rules"]:
            name = r.get("alert") or r.get("record")
            check_expr(f"rule {name}", r["expr"], allowed, recorded)
            if "alert" not in r:
                continue
            alerts.add(name)
            if r.get("labels", {}).get("severity") not in ("critical", "warning"):
                fail(f"alert {name}: severity label missing")
            ann = r.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    fail(f"alert {name}: annotation {key} missing")
            anchor = ann.get("runbook_url", "").rpartition("#")[2]
            if anchor not in anchors:
                fail(f"alert {name}: runbook anchor #{anchor} is not a heading of docs/observability.md")
            if "Runbook:" not in ann.get("description", ""):
                fail(f"alert {name}: description has no `Runbook:` hint")
    want = {"PortcullisServiceErrorRatio", "PortcullisServiceLatencyBudgetBurn", "PortcullisServiceLatencyBudgetBurnSlow",
            "PortcullisEnvoyHealthCheckFailing", "PortcullisServiceNoHealthyEndpoints", "PortcullisEnvoyRejectedConfig",
            "PortcullisEnvoyDisconnected", "PortcullisRateLimitStoreErrors", "PortcullisAuthzBreakerOpen",
            "PortcullisAuthzUnavailable"}
    if want - alerts:
        fail(f"alerts missing: {sorted(want - alerts)}")
    # The unit tests: input series -> expected alerts.
    shutil.copy(os.path.join(HERE, "alerts_test.yaml"), os.path.join(tmp, "alerts_test.yaml"))
    r = subprocess.run([tool, "test", "rules", "alerts_test.yaml"], cwd=tmp, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        fail(f"promtool test rules charts/monitoring/alerts_test.yaml:\n{r.stdout}{r.stderr}")
    else:
        print(r.stdout.strip())
    tested = set(re.findall(r"alertname:\s*(\w+)", open(os.path.join(HERE, "alerts_test.yaml")).read()))
    for a in ("PortcullisServiceErrorRatio", "PortcullisEnvoyRejectedConfig"):
        if a not in tested:
            fail(f"alerts_test.yaml does not test {a}")
    print(f"rules: {len(alerts)} alerts, {len(recorded)} recording rules; unit-tested: {len(tested & alerts)} alerts")

    # The selector reaches every series the rules read; the SLO can be switched off.
    sel = 'namespace="gw-a"'
    custom = render({"metrics": {"prometheusRule": {"enabled": True, "selector": sel, "latencySLO": {"enabled": False},
                                                     "labels": {"release": "kps"}}}})
    rule = one(custom, "PrometheusRule")
    if rule:
        if rule["metadata"]["labels"].get("release") != "kps":
            fail("prometheusRule.labels are not on the PrometheusRule")
        groups = rule["spec"]["groups"]
        promtool_check(tool, tmp, groups, "rules-selector")
        for g in groups:
            for r in g["rules"]:
                for name, matchers in uses(r["expr"])[0]:
                    if name not in recorded and "namespace" not in matchers:
                        fail(f"with a selector, rule {r.get('alert')}: {name} lacks it")
                if r.get("alert", "").startswith("PortcullisServiceLatency"):
                    fail("latencySLO.enabled=false still renders the latency alerts")
    return objs


def check_dashboard(tool, tmp, allowed, objs):
    path = os.path.join(CHART, "dashboards", "portcullis.json")
    try:
        text = open(path).read()
        dash = json.loads(text)
    except (OSError, ValueError) as e:
        fail(f"dashboard: {e}")
        return
    cms = [o for o in objs if o.get("kind") == "ConfigMap" and "portcullis.json" in (o.get("data") or {})]
    if len(cms) != 1:
        fail(f"dashboard ConfigMap: {len(cms)} rendered")
    else:
        cm = cms[0]
        if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
            fail("dashboard ConfigMap lacks the grafana_dashboard: \"1\" label")
        if json.loads(cm["data"]["portcullis.json"]) != dash:
            fail("the dashboard ConfigMap differs from charts/portcullis/dashboards/portcullis.json")
    if any(o.get("kind") == "ConfigMap" and "portcullis.json" in (o.get("data") or {}) for o in render({})):
        fail("the dashboard ConfigMap renders although metrics.grafanaDashboard.enabled is false")
    if not dash.get("uid") or not dash.get("title"):
        fail("dashboard: uid or title missing")
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    exprs, names = [], set()
    for p in panels:
        if p.get("type") == "row":
            continue
        targets = [t for t in p.get("targets", []) if t.get("expr")]
        if not targets:
            fail(f"dashboard panel {p.get('title')!r}: no query")
        for t in targets:
            expr = grafana_to_promql(t["expr"])
            exprs.append({"record": f"panel_{p.get('id')}_{t.get('refId')}", "expr": expr})
            names |= {n for n, _ in check_expr(f"panel {p.get('title')!r}", expr, allowed, {})}
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query":
            m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]+)\s*\)\s*", q or "")
            if not m:
                fail(f"dashboard variable {v.get('name')}: unsupported query {q!r}")
            elif m.group(1) not in allowed or m.group(2) not in allowed[m.group(1)][1]:
                fail(f"dashboard variable {v.get('name')}: {m.group(1)} has no label {m.group(2)}")
    # Every query parses: promtool checks them as recording rules.
    promtool_check(tool, tmp, [{"name": "dashboard", "rules": exprs}], "dashboard")
    groups = {"portcullis_authz_", "portcullis_ratelimit_", "portcullis_xds_", "portcullis_accesslog_", "envoy_cluster_"}
    for g in groups:
        if not any(n.startswith(g) for n in names):
            fail(f"dashboard: no panel shows {g}* metrics")
    print(f"dashboard: {len([p for p in panels if p.get('type') != 'row'])} panels, {len(exprs)} queries, "
          f"{len(names)} metric names, all exported")


def main():
    tool = promtool()
    exported = load_exported()
    allowed = series_names(exported)
    check_sources(exported)
    with tempfile.TemporaryDirectory() as tmp:
        check_envoy(exported, tmp)
        objs = check_rules(tool, tmp, allowed)
        if objs:
            check_dashboard(tool, tmp, allowed, objs)
    for f in FAILURES:
        print(f, file=sys.stderr)
    print(f"monitoring: {'FAILED, ' + str(len(FAILURES)) + ' problem(s)' if FAILURES else 'ok'}")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
