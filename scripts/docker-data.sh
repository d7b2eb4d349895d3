#!/usr/bin/env bash
# Step docker-data: Docker from Debian; PostgreSQL and Redis containers on 127.0.0.1, data on the volume.
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty DATA_MOUNT POSTGRES_IMAGE REDIS_IMAGE POSTGRES_USER POSTGRES_DB POSTGRES_PASSWORD REDIS_PASSWORD
require_vars IMAGE_PRELOAD_DIR
require_nonempty PITR_ENABLED PITR_ARCHIVE_TIMEOUT CONTAINERS_TOOL_B64 IMAGES_REFRESH_AT
[[ $PITR_ENABLED == true || $PITR_ENABLED == false ]] || die "PITR_ENABLED must be true or false"
[[ $PITR_ARCHIVE_TIMEOUT =~ ^[1-9][0-9]{0,3}$ ]] || die "PITR_ARCHIVE_TIMEOUT must be whole seconds"
[[ $POSTGRES_USER =~ ^[a-z_][a-z0-9_]*$ ]] || die "POSTGRES_USER must be a plain lower-case identifier"
[[ $POSTGRES_DB =~ ^[a-z_][a-z0-9_]*$ ]] || die "POSTGRES_DB must be a plain lower-case identifier"
for secret in POSTGRES_PASSWORD REDIS_PASSWORD; do
  [[ ${!secret} != *$'\n'* && ${!secret} != *' '* ]] || die "$secret must be one line without spaces"
done
mountpoint -q "$DATA_MOUNT" || die "$DATA_MOUNT is not a mounted volume (the base step mounts it)"

ETC=/etc/nodehost
PG_NAME=nodehost-postgres
REDIS_NAME=nodehost-redis

# Docker's configuration is written before its package is installed: on a fresh host the daemon the
# package starts is already the configured one, and is not restarted at once (a start costs 10-15 s
# under emulation, and on any host takes the containers down with it). Neither file is one of the
# package's conffiles (/var/lib/dpkg/info/docker.io.conffiles: /etc/default/docker and
# /etc/init.d/docker), so dpkg leaves them be.
docker_was_installed=0
if [[ $(dpkg-query -W -f='${db:Status-Status}' docker.io 2>/dev/null) == installed ]]; then docker_was_installed=1; fi

# Container logs rotate; a change here needs a daemon restart (containers come back by policy).
pending_begin docker-daemon
write_file /etc/docker/daemon.json 0644 root:root <<'JSON'
{
  "log-driver": "json-file",
  "log-opts": { "max-size": "10m", "max-file": "3" }
}
JSON
daemon_changed=0
if pending_due docker-daemon; then daemon_changed=1; fi
# Docker, and with it PostgreSQL and Redis, starts only once the volume is mounted. The fstab line
# is `nofail` (a late or lost volume must not stop the boot, or SSH with it); without this, such a
# boot would start PostgreSQL on the empty mount point on the root disk, initialise a new cluster
# there, and the app and the backups would use it.
write_file /etc/systemd/system/docker.service.d/nodehost-data.conf 0644 root:root <<UNIT
# Written by nodehost (docker-data step).
[Unit]
RequiresMountsFor=$DATA_MOUNT
UNIT
# Debian 13's docker.io only recommends docker-cli; without recommends there is no `docker`.
# The package's postinst reloads systemd (so the drop-in above applies) and starts the daemon.
apt_install docker.io docker-cli apparmor
daemon_reload_for docker
ensure_service docker
# A daemon that was running before this run reads daemon.json only when restarted; one the package
# started in this run read it already.
if [[ $daemon_changed == 1 && $docker_was_installed == 1 ]]; then
  systemctl restart docker
  changed "docker restarted for daemon.json"
fi
pending_end docker-daemon
# Under emulation dockerd answers ~30 s after it is "active".
wait_until 300 "the Docker daemon" docker info >/dev/null 2>&1 || die "the Docker daemon does not answer"

# --- Images: nodehost-containers pins each container to the image it was proven healthy on; only
# its refresh (the timer below) moves a container to what its tag names later.
install_b64 "$CONTAINERS_TOOL_B64" /usr/local/sbin/nodehost-containers 0755
CONTAINERS=$ETC/containers
install -d -m 0700 -o root -g root "$ETC" "$CONTAINERS" "$CONTAINERS/$PG_NAME" "$CONTAINERS/$REDIS_NAME"
write_file "$CONTAINERS/preload-dir" 0600 root:root <<<"$IMAGE_PRELOAD_DIR"
write_file "$CONTAINERS/$PG_NAME/ref" 0600 root:root <<<"$POSTGRES_IMAGE"
write_file "$CONTAINERS/$REDIS_NAME/ref" 0600 root:root <<<"$REDIS_IMAGE"
# archive_command runs pgBackRest inside the server's container (backup.pointInTime).
if [[ $PITR_ENABLED == true ]]; then
  write_file "$CONTAINERS/$PG_NAME/derive" 0600 root:root <<<pgbackrest
