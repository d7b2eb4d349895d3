#!/usr/bin/env bash
# Helpers every host step uses: logging, parameter checks, apt, idempotent file writes.
# Concatenated in front of each step's script on stdin (docs/host-steps.md); sourced by hand runs.
# shellcheck disable=SC2034 # WRITE_CHANGED is read by the steps after write_file.
set -euo pipefail
# The step wrapper runs us under umask 077 (for its temp file); installed programs and packages
# must stay readable (npm -g, unit files). Secret files get their mode from write_file.
umask 022

NODEHOST_CHANGES=0
# Set by write_file: 1 when the last call rewrote the file (content, mode or owner), else 0.
WRITE_CHANGED=0

log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# One line per thing changed; step_done says "unchanged: <step>" when nothing was.
changed() {
  NODEHOST_CHANGES=$((NODEHOST_CHANGES + 1))
  log "changed: $*"
}
unchanged() { log "unchanged: $*"; }
step_done() {
  if [[ $NODEHOST_CHANGES -eq 0 ]]; then unchanged "$1"; else log "done: $1 ($NODEHOST_CHANGES changed)"; fi
}

# require_vars NAME... : fails naming every unset one at once (empty counts as set).
require_vars() {
  local name missing=()
  for name in "$@"; do
    [[ -n ${!name+x} ]] || missing+=("$name")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing parameters: ${missing[*]}"
  fi
}

# require_nonempty NAME... : like require_vars, and each must be non-empty.
require_nonempty() {
  local name missing=()
  for name in "$@"; do
    [[ -n ${!name:-} ]] || missing+=("$name")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "empty or missing parameters: ${missing[*]}"
  fi
}

# apt_get ARGS... : apt-get that waits for the package locks instead of failing on them.
# DPkg::Lock::Timeout makes apt wait for dpkg's locks, but `apt-get update` takes
# /var/lib/apt/lists/lock without waiting ("E: Could not get lock /var/lib/apt/lists/lock"
# at once, whatever DPkg::Lock::Timeout says; test/e2e/host.test.ts shows it on the VM). The
# engine runs docker-data and node-pm2 together (both follow base), and a droplet's apt-daily
# timer runs on its own, so: our steps queue on one flock, and a lock held by anyone else
# (apt-daily, unattended-upgrades, an operator) is retried for up to NODEHOST_APT_WAIT_S.
# The waits, in seconds (a test sets them shorter).
NODEHOST_APT_WAIT_S=${NODEHOST_APT_WAIT_S:-1200}
NODEHOST_APT_RETRY_S=${NODEHOST_APT_RETRY_S:-5}
apt_get() {
  # needrestart (base) restarts services after unattended upgrades, not in the middle of a step.
  NEEDRESTART_SUSPEND=1 apt_queue apt_get_locked "$@"
}

# apt_queue CMD... : CMD on the steps' apt queue: one flock for every step's apt runs, taken once
# a run of apt's own timers has ended (unattended-upgrade takes its lock without waiting: "Lock
# file is already taken, exiting"; apt-get's lock errors are retried by apt_get_locked).
apt_queue() {
  local fd rc=0 limit=$NODEHOST_APT_WAIT_S start=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  install -d -m 0700 /run/nodehost
  exec {fd}>/run/nodehost/apt.lock
  if ! flock -w "$limit" "$fd"; then
    exec {fd}>&-
    die "another nodehost step held the apt queue for ${limit}s"
  fi
  while systemctl is-active --quiet apt-daily.service apt-daily-upgrade.service 2>/dev/null && ((SECONDS - start < limit)); do
    sleep "$NODEHOST_APT_RETRY_S"
  done
  "$@" || rc=$?
  exec {fd}>&-
  return "$rc"
}

apt_get_locked() {
  local err rc=0 repairs=0 start=$SECONDS limit=$NODEHOST_APT_WAIT_S every=$NODEHOST_APT_RETRY_S
  err=$(mktemp)
  while :; do
    rc=0
    apt-get -q -o DPkg::Lock::Timeout=600 "$@" 2>"$err" || rc=$?
    cat "$err" >&2
    # A step killed while dpkg ran (a lost connection, a timeout, a reboot) leaves dpkg's journal
    # half written, and every apt-get after it refuses with "dpkg was interrupted, you must
    # manually run 'dpkg --configure -a'" (apt-pkg/deb/debsystem.cc): finish that here, as the
    # message asks, so the next run converges without hand work. Old config files are kept, as
    # every install here does.
    if [[ $rc -ne 0 ]] && grep -q 'dpkg was interrupted' "$err" && ((repairs++ < 3)); then
      log "apt: dpkg was interrupted by an earlier run; finishing it with dpkg --configure -a"
      dpkg --force-confdef --force-confold --configure -a >&2 || sleep "$every"
      continue
    fi
    if [[ $rc -ne 0 ]] && grep -q -e 'Could not get lock' -e 'Unable to lock' "$err" && ((SECONDS - start < limit)); then
      log "apt: a package lock is held by another process; retrying in ${every} s"
      sleep "$every"
      continue
    fi
    break
  done
  rm -f "$err"
  return "$rc"
}

