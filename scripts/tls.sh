#!/usr/bin/env bash
# Step tls: certbot (webroot) certificates for the site's names, HTTPS site, renewal with an nginx reload.
# shellcheck disable=SC2153 # parameters arrive as exports at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty APP_NAME SERVER_NAMES ACME_SERVER
require_vars ACME_EMAIL ACME_CA_PEM
[[ -x /usr/local/sbin/nodehost-nginx-render ]] || die "nodehost-nginx-render missing: the nginx step runs first"
read -ra names <<<"$SERVER_NAMES"
first=${names[0]}

apt_install certbot

# --- A private ACME CA (tests, internal CAs): trusted by certbot now and by the renewal timer -----
ca_pem=/etc/nodehost/acme-ca.pem
bundle=/etc/nodehost/acme-ca-bundle.pem
dropin=/etc/systemd/system/certbot.service.d/nodehost-ca.conf
certbot_env=()
if [[ -n $ACME_CA_PEM ]]; then
  grep -q 'BEGIN CERTIFICATE' <<<"$ACME_CA_PEM" || die "ACME_CA_PEM is not a PEM certificate"
  write_file "$ca_pem" 0644 root:root <<<"$ACME_CA_PEM"
  cat /etc/ssl/certs/ca-certificates.crt "$ca_pem" | write_file "$bundle" 0644 root:root
  write_file "$dropin" 0644 root:root <<CONF
[Service]
Environment=REQUESTS_CA_BUNDLE=$bundle
CONF
  daemon_reload_for certbot.service
  certbot_env=(env "REQUESTS_CA_BUNDLE=$bundle")
else
  for f in "$dropin" "$bundle" "$ca_pem"; do remove_file "$f"; done
  systemctl daemon-reload
fi

# --- Renewal: the packaged timer, plus a hook that reloads nginx after each renewal --------------
write_file /etc/letsencrypt/renewal-hooks/deploy/reload-nginx 0755 root:root <<'HOOK'
#!/bin/sh
# Installed by nodehost (tls step): a renewed certificate is served once nginx reloads.
nginx -t -q && systemctl reload nginx
HOOK
ensure_service certbot.timer

# --- Issue (or keep) the certificate --------------------------------------------------------------
args=(certonly --webroot -w /var/www/letsencrypt --cert-name "$first" --server "$ACME_SERVER"
  --agree-tos --non-interactive --keep-until-expiring --expand)
for n in "${names[@]}"; do args+=(-d "$n"); done
if [[ -n $ACME_EMAIL ]]; then args+=(--email "$ACME_EMAIL"); else args+=(--register-unsafely-without-email); fi
renewal=/etc/letsencrypt/renewal/$first.conf
# A certificate from another CA (staging -> production) is replaced, not kept until it expires.
if [[ -f $renewal ]] && ! grep -qxF "server = $ACME_SERVER" "$renewal"; then
  args+=(--force-renewal)
fi
before=$(stat -c %Y "/etc/letsencrypt/live/$first/fullchain.pem" 2>/dev/null || echo none)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! "${certbot_env[@]}" certbot "${args[@]}" >"$out" 2>&1; then
  tail -n 25 "$out" >&2
  die "certbot could not get a certificate for ${names[*]} from $ACME_SERVER. DNS for ${names[*]} does not point here yet? Until a certificate exists the site is not served (port 80 only answers ACME and redirects). certbot said: $(grep -E 'Detail:|Error|error:' "$out" | head -n 3 | tr '\n' ' ')"
fi
after=$(stat -c %Y "/etc/letsencrypt/live/$first/fullchain.pem")
[[ $before != "$after" ]] && changed "certificate for ${names[*]}"

render_out=$(/usr/local/sbin/nodehost-nginx-render)
case $render_out in
  changed:*) changed "${render_out#changed: }" ;;
  *) log "$render_out" ;;
esac
step_done tls
