#!/usr/bin/env bash
# Step nginx: the site (static UI with basic auth, /api/ and the app's other routes proxied without it)
# rendered by nodehost-nginx-render.
# shellcheck disable=SC2153 # parameters arrive as variables at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty APP_NAME SERVER_NAMES APP_PORT BASIC_AUTH_USER BASIC_AUTH_PASSWORD NGINX_RENDER_B64
require_vars ALLOW_IPS
API_PUBLIC=${API_PUBLIC:-0}
[[ $API_PUBLIC == 0 || $API_PUBLIC == 1 ]] || die "API_PUBLIC must be 0 or 1"
[[ $BASIC_AUTH_USER =~ ^[A-Za-z0-9._-]+$ ]] || die "BASIC_AUTH_USER may hold letters, digits, . _ - only"
[[ "$APP_NAME$SERVER_NAMES$APP_PORT$ALLOW_IPS" != *[\'\"\$\`\;]* ]] || die "quotes, \$, \` or ; in APP_NAME, SERVER_NAMES, APP_PORT or ALLOW_IPS"
# Optional, so a caller from before they existed still renders today's site; the renderer checks
# each field in full.
HEALTH_PATH=${HEALTH_PATH:-/api/health} MAX_BODY_SIZE=${MAX_BODY_SIZE:-10m} ROUTES=${ROUTES:-}
# Behind a load balancer: the range it connects from (the renderer then serves HTTP to it alone).
LB_FROM=${LB_FROM:-}
[[ "$HEALTH_PATH$MAX_BODY_SIZE$ROUTES$LB_FROM" != *[\'\"\$\`\;]* ]] || die "quotes, \$, \` or ; in HEALTH_PATH, MAX_BODY_SIZE, ROUTES or LB_FROM"

apt_install nginx openssl
install -d -m 0755 /var/www/letsencrypt
install -d -m 0700 /etc/nodehost
install_b64 "$NGINX_RENDER_B64" /usr/local/sbin/nodehost-nginx-render 0755

# --- Basic auth: apr1 hash computed from stdin; kept when it still matches (no churn per run) ----
htpasswd_file=/etc/nginx/nodehost-$APP_NAME.htpasswd
hash_of() { printf '%s' "$BASIC_AUTH_PASSWORD" | openssl passwd -apr1 -salt "$1" -stdin; }
existing=$(cat "$htpasswd_file" 2>/dev/null || true)
entry=""
if [[ $existing == "$BASIC_AUTH_USER:\$apr1\$"* ]]; then
  salt=$(cut -d'$' -f3 <<<"$existing")
  [[ $existing == "$BASIC_AUTH_USER:$(hash_of "$salt")" ]] && entry=$existing
fi
[[ -n $entry ]] || entry="$BASIC_AUTH_USER:$(printf '%s' "$BASIC_AUTH_PASSWORD" | openssl passwd -apr1 -stdin)"
write_file "$htpasswd_file" 0640 root:www-data <<<"$entry"

# shellcheck disable=SC2034 # read by write_env through ${!name}
HTPASSWD_FILE=$htpasswd_file ACME_WEBROOT=/var/www/letsencrypt UI_ROOT=/srv/$APP_NAME/current/dist
env_names=(APP_NAME SERVER_NAMES APP_PORT ALLOW_IPS API_PUBLIC HTPASSWD_FILE ACME_WEBROOT UI_ROOT HEALTH_PATH MAX_BODY_SIZE ROUTES)
# Only when set: a host of a one-droplet stack keeps the file it had.
[[ -z $LB_FROM ]] || env_names+=(LB_FROM)
write_env /etc/nodehost/nginx.env 0644 root:root "${env_names[@]}"

# --- fail2ban: an address that keeps failing basic auth is banned from 80/443 for an hour ----------
# fail2ban's own nginx-http-auth filter counts "password mismatch" and unknown users in nginx's
# error log (not a first request without credentials, which every browser sends).
if [[ -d /etc/fail2ban/jail.d ]]; then
  write_file /etc/fail2ban/jail.d/nodehost-nginx.local 0644 root:root <<'CONF'
[nginx-http-auth]
enabled = true
backend = auto
port = http,https
logpath = /var/log/nginx/error.log
maxretry = 5
findtime = 10m
bantime = 1h
CONF
  # Judged by whether the jail runs, not by whether this run wrote the file.
  if systemctl is-active --quiet fail2ban && ! fail2ban-client status nginx-http-auth >/dev/null 2>&1; then
    systemctl restart fail2ban
    changed "fail2ban restarted with the nginx-http-auth jail"
  fi
fi

pending_begin nginx-reload
if [[ -e /etc/nginx/sites-enabled/default ]]; then
  rm -f /etc/nginx/sites-enabled/default
  changed "removed nginx default site"
fi
ensure_service nginx
render_out=$(/usr/local/sbin/nodehost-nginx-render)
case $render_out in
  changed:*) changed "${render_out#changed: }" ;;
  *) log "$render_out" ;;
esac
# Removing the default site alone also needs a reload (the renderer saw its own file unchanged), as
# does an earlier run stopped before its reload.
if [[ $NODEHOST_CHANGES -gt 0 || ${NODEHOST_PENDING_WAS[nginx-reload]} == 1 ]]; then
  nginx -t -q
  systemctl reload nginx
fi
pending_end nginx-reload
step_done nginx
