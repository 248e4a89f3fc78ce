#!/usr/bin/env bash
# The Helm chart on a real Kubernetes: a kind cluster, the portcullis image built from
# this tree, the chart installed, the demo Routes applied, requests through Envoy.
# Needs Docker, kind, kubectl, helm and curl; takes a few minutes (most of it the image
# build). It cannot run in CI here (no Docker); docs/kubernetes.md says what it checks.
#
#   e2e/kind/run.sh                 # create, test, delete the cluster; exit 1 on any failure
#   KEEP_CLUSTER=1 e2e/kind/run.sh  # leave the cluster up afterwards (prints how to reach it)
#
# Environment: KIND_CLUSTER (portcullis-e2e), PORTCULLIS_IMAGE (portcullis.local/portcullis:e2e),
# HOST_PORT (18080: Envoy on 127.0.0.1), KIND_NODE_IMAGE (kind's default), TIMEOUT (300 s per wait).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${KIND_CLUSTER:-portcullis-e2e}
IMAGE=${PORTCULLIS_IMAGE:-portcullis.local/portcullis:e2e}
HOST_PORT=${HOST_PORT:-18080}
NODE_PORT=30080
KEEP=${KEEP_CLUSTER:-0}
TIMEOUT=${TIMEOUT:-300}
RELEASE=edge
NS=portcullis-system
GATEWAY="http://127.0.0.1:${HOST_PORT}"
WORK=$(mktemp -d)
export KUBECONFIG="$WORK/kubeconfig" # kind writes here: the user's kubeconfig is left alone

log() { printf '\n== %s\n' "$*"; }
die() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
pass() { printf 'ok: %s\n' "$*"; }

diagnostics() {
	log "diagnostics"
	kubectl get pods -A -o wide || true
	kubectl -n "$NS" get events --sort-by=.lastTimestamp | tail -n 30 || true
	for d in controller authz ratelimit envoy; do
		echo "--- logs of $RELEASE-portcullis-$d"
		kubectl -n "$NS" logs "deploy/$RELEASE-portcullis-$d" --all-containers --tail=40 || true
	done
	kubectl -n demo get routes.portcullis.dev,services.portcullis.dev -o wide || true
}

cleanup() {
	local status=$?
	if [ "$status" -ne 0 ]; then
		diagnostics
	fi
	if [ "$KEEP" = 1 ]; then
		echo "cluster $CLUSTER kept: export KUBECONFIG=$KUBECONFIG; Envoy at $GATEWAY"
		echo "delete it with: kind delete cluster --name $CLUSTER"
	else
		kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
		rm -rf "$WORK"
	fi
	exit "$status"
}

