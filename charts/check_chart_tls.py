#!/usr/bin/env python3
"""Checks the chart's mTLS between components (componentTLS), rendered with
helm-python-sdk (no cluster), in every mode:

- Envoy reads its certificate through path-based SDS files watching its Secret volume
  (a renewal needs no restart), and the controller's filter clusters name the same files;
- every gRPC server (the controller's xDS port, authz, ratelimit, accesslog) is given a
  certificate, key and client CA that are files of a volume holding that component's
  Secret, and none runs with PORTCULLIS_INSECURE; Envoy's bootstrap reads its client
  certificate from its own Secret's volume, and the controller tells Envoy to present it
  to the filter services (PORTCULLIS_COMPONENT_MTLS); ratelimit's xDS client uses https
  and its own certificate;
- `controller` (and `auto` without cert-manager's API): the controller's
  PORTCULLIS_COMPONENT_CERTS plan issues exactly the Secrets the pods mount, for the
  names their clients dial (the Services) and the node ids they subscribe as (the pod
  name prefixes); its Role may read and replace only those Secrets and the CA; its own
  xDS key lives in a memory emptyDir;
- `certManager`: a Certificate per mounted Secret with the same names, from the chart's
  private CA Issuer or the given issuerRef;
- `insecure`: plaintext everywhere, no certificate objects.

Run: PYTHONPATH=tools/helm python3 charts/check_chart_tls.py   (from the repository root)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_chart import CHART, NAMESPACE, RELEASE, documents, env_of, helm  # noqa: E402

FAILURES = []
MTLS_DIR = "/etc/portcullis/mtls"
NODE_URI = "spiffe://portcullis/node/"
SERVERS = ("controller", "authz", "ratelimit", "accesslog")


def fail(case, message):
    FAILURES.append(f"[{case}] {message}")


def render(values):
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {(d["kind"], d["metadata"]["name"]): d for _, d in documents(rendered)}


def name(component):
    return f"{RELEASE}-portcullis-{component}"


def host(component):
    return f"{name(component)}.{NAMESPACE}.svc"


def pod_of(objs, component):
    for kind in ("Deployment", "DaemonSet"):
        w = objs.get((kind, name(component)))
        if w:
            return w["spec"]["template"]["spec"]
    return None


def mounted_secret(pod, container, path):
    """The Secret whose volume holds `path` in `container`, or None."""
    d, _, _ = path.rpartition("/")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    vol = next((v for v in pod.get("volumes", []) if v["name"] == mounts.get(d)), None)
    return ((vol or {}).get("secret") or {}).get("secretName")


def servers_secure(case, objs, expect_mounts):
    """Each server's TLS env names files of its own Secret (expect_mounts[component])."""
    for component in SERVERS:
        pod = pod_of(objs, component)
        if pod is None:
            continue
        c = pod["containers"][0]
        env = env_of(c)
        if "PORTCULLIS_INSECURE" in env:
            fail(case, f"{component} runs with PORTCULLIS_INSECURE")
        want = expect_mounts.get(component)
        if want is None:
            continue
        for var, f in (("PORTCULLIS_TLS_CERT", "tls.crt"), ("PORTCULLIS_TLS_KEY", "tls.key"), ("PORTCULLIS_CLIENT_CA", "ca.crt")):
            if env.get(var) != f"{MTLS_DIR}/{f}":
                fail(case, f"{component}: {var}={env.get(var)}, not {MTLS_DIR}/{f}")
            elif mounted_secret(pod, c, env[var]) != want:
                fail(case, f"{component}: {var} is not a file of Secret {want}")
    rl = pod_of(objs, "ratelimit")
    if rl:
        env = env_of(rl["containers"][0])
        if not (env.get("PORTCULLIS_RATELIMIT_XDS_ADDR") or "").startswith("https://"):
            fail(case, f"ratelimit subscribes over {env.get('PORTCULLIS_RATELIMIT_XDS_ADDR')}, not https")
        for var in ("PORTCULLIS_RATELIMIT_XDS_TLS_CERT", "PORTCULLIS_RATELIMIT_XDS_TLS_KEY", "PORTCULLIS_RATELIMIT_XDS_CA"):
            if mounted_secret(rl, rl["containers"][0], env.get(var, "")) != name("ratelimit") + "-tls":
                fail(case, f"ratelimit: {var}={env.get(var)} is not a file of its Secret")
    ctl = env_of(pod_of(objs, "controller")["containers"][0])
    if ctl.get("PORTCULLIS_COMPONENT_MTLS") != "true":
        fail(case, "the controller does not have Envoy present its certificate to the filter services")


