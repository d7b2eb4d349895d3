#!/usr/bin/env bash
# Step wait-for-boot: first boot finished (cloud-init), package locks free, so later steps can apt.
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

# The wrapper ran us through `sudo -n`: say who, so a broken sudo shows up here, not later.
log "running as $(id -un) via sudo from ${SUDO_USER:-<none>}"

if command -v cloud-init >/dev/null; then
  rc=0
  timeout 1200 cloud-init status --wait >/dev/null || rc=$?
  case $rc in
    0) log "cloud-init: done" ;;
    2)
      # Recoverable errors (a deprecated key, a module warning): the host is usable; show them.
      warn "cloud-init finished with recoverable errors:"
      cloud-init status --long >&2 || true
      ;;
    124) die "cloud-init still running after 20 minutes" ;;
    *)
      cloud-init status --long >&2 || true
      die "cloud-init failed (exit $rc)"
      ;;
  esac
else
  warn "cloud-init not installed; not waiting for it"
fi

# systemd's own boot jobs (unattended-upgrades' first run, apt-daily) start around now.
state=$(timeout 300 systemctl is-system-running --wait 2>/dev/null) || true
log "systemd: ${state:-unknown}"

# dpkg and apt take POSIX (fcntl) locks, which flock(1) does not see; probe them the same way.
lock_free() {
  python3 - "$@" <<'PY'
import fcntl, os, sys
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    with open(path, "r+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sys.exit(1)
PY
}
locks=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
if ! lock_free "${locks[@]}"; then
  log "waiting for apt/dpkg locks (another package job is running)"
  wait_until 900 "apt/dpkg locks" lock_free "${locks[@]}" || die "apt/dpkg still locked after 15 minutes"
fi
log "apt/dpkg locks: free"
step_done wait-for-boot
