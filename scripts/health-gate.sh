#!/usr/bin/env bash
# Step health-gate: https://<first name><HEALTH_PATH>, resolved to this host, must answer 200 and status ok
# (HEALTH_SCHEME=http behind a load balancer, which ends TLS: the droplet serves HTTP).
# shellcheck disable=SC2153 # parameters arrive as exports at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty SERVER_NAMES HEALTH_PATH HEALTH_TIMEOUT_S
require_vars ACME_CA_PEM
[[ $HEALTH_TIMEOUT_S =~ ^[0-9]+$ ]] || die "HEALTH_TIMEOUT_S must be a number of seconds"
[[ $HEALTH_PATH == /* ]] || die "HEALTH_PATH must start with /"
HEALTH_SCHEME=${HEALTH_SCHEME:-https}
[[ $HEALTH_SCHEME == https || $HEALTH_SCHEME == http ]] || die "HEALTH_SCHEME must be https or http"
read -ra names <<<"$SERVER_NAMES"
first=${names[0]}
url="$HEALTH_SCHEME://$first$HEALTH_PATH"
if [[ $HEALTH_SCHEME == https ]]; then HEALTH_PORT=${HEALTH_PORT:-443}; else HEALTH_PORT=${HEALTH_PORT:-80}; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
body=$work/body
curl_args=(-sS --max-time 10 --resolve "$first:$HEALTH_PORT:127.0.0.1" -o "$body" -w '%{http_code}')
if [[ -n $ACME_CA_PEM && $HEALTH_SCHEME == https ]]; then
  # The certificate may come from a private CA (tests): trust it on top of the system's.
  { cat /etc/ssl/certs/ca-certificates.crt; printf '%s\n' "$ACME_CA_PEM"; } >"$work/ca.pem"
  curl_args+=(--cacert "$work/ca.pem")
fi

# A 200 is healthy unless its body is a JSON object whose "status" says otherwise (the sample app
# answers {"status":"ok"} or "error"; an app's own health path may answer plain text, or "pass" as
# the IETF health-check draft has it).
ok_json() {
  python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(0)
s = d.get("status", "ok") if isinstance(d, dict) else "ok"
sys.exit(0 if str(s).lower() in ("ok", "pass", "healthy", "up") else 1)' "$body" 2>/dev/null
}
start=$SECONDS
attempt=0
while :; do
  attempt=$((attempt + 1))
  code=$(curl "${curl_args[@]}" "$HEALTH_SCHEME://$first:$HEALTH_PORT$HEALTH_PATH" 2>"$work/err") || code=000
  if [[ $code == 200 ]] && ok_json; then
    log "healthy: $url -> $(cat "$body")"
    step_done health-gate
    exit 0
  fi
  if ((SECONDS - start >= HEALTH_TIMEOUT_S)); then
    log "last answer from $url: HTTP $code $(cat "$body" 2>/dev/null) $(cat "$work/err")"
    die "$url is not healthy after ${HEALTH_TIMEOUT_S}s ($attempt attempts)"
  fi
  sleep 3
done