def envoy_secure(case, objs):
    pod = pod_of(objs, "envoy")
    envoy = next(c for c in pod["containers"] if c["name"] == "envoy")
    bootstrap = json.loads(objs[("ConfigMap", name("envoy") + "-bootstrap")]["data"]["envoy.json"])
    static = bootstrap["static_resources"]
    # Path-based SDS: one file per secret in the bootstrap ConfigMap (mounted where the
    # controller's PORTCULLIS_COMPONENT_MTLS_SDS_DIR says), each watching the Secret volume.
    cm = objs[("ConfigMap", name("envoy") + "-bootstrap")]["data"]
    bootstrap_dir = next(m["mountPath"] for m in envoy["volumeMounts"] if m["name"] == "bootstrap")
    sds_dir = env_of(pod_of(objs, "controller")["containers"][0]).get("PORTCULLIS_COMPONENT_MTLS_SDS_DIR")
    if sds_dir != bootstrap_dir:
        fail(case, f"the controller points Envoy's filter clusters at SDS files in {sds_dir}, the bootstrap is in {bootstrap_dir}")
    secrets = {}
    for secret in ("portcullis-client-cert", "portcullis-server-ca"):
        doc = json.loads(cm.get(secret + ".json", "null") or "null")
        res = (doc or {}).get("resources") or [{}]
        if len(res) != 1 or res[0].get("name") != secret:
            fail(case, f"no path-based SDS file {secret}.json with that one secret: {doc}")
            continue
        secrets[secret] = res[0]
        body = res[0].get("tls_certificate") or res[0].get("validation_context") or {}
        if (body.get("watched_directory") or {}).get("path") != MTLS_DIR:
            fail(case, f"{secret}.json does not watch {MTLS_DIR}: a renewed Secret would need an Envoy restart")
    if "secrets" in static:
        fail(case, "Envoy's bootstrap has static secrets (read once) besides the SDS files")
    files = [
        secrets.get("portcullis-client-cert", {}).get("tls_certificate", {}).get("certificate_chain", {}).get("filename"),
        secrets.get("portcullis-client-cert", {}).get("tls_certificate", {}).get("private_key", {}).get("filename"),
        secrets.get("portcullis-server-ca", {}).get("validation_context", {}).get("trusted_ca", {}).get("filename"),
    ]
    for f in files:
        if not f or mounted_secret(pod, envoy, f) != name("envoy") + "-tls":
            fail(case, f"Envoy's bootstrap secret file {f} is not a file of Secret {name('envoy')}-tls")
    xds = next(c for c in static["clusters"] if c["name"] == "xds")
    tls = (xds.get("transport_socket") or {}).get("typed_config") or {}
    common = tls.get("common_tls_context") or {}
    def sds(secret):
        return {"name": secret, "sds_config": {"path_config_source": {"path": f"{bootstrap_dir}/{secret}.json"},
                                               "resource_api_version": "V3"}}
    if tls.get("sni") != host("xds") or common.get("tls_certificate_sds_secret_configs") != [sds("portcullis-client-cert")] \
            or common.get("validation_context_sds_secret_config") != sds("portcullis-server-ca"):
        fail(case, f"Envoy's xds cluster does not speak mTLS with its certificate: {tls}")
    drain = [c for c in pod["containers"] if c["name"] != "envoy"]
    if any(m["mountPath"] == MTLS_DIR for c in drain for m in c.get("volumeMounts", [])):
        fail(case, "the drain sidecar mounts Envoy's key")


def expected_certs(accesslog):
    """component -> (dns names, node prefixes) the chart must issue for."""
    out = {"authz": ([host("authz")], []),
           "ratelimit": ([host("ratelimit")], [name("ratelimit") + "-*"]),
           "envoy": ([], [name("envoy") + "-*"])}
    if accesslog:
        out["accesslog"] = ([host("accesslog")], [])
    return out


def check_controller_mode(case, objs, accesslog):
    pod = pod_of(objs, "controller")
    c = pod["containers"][0]
    env = env_of(c)
    plan = json.loads(env.get("PORTCULLIS_COMPONENT_CERTS") or "null")
    if not plan or set(plan) != {"caSecret", "xdsDns", "secrets"}:
        fail(case, f"PORTCULLIS_COMPONENT_CERTS is not a plan: {plan}")
        return
    if plan["xdsDns"] != [host("xds")]:
        fail(case, f"the xDS certificate names {plan['xdsDns']}, Envoy dials {host('xds')}")
    want = {f"{name(k)}-tls": v for k, v in expected_certs(accesslog).items()}
    got = {s["name"]: (s["dns"], s["nodes"]) for s in plan["secrets"]}
    if got != want:
        fail(case, f"the plan issues {got}, the pods need {want}")
    for s in plan["secrets"]:
        if set(s) != {"name", "dns", "nodes"}:
            fail(case, f"plan secret {s} has fields the controller does not read")
    d = env.get("PORTCULLIS_COMPONENT_CERT_DIR")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vol = next((v for v in pod.get("volumes", []) if v["name"] == mounts.get(d)), {})
    if (vol.get("emptyDir") or {}).get("medium") != "Memory":
        fail(case, f"the controller's own key dir {d} is not a memory emptyDir")
    if any(k.startswith("PORTCULLIS_TLS_") or k == "PORTCULLIS_CLIENT_CA" for k in env):
        fail(case, "the controller has certificate files and a plan (it refuses to start)")
    role = objs.get(("Role", name("controller") + "-component-certs"))
    if not role:
        fail(case, "no Role for the component Secrets")
        return
    named = [r for r in role["rules"] if r.get("resourceNames")]
    allowed = set(named[0]["resourceNames"]) if named else set()
    if allowed != set(want) | {plan["caSecret"]} or set(named[0]["verbs"]) != {"get", "update"}:
        fail(case, f"the Role reads/replaces {allowed} {named and named[0]['verbs']}, should be exactly the plan's Secrets")
    unnamed = [r for r in role["rules"] if not r.get("resourceNames")]
    if [set(r["verbs"]) for r in unnamed] != [{"create"}]:
        fail(case, f"unnamed Secret rights beyond create: {unnamed}")
    binding = objs.get(("RoleBinding", name("controller") + "-component-certs"))
    if not binding or binding["subjects"][0]["name"] != name("controller"):
        fail(case, "the component-certs Role is not bound to the controller's ServiceAccount")
    if any(k == "Certificate" for k, _ in objs):
        fail(case, "controller mode renders cert-manager Certificates")
    servers_secure(case, objs, {k: f"{name(k)}-tls" for k in ("authz", "ratelimit", "accesslog")})
    envoy_secure(case, objs)


