#!/usr/bin/env bash
# Step app: a release under /srv/<app>/releases/<id>, built and run by the app's own user under PM2,
# started beside the serving one and given the traffic only once healthy (nodehost-release).
# Who owns what: /srv/<app>, releases/, shared/ and the state in /var/lib/nodehost are root's; a
# release's own tree is the app user's (an app may write its caches there). Root never runs or
# writes a file through a directory the app user owns: what happens inside a release (unpack,
# npm ci, the build, its removal) runs as the app user, and the markers root keeps about releases
# (built, failed, activated) live in root's state directory, not in the release.
# shellcheck disable=SC2153 # parameters arrive as variables at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty APP_NAME DEPLOY_USER APP_USER APP_PORT APP_SOURCE NPM_REGISTRY DATABASE_URL REDIS_URL ROLLBACK_TOOL_B64 RELEASE_TOOL_B64 ECOSYSTEM_TOOL_B64
require_vars APP_ARCHIVE_SHA256 APP_ARCHIVE_PATH CONNECT_USER APP_GIT_URL APP_GIT_DEPLOY_KEY APP_GIT_HOST_KEYS GIT_FETCH_TOOL_B64 APP_GIT_REF APP_WORKER APP_BUILD APP_ENV_JSON
APP_MIGRATE=${APP_MIGRATE:-}
# app.healthPath, app.memoryLimit, app.processes (JSON list) and app.buildEnv (JSON object).
HEALTH_PATH=${HEALTH_PATH:-/api/health}
MEMORY_LIMIT=${MEMORY_LIMIT:-512M}
APP_PROCESSES_JSON=${APP_PROCESSES_JSON:-[]}
APP_BUILD_ENV_JSON=${APP_BUILD_ENV_JSON:-\{\}}
[[ $HEALTH_PATH =~ ^/[A-Za-z0-9._~/-]*$ && $HEALTH_PATH != *..* ]] || die "HEALTH_PATH must be a path such as /api/health, got '$HEALTH_PATH'"
[[ $MEMORY_LIMIT =~ ^[1-9][0-9]{0,5}[MG]$ ]] || die "MEMORY_LIMIT must be a size such as 512M, got '$MEMORY_LIMIT'"
[[ -z $APP_MIGRATE || $APP_MIGRATE =~ ^[A-Za-z0-9][A-Za-z0-9:._-]*$ ]] || die "APP_MIGRATE must be an npm script name, got '$APP_MIGRATE'"
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
# Root's record of the releases: <id>.ready (built), <id>.failed (failed its health check, or
# rolled back from),
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
  if [[ $(stat -c %U "$dir") != "$APP_USER" ]]; then
    # Not the app user's (a staging dir an earlier version's deploy user made): no link in it is.
    rm -rf -- "$dir"
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

# --- Operator tools and the settings they read --------------------------------------------------
install_b64 "$ROLLBACK_TOOL_B64" /usr/local/bin/nodehost-rollback 0755
install_b64 "$RELEASE_TOOL_B64" /usr/local/bin/nodehost-release 0755
install_b64 "$ECOSYSTEM_TOOL_B64" /usr/local/bin/nodehost-ecosystem 0755
install -d -m 0700 /etc/nodehost
write_env /etc/nodehost/app.env 0644 root:root APP_NAME APP_USER APP_PORT APP_WORKER HEALTH_PATH MEMORY_LIMIT
# app.processes as the config gave it (nodehost-ecosystem checks it again against each release).
printf '%s' "$APP_PROCESSES_JSON" | node -e 'process.exit(Array.isArray(JSON.parse(require("fs").readFileSync(0, "utf8"))) ? 0 : 1)' ||
  die "APP_PROCESSES_JSON is not a JSON list"
write_file "/etc/nodehost/processes-$APP_NAME.json" 0644 root:root <<<"$APP_PROCESSES_JSON"

# --- The environment the app runs with ----------------------------------------------------------
# One JSON object (app.env, appSecrets, then what the stack sets), built by node from the step's
# variables and read by the PM2 ecosystem at each start (PORT is the slot's: nodehost-release):
# a value may hold quotes, $(...) or newlines and is never a shell line, a dotenv line or a
# command-line argument. Its errors name keys, not values.
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
# A release is built when root's record says so and its directory is there (not a link).
built() { [[ -f $STATE/$1.ready && -d $RELEASES/$1 && ! -L $RELEASES/$1 ]]; }

