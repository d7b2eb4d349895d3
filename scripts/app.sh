#!/usr/bin/env bash
# Step app: a release under /srv/<app>/releases/<id>, run by PM2, health-checked, rolled back when unhealthy.
# shellcheck disable=SC2153 # parameters arrive as exports at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty APP_NAME DEPLOY_USER APP_PORT APP_SOURCE NPM_REGISTRY DATABASE_URL REDIS_URL ROLLBACK_TOOL_B64
require_vars APP_ARCHIVE_B64 APP_GIT_URL APP_GIT_REF APP_WORKER APP_BUILD APP_ENV_JSON
[[ $APP_NAME =~ ^[a-z][a-z0-9-]*$ ]] || die "APP_NAME must be a lower-case name, got '$APP_NAME'"
[[ $APP_PORT =~ ^[0-9]+$ ]] || die "APP_PORT must be a port number, got '$APP_PORT'"
id "$DEPLOY_USER" >/dev/null 2>&1 || die "deploy user $DEPLOY_USER does not exist"
export PATH=/usr/local/bin:$PATH
command -v pm2 >/dev/null || die "pm2 is not installed (the node-pm2 step installs it)"

APP_ROOT=/srv/$APP_NAME
RELEASES=$APP_ROOT/releases
SHARED=$APP_ROOT/shared
KEEP_RELEASES=5
deploy_group=$(id -gn "$DEPLOY_USER")
deploy_home=$(getent passwd "$DEPLOY_USER" | cut -d: -f6)

# as_deploy CMD... : runs as the deploy user with its own HOME and PM2_HOME.
as_deploy() {
  runuser -u "$DEPLOY_USER" -- env -i HOME="$deploy_home" PM2_HOME="$deploy_home/.pm2" \
    PATH="$PATH" LANG=C.UTF-8 npm_config_registry="$NPM_REGISTRY" "$@"
}

install -d -m 0755 -o "$DEPLOY_USER" -g "$deploy_group" "$APP_ROOT" "$RELEASES" "$SHARED"

# --- Operator tool and the settings it reads ---------------------------------------------------
install_b64 "$ROLLBACK_TOOL_B64" /usr/local/bin/nodehost-rollback 0755
install -d -m 0700 /etc/nodehost
write_env /etc/nodehost/app.env 0644 root:root APP_NAME DEPLOY_USER APP_PORT

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
write_file "$SHARED/env.json" 0600 "$DEPLOY_USER:$deploy_group" <<<"$env_json"
unset env_json
remove_file "$SHARED/.env" # what env.json replaces (NAME=value lines, which a value could break)
# PM2 keeps every process's environment in its dump and logs dir: the deploy user's alone.
if [[ -d $deploy_home/.pm2 ]]; then chmod 0700 "$deploy_home/.pm2"; fi