def check_cert_manager_mode(case, objs, accesslog, issuer_ref):
    certs = {o["spec"]["secretName"]: o for (k, _), o in objs.items() if k == "Certificate"}
    want = {f"{name(k)}-tls": v for k, v in expected_certs(accesslog).items()}
    want[name("controller") + "-tls"] = ([host("xds")], [])
    for secret, (dns, nodes) in want.items():
        cert = certs.get(secret)
        if not cert:
            fail(case, f"no Certificate for Secret {secret}")
            continue
        spec = cert["spec"]
        if spec.get("dnsNames", []) != dns or spec.get("uris", []) != [NODE_URI + n for n in nodes]:
            fail(case, f"{secret}: names {spec.get('dnsNames')} {spec.get('uris')}, want {dns} {nodes}")
        if not {"server auth", "client auth"} <= set(spec.get("usages", [])):
            fail(case, f"{secret}: usages {spec.get('usages')}")
        ref = spec["issuerRef"]
        if issuer_ref:
            if ref != issuer_ref:
                fail(case, f"{secret}: issued by {ref}, values say {issuer_ref}")
        elif ("Issuer", ref["name"]) not in objs or "ca" not in objs[("Issuer", ref["name"])]["spec"]:
            fail(case, f"{secret}: issuer {ref} is not the chart's CA Issuer")
    if issuer_ref and any(k == "Issuer" for k, _ in objs):
        fail(case, "an Issuer is rendered although issuerRef is given")
    if "PORTCULLIS_COMPONENT_CERTS" in env_of(pod_of(objs, "controller")["containers"][0]):
        fail(case, "certManager mode also has the controller issue")
    servers_secure(case, objs, {k: f"{name(k)}-tls" for k in SERVERS})
    envoy_secure(case, objs)


def check_insecure(case, objs):
    for component in SERVERS:
        pod = pod_of(objs, component)
        if pod and env_of(pod["containers"][0]).get("PORTCULLIS_INSECURE") != "true":
            fail(case, f"{component} is not plaintext in insecure mode")
        if pod and any(v["name"] == "mtls" for v in pod.get("volumes", [])):
            fail(case, f"{component} mounts a certificate in insecure mode")
    if any(k in ("Certificate", "Issuer") for k, _ in objs) or ("Role", name("controller") + "-component-certs") in objs:
        fail(case, "insecure mode renders certificate objects or Secret write rights")
    bootstrap = json.loads(objs[("ConfigMap", name("envoy") + "-bootstrap")]["data"]["envoy.json"])
    if "secrets" in bootstrap["static_resources"]:
        fail(case, "insecure mode: Envoy's bootstrap names certificate files")


def main():
    grpc_log = {"accessLog": {"mode": "grpc"}}
    check_controller_mode("auto (no cert-manager API)", render({}), accesslog=False)
    check_controller_mode("controller, grpc access log", render({"componentTLS": {"mode": "controller"}, **grpc_log}), accesslog=True)
    check_cert_manager_mode("certManager, own CA", render({"componentTLS": {"mode": "certManager"}, **grpc_log}), True, None)
    ref = {"name": "platform-ca", "kind": "ClusterIssuer"}
    check_cert_manager_mode("certManager, issuerRef",
                            render({"componentTLS": {"mode": "certManager", "certManager": {"issuerRef": ref}}}), False, ref)
    check_insecure("insecure", render({"componentTLS": {"mode": "insecure"}, **grpc_log}))
    try:
        render({"componentTLS": {"mode": "plaintext"}})
        fail("schema", "componentTLS.mode=plaintext rendered")
    except Exception as e:  # noqa: BLE001 (the SDK's schema error)
        if "componentTLS" not in str(e) and "mode" not in str(e):
            fail("schema", f"a bad mode is refused without naming it: {e}")
    for f in FAILURES:
        print(f, file=sys.stderr)
    print(f"chart tls: 5 modes, {len(FAILURES)} failures")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