# When this host's package lists were last refreshed by a step (apt_refresh).
NODEHOST_APT_STAMP=${NODEHOST_APT_STAMP:-/var/lib/nodehost/apt-lists-refreshed}

apt_refresh() {
  apt_get update
  NODEHOST_APT_UPDATED=1
  mkdir -p "$(dirname "$NODEHOST_APT_STAMP")"
  touch "$NODEHOST_APT_STAMP"
}

# True when a step refreshed the lists less than NODEHOST_APT_FRESH_S (30 min) ago: within one
# `up` (the whole of a fresh provision takes minutes), never across days.
apt_lists_fresh() {
  local at
  at=$(stat -c %Y "$NODEHOST_APT_STAMP" 2>/dev/null) || return 1
  (($(date +%s) - at < ${NODEHOST_APT_FRESH_S:-1800}))
}

# apt_install PKG... : installs only the packages that are not installed yet, without recommends.
apt_install() {
  local pkg missing=()
  for pkg in "$@"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
      missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  # A fresh host's package lists may be stale or absent. One `up` refreshes them once, in the
  # first step that installs anything, not once per step: every `apt-get update` fetches the
  # Release files again and rebuilds apt's cache, and on a fresh host six steps install packages,
  # two of them at once (queued on the apt lock). Lists younger than NODEHOST_APT_FRESH_S are
  # used as they are; should the archive have moved on since (a package replaced by a security
  # update answers 404), the install fails, and is retried once after a refresh.
  if [[ -z ${NODEHOST_APT_UPDATED:-} ]] && ! apt_lists_fresh; then
    apt_refresh
  fi
  if ! apt_get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    install --no-install-recommends "${missing[@]}"; then
    [[ -z ${NODEHOST_APT_UPDATED:-} ]] || die "apt-get install ${missing[*]} failed"
    log "apt: install failed on lists from an earlier step; refreshing them and trying again"
    apt_refresh
    apt_get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      install --no-install-recommends "${missing[@]}"
  fi
  changed "installed ${missing[*]}"
}

# write_file PATH MODE OWNER[:GROUP] < content   (names or numeric ids)
# Rewrites PATH (atomically, via a temp file beside it) only when its content, mode or owner
# differ; then reports it and sets WRITE_CHANGED=1, else WRITE_CHANGED=0.
write_file() {
  local path=$1 mode=$2 owner=$3 group dir tmp uid gid
  group=${owner#*:}
  owner=${owner%%:*}
  # Numeric ids are taken as they are (a container's user need not exist on the host).
  if [[ $owner =~ ^[0-9]+$ ]]; then uid=$owner; else uid=$(id -u "$owner"); fi
  if [[ $group == "$owner" || -z $group ]]; then
    if [[ $owner =~ ^[0-9]+$ ]]; then gid=$owner; else gid=$(id -g "$owner"); fi
  elif [[ $group =~ ^[0-9]+$ ]]; then
    gid=$group
  else
    gid=$(getent group "$group" | cut -d: -f3)
    [[ -n $gid ]] || die "write_file $path: no group $group"
  fi
  mode=$(printf '%o' "$((8#$mode))")
  dir=$(dirname "$path")
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.nodehost.XXXXXX")
  cat >"$tmp"
  WRITE_CHANGED=0
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    if [[ $(stat -c '%a %u %g' "$path") != "$mode $uid $gid" ]]; then
      chmod "$mode" "$path"
      chown "$uid:$gid" "$path"
      WRITE_CHANGED=1
      changed "$path (mode/owner)"
    fi
    return 0
  fi
  chmod "$mode" "$tmp"
  chown "$uid:$gid" "$tmp"
  mv -f "$tmp" "$path"
  WRITE_CHANGED=1
  changed "$path"
}

# write_env PATH MODE OWNER NAME... : one NAME=value line per variable, each value quoted by
# printf %q, so the tools that source the file get the exact values back and run nothing,
# whatever a value holds (quotes, $(...), backticks, newlines). Through write_file.
write_env() {
  local path=$1 mode=$2 owner=$3 name line content=""
  shift 3
  # Built here, not in a subshell: a bad or unset name must stop the step, not write half a file.
  for name in "$@"; do
    [[ $name =~ ^[A-Z][A-Z0-9_]*$ ]] || die "write_env: bad name $name"
    [[ -n ${!name+x} ]] || die "write_env: $name is not set"
    printf -v line '%s=%q' "$name" "${!name}"
    content+=$line$'\n'
  done
  # A here-string (not a pipe, whose write_file would run in a subshell and lose WRITE_CHANGED);
  # it adds back the last newline.
  write_file "$path" "$mode" "$owner" <<<"${content%$'\n'}"
}

# install_b64 BASE64 PATH MODE [OWNER] : decodes a shipped tool and writes it with write_file.
install_b64() {
  local b64=$1 path=$2 mode=$3 owner=${4:-root:root}
  [[ -n $b64 ]] || die "install_b64: empty content for $path"
  printf '%s' "$b64" | base64 -d | write_file "$path" "$mode" "$owner"
}

# remove_file PATH : deletes PATH if present, and says so.
remove_file() {
  if [[ -e $1 || -L $1 ]]; then
    rm -f "$1"
    changed "removed $1"
  fi
}

# wait_until SECONDS DESCRIPTION CMD... : retries CMD every 2 s until it succeeds or time runs out.
wait_until() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@"; do
    if ((SECONDS - start >= limit)); then
      warn "gave up after ${limit}s waiting for $what"
      return 1
    fi
    sleep 2
  done
}