else
  remove_file "$CONTAINERS/$PG_NAME/derive"
fi
# containers ARGS... : nodehost-containers, its changes counted as this step's; IMAGE is what
# `image` printed.
containers() {
  local out line
  out=$(/usr/local/sbin/nodehost-containers "$@") || die "nodehost-containers $* failed (above)"
  IMAGE=""
  while IFS= read -r line; do
    case $line in
      changed:*) changed "${line#changed: }" ;;
      image:*) IMAGE=${line#image: } ;;
      *) log "$line" ;;
    esac
  done <<<"$out"
}
containers image "$PG_NAME"
pg_image_id=$IMAGE
containers image "$REDIS_NAME"
redis_image_id=$IMAGE

# --- Secrets: files mounted read-only, never on a command line or in a container's environment
# (`docker inspect` shows the environment to anyone in the docker group). The images read them
# themselves: postgres through POSTGRES_PASSWORD_FILE, redis-server from its conf.
# A user's uid:gid inside an image, from one container (a `docker run` costs seconds under
# emulation): `id NAME` prints "uid=999(postgres) gid=999(postgres) groups=...", with coreutils
# (Debian images) and BusyBox (Alpine images) alike.
image_user_ids() {
  local out
  out=$(docker run --rm --entrypoint id "$1" "$2") || die "no user $2 in the image $1"
  [[ $out =~ ^uid=([0-9]+)\([^\)]*\)\ gid=([0-9]+) ]] || die "id $2 in the image $1 printed '$out'"
  printf '%s:%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
}
pg_ids=$(image_user_ids "$pg_image_id" postgres)
install -d -m 0700 -o root -g root "$ETC/postgres"
write_file "$ETC/postgres/password" 0400 "$pg_ids" <<<"$POSTGRES_PASSWORD"
write_file "$ETC/postgres.env" 0600 root:root <<ENV
POSTGRES_USER=$POSTGRES_USER
POSTGRES_DB=$POSTGRES_DB
POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password
ENV

# Redis runs as the image's own redis user, which must read its conf and own its data dir.
redis_ids=$(image_user_ids "$redis_image_id" redis)
install -d -m 0700 -o root -g root "$ETC/redis"
write_file "$ETC/redis/redis.conf" 0600 "$redis_ids" <<CONF
# Written by nodehost (docker-data step). Published on the host's 127.0.0.1 only.
bind 0.0.0.0
port 6379
dir /data
requirepass $REDIS_PASSWORD
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
CONF
# redis-cli with the server's own password, for the health check and the backup tools: passed in
# REDISCLI_AUTH (never argv, which any local user sees in ps), read from the conf at each call.
write_file "$ETC/redis/nodehost-redis-cli" 0755 root:root <<'CLI'
#!/bin/sh
REDISCLI_AUTH=$(sed -n 's/^requirepass //p' /etc/nodehost-redis.conf) exec redis-cli "$@"
CLI
remove_file "$ETC/redis-cli.env"

install -d -m 0700 "$DATA_MOUNT/postgres"
install -d -m 0700 -o "${redis_ids%%:*}" -g "${redis_ids##*:}" "$DATA_MOUNT/redis"

# --- Containers: recreated only when their desired spec (a hash label) changes, and proven healthy
# before the old one is let go (nodehost-containers ensure; docs/host-steps.md).
# ensure NAME IMAGE_ID HEALTH_SECONDS EXTRA DOCKER_RUN_ARGS... -- IMAGE_ARGS... : the settings written, then
# NAME on the image `containers image` chose.
ensure() {
  local name=$1 image=$2 limit=$3 extra=$4
  shift 4
  write_file "$CONTAINERS/$name/health" 0600 root:root <<<"$limit"
  write_file "$CONTAINERS/$name/extra" 0600 root:root <<<"$extra"
  write_file "$CONTAINERS/$name/args" 0600 root:root < <(printf '%s\0' "$@")
  containers ensure "$name" "$image"
}

