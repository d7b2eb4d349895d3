#!/usr/bin/env bash
# Step backups: backup/restore/list tools, their config, the cron; restores the newest off-site
# backup on a host whose database is empty and whose volume was never initialised (disaster recovery).
# shellcheck disable=SC2153 # parameters arrive as variables at the top of stdin
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty BACKUP_STALE_AFTER_MIN APP_NAME DATA_MOUNT POSTGRES_USER POSTGRES_DB POSTGRES_CONTAINER CACHE_MODE S3_ENDPOINT S3_REGION S3_BUCKET \
  S3_ACCESS_KEY S3_SECRET_KEY BACKUP_SCHEDULE DRILL_SCHEDULE RETENTION_LOCAL_DAYS RETENTION_REMOTE_DAYS \
  BACKUP_TOOL_B64 RESTORE_TOOL_B64 LIST_TOOL_B64 KEYS_TOOL_B64 BACKUP_PASSPHRASE STACK LOCAL_COPIES ALLOW_EMPTY_START
require_vars S3_PREFIX BACKUP_PREVIOUS_PASSPHRASES BACKUP_PUBLIC_KEYS_B64 S3_CA_PEM_B64
require_nonempty PITR_ENABLED PITR_TOOL_B64 PITR_FULL_EVERY_DAYS PITR_RETENTION_FULL
require_vars PITR_SCHEDULE PITR_CIPHER_PASS
# Pulumi's own rule for stack names (pulumi sdk/go/common/tokens/stack_name.go:60-84 @1b5949891b).
[[ $STACK =~ ^[A-Za-z0-9._-]+$ ]] || die "STACK must be a stack name (letters, digits, '.', '_', '-'), got '$STACK'"
[[ $BACKUP_PASSPHRASE != *$'\n'* && ${#BACKUP_PASSPHRASE} -ge 20 ]] || die "BACKUP_PASSPHRASE must be one line of at least 20 characters"
if [[ -n $BACKUP_PREVIOUS_PASSPHRASES ]]; then
  n=0
  while IFS= read -r p; do
    [[ ${#p} -ge 20 ]] || die "backupPreviousPassphrases[$n] must be at least 20 characters"
    n=$((n + 1))
  done <<<"$BACKUP_PREVIOUS_PASSPHRASES"
  unset p
fi
[[ $BACKUP_PUBLIC_KEYS_B64 =~ ^[A-Za-z0-9+/=]*$ ]] || die "BACKUP_PUBLIC_KEYS_B64 must be base64"
for v in BACKUP_SCHEDULE DRILL_SCHEDULE; do
  [[ ${!v} =~ ^[^[:space:]]+([[:space:]]+[^[:space:]]+){4}$ ]] || die "$v must be five cron fields, got '${!v}'"
done
[[ $RETENTION_LOCAL_DAYS =~ ^[0-9]+$ && $RETENTION_REMOTE_DAYS =~ ^[0-9]+$ ]] || die "retention must be whole days"
[[ $LOCAL_COPIES =~ ^[1-9][0-9]*$ ]] || die "LOCAL_COPIES must be a positive count, got '$LOCAL_COPIES'"
[[ $ALLOW_EMPTY_START == true || $ALLOW_EMPTY_START == false ]] || die "ALLOW_EMPTY_START must be true or false"
[[ $PITR_ENABLED == true || $PITR_ENABLED == false ]] || die "PITR_ENABLED must be true or false"
# The Docker PostgreSQL, or the client container of a managed one (docker-data step).
[[ $POSTGRES_CONTAINER == nodehost-postgres || $POSTGRES_CONTAINER == nodehost-pg-client ]] || die "POSTGRES_CONTAINER must be nodehost-postgres or nodehost-pg-client"
# docker: the archives hold Redis's RDB; managed: the cache is DigitalOcean's Valkey, kept by it, and not in them.
[[ $CACHE_MODE == docker || $CACHE_MODE == managed ]] || die "CACHE_MODE must be docker or managed"
[[ $S3_CA_PEM_B64 =~ ^[A-Za-z0-9+/=]*$ ]] || die "S3_CA_PEM_B64 must be base64"
if [[ $PITR_ENABLED == true ]]; then
  [[ $PITR_SCHEDULE =~ ^[^[:space:]]+([[:space:]]+[^[:space:]]+){4}$ ]] || die "PITR_SCHEDULE must be five cron fields, got '$PITR_SCHEDULE'"
  [[ $PITR_FULL_EVERY_DAYS =~ ^[1-9][0-9]*$ && $PITR_RETENTION_FULL =~ ^[1-9][0-9]*$ ]] || die "PITR_FULL_EVERY_DAYS and PITR_RETENTION_FULL must be positive counts"
  [[ $PITR_CIPHER_PASS != *$'\n'* && $PITR_CIPHER_PASS != *' '* && ${#PITR_CIPHER_PASS} -ge 20 ]] ||
    die "PITR_CIPHER_PASS must be one line without spaces, at least 20 characters"
fi
for v in S3_ACCESS_KEY S3_SECRET_KEY S3_BUCKET S3_REGION S3_PREFIX; do
  [[ ${!v} != *[[:space:]]* ]] || die "$v must not contain whitespace"
done
mountpoint -q "$DATA_MOUNT" || die "$DATA_MOUNT is not a mounted volume (the base step mounts it)"
ETC=/etc/nodehost
BACKUP_DIR=$DATA_MOUNT/backups
MARKER=$DATA_MOUNT/.nodehost-initialized

# gpg talks to gpg-agent even for a passphrase, and Debian's gpg only recommends it.
apt_install s3cmd cron gpg gpg-agent

# --- Configuration: keys only in a 0600 file (s3cmd -c), never on a command line ---------------
endpoint=${S3_ENDPOINT%/}
case $endpoint in
  http://*) use_https=False host=${endpoint#http://} ;;
  https://*) use_https=True host=${endpoint#https://} ;;
  *) use_https=True host=$endpoint ;;
esac
host=${host%%/*}
install -d -m 0700 "$ETC"

# backup.publicKeys first: each must be one public key that can encrypt (gpg reads it), or the
# step fails here, naming it, before the passphrase or anything else is written.
install_b64 "$KEYS_TOOL_B64" /usr/local/bin/nodehost-backup-keys 0755
keys_file=$(mktemp)
base64 -d <<<"$BACKUP_PUBLIC_KEYS_B64" >"$keys_file"
keys_out=$(/usr/local/bin/nodehost-backup-keys install "$keys_file" "$ETC/backup-keys") || { rm -f "$keys_file"; die "backup.publicKeys refused (above); nothing was changed"; }
rm -f "$keys_file"
while IFS= read -r line; do
  if [[ $line == "changed: "* ]]; then changed "${line#changed: }"; fi
done <<<"$keys_out"

# Every archive is encrypted with it (gpg --symmetric); a restore needs the same one.
write_file "$ETC/backup.passphrase" 0600 root:root <<<"$BACKUP_PASSPHRASE"
# Older ones, which restores try after it (backupPreviousPassphrases), one per line.
if [[ -n $BACKUP_PREVIOUS_PASSPHRASES ]]; then
  write_file "$ETC/backup.passphrases.previous" 0600 root:root <<<"$BACKUP_PREVIOUS_PASSPHRASES"
elif [[ -e $ETC/backup.passphrases.previous ]]; then
  rm -f "$ETC/backup.passphrases.previous"
  changed "removed $ETC/backup.passphrases.previous"
fi
# A private CA of the endpoint (backup.endpointCaPem): s3cmd and pgBackRest check against it alone.
ca_line=""
if [[ -n $S3_CA_PEM_B64 ]]; then
  write_file "$ETC/s3-ca.pem" 0644 root:root < <(base64 -d <<<"$S3_CA_PEM_B64")
  ca_line="ca_certs_file = $ETC/s3-ca.pem"
else
  remove_file "$ETC/s3-ca.pem"
fi
# host_bucket = host_base: path-style requests, which Spaces and any S3-compatible server accept.
write_file "$ETC/s3cfg" 0600 root:root <<CFG
[default]
access_key = $S3_ACCESS_KEY
secret_key = $S3_SECRET_KEY
host_base = $host
host_bucket = $host
bucket_location = $S3_REGION
use_https = $use_https
signature_v2 = False
check_ssl_certificate = True
socket_timeout = 60
$ca_line
CFG
write_env "$ETC/backup.env" 0600 root:root APP_NAME STACK DATA_MOUNT POSTGRES_USER POSTGRES_DB POSTGRES_CONTAINER CACHE_MODE S3_BUCKET S3_PREFIX \
  RETENTION_LOCAL_DAYS RETENTION_REMOTE_DAYS LOCAL_COPIES PITR_ENABLED PITR_FULL_EVERY_DAYS PITR_RETENTION_FULL
install_b64 "$BACKUP_TOOL_B64" /usr/local/bin/nodehost-backup 0755
install_b64 "$PITR_TOOL_B64" /usr/local/bin/nodehost-pitr 0755
install_b64 "$RESTORE_TOOL_B64" /usr/local/bin/nodehost-restore 0755
install_b64 "$LIST_TOOL_B64" /usr/local/bin/nodehost-backups 0755
install -d -m 0700 "$BACKUP_DIR"

# The heartbeat nginx serves at /healthz/backup: present while the newest backup (or, on a new
# host, the first provision) is younger than BACKUP_STALE_AFTER_MIN and the last restore drill
# (nodehost-restore --drill, which removes it at once when it fails) did not fail.
install -d -m 0755 /var/lib/nodehost/status
# With the point-in-time archive, also while WAL reaches the bucket and the last base backup worked.
pitr_check=""
[[ $PITR_ENABLED == true ]] && pitr_check=" && /usr/local/bin/nodehost-pitr healthy 2>/dev/null"
FRESHNESS_CHECK="if [ -n \"\$(find $BACKUP_DIR/LAST_SUCCESS $DATA_MOUNT/.nodehost-initialized -mmin -$BACKUP_STALE_AFTER_MIN 2>/dev/null)\" ] && ! grep -qs '^result=failed' /var/lib/nodehost/status/drill$pitr_check; then echo ok >/var/lib/nodehost/status/backup-fresh; else rm -f /var/lib/nodehost/status/backup-fresh; fi"

write_file /etc/logrotate.d/nodehost-backup 0644 root:root <<'ROT'
/var/log/nodehost-backup.log {
    weekly
    rotate 8
    missingok
    notifempty
    compress
}
ROT
ensure_service cron

# --- The bucket must answer now, not at the first cron run -------------------------------------
S3_PREFIX=${S3_PREFIX#/}
S3_PREFIX=${S3_PREFIX%/}
remote_dir="s3://$S3_BUCKET/${S3_PREFIX:+$S3_PREFIX/}"
if ! listing=$(s3cmd -c "$ETC/s3cfg" ls "$remote_dir" 2>&1); then
  die "cannot list $remote_dir at $host: $(tail -n 2 <<<"$listing")"
fi

# --- Point-in-time archive: pgbackrest.conf for the server's container (docker-data mounts its
# directory; archive_command reads it) --------------------------------------------------------
PITR_DUE=$DATA_MOUNT/.nodehost-pitr-restore-due
# Kept until the archive has taken this database in (a stanza upgrade and a full base backup).
PITR_NEW_DB=$DATA_MOUNT/.nodehost-pitr-new-database
# The MANIFEST of the dump nodehost-restore restored last (its postgres_wal_lsn).
RESTORED_MANIFEST=/var/lib/nodehost/status/restored-manifest
if [[ $PITR_ENABLED == true ]]; then
  write_file "$ETC/pitr.cipher" 0600 root:root <<<"$PITR_CIPHER_PASS"
  out=$(/usr/local/bin/nodehost-pitr configure) || die "nodehost-pitr configure failed (above)"
  while IFS= read -r line; do
    if [[ $line == "changed: "* ]]; then changed "${line#changed: }"; fi
  done <<<"$out"
else
  remove_file "$ETC/pitr.cipher"
  if [[ -e $ETC/pgbackrest ]]; then
    rm -rf "$ETC/pgbackrest"
    changed "removed $ETC/pgbackrest (the bucket's keys and the cipher pass)"
  fi
fi

# --- Disaster recovery: empty database on a never-initialised volume + a backup in the bucket ----
# The app's tables in its database (0: a new database), once PostgreSQL answers. TCP to the Docker
# PostgreSQL (not the socket, which an initialising server answers on); a managed one's client has
# its host in PGHOST.
user_tables() {
  local pg_host=()
  [[ $POSTGRES_CONTAINER == nodehost-postgres ]] && pg_host=(-h 127.0.0.1)
  wait_until 300 "PostgreSQL" docker exec "$POSTGRES_CONTAINER" pg_isready -q "${pg_host[@]}" -U "$POSTGRES_USER" -d "$POSTGRES_DB" ||
    die "PostgreSQL ($POSTGRES_CONTAINER) is not ready"
  docker exec "$POSTGRES_CONTAINER" psql -tA -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -c "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
}
# A managed cluster's data is not on the volume: a cluster that outlived the host keeps its tables
# (no restore), and one made anew in place of a lost one (a new host and password: docker-data and
# so this step run again) is empty under a volume that was initialised long ago. With a managed
# PostgreSQL an empty database decides, whatever the volume says.
dr_tables=""
if [[ -f $MARKER && $POSTGRES_CONTAINER == nodehost-pg-client ]]; then
  dr_tables=$(user_tables)
  [[ $dr_tables == 0 ]] && log "the managed database $POSTGRES_DB holds no tables (a new cluster, in place of a lost one?): disaster recovery decides"
fi
if [[ ! -f $MARKER || $dr_tables == 0 ]]; then
  tables=$dr_tables
  [[ -n $tables ]] || tables=$(user_tables)
  restored=none
  if [[ $tables != 0 ]]; then
    log "database already holds $tables tables: no restore"
  else
    rm -f "$RESTORED_MANIFEST"
    # This stack's newest backup (never another stack's sharing the bucket), or an empty start
    # when the bucket has no record that this stack ever ran; else it fails, and says why.
    start_args=(--start)
    [[ $ALLOW_EMPTY_START == true ]] && start_args+=(--allow-empty)
    decision=$(/usr/local/bin/nodehost-backups "${start_args[@]}") ||
      die "no backup of stack $STACK in $remote_dir to restore onto this new volume (above); nothing was changed"
    if [[ $decision == "restore "* ]]; then
      log "empty database on a new volume and $remote_dir${decision#restore } in the bucket: restoring it"
      # `latest`, not the name: a newest backup that does not read back is skipped for the one before.
      restored=$(/usr/local/bin/nodehost-restore latest --yes)
      restored=${restored##*/}
      changed "restored $restored (disaster recovery)"
    else
      log "no backup in $remote_dir and no record of stack $STACK there: starting empty"
    fi
  fi
  # Then PostgreSQL from the point-in-time archive, to its last archived point (seconds before the
  # old host was lost, where the dump is up to backup.schedule old); Redis stays the dump's (a managed
  # Valkey keeps its own keys and is not restored). A
  # failed archive restore puts the dump's data back and fails the step; the file below makes the
  # next run try the archive again (the tables are there by then).
  # The archive's point must not be older than the dump's (its postgres_wal_lsn): when archiving
  # had stopped before the dump was made, the dump is the newer state and serves, and the archive
  # starts again from this database (a new stanza version below).
  if [[ $PITR_ENABLED == true ]] && { [[ $tables == 0 ]] || [[ -f $PITR_DUE ]]; } && /usr/local/bin/nodehost-pitr has-backup; then
    touch "$PITR_DUE"
    not_before=()
    dump_lsn=$(sed -n 's/^postgres_wal_lsn=//p' "$RESTORED_MANIFEST" 2>/dev/null | head -n 1)
    [[ -n $dump_lsn ]] && not_before=(--not-before "$dump_lsn")
    log "the bucket holds stack $STACK's point-in-time archive: restoring PostgreSQL to its last archived point"
    rc=0
    /usr/local/bin/nodehost-pitr restore --yes "${not_before[@]}" >/dev/null || rc=$?
    if [[ $rc == 3 ]]; then
      log "WARNING: the archive ends before the newest dump ($dump_lsn): the dump's data serves; the archive goes on from it"
      touch "$PITR_NEW_DB"
      restored="$restored (archive older: not used)"
      changed "kept the dump's data: the point-in-time archive ends before it (disaster recovery)"
    elif [[ $rc != 0 ]]; then
      die "the point-in-time restore failed (above); the dump's data serves, and the next up tries the archive again"
    else
      restored="$restored+pitr"
      changed "restored PostgreSQL to the archive's last point (disaster recovery)"
    fi
    rm -f "$PITR_DUE"
  fi
  printf 'initialized=%s\nrestored=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$restored" >"$MARKER.tmp"
  mv "$MARKER.tmp" "$MARKER"
  changed "$MARKER"
fi
# The bucket's record that this stack has run (a stack from before it gets one now).
/usr/local/bin/nodehost-backups --record

# The archive's stanza (kept when it is this database's), WAL reaching the bucket, and a first
# base backup when the archive has none: from here on a lost host is restored to seconds before.
pitr_cron=""
if [[ $PITR_ENABLED == true ]]; then
  if [[ -f $PITR_NEW_DB ]]; then
    /usr/local/bin/nodehost-pitr setup --new-database || die "point-in-time archive not working (above)"
    /usr/local/bin/nodehost-pitr backup --full || die "the first base backup of this database failed (above)"
    rm -f "$PITR_NEW_DB"
    changed "the point-in-time archive goes on from the dump's database (a new stanza version and a full base backup)"
  else
    /usr/local/bin/nodehost-pitr setup || die "point-in-time archive not working (above)"
    if ! /usr/local/bin/nodehost-pitr has-backup; then
      /usr/local/bin/nodehost-pitr backup --full || die "the first base backup failed (above)"
      changed "first base backup of the point-in-time archive"
    fi
  fi
  # archive_timeout from now on, not from the server's first checkpoint (nodehost-pitr: wake), and
  # within a minute of any later start (a reboot, docker restarting it, a new container).
  /usr/local/bin/nodehost-pitr wake || log "WARNING: nodehost-pitr wake failed; cron tries again every minute"
  pitr_cron="$PITR_SCHEDULE root /usr/local/bin/nodehost-pitr backup 2>&1 | logger -t nodehost-pitr-cron
* * * * * root /usr/local/bin/nodehost-pitr wake >/dev/null 2>&1"
fi

# The schedule only now: before the database is initialised or restored, a cron run could send an
# empty database off-site as the newest backup (nodehost-backup also refuses without the marker).
write_file /etc/cron.d/nodehost-backup 0644 root:root <<CRON
# Written by nodehost (backups step). Log: /var/log/nodehost-backup.log and the journal.
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
$BACKUP_SCHEDULE root /usr/local/bin/nodehost-backup --quiet >/dev/null
$DRILL_SCHEDULE root /usr/local/bin/nodehost-restore --drill >/dev/null 2>&1
$pitr_cron
*/10 * * * * root $FRESHNESS_CHECK
CRON

# Refresh the heartbeat now rather than at the next cron tick.
bash -c "$FRESHNESS_CHECK"

step_done backups