# ensure_service NAME : enabled and running (started now if not).
ensure_service() {
  local unit=$1
  if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    systemctl enable --quiet "$unit"
    changed "enabled $unit"
  fi
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start "$unit"
    changed "started $unit"
  fi
}

# daily_job NAME AT KEY DESCRIPTION COMMAND TIMEOUT [UNIT...] : NAME.service runs COMMAND once
# (after the network and the UNITs, stopped after TIMEOUT), and NAME.timer starts it each day at AT
# ("HH:MM", host clock, within the 10 minutes after); when AT is "never" (the stack's config key
# KEY says so) the timer is disabled and removed, and the service stays for a run by hand.
daily_job() {
  local name=$1 at=$2 key=$3 description=$4 command=$5 timeout=$6
  shift 6
  [[ $at == never || $at =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]] || die "$key must be HH:MM or never, not '$at'"
  write_file "/etc/systemd/system/$name.service" 0644 root:root <<UNIT
[Unit]
Description=$description (nodehost)
Wants=network-online.target $*
After=network-online.target $*

[Service]
Type=oneshot
ExecStart=$command
TimeoutStartSec=$timeout
UNIT
  if [[ $at == never ]]; then
    if systemctl is-enabled --quiet "$name.timer" 2>/dev/null; then
      systemctl disable --now --quiet "$name.timer"
      changed "$name.timer disabled ($key never)"
    fi
    remove_file "/etc/systemd/system/$name.timer"
    # A unit whose file is gone reads NeedDaemonReload=yes while systemd still holds it (systemd's
    # src/core/unit.c, fragment_mtime_newer: a fragment it cannot stat is out of date).
    daemon_reload_for "$name.timer"
    return 0
  fi
  write_file "/etc/systemd/system/$name.timer" 0644 root:root <<UNIT
[Unit]
Description=Daily: $description, in the stack's window ($key) (nodehost)

[Timer]
OnCalendar=*-*-* $at:00
RandomizedDelaySec=10min

[Install]
WantedBy=timers.target
UNIT
  daemon_reload_for "$name.timer"
  ensure_service "$name.timer"
}

# A change written and not yet applied (a restart, a reload) survives the run that wrote it: a run
# stopped between the write and the apply (a lost connection, a timeout, a reboot) would otherwise
# find the file already new next time and never apply it. The mark is set before the write:
#   pending_begin NAME; write_file ...; if pending_due NAME; then <apply>; fi; pending_end NAME
NODEHOST_PENDING_DIR=${NODEHOST_PENDING_DIR:-/var/lib/nodehost/pending}
declare -gA NODEHOST_PENDING_WAS=()
pending_begin() {
  [[ $1 =~ ^[a-z0-9-]+$ ]] || die "pending_begin: bad name '$1'"
  install -d -m 0700 "$NODEHOST_PENDING_DIR"
  if [[ -e $NODEHOST_PENDING_DIR/$1 ]]; then NODEHOST_PENDING_WAS[$1]=1; else NODEHOST_PENDING_WAS[$1]=0; fi
  touch "$NODEHOST_PENDING_DIR/$1"
}
# True when the write_file just before rewrote its file, or an earlier run wrote and never applied.
pending_due() {
  [[ $WRITE_CHANGED == 1 || ${NODEHOST_PENDING_WAS[$1]:-0} == 1 ]]
}
pending_end() { rm -f "$NODEHOST_PENDING_DIR/$1"; }

# daemon_reload_for UNIT: systemctl daemon-reload when systemd holds an older version of UNIT's
# files (or drop-ins) than the disk: judged by systemd itself, so a run stopped between writing a
# unit and reloading converges on the next one.
daemon_reload_for() {
  if [[ $(systemctl show -p NeedDaemonReload --value "$1" 2>/dev/null) == yes ]]; then
    systemctl daemon-reload
  fi
}