# retry N CMD...: run CMD until it succeeds, N times at most, 2 s apart.
retry() {
	local n=$1 i
	shift
	for ((i = 1; i <= n; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 2
	done
	return 1
}

for tool in docker kind kubectl helm curl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required (https://kind.sigs.k8s.io/docs/user/quick-start/)"
done
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
case $IMAGE in *:*) ;; *) die "PORTCULLIS_IMAGE needs a tag (repository:tag)" ;; esac
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
	die "a kind cluster named $CLUSTER exists: delete it or set KIND_CLUSTER"
fi
trap cleanup EXIT

log "kind cluster $CLUSTER (Envoy's NodePort $NODE_PORT on 127.0.0.1:$HOST_PORT)"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait "${TIMEOUT}s" \
	${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --config - <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraPortMappings:
      - {containerPort: $NODE_PORT, hostPort: $HOST_PORT, listenAddress: 127.0.0.1, protocol: TCP}
EOF

log "image $IMAGE (Dockerfile at the repository root)"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "helm install $RELEASE charts/portcullis into $NS"
kubectl create namespace "$NS"
# The demo API keys (only their SHA-256 digests): alice's key is demo-key-alice.
kubectl -n "$NS" create secret generic demo-api-keys \
	--from-file=keys.yaml="$ROOT/examples/authz/demo-keys.yaml"
helm install "$RELEASE" "$ROOT/charts/portcullis" -n "$NS" \
	--set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
	--set envoy.autoscaling.enabled=false --set envoy.replicas=2 \
	--set envoy.service.type=NodePort --set envoy.service.nodePort="$NODE_PORT" \
	--set authz.keys.existingSecret=demo-api-keys \
	--wait --timeout "${TIMEOUT}s"
pass "every Deployment of the chart is available (controller, authz, ratelimit, redis, envoy)"

log "examples/demo/demo.yaml, with its Services on echo pods (e2e/kind/demo-backends.yaml)"
kubectl create namespace demo
# The webhook (failurePolicy Fail) may still be getting its certificate: retry.
retry 30 kubectl apply -f "$ROOT/examples/demo/demo.yaml" || die "kubectl apply examples/demo/demo.yaml"
sed "s|PORTCULLIS_IMAGE|$IMAGE|g" "$ROOT/e2e/kind/demo-backends.yaml" >"$WORK/demo-backends.yaml"
retry 30 kubectl apply -f "$WORK/demo-backends.yaml" || die "kubectl apply e2e/kind/demo-backends.yaml"
kubectl -n demo wait --for=condition=Available deploy/echo deploy/echo-canary --timeout="${TIMEOUT}s"

log "waiting for Accepted, ResolvedRefs and Programmed on every Route and Service"
# One line per object: Kind/name generation Type=Status@observedGeneration...
conditions() {
	kubectl -n demo get routes.portcullis.dev,services.portcullis.dev -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.metadata.generation}{range .status.conditions[*]} {.type}={.status}@{.observedGeneration}{end}{"\n"}{end}'
}
all_programmed() {
	local lines line name gen want n=0
	lines=$(conditions) || return 1
	while read -r name gen line; do
		[ -n "$name" ] || continue
		n=$((n + 1))
		for want in Accepted ResolvedRefs Programmed; do
			[[ " $line " == *" $want=True@$gen "* ]] || return 1
		done
	done <<<"$lines"
	[ "$n" -eq 6 ] # demo.yaml: 4 Routes, 2 Services
}
deadline=$((SECONDS + TIMEOUT))
until all_programmed; do
	[ "$SECONDS" -lt "$deadline" ] || {
		conditions
		die "not every object is Programmed at its current generation after ${TIMEOUT}s"
	}
	sleep 2
done
conditions
pass "4 Routes and 2 Services: Accepted, ResolvedRefs, Programmed (every connected Envoy ACKed them)"

log "requests through Envoy at $GATEWAY"
# expect STATUS BODY-SUBSTRING CURL-ARGS...: retried while Envoys pick up the last push.
expect() {
	local want=$1 grep_for=$2 got i
	shift 2
	for ((i = 1; i <= 15; i++)); do
		got=$(curl -s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' --max-time 5 "$@" || true)
		if [ "$got" = "$want" ] && { [ -z "$grep_for" ] || grep -qF -- "$grep_for" "$WORK/body"; }; then
			pass "$* -> $got${grep_for:+, body has $grep_for}"
			return 0
		fi
		sleep 2
	done
	die "$* -> $got (body: $(head -c 300 "$WORK/body" 2>/dev/null)), want $want${grep_for:+ with $grep_for}"
}
expect 200 '"path":"/echo/hello"' "$GATEWAY/echo/hello"
grep -qi '^x-request-id:' "$WORK/headers" || die "no x-request-id in Envoy's response"
pass "x-request-id returned to the client"
expect 200 '"name":"echo-canary"' -X POST "$GATEWAY/echo/orders"    # the more specific Route
expect 200 '"name":"echo"' -H 'Host: api.localhost' "$GATEWAY/v1/x"  # host-specific Route
expect 401 '' "$GATEWAY/echo/orders"                                # auth: no API key
expect 401 '' -H 'x-api-key: not-a-key' "$GATEWAY/echo/orders"      # auth: unknown key
expect 200 '"x-portcullis-user":"alice"' -H 'x-api-key: demo-key-alice' "$GATEWAY/echo/orders"
expect 404 '' "$GATEWAY/nothing-routes-here"

# The 90/10 split of the echo Route reaches both Deployments (through their EndpointSlices).
# The Route allows 10 requests a second per client IP: 4 a second stay under it.
canary=0
for ((i = 0; i < 100; i++)); do
	body=$(curl -sf --max-time 5 "$GATEWAY/echo/split") || die "GET /echo/split failed (request $i)"
	if [[ $body == *'"name":"echo-canary"'* ]]; then
		canary=$((canary + 1))
	fi
	sleep 0.25
done
if [ "$canary" -lt 1 ] || [ "$canary" -gt 30 ]; then
	die "$canary of 100 requests reached echo-canary, want about 10"
fi
pass "$canary of 100 requests went to the canary (weight 10 of 100)"

# ...and a burst goes over it: portcullis ratelimit (its Redis shared by the replicas)
# answers OVER_LIMIT and Envoy sends 429 with Retry-After.
limited=0
retry_after=""
for ((i = 0; i < 30; i++)); do
	code=$(curl -s -o /dev/null -D "$WORK/rl-headers" -w '%{http_code}' --max-time 5 "$GATEWAY/echo/burst" || true)
	case $code in
	200) ;;
	429)
		limited=$((limited + 1))
		retry_after=$(grep -i '^retry-after:' "$WORK/rl-headers" | tr -d '\r' | cut -d' ' -f2 || true)
		;;
	*) die "GET /echo/burst -> $code during the burst, want 200 or 429" ;;
	esac
