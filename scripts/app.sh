#!/usr/bin/env bash
# Step app: a release under /srv/<app>/releases/<id>, built and run by the app's own user under PM2,
# health-checked, rolled back when unhealthy.
# Who owns what: /srv/<app>, releases/, shared/ and the state in /var/lib/nodehost are root's; a
# release's own tree is the app user's (an app may write its caches there). Root never runs or
# writes a file through a directory the app user owns: what happens inside a release (unpack,
# npm ci, the build, its removal) runs as the app user, and the markers root keeps about releases
# (built, failed, activated) live in root's state directory, not in the release.
# shellcheck disable=SC2153 # parameters arrive as exports at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty APP_NAME DEPLOY_USER APP_USER APP_PORT APP_SOURCE NPM_REGISTRY DATABASE_URL REDIS_URL ROLLBACK_TOOL_B64
require_vars APP_ARCHIVE_B64 APP_GIT_URL APP_GIT_REF APP_WORKER APP_BUILD APP_ENV_JSON
[[ $APP_NAME =~ ^[a-z][a-z0-9-]*$ ]] || die "APP_NAME must be a lower-case name, got '$APP_NAME'"
[[ $APP_PORT =~ ^[0-9]+$ ]] || die "APP_PORT must be a port number, got '$APP_PORT'"
id "$DEPLOY_USER" >/dev/null 2>&1 || die "deploy user $DEPLOY_USER does not exist"
id "$APP_USER" >/dev/null 2>&1 || die "app user $APP_USER does not exist (the node-pm2 step makes it)"
export PATH=/usr/local/bin:$PATH
command -v pm2 >/dev/null || die "pm2 is not installed (the node-pm2 step installs it)"

APP_ROOT=/srv/$APP_NAME
RELEASES=$APP_ROOT/releases
SHARED=$APP_ROOT/shared
KEEP_RELEASES=5
# Root's record of the releases: <id>.ready (built), <id>.failed (failed its health check),
# <id>.activated (its mtime: when it last went live; rollback and pruning order by it).
STATE=/var/lib/nodehost/releases-$APP_NAME
deploy_home=$(getent passwd "$DEPLOY_USER" | cut -d: -f6)
app_home=$(getent passwd "$APP_USER" | cut -d: -f6)

# as_app CMD... : runs as the app user with its own HOME and PM2_HOME, and nothing else of ours.
as_app() {
  runuser -u "$APP_USER" -- env -i HOME="$app_home" PM2_HOME="$app_home/.pm2" \
    PATH="$PATH" LANG=C.UTF-8 npm_config_registry="$NPM_REGISTRY" "$@"
}
# app_rmtree DIR : removes a tree the app user owns, in a directory of root's. The contents go as
# the app user (root following a link the app planted would delete what it points at); root then
# removes the emptied directory itself from its own parent.
app_rmtree() {
  local dir=$1
  [[ -e $dir || -L $dir ]] || return 0
  if [[ -L $dir || ! -d $dir ]]; then
    rm -f -- "$dir"
    return 0
  fi
  as_app rm -rf -- "$dir" 2>/dev/null || true
  rmdir -- "$dir"
}

# Root's directories (a host from before this version had them owned by the deploy user).
for d in "$APP_ROOT" "$RELEASES" "$SHARED"; do
  [[ ! -L $d ]] || die "$d is a symlink"
  if [[ ! -d $d ]]; then
    install -d -m 0755 -o root -g root "$d"
  elif [[ $(stat -c '%a %u %g' "$d") != "755 0 0" ]]; then
    chown root:root "$d"
    chmod 0755 "$d"
    changed "$d owned by root"
  fi