# Left behind by a run that was stopped (they hold a half-built release).
for d in "$RELEASES"/.staging.*; do
  if [[ -e $d || -L $d ]]; then app_rmtree "$d" || warn "could not remove $d"; fi
done
staging=$(mktemp -d "$RELEASES/.staging.XXXXXX")
# shellcheck disable=SC2064 # expand now
trap "app_rmtree '$staging'; rm -f '$staging.tgz'" EXIT
chown "$APP_USER:$APP_USER" "$staging"
chmod 0755 "$staging"
case $APP_SOURCE in
  archive)
    # The archive came ahead of this step by SFTP (CopyToRemote), as the connecting user, to
    # ~/.nodehost-incoming/<app>-<sha>.tgz; its sha256 came in the step's parameters.
    [[ $APP_ARCHIVE_SHA256 =~ ^[0-9a-f]{64}$ ]] || die "APP_ARCHIVE_SHA256 must be a sha256, got '$APP_ARCHIVE_SHA256'"
    [[ $APP_ARCHIVE_PATH =~ ^\.nodehost-incoming/[a-z][a-z0-9-]*-[0-9a-f]{16}\.tgz$ ]] || die "APP_ARCHIVE_PATH '$APP_ARCHIVE_PATH' is not an incoming archive"
    connect_home=$(getent passwd "$CONNECT_USER" | cut -d: -f6)
    [[ -n $connect_home ]] || die "no home for the connecting user '$CONNECT_USER'"
    incoming=$connect_home/$APP_ARCHIVE_PATH
    release_id=${APP_ARCHIVE_SHA256:0:12}
    if ! built "$release_id"; then
      [[ -f $incoming && ! -L $incoming ]] ||
        die "the app's archive is not on the host ($incoming): its copy (the CopyToRemote named <project>-<stack>-app-upload) must run again: pulumi up --replace on it"
      # Root's copy, in root's directory, readable by the app user's group only; checked there.
      (umask 027 && cp -- "$incoming" "$staging.tgz")
      [[ $(sha256sum "$staging.tgz" | cut -d' ' -f1) == "$APP_ARCHIVE_SHA256" ]] ||
        die "the app's archive on the host ($incoming) is not the one this up packed (sha256 differs): a copy cut short? run the up again"
      chgrp "$APP_USER" "$staging.tgz"
      as_app tar -xzf "$staging.tgz" -C "$staging" --no-same-owner --no-same-permissions
      rm -f "$staging.tgz"
    fi
    # Earlier archives of this app wait no longer (this one stays: the copy runs only when it changes).
    find "$(dirname "$incoming")" -maxdepth 1 -type f -name "$APP_NAME-*.tgz" ! -name "$(basename "$incoming")" -delete 2>/dev/null || true
    ;;
  git)
    [[ -n $APP_GIT_URL && -n $APP_GIT_REF ]] || die "APP_SOURCE=git needs APP_GIT_URL and APP_GIT_REF"
    apt_install git ca-certificates openssh-client
    install_b64 "$GIT_FETCH_TOOL_B64" /usr/local/sbin/nodehost-git-fetch 0755
    # Root fetches (a private repository's deploy key is never readable by the app user, whose
    # running release could read it), into a root-owned directory, then hands the tree over.
    git_keys=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now
    trap "app_rmtree '$staging'; app_rmtree '$staging.git'; rm -f '$staging.tgz'; rm -rf '$git_keys'" EXIT
    git_env=()
    if [[ -n $APP_GIT_DEPLOY_KEY ]]; then
      printf '%s\n' "$APP_GIT_DEPLOY_KEY" >"$git_keys/key"
      printf '%s\n' "$APP_GIT_HOST_KEYS" >"$git_keys/known"
      chmod 0600 "$git_keys/key" "$git_keys/known"
      git_env=(NODEHOST_GIT_KEY_FILE="$git_keys/key" NODEHOST_GIT_HOST_KEYS_FILE="$git_keys/known")
    fi
    commit=$(env "${git_env[@]}" /usr/local/sbin/nodehost-git-fetch "$APP_GIT_URL" "$APP_GIT_REF" "$staging.git") ||
      die "could not fetch '$APP_GIT_REF' of $APP_GIT_URL (see above): nothing changed"
    rm -rf "$git_keys"
    release_id=${commit:0:12}
    if ! built "$release_id"; then
      chown -R --no-dereference "$APP_USER:$APP_USER" "$staging.git"
      chmod 0755 "$staging.git"
      # Renames inside root's releases/ directory: the empty staging dir goes, the tree takes its name.
      rmdir "$staging"
      mv -T "$staging.git" "$staging"
    fi
    log "git: $APP_GIT_REF of $APP_GIT_URL is commit $commit"
    ;;
  *) die "APP_SOURCE must be archive or git, got '$APP_SOURCE'" ;;