# shellcheck disable=SC2016 # $POSTGRES_* expand inside the container, from its env file.
pg_run=(
  --env-file "$ETC/postgres.env"
  -v "$ETC/postgres/password:/run/secrets/postgres-password:ro"
  -e PGDATA=/var/lib/postgresql/data
  -v "$DATA_MOUNT/postgres:/var/lib/postgresql/data"
  -p 127.0.0.1:5432:5432
  --shm-size 256m --stop-timeout 60
  # TCP, not the socket: during first init the entrypoint's temporary server listens on the socket only.
  --health-cmd 'pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
  --health-interval 10s --health-timeout 5s --health-retries 6 --health-start-period 120s
)
pg_cmd=()
if [[ $PITR_ENABLED == true ]]; then
  # Read by the server's user inside the container; nodehost-pitr (backups step) writes
  # pgbackrest.conf into it. Until then archive_command fails and PostgreSQL keeps the WAL and
  # retries: nothing is lost while the archive is not there yet, or the bucket is down.
  install -d -m 0700 -o "${pg_ids%%:*}" -g "${pg_ids##*:}" "$ETC/pgbackrest"
  pg_run+=(-v "$ETC/pgbackrest:/etc/pgbackrest:ro")
  pg_cmd=(postgres -c archive_mode=on -c "archive_command=pgbackrest --stanza=nodehost archive-push %p"
    -c "archive_timeout=$PITR_ARCHIVE_TIMEOUT")
fi
ensure "$PG_NAME" "$pg_image_id" 600 "$(sha256sum "$ETC/postgres.env")" "${pg_run[@]}" -- "${pg_cmd[@]}"
# A password change does not recreate the container: the entrypoint reads the file on first init
# only, and an existing database gets ALTER USER below.

# Redis runs as the image's redis user with our conf; the entrypoint is bypassed so any image
# that has redis-server on its PATH (official or a mirror built from Debian) behaves the same.
redis_run=(
  --user "$redis_ids"
  --entrypoint redis-server
  -v "$DATA_MOUNT/redis:/data"
  -v "$ETC/redis/redis.conf:/etc/nodehost-redis.conf:ro"
  -v "$ETC/redis/nodehost-redis-cli:/usr/local/bin/nodehost-redis-cli:ro"
  -p 127.0.0.1:6379:6379
  --stop-timeout 30
  --health-cmd 'nodehost-redis-cli ping | grep -q PONG'
  --health-interval 10s --health-timeout 5s --health-retries 6 --health-start-period 30s
)
ensure "$REDIS_NAME" "$redis_image_id" 300 "$(sha256sum "$ETC/redis/redis.conf" "$ETC/redis/nodehost-redis-cli")" \
  "${redis_run[@]}" -- /etc/nodehost-redis.conf

healthy() { [[ $(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null) == healthy ]]; }
for name in "$PG_NAME" "$REDIS_NAME"; do
  if ! wait_until 600 "$name to be healthy" healthy "$name"; then
    docker logs --tail 30 "$name" >&2 || true
    die "$name is not healthy after 10 minutes"
  fi
done
log "containers healthy: $PG_NAME $REDIS_NAME"
# A server (re)started here closes WAL segments for the archive on archive_timeout only once its
# checkpointer is woken (nodehost-pitr: wake); the backups step installs the tool on a new host
# and wakes it then, and cron does every minute.
if [[ $PITR_ENABLED == true && -x /usr/local/bin/nodehost-pitr ]]; then
  /usr/local/bin/nodehost-pitr wake || log "WARNING: nodehost-pitr wake failed; cron tries again every minute"
fi

# --- The images' tags pulled again each day in the stack's window (updates.imagesAt): a container
# whose tag names a newer image (a patch release of the same line) is switched to it, proven
# healthy first; one that is not stays on its image, and the unit fails (nodehost-containers).
daily_job nodehost-images-refresh "$IMAGES_REFRESH_AT" updates.imagesAt \
  "PostgreSQL and Redis images refreshed from their tags, health-checked" "/usr/local/sbin/nodehost-containers refresh" 2h docker.service

# --- The password that works is the configured one: POSTGRES_PASSWORD_FILE only applies to a
# blank data dir, so an existing database gets it over the container's local socket (trust). Judged
# by logging in with it over TCP as the app does (to the container's own address: the official
# image trusts 127.0.0.1 inside the container), not by whether a file changed in this run: a run
# stopped after writing the file and before ALTER USER converges on the next one. The password
# goes in on stdin.
pg_password_works() {
  printf '%s\n' "$POSTGRES_PASSWORD" | docker exec -i "$PG_NAME" sh -c \
    'IFS= read -r PGPASSWORD; export PGPASSWORD; psql -qtA -w -h "$(hostname -i | cut -d" " -f1)" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "select 1"' >/dev/null 2>&1
}
if ! pg_password_works; then
  docker exec -i "$PG_NAME" sh -c 'psql -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' >/dev/null <<SQL
ALTER USER "$POSTGRES_USER" WITH PASSWORD '${POSTGRES_PASSWORD//\'/\'\'}';
SQL
  pg_password_works || die "the configured password still does not log in as $POSTGRES_USER after ALTER USER"
  changed "postgres password of $POSTGRES_USER set"
fi

step_done docker-data