done
install -d -m 0755 -o root -g root "$STATE"
# Releases built by an earlier version: owned by the deploy user, with their markers inside.
for dir in "$RELEASES"/*/; do
  dir=${dir%/}
  [[ -d $dir && ! -L $dir ]] || continue
  id=$(basename "$dir")
  if [[ $(stat -c %U "$dir") != "$APP_USER" ]]; then
    chown -R --no-dereference "$APP_USER:$APP_USER" "$dir"
    [[ ! -f $dir/.nodehost-ready ]] || { touch "$STATE/$id.ready"; touch -r "$dir" "$STATE/$id.activated"; }
    [[ ! -f $dir/.nodehost-failed ]] || touch "$STATE/$id.failed"
    as_app rm -f "$dir/.nodehost-ready" "$dir/.nodehost-failed"
    changed "release $id handed to $APP_USER"
  fi
done

# --- Operator tool and the settings it reads ---------------------------------------------------
install_b64 "$ROLLBACK_TOOL_B64" /usr/local/bin/nodehost-rollback 0755
install -d -m 0700 /etc/nodehost
write_env /etc/nodehost/app.env 0644 root:root APP_NAME APP_USER APP_PORT

# --- The environment the app runs with ----------------------------------------------------------
# One JSON object (app.env, appSecrets, then what the stack sets), built by node from the step's
# variables and read by the PM2 ecosystem: a value may hold quotes, $(...) or newlines and is
# never a shell line, a dotenv line or a command-line argument. Its errors name keys, not values.
# The values reach node on stdin (NUL-separated), not in its environment or on its command line.
env_json=$(printf '%s\0' "$APP_PORT" "$DATABASE_URL" "$REDIS_URL" "$APP_ENV_JSON" | node -e '
const [APP_PORT, DATABASE_URL, REDIS_URL, APP_ENV_JSON] = require("fs").readFileSync(0, "utf8").split("\0");
const e = { APP_PORT, DATABASE_URL, REDIS_URL, APP_ENV_JSON };
let own;
try { own = JSON.parse(e.APP_ENV_JSON || "{}"); } catch { console.error("APP_ENV_JSON is not JSON"); process.exit(1); }
if (own === null || typeof own !== "object" || Array.isArray(own)) { console.error("APP_ENV_JSON must be an object"); process.exit(1); }
for (const [k, v] of Object.entries(own)) {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || typeof v !== "string") { console.error("APP_ENV_JSON: bad variable " + JSON.stringify(k)); process.exit(1); }
}
const env = { ...own, NODE_ENV: "production", PORT: e.APP_PORT, HOST: "127.0.0.1", DATABASE_URL: e.DATABASE_URL, REDIS_URL: e.REDIS_URL };
process.stdout.write(JSON.stringify(env, null, 1));')
# Readable by the app user (its PM2 reads it at each reload), writable by root alone.
write_file "$SHARED/env.json" 0640 "root:$APP_USER" <<<"$env_json"
unset env_json
remove_file "$SHARED/.env" # what env.json replaces (NAME=value lines, which a value could break)
# (PM2 keeps every process's environment in its dump and logs: node-pm2 made its dir 0700.)

# --- Fetch the release into a staging dir, named by content --------------------------------------
# Left behind by a run that was stopped (they hold a half-built release).
for d in "$RELEASES"/.staging.*; do
  [[ -e $d || -L $d ]] && app_rmtree "$d"
done
staging=$(mktemp -d "$RELEASES/.staging.XXXXXX")
# shellcheck disable=SC2064 # expand now
trap "app_rmtree '$staging'; rm -f '$staging.tgz'" EXIT
chown "$APP_USER:$APP_USER" "$staging"
chmod 0755 "$staging"
case $APP_SOURCE in
  archive)
    [[ -n $APP_ARCHIVE_B64 ]] || die "APP_SOURCE=archive needs APP_ARCHIVE_B64"
    # Root's file in root's directory, readable by the app user's group only.
    (umask 027 && printf '%s' "$APP_ARCHIVE_B64" | base64 -d >"$staging.tgz")
    chgrp "$APP_USER" "$staging.tgz"
    release_id=$(sha256sum "$staging.tgz" | cut -c1-12)
    if [[ ! -f $STATE/$release_id.ready ]]; then
      as_app tar -xzf "$staging.tgz" -C "$staging" --no-same-owner --no-same-permissions
    fi
    rm -f "$staging.tgz"
    ;;
  git)
    [[ -n $APP_GIT_URL && -n $APP_GIT_REF ]] || die "APP_SOURCE=git needs APP_GIT_URL and APP_GIT_REF"
    apt_install git ca-certificates
    as_app git clone -q "$APP_GIT_URL" "$staging/src"
    as_app git -C "$staging/src" -c advice.detachedHead=false checkout -q "$APP_GIT_REF"
    release_id=$(as_app git -C "$staging/src" rev-parse --short=12 HEAD)
    # The checkout's files move up one level, as the app user, inside its own tree.
    # shellcheck disable=SC2016 # expanded by the inner bash
    as_app bash -c 'set -e; rm -rf "$1/src/.git"; shopt -s dotglob; mv "$1/src"/* "$1/"; rmdir "$1/src"' _ "$staging"
    ;;
  *) die "APP_SOURCE must be archive or git, got '$APP_SOURCE'" ;;
esac
[[ $release_id =~ ^[0-9a-f]{12,40}$ ]] || die "release id '$release_id' is not a hex id"
release=$RELEASES/$release_id

# --- Build the release once: npm ci (and the build) as the app user -----------------------------
if [[ ! -f $STATE/$release_id.ready || ! -d $release || -L $release ]]; then
  rm -f "$STATE/$release_id.ready"
  # An archive made of a directory holds one top folder; its contents move up, as the app user.
  if [[ ! -f $staging/package.json ]]; then
    mapfile -t top < <(find "$staging" -mindepth 1 -maxdepth 1)
    if [[ ${#top[@]} -eq 1 && -f ${top[0]}/package.json && ! -L ${top[0]} ]]; then
      # shellcheck disable=SC2016 # expanded by the inner bash
      as_app bash -c 'set -e; shopt -s dotglob; mv "$2"/* "$1/"; rmdir "$2"' _ "$staging" "${top[0]}"
    else
      die "release $release_id has no package.json at its top"
    fi
  fi
  staging_inner=$staging
  [[ -f $staging_inner/package-lock.json || -f $staging_inner/npm-shrinkwrap.json ]] ||
    die "release $release_id has no package-lock.json: npm ci needs one"
  has_build=$(as_app node -e 'const p=require(process.argv[1]); process.stdout.write(p.scripts && p.scripts.build ? "1" : "0")' "$staging_inner/package.json")
  (
    cd "$staging_inner"
    if [[ $APP_BUILD == 1 && $has_build == 1 ]]; then
      as_app npm ci --no-audit --no-fund --loglevel=error
      as_app npm run build
      as_app npm prune --omit=dev --no-audit --no-fund --loglevel=error
    else
      as_app npm ci --omit=dev --no-audit --no-fund --loglevel=error
    fi
  )
  # A rename inside root's releases/ directory; the staging dir itself was made by root (mktemp),
  # so it is still a directory, not a link the app user could have put in its place.
  app_rmtree "$release"
  [[ -d $staging_inner && ! -L $staging_inner ]] || die "the staging directory of $release_id is gone"
  mv -T "$staging_inner" "$release"
  touch "$STATE/$release_id.ready"
  changed "release $release_id built"
fi
app_rmtree "$staging"
rm -f "$staging.tgz"
trap - EXIT

# --- PM2 ecosystem: processes run from `current`, env read from shared/env.json at each (re)load --
# The web process, as `npm start` would run it: `node <file>` directly (PM2's signals reach node
# itself); any other start script (tsx, flags, a variable before the command) through npm, which
# passes SIGINT/SIGTERM on to it; no start script: `main`, else server.js (npm's own default).
# Read as the app user: the release is its tree (root reading a link planted there could print
# another file's first bytes in a JSON error).
web_json=$(as_app node -e '
const fs = require("fs"), path = require("path");
const dir = process.argv[1], p = require(path.join(dir, "package.json"));
const start = (p.scripts && p.scripts.start) || "";
const m = /^node\s+(\S+\.(?:c|m)?js)\s*$/.exec(start);
const file = m ? m[1] : start ? "" : p.main || "server.js";
if (file && !(/^[A-Za-z0-9._][A-Za-z0-9._/-]*$/.test(file) && !file.split("/").includes("..") && fs.existsSync(path.join(dir, file)))) {
  console.error("the start file " + JSON.stringify(file) + " is not a file in the release");
  process.exit(1);
}
process.stdout.write(JSON.stringify(file ? { script: file } : { script: "npm", args: "start" }));' "$release") ||
  die "release $release_id: cannot tell how to start it (scripts.start, main or server.js)"
worker_json=null
if [[ -n $APP_WORKER ]]; then
  if as_app test -f "$release/$APP_WORKER"; then
    worker_json=$(node -e 'process.stdout.write(JSON.stringify({script: process.argv[1]}))' "$APP_WORKER")
  elif as_app node -e 'const p=require(process.argv[1]); process.exit(p.scripts && p.scripts[process.argv[2]] ? 0 : 1)' "$release/package.json" "$APP_WORKER"; then
    worker_json=$(node -e 'process.stdout.write(JSON.stringify({script: "npm", args: "run " + process.argv[1]}))' "$APP_WORKER")
  else
    die "APP_WORKER '$APP_WORKER' is neither a file nor an npm script of release $release_id"
  fi
fi
ecosystem=$SHARED/ecosystem.config.cjs
write_file "$ecosystem" 0644 root:root <<JS
// Written by nodehost (app step). Processes run from ${APP_ROOT}/current; env comes from shared/env.json.
const fs = require("fs");
const env = JSON.parse(fs.readFileSync("${SHARED}/env.json", "utf8"));
const common = {
  cwd: "${APP_ROOT}/current",
  env,
  exec_mode: "fork",
  instances: 1,
  max_memory_restart: "512M",
  exp_backoff_restart_delay: 200,
  kill_timeout: 8000,
  merge_logs: true,
  time: true,
};
const web = ${web_json};
const worker = ${worker_json};
module.exports = {
  apps: [
    { ...common, ...web, name: "${APP_NAME}-web",
      script: web.script === "npm" ? "npm" : "${APP_ROOT}/current/" + web.script },
    ...(worker ? [{ ...common, ...worker, name: "${APP_NAME}-worker",
      script: worker.script === "npm" ? "npm" : "${APP_ROOT}/current/" + worker.script }] : []),
  ],
};
JS
ecosystem_changed=$WRITE_CHANGED

healthy() {
  curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$APP_PORT/api/health"
}
pm2_online() {
  as_app pm2 jlist 2>/dev/null | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  const p = JSON.parse(s).find((x) => x.name === process.argv[1]);
  process.exit(p && p.pm2_env.status === "online" ? 0 : 1);
});' "$APP_NAME-web"
}
# (re)start what the ecosystem names; a changed ecosystem (other start file, worker added or gone)
# needs the processes recreated, which reload does not do.
pm2_apply() {
  local name
  if [[ $1 == recreate ]]; then
    for name in "$APP_NAME-web" "$APP_NAME-worker"; do
      if as_app pm2 describe "$name" >/dev/null 2>&1; then as_app pm2 delete "$name" >/dev/null; fi
    done
  fi
  as_app pm2 startOrReload "$ecosystem" --update-env >/dev/null
  as_app pm2 save --force >/dev/null
}
# How often PM2 has restarted the web process so far (a reload counts as one).
pm2_restarts() {
  as_app pm2 jlist 2>/dev/null | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  let p;
  try { p = JSON.parse(s).find((x) => x.name === process.argv[1]); } catch {}
  process.stdout.write(String(p ? p.pm2_env.restart_time : 0));
});' "$APP_NAME-web"
}
# Healthy within 90 s, and still healthy a few seconds later (a process that dies after its first
# answer is not). A release whose web process PM2 has restarted 5 times meanwhile is crashing at
# start: it is given up on then (about 15 s on a small droplet), not after the whole 90 s.
wait_healthy() {
  local start=$SECONDS base now
  base=$(pm2_restarts)
  until healthy; do
    now=$(pm2_restarts)
    if ((now - base >= 5)); then
      warn "the web process restarted $((now - base)) times without answering on 127.0.0.1:$APP_PORT/api/health"
      return 1
    fi
    if ((SECONDS - start >= 90)); then
      warn "gave up after 90s waiting for http://127.0.0.1:$APP_PORT/api/health"
      return 1
    fi
    sleep 2
  done
  sleep 3 && healthy && pm2_online
}
point_current_at() {
  ln -sfn "releases/$1" "$APP_ROOT/current.new"
  mv -T "$APP_ROOT/current.new" "$APP_ROOT/current"
}
# A host from before this version ran the app in the deploy user's PM2 (unit pm2-<deploy>): it
# stops just before the app user's PM2 starts the app, so the port is free and the app is down
# for seconds; its dump and logs (the app's environment, secrets included) go with it.
retire_deploy_pm2() {
  local old=pm2-$DEPLOY_USER
  [[ -f /etc/systemd/system/$old.service || -d $deploy_home/.pm2 ]] || return 0
  systemctl disable --now --quiet "$old" 2>/dev/null || true
  runuser -u "$DEPLOY_USER" -- env -i HOME="$deploy_home" PM2_HOME="$deploy_home/.pm2" PATH="$PATH" \
    pm2 kill >/dev/null 2>&1 || true
  rm -f "/etc/systemd/system/$old.service" "/etc/logrotate.d/$old"
  systemctl daemon-reload
  rm -rf "$deploy_home/.pm2"
  changed "retired $old (the app now runs as $APP_USER)"
}

# What the running processes were started with, written only once they passed their health check:
# "<release> <env hash> <ecosystem hash>". A run stopped anywhere before that (after moving
# `current`, after writing the env file) finds no match and (re)loads, rather than taking the old
# processes' health for the new release's.
# Root's, in root's directory.
live_mark=/var/lib/nodehost/$APP_NAME.live
env_hash=$(sha256sum <"$SHARED/env.json" | cut -c1-16)
ecosystem_hash=$(sha256sum <"$ecosystem" | cut -c1-16)
want_live="$release_id $env_hash $ecosystem_hash"
live=$(cat "$live_mark" 2>/dev/null || true)
# No record of what runs (a fresh host, an earlier version, a run stopped before the record): the
# processes are recreated from the ecosystem, which a reload would not fully apply.
if [[ ${live##* } != "$ecosystem_hash" ]]; then ecosystem_changed=1; fi
previous=$(basename "$(readlink "$APP_ROOT/current" 2>/dev/null || echo none)")
if [[ $live == "$want_live" && $previous == "$release_id" ]] && pm2_online && healthy; then
  log "release $release_id is current and healthy"
else
  rm -f "$live_mark"
  point_current_at "$release_id"
  touch "$STATE/$release_id.activated"
  rm -f "$STATE/$release_id.failed"
  retire_deploy_pm2
  if [[ $ecosystem_changed == 1 ]]; then pm2_apply recreate; else pm2_apply reload; fi
  if wait_healthy; then
    write_file "$live_mark" 0644 root:root <<<"$want_live"
    changed "release $release_id live (previous: $previous)"
  else
    as_app pm2 logs --nostream --lines 30 "$APP_NAME-web" >&2 || true
    touch "$STATE/$release_id.failed"
    if [[ $previous != none && $previous != "$release_id" && -d $RELEASES/$previous ]]; then
      point_current_at "$previous"
      pm2_apply recreate
      if wait_healthy; then
        die "release $release_id failed its health check on 127.0.0.1:$APP_PORT/api/health; rolled back to $previous, which is serving"
      fi
      die "release $release_id failed its health check and the rollback to $previous is unhealthy too"
    fi
    die "release $release_id failed its health check on 127.0.0.1:$APP_PORT/api/health (no previous release to roll back to)"
  fi
fi

# --- Keep the newest releases (by activation, then build time), never the current one ------------
current_id=$(basename "$(readlink "$APP_ROOT/current")")
mapfile -t old < <(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' |
  while read -r id; do
    printf '%s %s\n' "$(stat -c %Y "$STATE/$id.activated" 2>/dev/null || stat -c %Y "$STATE/$id.ready" 2>/dev/null || echo 0)" "$id"
  done | sort -rn | awk -v keep="$KEEP_RELEASES" 'NR > keep { print $2 }')
for id in "${old[@]}"; do
  [[ $id == "$current_id" ]] && continue
  app_rmtree "${RELEASES:?}/$id" || { warn "could not remove release $id"; continue; }
  rm -f "$STATE/$id".*
  changed "pruned release $id"
done

step_done app
