# Envoy's preStop hook. Envoy stops at once on SIGTERM, so hold that signal until the
# drain sidecar (`portcullis drain --on-signal`, which Kubernetes sent SIGTERM at the
# same moment) has drained Envoy and created the done file ($1); give up after $2
# seconds. Runs with /bin/sh in the Envoy image; e2e/drain.rs runs this very file.
i=0
while [ ! -e "$1" ] && [ "$i" -lt "$2" ]; do
  sleep 1
  i=$((i + 1))
done