# --- Fetch the release into a staging dir, named by content --------------------------------------
staging=$(mktemp -d "$RELEASES/.staging.XXXXXX")
# shellcheck disable=SC2064 # expand now
trap "rm -rf '$staging'" EXIT
chown "$DEPLOY_USER:$deploy_group" "$staging"
chmod 0755 "$staging"
case $APP_SOURCE in
  archive)
    [[ -n $APP_ARCHIVE_B64 ]] || die "APP_SOURCE=archive needs APP_ARCHIVE_B64"
    printf '%s' "$APP_ARCHIVE_B64" | base64 -d >"$staging.tgz"
    release_id=$(sha256sum "$staging.tgz" | cut -c1-12)
    if [[ ! -f $RELEASES/$release_id/.nodehost-ready ]]; then
      chown "$DEPLOY_USER" "$staging.tgz"
      as_deploy tar -xzf "$staging.tgz" -C "$staging" --no-same-owner --no-same-permissions
    fi
    rm -f "$staging.tgz"
    ;;
  git)
    [[ -n $APP_GIT_URL && -n $APP_GIT_REF ]] || die "APP_SOURCE=git needs APP_GIT_URL and APP_GIT_REF"
    apt_install git ca-certificates
    as_deploy git clone -q "$APP_GIT_URL" "$staging/src"
    as_deploy git -C "$staging/src" -c advice.detachedHead=false checkout -q "$APP_GIT_REF"
    release_id=$(as_deploy git -C "$staging/src" rev-parse --short=12 HEAD)
    rm -rf "$staging/src/.git"
    shopt -s dotglob
    mv "$staging/src"/* "$staging/"
    shopt -u dotglob
    rmdir "$staging/src"
    ;;
  *) die "APP_SOURCE must be archive or git, got '$APP_SOURCE'" ;;
esac
release=$RELEASES/$release_id

# --- Build the release once: npm ci (and the build) as the deploy user --------------------------
if [[ ! -f $release/.nodehost-ready ]]; then
  # An archive made of a directory holds one top folder; use what is inside it.
  if [[ ! -f $staging/package.json ]]; then
    mapfile -t top < <(find "$staging" -mindepth 1 -maxdepth 1)
    if [[ ${#top[@]} -eq 1 && -f ${top[0]}/package.json ]]; then
      staging_inner=${top[0]}
    else
      die "release $release_id has no package.json at its top"
    fi
  else
    staging_inner=$staging
  fi
  [[ -f $staging_inner/package-lock.json || -f $staging_inner/npm-shrinkwrap.json ]] ||
    die "release $release_id has no package-lock.json: npm ci needs one"
  has_build=$(node -e 'const p=require(process.argv[1]); process.stdout.write(p.scripts && p.scripts.build ? "1" : "0")' "$staging_inner/package.json")
  (
    cd "$staging_inner"
    if [[ $APP_BUILD == 1 && $has_build == 1 ]]; then
      as_deploy npm ci --no-audit --no-fund --loglevel=error
      as_deploy npm run build
      as_deploy npm prune --omit=dev --no-audit --no-fund --loglevel=error
    else
      as_deploy npm ci --omit=dev --no-audit --no-fund --loglevel=error
    fi
  )
  rm -rf "$release"
  mv "$staging_inner" "$release"
  as_deploy touch "$release/.nodehost-ready"
  changed "release $release_id built"
fi
rm -rf "$staging"
trap - EXIT

# --- PM2 ecosystem: processes run from `current`, env read from shared/env.json at each (re)load --
# The web process, as `npm start` would run it: `node <file>` directly (PM2's signals reach node
# itself); any other start script (tsx, flags, a variable before the command) through npm, which
# passes SIGINT/SIGTERM on to it; no start script: `main`, else server.js (npm's own default).
web_json=$(node -e '
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
  if [[ -f $release/$APP_WORKER ]]; then
    worker_json=$(node -e 'process.stdout.write(JSON.stringify({script: process.argv[1]}))' "$APP_WORKER")
  elif node -e 'const p=require(process.argv[1]); process.exit(p.scripts && p.scripts[process.argv[2]] ? 0 : 1)' "$release/package.json" "$APP_WORKER"; then
    worker_json=$(node -e 'process.stdout.write(JSON.stringify({script: "npm", args: "run " + process.argv[1]}))' "$APP_WORKER")
  else
    die "APP_WORKER '$APP_WORKER' is neither a file nor an npm script of release $release_id"
  fi
fi
ecosystem=$SHARED/ecosystem.config.cjs
write_file "$ecosystem" 0644 "$DEPLOY_USER:$deploy_group" <<JS
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
  as_deploy pm2 jlist 2>/dev/null | node -e '
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
      if as_deploy pm2 describe "$name" >/dev/null 2>&1; then as_deploy pm2 delete "$name" >/dev/null; fi
    done
  fi
  as_deploy pm2 startOrReload "$ecosystem" --update-env >/dev/null
  as_deploy pm2 save --force >/dev/null
}
# How often PM2 has restarted the web process so far (a reload counts as one).
pm2_restarts() {
  as_deploy pm2 jlist 2>/dev/null | node -e '
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
  chown -h "$DEPLOY_USER:$deploy_group" "$APP_ROOT/current"
}

# What the running processes were started with, written only once they passed their health check:
# "<release> <env hash> <ecosystem hash>". A run stopped anywhere before that (after moving
# `current`, after writing the env file) finds no match and (re)loads, rather than taking the old
# processes' health for the new release's.
# Root-owned (/srv/<app> is the deploy user's: a symlink planted there would aim root's write).
install -d -m 0755 /var/lib/nodehost
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
  touch "$release"
  rm -f "$release/.nodehost-failed"
  if [[ $ecosystem_changed == 1 ]]; then pm2_apply recreate; else pm2_apply reload; fi
  if wait_healthy; then
    write_file "$live_mark" 0644 root:root <<<"$want_live"
    changed "release $release_id live (previous: $previous)"
  else
    as_deploy pm2 logs --nostream --lines 30 "$APP_NAME-web" >&2 || true
    touch "$release/.nodehost-failed"
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

# --- Keep the newest releases (by activation time), never the current one -----------------------
current_id=$(basename "$(readlink "$APP_ROOT/current")")
mapfile -t old < <(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\n' |
  sort -rn | awk -v keep="$KEEP_RELEASES" 'NR > keep { print $2 }')
for id in "${old[@]}"; do
  [[ $id == "$current_id" ]] && continue
  rm -rf "${RELEASES:?}/$id"
  changed "pruned release $id"
done

step_done app
