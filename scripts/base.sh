#!/usr/bin/env bash
# Step base: security updates, logs off the host, fail2ban, UFW, SSH hardening, swap, time sync,
# the data volume.
# shellcheck disable=SC2153 # parameters arrive as variables at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty DEPLOY_USER SWAP_MB DATA_DEVICE DATA_MOUNT SSH_PORT SSH_ALLOW_USERS
require_vars SSH_ALLOW_FROM LOG_HOST LOG_PORT LOG_PEER LOG_CA_PEM_B64 LOG_FRAMING
REBOOT_AT=${REBOOT_AT:-never}
[[ $REBOOT_AT =~ ^(never|([01][0-9]|2[0-3]):[0-5][0-9])$ ]] || die "REBOOT_AT must be HH:MM or never, got '$REBOOT_AT'"
[[ $SWAP_MB =~ ^[0-9]+$ ]] || die "SWAP_MB must be a number of MiB (0 = no swap), got '$SWAP_MB'"
[[ $SSH_PORT =~ ^[0-9]+$ ]] || die "SSH_PORT must be a port number, got '$SSH_PORT'"
[[ $DATA_MOUNT == /* && $DATA_MOUNT != / ]] || die "DATA_MOUNT must be an absolute path other than /"
read -ra ssh_users <<<"$SSH_ALLOW_USERS"
read -ra ssh_sources <<<"$SSH_ALLOW_FROM"
for u in "${ssh_users[@]}"; do
  [[ $u =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "SSH_ALLOW_USERS: '$u' is not a user name"
done
for src in "${ssh_sources[@]}"; do
  [[ $src =~ ^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$ ]] || die "SSH_ALLOW_FROM: '$src' is not an address or CIDR"
done
[[ " $SSH_ALLOW_USERS " == *" $DEPLOY_USER "* ]] || die "SSH_ALLOW_USERS must include the deploy user $DEPLOY_USER"
# logs.forward (components/config.ts checks the same, with the key's name): each value lands in a
# root-read rsyslog config file, so nothing but a host, a number, a name and base64 gets through.
if [[ -n $LOG_HOST ]]; then
  [[ $LOG_HOST =~ ^[A-Za-z0-9][A-Za-z0-9.:-]*$ ]] || die "LOG_HOST: '$LOG_HOST' is not a host name or address"
  [[ $LOG_PORT =~ ^[0-9]{1,5}$ ]] || die "LOG_PORT must be a port number, got '$LOG_PORT'"
  [[ $LOG_PEER =~ ^(\*\.)?[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || die "LOG_PEER: '$LOG_PEER' is not a DNS name"
  [[ $LOG_CA_PEM_B64 =~ ^[A-Za-z0-9+/=]*$ ]] || die "LOG_CA_PEM_B64 must be base64"
  [[ $LOG_FRAMING == octet-counted || $LOG_FRAMING == traditional ]] || die "LOG_FRAMING must be octet-counted or traditional, got '$LOG_FRAMING'"
fi

# nftables: trixie's fail2ban bans through `nft` (banaction nftables) and only recommends the
# package; without it every ban failed with "nft: not found" (seen in the VM suite's ban test).
# systemd-timesyncd (time sync, below) joins this transaction unless another NTP daemon runs: a
# second apt-get install took 16 s of a fresh host's base step under emulation (steps.log).
# rsyslog and its TLS driver join it when logs.forward is set.
# (Packages in a `*_pkgs=(...)` array are read by the VM suite's image too: test/e2e/lib/image.ts.)
ntp_daemon_active() { systemctl is-active --quiet chrony || systemctl is-active --quiet ntpsec || systemctl is-active --quiet ntp; }
time_sync_pkgs=(systemd-timesyncd)
if ntp_daemon_active; then time_sync_pkgs=(); fi
log_forward_pkgs=(rsyslog rsyslog-gnutls)
if [[ -z $LOG_HOST ]]; then log_forward_pkgs=(); fi
apt_install unattended-upgrades fail2ban python3-systemd ufw needrestart nftables "${time_sync_pkgs[@]}" "${log_forward_pkgs[@]}"

# --- Security updates -------------------------------------------------------------------------
write_file /etc/apt/apt.conf.d/20auto-upgrades 0644 root:root <<'CONF'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
CONF
# An update that needs a reboot (kernel, libc) gets one in the stack's window; the stack comes
# back by itself (the reboot test in test/e2e proves it).
if [[ $REBOOT_AT == never ]]; then reboot_on=false reboot_time=04:30; else reboot_on=true reboot_time=$REBOOT_AT; fi
write_file /etc/apt/apt.conf.d/52nodehost-reboot 0644 root:root <<CONF
// Written by nodehost (base step): updates.rebootAt
Unattended-Upgrade::Automatic-Reboot "$reboot_on";
Unattended-Upgrade::Automatic-Reboot-WithUsers "true";
Unattended-Upgrade::Automatic-Reboot-Time "$reboot_time";
CONF
# Services still running an old copy of an updated library are restarted after unattended
# upgrades ('a': automatically, no prompt). The steps' own apt runs suspend it (lib.sh apt_get).
write_file /etc/needrestart/conf.d/60-nodehost.conf 0644 root:root <<'CONF'
# Written by nodehost (base step).
$nrconf{restart} = 'a';
$nrconf{kernelhints} = 0;
CONF
ensure_service unattended-upgrades

# --- The security fixes a new host is missing: now, not on its first night ----------------------
# A droplet's image is as old as its last rebuild, and the security archive has newer packages (on
# the VM suite's freshly provisioned host on 2026-12-06: openssl, krb5, zstd, passwd and the
# kernel, 12 in all, pending until apt-daily-upgrade's first run the next morning).
# unattended-upgrade installs them with the nightly run's origins and rules (security fixes and
# point releases, conffiles kept); needrestart then restarts what still runs an old copy (so it is
# not suspended here, as the steps' own apt runs suspend it), and a kernel fix gets its reboot in
# the stack's window (above). Once per host: the daily timer does the rest. All packages in one
# dpkg run (--no-minimal-upgrade-steps, /usr/bin/unattended-upgrade of unattended-upgrades 2.9.1,
# line 2491): the minimal steps exist to let a shutdown stop it between sets, and cost a dpkg run
# per set. Not fatal: a mirror that fails now is tried again by the next up and the timer.
FIRST_SECURITY_RUN=/var/lib/nodehost/first-security-upgrade
if [[ ! -e $FIRST_SECURITY_RUN ]]; then
  installed() { dpkg-query -W -f='${Package} ${Version}\n' | sort; }
  before=$(installed)
  rc=0
  # On the steps' apt queue (lib.sh), after any run of apt's own timers, so no other apt runs
  # beside it; its output on stderr, as the other steps' apt output is.
  # (A subshell: a queue that never frees ends this pass, not the step.)
  (apt_queue env -u NEEDRESTART_SUSPEND timeout 1800 unattended-upgrade --no-minimal-upgrade-steps >&2) || rc=$?
  upgraded=$(comm -13 <(printf '%s\n' "$before") <(installed) | cut -d' ' -f1 | paste -sd' ')
  if [[ $rc -eq 0 ]]; then
    install -d -m 0755 "${FIRST_SECURITY_RUN%/*}"
    printf '%s\n' "$upgraded" >"$FIRST_SECURITY_RUN"
    if [[ -n $upgraded ]]; then changed "security updates installed: $upgraded"; else log "security updates: none pending"; fi
  else
    warn "unattended-upgrade exited $rc (/var/log/unattended-upgrades/ says why); the next up and the daily timer try again"
  fi
fi

# --- Logs off the host (logs.forward): what a break-in would erase is already elsewhere ----------
# journald hands every message to rsyslog's socket (ForwardToSyslog, set here rather than trusted
# to a default), and rsyslog also reads nginx's two logs (imfile). One rsyslog action sends them to
# the receiver over TLS, checking its certificate against the CA and its name against logs.forward
# (gtls driver, x509/name: rsyslog's omfwd doc, "StreamDriverAuthMode"). While the receiver is
# unreachable the action keeps what it could not send (in memory, spilling to disk up to 256 MiB,
# saved across a restart: queue.saveOnShutdown) and retries every 10 s.
# Debian's own rules (/etc/rsyslog.conf) still write /var/log/syslog and auth.log, which rsyslog's
# logrotate config rotates; the journal keeps its own copy as before.
LOG_CONF=/etc/rsyslog.d/60-nodehost-forward.conf
LOG_CA=/etc/nodehost/log-forward-ca.pem
JOURNALD_CONF=/etc/systemd/journald.conf.d/60-nodehost-forward.conf
if [[ -n $LOG_HOST ]]; then
  if [[ -n $LOG_CA_PEM_B64 ]]; then
    write_file "$LOG_CA" 0644 root:root < <(base64 -d <<<"$LOG_CA_PEM_B64")
    log_ca=$LOG_CA
  else
    remove_file "$LOG_CA"
    log_ca=/etc/ssl/certs/ca-certificates.crt
  fi
  pending_begin log-forward
  write_file "$JOURNALD_CONF" 0644 root:root <<'CONF'
# Written by nodehost (base step): logs.forward. rsyslog sends the journal on.
[Journal]
ForwardToSyslog=yes
CONF
  write_file "$LOG_CONF" 0644 root:root <<CONF
# Written by nodehost (base step): logs.forward. The journal and nginx's logs to
# $LOG_HOST:$LOG_PORT over TLS, the receiver's certificate checked against $log_ca
# and its name against $LOG_PEER.
module(load="imfile")
input(type="imfile" file="/var/log/nginx/access.log" tag="nginx-access:" facility="local7" severity="info" ruleset="nodehost-forward")
input(type="imfile" file="/var/log/nginx/error.log" tag="nginx-error:" facility="local7" severity="err" ruleset="nodehost-forward")
ruleset(name="nodehost-forward") {
  action(type="omfwd" name="nodehost-forward" target="$LOG_HOST" port="$LOG_PORT" protocol="tcp"
         template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="$LOG_FRAMING"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
         StreamDriverPermittedPeers="$LOG_PEER" StreamDriver.CAFile="$log_ca"
         queue.type="LinkedList" queue.filename="nodehost-forward" queue.maxDiskSpace="256m"
         queue.saveOnShutdown="on" action.resumeRetryCount="-1" action.resumeInterval="10")
}
call nodehost-forward
CONF
  if pending_due log-forward; then
    out=$(rsyslogd -N1 2>&1) || die "rsyslog refused $LOG_CONF: $out"
    # Both, whichever file changed: a run stopped after the writes finds them written and restarts
    # them still (pending_begin's mark).
    systemctl restart systemd-journald
    systemctl restart rsyslog
    changed "logs forwarded to $LOG_HOST:$LOG_PORT"
  fi
  ensure_service rsyslog
  pending_end log-forward
elif [[ -e $LOG_CONF ]]; then
  # Forwarding switched off: the package stays (it may be the host owner's), our rules go.
  remove_file "$LOG_CONF"
  remove_file "$LOG_CA"
  remove_file "$JOURNALD_CONF"
  systemctl restart systemd-journald
  if systemctl is-active --quiet rsyslog; then systemctl restart rsyslog; fi
fi

# --- fail2ban: trixie logs sshd only to the journal, so the jail reads it there ---------------
pending_begin fail2ban-jail
write_file /etc/fail2ban/jail.d/nodehost.local 0644 root:root <<CONF
[sshd]
enabled = true
backend = systemd
port = ${SSH_PORT}
maxretry = 5
findtime = 10m
bantime = 1h
CONF
if pending_due fail2ban-jail && systemctl is-active --quiet fail2ban; then
  systemctl restart fail2ban
fi
ensure_service fail2ban
pending_end fail2ban-jail

# --- UFW: deny inbound except SSH, HTTP, HTTPS (Docker publishes only on 127.0.0.1) ------------
ufw_status=$(ufw status verbose)
if ! grep -q '^Default: deny (incoming)' <<<"$ufw_status"; then
  ufw default deny incoming >/dev/null
  changed "ufw default deny incoming"
fi
if ! grep -q 'allow (outgoing)' <<<"$ufw_status"; then
  ufw default allow outgoing >/dev/null
  changed "ufw default allow outgoing"
fi
for port in 80 443; do
  if ! grep -Eq "^${port}/tcp +ALLOW IN +Anywhere( |$)" <<<"$ufw_status"; then
    ufw allow "${port}/tcp" >/dev/null
    changed "ufw allow ${port}/tcp"
  fi
done
# SSH from ssh.allowFrom only, as the cloud firewall has it (in every host mode); anywhere when
# the list is empty. ufw normalizes what it stores (10.0.2.2/32 and 10.0.2.2 are one rule), so
# rules are compared by ufw's own answer ("Skipping adding existing rule", "Could not delete
# non-existent rule"). Sources dropped from the list go first and the list's rules are added after,
# so an entry written another way (10.0.2.2 -> 10.0.2.2/32) ends with its rule in place; the
# broad rule goes last. This session stays up throughout (ufw accepts ESTABLISHED traffic).
ufw_rule() { # ufw_rule allow|delete RULE... : 0 when ufw changed something
  local out
  out=$(ufw "$@" 2>&1) || die "ufw $*: $out"
  [[ $out != *Skipping* && $out != *"non-existent rule"* ]]
}
ssh_from_state=/etc/nodehost/ufw-ssh-from
previous_sources=$(cat "$ssh_from_state" 2>/dev/null || true)
# Every source that may hold a rule is on record before any rule changes: a run stopped halfway
# still removes what it added once the list no longer names it.
# shellcheck disable=SC2086 # one source a word
write_file "$ssh_from_state" 0644 root:root <<<"$(printf '%s\n' $previous_sources "${ssh_sources[@]}" | sort -u)"
for src in $previous_sources; do
  [[ " $SSH_ALLOW_FROM " == *" $src "* ]] && continue
  ufw_rule delete allow proto tcp from "$src" to any port "$SSH_PORT" && changed "ufw: removed ${SSH_PORT}/tcp from $src"
done
if [[ ${#ssh_sources[@]} -eq 0 ]]; then
  ufw_rule allow "${SSH_PORT}/tcp" && changed "ufw allow ${SSH_PORT}/tcp"
else
  for src in "${ssh_sources[@]}"; do
    ufw_rule allow proto tcp from "$src" to any port "$SSH_PORT" && changed "ufw allow ${SSH_PORT}/tcp from $src"
  done
  ufw_rule delete allow "${SSH_PORT}/tcp" && changed "ufw: ${SSH_PORT}/tcp no longer open to anywhere"
fi
write_file "$ssh_from_state" 0644 root:root <<<"$(printf '%s\n' "${ssh_sources[@]}")"
if ! grep -q '^Status: active' <<<"$ufw_status"; then
  # The SSH session running this step opened before any rule used connection tracking, so the
  # kernel never saw its handshake. Let conntrack learn it from live traffic under an accept-only
  # rule first: ufw's "drop INVALID" then meets an ESTABLISHED entry, not a mid-stream pickup
  # (a provisioning session once stalled for good right after `ufw enable`).
  track=(INPUT -m conntrack --ctstate "ESTABLISHED,RELATED" -j ACCEPT)
  iptables -w -I "${track[@]}"
  log "tracking this SSH session before enabling UFW"
  sleep 2
  ufw --force enable >/dev/null
  # ufw may have flushed INPUT already; the rule must not outlive the step either way.
  while iptables -w -C "${track[@]}" 2>/dev/null; do iptables -w -D "${track[@]}"; done
  changed "ufw enabled"
fi

# --- SSH: no root, no passwords; only once the deploy user can get in with a key and sudo ------
id "$DEPLOY_USER" >/dev/null 2>&1 || die "deploy user $DEPLOY_USER does not exist"
deploy_home=$(getent passwd "$DEPLOY_USER" | cut -d: -f6)
keys=$deploy_home/.ssh/authorized_keys
grep -Eq '^(ssh-|ecdsa-|sk-)' "$keys" 2>/dev/null ||
  die "$keys has no SSH key: refusing to disable password and root login (it would lock us out)"
sudo -l -U "$DEPLOY_USER" 2>/dev/null | grep -q '(ALL' ||
  die "$DEPLOY_USER has no sudo rights: refusing to disable root login"

# sshd keeps the first value it reads and includes sshd_config.d/*.conf in lexical order, so this
# file sorts before cloud-init's 50-cloud-init.conf (which may say PasswordAuthentication yes).
# A session that stops answering is dropped after 2 x 300 s of silence (ClientAlive*, inside the
# encrypted channel, instead of TCPKeepAlive's spoofable probes). The provider's Go client answers
# them during a long step: golang.org/x/crypto ssh/session.go, (*Session).wait, replies to every
# request that wants a reply ("This handles keepalives and matches OpenSSH's behaviour").
# MaxSessions counts sessions multiplexed on one connection; pulumi-command 1.2.1 dials a
# connection per command and opens one session on it (remote/commandOutputs.go:31-36, and one
# SFTP session in copyController.go:169-179), as the VM suite's OpenSSH does.
hardening=/etc/ssh/sshd_config.d/01-nodehost.conf
previous=$(cat "$hardening" 2>/dev/null || true)
write_file "$hardening" 0644 root:root <<CONF
# Written by nodehost (base step).
Port ${SSH_PORT}
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers ${SSH_ALLOW_USERS}
MaxAuthTries 3
LoginGraceTime 30
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
AllowStreamLocalForwarding no
PermitTunnel no
PermitUserEnvironment no
MaxSessions 2
LogLevel VERBOSE
ClientAliveInterval 300
ClientAliveCountMax 2
TCPKeepAlive no
CONF
if [[ $WRITE_CHANGED == 1 ]]; then
  if ! sshd_err=$(sshd -t 2>&1); then
    if [[ -n $previous ]]; then printf '%s\n' "$previous" >"$hardening"; else rm -f "$hardening"; fi
    die "sshd -t rejected the hardening drop-in (restored the previous one): $sshd_err"
  fi
  systemctl reload ssh
  changed "sshd reloaded"
elif ! grep -q "^maxauthtries 3$" < <(sshd -T 2>/dev/null); then
  die "sshd -T does not show the hardening drop-in: another file in sshd_config.d sorts before 01-nodehost.conf?"
fi
# The running daemon may predate the file (a run stopped between writing and reloading): a reload
# is harmless to open sessions.
systemctl reload ssh

# --- Kernel hardening and no core dumps -----------------------------------------------------------
# A crashed process's memory holds its secrets (database URL, keys): no core dumps, and
# core_pattern is not namespaced, so this covers the containers too. The rest is the kernel
# side of lynis' scan profile (KRNL-6000, `config-data=sysctl` lines of its default.prf), less
# what this host needs otherwise: net.ipv4.conf.all.forwarding stays 1 (Docker routes its
# containers' traffic), rp_filter stays as systemd sets it (strict mode drops replies on a droplet whose
# public, anchor and VPC addresses sit on two interfaces), kernel.modules_disabled stays 0
# (UFW and Docker load netfilter modules as rules appear), log_martians stays 0 (UFW sets it
# in /etc/ufw/sysctl.conf each time it starts, after systemd-sysctl: a value here lasted only
# until the next boot, as the VM suite's reboot test found). The list of what stays is
# docs/host-steps.md's.
write_file /etc/sysctl.d/60-nodehost-hardening.conf 0644 root:root <<'CONF'
# Written by nodehost (base step).
fs.suid_dumpable = 0
kernel.core_pattern = |/bin/false
kernel.core_uses_pid = 1
fs.protected_fifos = 2
fs.protected_regular = 2
kernel.kptr_restrict = 2
kernel.sysrq = 0
kernel.yama.ptrace_scope = 1
kernel.unprivileged_bpf_disabled = 1
net.core.bpf_jit_harden = 2
dev.tty.ldisc_autoload = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv4.conf.default.accept_source_route = 0
CONF
# Applied on every run (cheap): a run stopped after the write must not leave it for the next boot.
# -e: a kernel without one of the keys (Yama not built in) skips it rather than failing the step.
sysctl -q -e -p /etc/sysctl.d/60-nodehost-hardening.conf
write_file /etc/security/limits.d/60-nodehost.conf 0644 root:root <<<'* hard core 0'
write_file /etc/systemd/coredump.conf.d/60-nodehost.conf 0644 root:root <<'CONF'
# Written by nodehost (base step): the kernel hands no core to systemd-coredump either.
[Coredump]
Storage=none
ProcessSizeMax=0
CONF
# Login shells (an operator's SSH session): no core files, and an idle shell left open logs
# out after 15 minutes. Non-interactive commands (the steps, pulumi-command) read neither.
write_file /etc/profile.d/60-nodehost-hardening.sh 0644 root:root <<'CONF'
# Written by nodehost (base step).
ulimit -c 0
TMOUT=900
readonly TMOUT
export TMOUT
CONF
# Kernel modules this host never needs: filesystems nobody mounts on a droplet, USB and FireWire
# storage, and network protocols with a history of remotely reachable bugs (DCCP, SCTP, RDS,
# TIPC). `install X /bin/false` also stops a load by alias, which `blacklist` does not.
write_file /etc/modprobe.d/60-nodehost-hardening.conf 0644 root:root <<'CONF'
# Written by nodehost (base step).
install cramfs /bin/false
install freevxfs /bin/false
install hfs /bin/false
install hfsplus /bin/false
install jffs2 /bin/false
install squashfs /bin/false
install udf /bin/false
install usb-storage /bin/false
install firewire-core /bin/false
install firewire-ohci /bin/false
install dccp /bin/false
install sctp /bin/false
install rds /bin/false
install tipc /bin/false
CONF

# --- Swap ---------------------------------------------------------------------------------------
swapfile=/swapfile
if [[ $SWAP_MB -gt 0 ]]; then
  # Judged by what is on disk, not by whether the file exists: a run stopped between fallocate
  # and mkswap leaves a file swapon refuses. Built beside it while the old swap stays on (a stop
  # while it is built leaves the host's swap whole), then swapped in.
  swap_ok() {
    [[ -f $swapfile && $(stat -c %s "$swapfile") -eq $((SWAP_MB * 1024 * 1024)) &&
      $(blkid -p -o value -s TYPE "$swapfile" 2>/dev/null) == swap ]]
  }
  if ! swap_ok; then
    rm -f "$swapfile.new"
    fallocate -l "${SWAP_MB}M" "$swapfile.new" 2>/dev/null ||
      dd if=/dev/zero of="$swapfile.new" bs=1M count="$SWAP_MB" status=none
    chmod 600 "$swapfile.new"
    mkswap "$swapfile.new" >/dev/null
    if swapon --show=NAME --noheadings | grep -qx "$swapfile"; then swapoff "$swapfile"; fi
    mv -f "$swapfile.new" "$swapfile"
    changed "created ${SWAP_MB} MiB $swapfile"
  fi
  if ! swapon --show=NAME --noheadings | grep -qx "$swapfile"; then
    swapon "$swapfile"
    changed "swap on $swapfile"
  fi
  if ! grep -q "^$swapfile " /etc/fstab; then
    echo "$swapfile none swap sw 0 0" >>/etc/fstab
    changed "fstab: $swapfile"
  fi
  pending_begin swappiness
  write_file /etc/sysctl.d/60-nodehost-swap.conf 0644 root:root <<<'vm.swappiness = 10'
  if pending_due swappiness; then sysctl -q -p /etc/sysctl.d/60-nodehost-swap.conf; fi
  pending_end swappiness
elif [[ -f $swapfile ]] && grep -q "^$swapfile " /etc/fstab; then
  if swapon --show=NAME --noheadings | grep -qx "$swapfile"; then swapoff "$swapfile"; fi
  sed -i "\|^$swapfile |d" /etc/fstab
  rm -f "$swapfile"
  changed "removed $swapfile (SWAP_MB=0)"
fi

# --- Time sync (unless another NTP daemon already runs) -----------------------------------------
if ntp_daemon_active; then
  log "time sync: an NTP daemon is already active"
else
  # Installed with the packages above (time_sync_pkgs).
  ensure_service systemd-timesyncd
fi

# --- Data volume: formatted only when blank, mounted by UUID ------------------------------------
wait_until 120 "data volume $DATA_DEVICE" test -b "$DATA_DEVICE" || die "data volume $DATA_DEVICE not found"
device=$(readlink -f "$DATA_DEVICE")
# Another device already mounted here (a dataDevice naming the wrong volume) stops the step before
# it formats anything or points fstab at that device: the next boot would mount it instead.
if mountpoint -q "$DATA_MOUNT"; then
  mounted=$(findmnt -n -o SOURCE --target "$DATA_MOUNT")
  [[ $(readlink -f "$mounted") == "$device" ]] ||
    die "$DATA_MOUNT is mounted from $mounted, not $DATA_DEVICE ($device): is nodehost:existingHost.dataDevice (or the volume's id) right?"
fi
fstype=$(blkid -p -o value -s TYPE "$device" 2>/dev/null || true)
if [[ -z $fstype ]]; then
  # Never reformat: anything blkid recognises (a filesystem, a partition table, RAID) stops us.
  if blkid -p "$device" >/dev/null 2>&1; then
    die "$DATA_DEVICE holds something blkid recognises but no filesystem; not touching it"
  fi
  mkfs.ext4 -q -L nodehost-data "$device"
  changed "formatted blank volume $DATA_DEVICE as ext4"
  fstype=ext4
fi
uuid=$(blkid -p -o value -s UUID "$device")
[[ -n $uuid ]] || die "no UUID on $DATA_DEVICE"
mkdir -p "$DATA_MOUNT"
fstab_line="UUID=$uuid $DATA_MOUNT $fstype defaults,nofail,x-systemd.device-timeout=30s 0 2"
if ! grep -qxF "$fstab_line" /etc/fstab; then
  # Drop any older line for this mount point (another UUID after a volume swap) and add ours.
  awk -v m="$DATA_MOUNT" '$2 != m' /etc/fstab >/etc/fstab.nodehost
  echo "$fstab_line" >>/etc/fstab.nodehost
  chmod 644 /etc/fstab.nodehost
  mv /etc/fstab.nodehost /etc/fstab
  systemctl daemon-reload
  changed "fstab: $DATA_MOUNT by UUID=$uuid"
fi
if ! mountpoint -q "$DATA_MOUNT"; then
  mount "$DATA_MOUNT"
  changed "mounted $DATA_DEVICE at $DATA_MOUNT"
fi

# --- The filesystem fills the volume (nodehost:droplet.volumeSizeGb may have grown it) ------------
# ext4 grows online. The stack passes DATA_SIZE_GB only so that a grown volume re-runs this step.
if [[ $fstype == ext4 ]]; then
  superblock=$(dumpe2fs -h "$device" 2>/dev/null) || die "cannot read the ext4 superblock on $DATA_DEVICE"
  block_size=$(awk -F': *' '$1 == "Block size" {print $2}' <<<"$superblock")
  block_count=$(awk -F': *' '$1 == "Block count" {print $2}' <<<"$superblock")
  [[ $block_size =~ ^[0-9]+$ && $block_count =~ ^[0-9]+$ ]] || die "cannot read the size of the filesystem on $DATA_DEVICE"
  fs_bytes=$((block_size * block_count))
  dev_bytes=$(blockdev --getsize64 "$device")
  # mkfs leaves the last partial block unused; grow only when there is a real gain.
  if ((dev_bytes - fs_bytes >= 64 * 1024 * 1024)); then
    out=$(resize2fs "$device" 2>&1) || die "resize2fs $DATA_DEVICE failed: $out"
    changed "grew the filesystem on $DATA_DEVICE from $((fs_bytes >> 20)) MiB to $((dev_bytes >> 20)) MiB"
  fi
fi

step_done base
