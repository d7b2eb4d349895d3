#!/usr/bin/env bash
# Step docker-data: Docker from Debian; PostgreSQL and Redis containers on 127.0.0.1, data on the volume.
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty DATA_MOUNT POSTGRES_IMAGE REDIS_IMAGE POSTGRES_USER POSTGRES_DB POSTGRES_PASSWORD REDIS_PASSWORD
require_vars IMAGE_PRELOAD_DIR
require_nonempty PITR_ENABLED PITR_ARCHIVE_TIMEOUT
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

ensure_image() {
  local image=$1 tar
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  if [[ -n $IMAGE_PRELOAD_DIR && -d $IMAGE_PRELOAD_DIR ]]; then
    for tar in "$IMAGE_PRELOAD_DIR"/*.tar; do
      [[ -f $tar ]] || continue
      # Only the archive that holds this image: a docker load costs a minute under emulation.
      tar -xOf "$tar" manifest.json 2>/dev/null | grep -qF "\"$image\"" || continue
      docker load -q -i "$tar" >/dev/null
      changed "docker load $tar"
      docker image inspect "$image" >/dev/null 2>&1 && return 0
    done
  fi
  docker pull -q "$image" >/dev/null || die "image $image is neither preloaded in '$IMAGE_PRELOAD_DIR' nor pullable"
  changed "docker pull $image"
}
ensure_image "$POSTGRES_IMAGE"
ensure_image "$REDIS_IMAGE"

# --- pgBackRest in the server's image (backup.pointInTime): archive_command runs it inside the
# container. An image that has it already (a team's mirror, the VM suite's) is used as it is;
# otherwise a local image is built on it with the package from the image's own apt sources (the
# official Debian-based images carry PostgreSQL's apt repository, apt.postgresql.org, which has
# pgbackrest for every server version), tagged by the base image's id so a refreshed base builds anew.
pg_image=$POSTGRES_IMAGE
if [[ $PITR_ENABLED == true ]]; then
  probe=$(docker run --rm --entrypoint sh "$POSTGRES_IMAGE" -c \
    'if command -v pgbackrest >/dev/null; then echo has; elif command -v apt-get >/dev/null; then echo apt; else echo none; fi') ||
    die "cannot run a shell in $POSTGRES_IMAGE"
  case $probe in
    has) ;;
    apt)
      base_id=$(docker image inspect -f '{{.Id}}' "$POSTGRES_IMAGE")
      base_id=${base_id#sha256:}
      pg_image=nodehost/postgres-pgbackrest:${base_id:0:16}
      if ! docker image inspect "$pg_image" >/dev/null 2>&1; then
        # The legacy builder (Debian's docker.io has no buildx): the base is the local image, not pulled.
        docker build -q -t "$pg_image" - >/dev/null <<DOCKERFILE || die "building $pg_image (pgbackrest on $POSTGRES_IMAGE) failed (above)"
FROM $POSTGRES_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends pgbackrest ca-certificates && rm -rf /var/lib/apt/lists/*
DOCKERFILE
        changed "built $pg_image: $POSTGRES_IMAGE with pgbackrest"
      fi ;;
    *) die "images.postgres ($POSTGRES_IMAGE) has no pgbackrest and no apt-get to install it: use a Debian-based PostgreSQL image, one with pgbackrest, or set backup.pointInTime.enabled false" ;;
  esac
fi

# --- Secrets: files mounted read-only, never on a command line or in a container's environment
# (`docker inspect` shows the environment to anyone in the docker group). The images read them
# themselves: postgres through POSTGRES_PASSWORD_FILE, redis-server from its conf.
install -d -m 0700 -o root -g root "$ETC"
# A user's uid:gid inside an image, from one container (a `docker run` costs seconds under
# emulation): `id NAME` prints "uid=999(postgres) gid=999(postgres) groups=...", with coreutils
# (Debian images) and BusyBox (Alpine images) alike.
image_user_ids() {
  local out
  out=$(docker run --rm --entrypoint id "$1" "$2") || die "no user $2 in the image $1"
  [[ $out =~ ^uid=([0-9]+)\([^\)]*\)\ gid=([0-9]+) ]] || die "id $2 in the image $1 printed '$out'"
  printf '%s:%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
}
pg_ids=$(image_user_ids "$POSTGRES_IMAGE" postgres)
install -d -m 0700 -o root -g root "$ETC/postgres"
write_file "$ETC/postgres/password" 0400 "$pg_ids" <<<"$POSTGRES_PASSWORD"
write_file "$ETC/postgres.env" 0600 root:root <<ENV
POSTGRES_USER=$POSTGRES_USER
POSTGRES_DB=$POSTGRES_DB
POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password
ENV

# Redis runs as the image's own redis user, which must read its conf and own its data dir.
redis_ids=$(image_user_ids "$REDIS_IMAGE" redis)
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

# --- Containers: recreated only when their desired spec (a hash label) changes -----------------
# A replacement (a new image, a refreshed tag, a changed setting) is proven before the old
# container is let go: the old one is stopped and set aside as NAME-previous, and removed only once
# the new one is healthy. A new one that exits, restarts or stays unhealthy is removed, the old one
# started again, and the step fails saying so. Both use the same data directory, so only one runs
# at a time: PostgreSQL is down from the old server's stop until the new one answers (or, on a
# failure, the old one again). A run stopped part way leaves NAME-previous; the next run finishes
# that switch or undoes it before anything else.

# "<status> <health> <restarts>" of a container, e.g. "running healthy 0" (health "none" without a
# health check); fails when there is no such container.
container_state() {
  docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' "$1" 2>/dev/null
}
container_exists() { docker inspect "$1" >/dev/null 2>&1; }

# wait_healthy NAME SECONDS: 0 once healthy; 1 at once when it exits or docker restarts it (a
# server that fails to start does not become healthy later), or when SECONDS pass.
wait_healthy() {
  local name=$1 limit=$2 start=$SECONDS status health restarts first
  read -r _ _ first < <(container_state "$name") || return 1
  while ((SECONDS - start < limit)); do
    read -r status health restarts < <(container_state "$name") || return 1
    [[ $status == running && ($health == healthy || $health == none) ]] && return 0
    [[ $status == running || $status == created ]] && [[ $restarts == "$first" ]] || return 1
    sleep 2
  done
  return 1
}

# prove_container NAME IMAGE SECONDS: the new NAME healthy, then NAME-previous removed; else NAME
# removed, NAME-previous back, and the step fails.
prove_container() {
  local name=$1 image=$2 limit=$3 prev=$1-previous
  if wait_healthy "$name" "$limit"; then
    if container_exists "$prev"; then
      docker rm -f "$prev" >/dev/null
      changed "container $name healthy on its new spec; the previous one removed"
    fi
    return 0
  fi
  warn "container $name (image $image) did not become healthy: $(container_state "$name" || echo gone)"
  docker logs --tail 30 "$name" >&2 || true
  container_exists "$prev" || die "$name (image $image) is not healthy"
  docker rm -f "$name" >/dev/null
  docker rename "$prev" "$name"
  docker start "$name" >/dev/null
  changed "container $name: the previous one started again"
  wait_healthy "$name" "$limit" || die "$name (image $image) is not healthy, and the previous container, started again, is not healthy either"
  die "$name (image $image) is not healthy; the previous container serves again (its logs are above)"
}

# ensure_container NAME IMAGE HASH_INPUT HEALTH_SECONDS DOCKER_RUN_ARGS... -- IMAGE_ARGS...
ensure_container() {
  local name=$1 image=$2 extra=$3 limit=$4 spec current run_args=() cmd_args=() prev=$1-previous
  shift 4
  while [[ $# -gt 0 && $1 != -- ]]; do
    run_args+=("$1")
    shift
  done
  [[ $# -gt 0 ]] && shift
  cmd_args=("$@")
  spec=$(printf '%s\n' "$image" "$(docker image inspect -f '{{.Id}}' "$image")" "$extra" \
    "${run_args[@]}" -- "${cmd_args[@]}" | sha256sum | cut -c1-32)
  # A switch an earlier run stopped between setting the old container aside and starting the new.
  if container_exists "$prev" && ! container_exists "$name"; then
    docker rename "$prev" "$name"
    changed "container $name: the one a stopped switch set aside is back"
  fi
  current=$(docker inspect -f '{{index .Config.Labels "nodehost.spec"}}' "$name" 2>/dev/null || true)
  if [[ $current == "$spec" ]]; then
    if [[ $(docker inspect -f '{{.State.Running}}' "$name") != true ]]; then
      docker start "$name" >/dev/null
      changed "started $name"
    fi
    # A new container that a stopped run did not get to prove.
    if container_exists "$prev"; then prove_container "$name" "$image" "$limit"; fi
    return 0
  fi
  if container_exists "$name"; then
    # An older NAME-previous than this switch's own would hold the name (a switch proven but
    # stopped before the removal, then changed again): the container now in service is the one to keep.
    if container_exists "$prev"; then docker rm -f "$prev" >/dev/null; fi
    docker stop -t 60 "$name" >/dev/null
    docker rename "$name" "$prev"
  fi
  docker run -d --name "$name" --label "nodehost.spec=$spec" --restart unless-stopped \
    --log-opt max-size=10m --log-opt max-file=3 "${run_args[@]}" "$image" "${cmd_args[@]}" >/dev/null
  changed "container $name (re)created"
  if container_exists "$prev"; then prove_container "$name" "$image" "$limit"; fi
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
ensure_container "$PG_NAME" "$pg_image" "$(sha256sum "$ETC/postgres.env")" 600 "${pg_run[@]}" -- "${pg_cmd[@]}"
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
ensure_container "$REDIS_NAME" "$REDIS_IMAGE" "$(sha256sum "$ETC/redis/redis.conf" "$ETC/redis/nodehost-redis-cli")" 300 \
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