esac
[[ $release_id =~ ^[0-9a-f]{12,40}$ ]] || die "release id '$release_id' is not a hex id"
release=$RELEASES/$release_id

# --- Build the release once: npm ci (and the build) as the app user -----------------------------
if ! built "$release_id"; then
  rm -f "$STATE/$release_id.ready"
  # An archive made of a directory holds one top folder; its contents move up, as the app user.
  if [[ ! -f $staging/package.json ]]; then
    mapfile -t top < <(find "$staging" -mindepth 1 -maxdepth 1)
    if [[ ${#top[@]} -eq 1 && -f ${top[0]}/package.json && ! -L ${top[0]} ]]; then
      # shellcheck disable=SC2016 # expanded by the inner bash
      as_app bash -c 'set -e; shopt -s dotglob; mv -T "$2" "$1/.nodehost-top"; mv "$1/.nodehost-top"/* "$1/"; rmdir "$1/.nodehost-top"' _ "$staging" "${top[0]}"
    else
      die "release $release_id has no package.json at its top"
    fi
  fi
  [[ -f $staging/package-lock.json || -f $staging/npm-shrinkwrap.json ]] ||
    die "release $release_id has no package-lock.json: npm ci needs one"
  has_build=$(as_app node -e 'const p=require(process.argv[1]); process.stdout.write(p.scripts && p.scripts.build ? "1" : "0")' "$staging/package.json")
  # What the installed dependencies depend on: the lockfile, package.json's dependency lists, the
  # Node.js version and the install mode. Read as the app user (the release is its tree).
  # shellcheck disable=SC2016 # expanded by the inner shell
  deps_key=$(cd "$staging" && as_app sh -c 'cat package-lock.json npm-shrinkwrap.json 2>/dev/null; node -v; node -p "const p = require(\"./package.json\"); JSON.stringify([p.dependencies, p.optionalDependencies, p.overrides])"' |
    { sha256sum; echo "build=$APP_BUILD$has_build"; } | sha256sum | cut -c1-32)
  # A built release with the same key: its node_modules are what npm ci would install again.
  reuse=""
  if [[ $APP_BUILD$has_build != 11 ]]; then
    for f in "$STATE"/*.deps; do
      [[ -f $f && $(cat "$f") == "$deps_key" ]] || continue
      prev=$(basename "$f" .deps)
      if built "$prev" && as_app test -d "$RELEASES/$prev/node_modules" && ! as_app test -L "$RELEASES/$prev/node_modules"; then reuse=$prev; break; fi
    done
  fi
  (
    cd "$staging"
    if [[ $APP_BUILD == 1 && $has_build == 1 ]]; then
      as_app npm ci --no-audit --no-fund --loglevel=error
      # The build sees app.env and app.buildEnv (never appSecrets: a bundle is public), each
      # value as an environment entry set by node, never a shell line.
      printf '%s' "$APP_BUILD_ENV_JSON" | as_app node -e '
const { spawnSync } = require("child_process");
const extra = JSON.parse(require("fs").readFileSync(0, "utf8"));
const r = spawnSync("npm", ["run", "build"], { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...extra } });
process.exit(r.status === null ? 1 : r.status);' || die "npm run build of release $release_id failed (see above): nothing changed"
      as_app npm prune --omit=dev --no-audit --no-fund --loglevel=error
    elif [[ -n $reuse ]]; then
      # A copy of the same dependencies (the app user copying within its own trees), then npm
      # install: on a tree that already matches the lockfile it installs nothing, and it still runs
      # the app's own install scripts (a postinstall `prisma generate` sees this release's schema).
      log "dependencies unchanged since release $reuse: its node_modules copied instead of npm ci"
      as_app cp -a "$RELEASES/$reuse/node_modules" "$staging/node_modules"
      as_app npm install --omit=dev --no-save --no-audit --no-fund --loglevel=error
    else
      as_app npm ci --omit=dev --no-audit --no-fund --loglevel=error
    fi
  )
  # A rename inside root's releases/ directory of the staging dir root made (mktemp): the app user
  # cannot have put a link in its place.
  app_rmtree "$release"
  mv -T "$staging" "$release"
  printf '%s\n' "$deps_key" >"$STATE/$release_id.deps"
  touch "$STATE/$release_id.ready"
  changed "release $release_id built"
fi
app_rmtree "$staging"
app_rmtree "$staging.git"
rm -f "$staging.tgz"
trap - EXIT

# --- Live: started beside the serving release, proven, then given the traffic -------------------
# nodehost-release (scripts/tools) does it, for this step and for nodehost-rollback alike.
# A host from before this version ran the app in the deploy user's PM2 (unit pm2-<deploy>) on
# app.port: it stops first, so that port is free and the app is down for seconds, once; its dump
# and logs (the app's environment, secrets included) go with it.
retire_deploy_pm2() {
  local old=pm2-$DEPLOY_USER
  [[ -f /etc/systemd/system/$old.service || -d $deploy_home/.pm2 ]] || return 0
  systemctl disable --now --quiet "$old" 2>/dev/null || true
  runuser -u "$DEPLOY_USER" -- env -i HOME="$deploy_home" PM2_HOME="$deploy_home/.pm2" PATH="$PATH" \
    pm2 kill >/dev/null 2>&1 || true
  rm -f "/etc/systemd/system/$old.service" "/etc/logrotate.d/$old"
  systemctl daemon-reload
  rm -rf "$deploy_home/.pm2" "$SHARED/ecosystem.config.cjs"
  changed "retired $old (the app now runs as $APP_USER)"
}
retire_deploy_pm2

# --- Migrations: before the release goes live, after a local backup, as the app user --------------
# `npm run <app.migrate>` in the release's directory with the app's own environment (env.json, so
# DATABASE_URL), whenever the release is not live yet. Its output goes to a root-only log; on a
# failure its tail is shown with every value of env.json masked. A failure leaves the serving
# release as it is (the database as the migration left it: the pre-deploy backup restores it).
if [[ -n $APP_MIGRATE ]] && ! nodehost-release live "$release_id" >/dev/null 2>&1; then
  as_app node -e 'const p=require(process.argv[1]); process.exit(p.scripts && p.scripts[process.argv[2]] ? 0 : 1)' "$release/package.json" "$APP_MIGRATE" ||
    die "app.migrate '$APP_MIGRATE' is not an npm script of release $release_id"
  pre=$(nodehost-backup --no-upload --quiet --prefix pre-deploy) || die "the pre-deploy backup failed (see /var/log/nodehost-backup.log): release $release_id not migrated, nothing changed"
  log "pre-deploy backup: $pre"
  migrate_log=/var/log/nodehost-migrate.log
  touch "$migrate_log" && chmod 0600 "$migrate_log"
  printf '%s release %s: npm run %s\n' "$(date -u +%FT%TZ)" "$release_id" "$APP_MIGRATE" >>"$migrate_log"
  rc=0
  (cd "$release" && as_app node -e '
const fs = require("fs"), { spawnSync } = require("child_process");
const env = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const r = spawnSync("npm", ["run", "--silent", process.argv[2]], { stdio: ["ignore", "inherit", "inherit"],
  env: { ...env, PATH: process.env.PATH, HOME: process.env.HOME, LANG: process.env.LANG } });
process.exit(r.status === null ? 1 : r.status);' "$SHARED/env.json" "$APP_MIGRATE") >>"$migrate_log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    printf '%s\0' "$SHARED/env.json" "$migrate_log" | node -e '
const fs = require("fs"), [envFile, logFile] = fs.readFileSync(0, "utf8").split("\0");
const secrets = Object.values(JSON.parse(fs.readFileSync(envFile, "utf8"))).filter((v) => v.length >= 4)
  .flatMap((v) => [v, encodeURIComponent(v)]).sort((a, b) => b.length - a.length);
let text = fs.readFileSync(logFile, "utf8").split("\n").slice(-41).join("\n");
for (const v of secrets) text = text.split(v).join("***");
process.stderr.write(text + "\n");'
    die "migration 'npm run $APP_MIGRATE' of release $release_id failed (exit $rc): it got no traffic and the serving release is unchanged; the database is as the migration left it, the pre-deploy backup is $pre (docs/runbooks/rollback.md)"
  fi
  changed "migrated: npm run $APP_MIGRATE (release $release_id; pre-deploy backup $pre)"
fi

out=$(nodehost-release activate "$release_id") || die "release $release_id did not go live (see above)"
log "$out"
if grep -q '^changed: ' <<<"$out"; then NODEHOST_CHANGES=$((NODEHOST_CHANGES + 1)); fi

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