done
if [ "$limited" -lt 5 ]; then
	die "$limited of 30 back-to-back requests were rate limited, want most of those over 10 a second"
fi
[ -n "$retry_after" ] || die "429 without a Retry-After header"
pass "$limited of 30 back-to-back requests got 429 (Retry-After: $retry_after)"

log "admission webhook: bad manifests are refused at apply time"
kubectl create namespace invalid
# refused FILE MESSAGE [UNDO...]: kubectl apply of examples/invalid/FILE must fail with
# MESSAGE. A cross-object conflict is judged against the controller's index, which learns
# of the older object through its watch: if the newer one got in first, UNDO removes it and
# the apply is tried again. Both controller replicas answer the webhook (each adds its own
# CA to the caBundle), so a call that failed outright is retried too.
refused() {
	local file=$1 message=$2 attempt
	shift 2
	for attempt in 1 2 3; do
		if ! kubectl -n invalid apply -f "$ROOT/examples/invalid/$file" >"$WORK/apply.out" 2>&1; then
			if grep -qF -- "$message" "$WORK/apply.out"; then
				pass "examples/invalid/$file refused: $message"
				return 0
			fi
			# Not the webhook's verdict: the call itself failed (a replica's CA not yet in
			# the caBundle, a replica restarting). Anything else is a wrong answer.
			grep -qF "failed calling webhook" "$WORK/apply.out" ||
				die "examples/invalid/$file refused without '$message': $(cat "$WORK/apply.out")"
			echo "attempt $attempt: the webhook call failed; retrying"
		else
			[ "$#" -gt 0 ] || break
			echo "attempt $attempt: accepted before the webhook saw the older object; undoing and retrying"
			"$@"
		fi
		sleep 2
	done
	die "kubectl apply examples/invalid/$file was accepted"
}
refused timeout-over-60s.yaml "is over the 60s maximum"
refused conflict.yaml "is already served by the older Route" \
	kubectl -n invalid delete routes.portcullis.dev items-v2 --ignore-not-found

log "metrics, through the API server's service proxy"
envoy_stats=$(kubectl get --raw "/api/v1/namespaces/$NS/services/$RELEASE-portcullis-envoy-metrics:http-metrics/proxy/stats/prometheus")
grep -q '^envoy_cluster_upstream_rq_total{envoy_cluster_name="demo/echo"}' <<<"$envoy_stats" ||
	die "Envoy's /stats/prometheus (metrics listener) has no envoy_cluster_upstream_rq_total for demo/echo"
pass "Envoy's per-Service stats on the metrics Service (envoy_cluster_name=\"demo/echo\")"
cp_metrics=$(kubectl get --raw "/api/v1/namespaces/$NS/services/$RELEASE-portcullis-xds:http-admin/proxy/metrics")
grep -q '^portcullis_xds_connected_streams' <<<"$cp_metrics" || die "the control plane's /metrics has no portcullis_xds_connected_streams"
pass "control-plane /metrics on the xds Service"

log "all checks passed"
