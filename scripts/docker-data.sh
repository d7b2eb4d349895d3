#!/usr/bin/env bash
# Step docker-data: Docker from Debian; PostgreSQL and Redis containers on 127.0.0.1, data on the volume.
# With a managed PostgreSQL (POSTGRES_MODE=managed): a client container that reaches it over verified
# TLS in place of the Docker PostgreSQL, whose data, when this host has one, is moved there first.
# With a managed Valkey (CACHE_MODE=managed): no Redis container; a Docker Redis's keys move there first.
# shellcheck source-path=SCRIPTDIR source=lib.sh
declare -F require_vars >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

require_nonempty DATA_MOUNT POSTGRES_IMAGE REDIS_IMAGE POSTGRES_USER POSTGRES_DB POSTGRES_PASSWORD REDIS_PASSWORD
require_vars IMAGE_PRELOAD_DIR
require_nonempty PITR_ENABLED PITR_ARCHIVE_TIMEOUT CONTAINERS_TOOL_B64 IMAGES_REFRESH_AT POSTGRES_MODE MANAGED_PG_DIR
require_vars MANAGED_PG_HOST MANAGED_PG_PORT MANAGED_PG_PASSWORD MANAGED_PG_ADMIN_USER MANAGED_PG_ADMIN_PASSWORD MANAGED_PG_CA_B64
require_nonempty CACHE_MODE
require_vars MANAGED_REDIS_HOST MANAGED_REDIS_PORT MANAGED_REDIS_USER MANAGED_REDIS_PASSWORD
[[ $CACHE_MODE == docker || $CACHE_MODE == managed ]] || die "CACHE_MODE must be docker or managed"
if [[ $CACHE_MODE == managed ]]; then
  require_nonempty MANAGED_REDIS_HOST MANAGED_REDIS_PORT MANAGED_REDIS_USER MANAGED_REDIS_PASSWORD
  [[ $MANAGED_REDIS_HOST =~ ^[A-Za-z0-9.-]+$ ]] || die "MANAGED_REDIS_HOST must be a host name or address"
  [[ $MANAGED_REDIS_PORT =~ ^[1-9][0-9]{0,4}$ ]] || die "MANAGED_REDIS_PORT must be a port"
  [[ $MANAGED_REDIS_USER =~ ^[A-Za-z0-9_.-]+$ ]] || die "MANAGED_REDIS_USER must be a plain user name"
  [[ $MANAGED_REDIS_PASSWORD != *$'\n'* ]] || die "MANAGED_REDIS_PASSWORD must be one line"
fi
[[ $POSTGRES_MODE == docker || $POSTGRES_MODE == managed ]] || die "POSTGRES_MODE must be docker or managed"
if [[ $POSTGRES_MODE == managed ]]; then
  require_nonempty MANAGED_PG_HOST MANAGED_PG_PORT MANAGED_PG_PASSWORD MANAGED_PG_ADMIN_USER MANAGED_PG_ADMIN_PASSWORD MANAGED_PG_CA_B64
  [[ $MANAGED_PG_HOST =~ ^[A-Za-z0-9.-]+$ ]] || die "MANAGED_PG_HOST must be a host name or address"
  [[ $MANAGED_PG_PORT =~ ^[1-9][0-9]{0,4}$ ]] || die "MANAGED_PG_PORT must be a port"
  [[ $MANAGED_PG_ADMIN_USER =~ ^[a-z_][a-z0-9_]*$ ]] || die "MANAGED_PG_ADMIN_USER must be a plain lower-case identifier"
  [[ $MANAGED_PG_CA_B64 =~ ^[A-Za-z0-9+/=]+$ ]] || die "MANAGED_PG_CA_B64 must be base64"
  [[ $PITR_ENABLED == false ]] || die "PITR_ENABLED must be false with a managed PostgreSQL (the cluster keeps its own point-in-time recovery)"
  for secret in MANAGED_PG_PASSWORD MANAGED_PG_ADMIN_PASSWORD; do
    [[ ${!secret} != *$'\n'* ]] || die "$secret must be one line"
  done
fi
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
# With a managed PostgreSQL, psql, pg_dump and pg_restore run here (PG_CONTAINER in components/host/index.ts).
PG_CLIENT=nodehost-pg-client

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
# The container psql and the dumps run in: the Docker PostgreSQL, or the managed one's client.
pg_in=$PG_NAME
[[ $POSTGRES_MODE == managed ]] && pg_in=$PG_CLIENT
install -d -m 0700 -o root -g root "$ETC" "$CONTAINERS" "$CONTAINERS/$pg_in"
write_file "$CONTAINERS/preload-dir" 0600 root:root <<<"$IMAGE_PRELOAD_DIR"
write_file "$CONTAINERS/$pg_in/ref" 0600 root:root <<<"$POSTGRES_IMAGE"
if [[ $CACHE_MODE == docker ]]; then
  install -d -m 0700 -o root -g root "$CONTAINERS/$REDIS_NAME"
  write_file "$CONTAINERS/$REDIS_NAME/ref" 0600 root:root <<<"$REDIS_IMAGE"
fi
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
containers image "$pg_in"
pg_image_id=$IMAGE
if [[ $CACHE_MODE == docker ]]; then
  containers image "$REDIS_NAME"
  redis_image_id=$IMAGE
fi

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
if [[ $POSTGRES_MODE == docker ]]; then
  pg_ids=$(image_user_ids "$pg_image_id" postgres)
  install -d -m 0700 -o root -g root "$ETC/postgres"
  write_file "$ETC/postgres/password" 0400 "$pg_ids" <<<"$POSTGRES_PASSWORD"
  write_file "$ETC/postgres.env" 0600 root:root <<ENV
POSTGRES_USER=$POSTGRES_USER
POSTGRES_DB=$POSTGRES_DB
POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password
ENV
else
  # The cluster's CA for the app (sslrootcert in its DATABASE_URL) and the client; the app user's
  # password in a root-only pgpass file the client reads (libpq: host:port:db:user:password, with
  # ':' and '\' escaped), never on a command line or in the container's environment.
  install -d -m 0755 -o root -g root "$MANAGED_PG_DIR"
  write_file "$MANAGED_PG_DIR/ca.pem" 0644 root:root < <(base64 -d <<<"$MANAGED_PG_CA_B64")
  grep -q -- '-----BEGIN CERTIFICATE-----' "$MANAGED_PG_DIR/ca.pem" || die "MANAGED_PG_CA_B64 is not a PEM certificate"
  install -d -m 0700 -o root -g root "$ETC/managed-pg"
  pgpass_password=${MANAGED_PG_PASSWORD//\\/\\\\}
  write_file "$ETC/managed-pg/pgpass" 0600 root:root <<<"*:*:*:$POSTGRES_USER:${pgpass_password//:/\\:}"
fi

if [[ $CACHE_MODE == docker ]]; then
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
fi

[[ $POSTGRES_MODE == docker ]] && install -d -m 0700 "$DATA_MOUNT/postgres"
[[ $CACHE_MODE == docker ]] && install -d -m 0700 -o "${redis_ids%%:*}" -g "${redis_ids##*:}" "$DATA_MOUNT/redis"

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
if [[ $POSTGRES_MODE == docker ]]; then
  ensure "$PG_NAME" "$pg_image_id" 600 "$(sha256sum "$ETC/postgres.env")" "${pg_run[@]}" -- "${pg_cmd[@]}"
  # A password change does not recreate the container: the entrypoint reads the file on first init
  # only, and an existing database gets ALTER USER below.
else
  # The image's own psql, pg_dump and pg_restore (the stack's PostgreSQL major), idle until a tool
  # execs them. Healthy while the app's user logs in to the cluster over TLS verified by its CA.
  # No --init: Debian's docker.io does not bring docker-init along; `sleep` as PID 1 ignores SIGTERM,
  # so a stop kills it after --stop-timeout.
  client_run=(
    --network host --entrypoint sleep
    -v "$MANAGED_PG_DIR/ca.pem:/etc/nodehost-pg/ca.pem:ro"
    -v "$ETC/managed-pg/pgpass:/run/secrets/pgpass:ro"
    -e "PGHOST=$MANAGED_PG_HOST" -e "PGPORT=$MANAGED_PG_PORT" -e "PGUSER=$POSTGRES_USER" -e "PGDATABASE=$POSTGRES_DB"
    -e PGSSLMODE=verify-full -e PGSSLROOTCERT=/etc/nodehost-pg/ca.pem -e PGPASSFILE=/run/secrets/pgpass -e PGCONNECT_TIMEOUT=10
    --stop-timeout 5
    --health-cmd 'psql -qtAXw -c "select 1"'
    --health-interval 10s --health-timeout 10s --health-retries 6 --health-start-period 60s
  )
  ensure "$PG_CLIENT" "$pg_image_id" 300 "" "${client_run[@]}" -- infinity
fi

served=("$pg_in")
if [[ $CACHE_MODE == docker ]]; then
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
  served+=("$REDIS_NAME")
fi

healthy() { [[ $(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null) == healthy ]]; }
for name in "${served[@]}"; do
  if ! wait_until 600 "$name to be healthy" healthy "$name"; then
    docker logs --tail 30 "$name" >&2 || true
    die "$name is not healthy after 10 minutes"
  fi
done
log "containers healthy: ${served[*]}"
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

# Set while the Docker PostgreSQL's data moves to the managed one (below).
MOVING=$DATA_MOUNT/.nodehost-moving-to-managed
if [[ $POSTGRES_MODE == docker ]]; then
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

  # A move to managed that was given up (database.mode back to docker) left the database read-only.
  if [[ -f $MOVING ]]; then
    docker exec -i "$PG_NAME" psql -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" >/dev/null <<SQL
ALTER DATABASE "$POSTGRES_DB" RESET default_transaction_read_only;
SQL
    rm -f "$MOVING"
    changed "$POSTGRES_DB takes writes again (the move to the managed PostgreSQL was given up)"
  fi
else
  # --- The app's user may create its tables: DigitalOcean makes the database owned by its admin
  # (doadmin) and the user with no rights in it, and PostgreSQL 15+ no longer lets every user create
  # in the public schema. Judged by the user's rights, granted by the admin (its password on stdin)
  # only when missing.
  client_psql() { docker exec -i "$PG_CLIENT" psql -qtAX -w -v ON_ERROR_STOP=1 "$@"; }
  can_create() { [[ $(client_psql -c "SELECT has_schema_privilege('public', 'CREATE') AND has_database_privilege(current_database(), 'CREATE')") == t ]]; }
  if ! can_create; then
    { printf '%s\n' "$MANAGED_PG_ADMIN_PASSWORD"; cat; } <<SQL | docker exec -i "$PG_CLIENT" sh -c \
      'IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql -qtAX -w -v ON_ERROR_STOP=1 -U "$1"' sh "$MANAGED_PG_ADMIN_USER" >/dev/null
GRANT ALL ON DATABASE "$POSTGRES_DB" TO "$POSTGRES_USER";
GRANT ALL ON SCHEMA public TO "$POSTGRES_USER";
SQL
    can_create || die "$POSTGRES_USER still cannot create tables in $POSTGRES_DB after the grant by $MANAGED_PG_ADMIN_USER"
    changed "granted $POSTGRES_USER the database $POSTGRES_DB and its public schema"
  fi

  # --- A host that ran its PostgreSQL in Docker: its data moves to the managed one, every row
  # (docs/runbooks/move-to-managed-postgres.md). Writes stop first (the database turns read-only and
  # its sessions end; the app reads on), the dump goes in as one transaction, the row counts must
  # match, and only then is the container removed; its data directory stays on the volume.
  # Converges from any point: MOVING says the managed database's tables are this move's.
  if docker container inspect "$PG_NAME" >/dev/null 2>&1; then
    [[ -x /usr/local/bin/nodehost-backup && -f $ETC/backup.env ]] ||
      die "$PG_NAME holds data but nodehost-backup (which counts the rows of a move) is not installed: run up once with database.mode docker"
    tables_sql="SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    managed_tables=$(client_psql -c "$tables_sql")
    if [[ ! -f $MOVING && $managed_tables != 0 ]]; then
      die "the managed database $POSTGRES_DB already holds $managed_tables tables, and this host's $PG_NAME still holds the stack's data: nothing was moved or changed (docs/runbooks/move-to-managed-postgres.md)"
    fi
    started=$SECONDS
    if [[ $(docker inspect -f '{{.State.Running}}' "$PG_NAME") != true ]]; then docker start "$PG_NAME" >/dev/null; fi
    wait_until 600 "$PG_NAME to be healthy" healthy "$PG_NAME" || die "$PG_NAME is not healthy: its data cannot be moved"
    touch "$MOVING"
    docker exec -i "$PG_NAME" psql -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" >/dev/null <<SQL
ALTER DATABASE "$POSTGRES_DB" SET default_transaction_read_only = on;
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid();
SQL
    if [[ $managed_tables == 0 ]]; then
      dump=$DATA_MOUNT/.nodehost-move.dump
      docker exec "$PG_NAME" pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Fc -Z 6 >"$dump"
      docker exec -i "$PG_CLIENT" pg_restore -w --no-owner --no-privileges --exit-on-error --single-transaction -d "$POSTGRES_DB" <"$dump" ||
        die "pg_restore into the managed database failed (above): $PG_NAME keeps the data, read-only until an up finishes the move or database.mode is docker again"
      rm -f "$dump"
    fi
    from=$(/usr/local/bin/nodehost-backup --count-rows "$PG_NAME")
    to=$(/usr/local/bin/nodehost-backup --count-rows "$PG_CLIENT")
    [[ $from == "$to" ]] || die "the managed database's row counts differ from $PG_NAME's: $(diff <(printf '%s\n' "$from") <(printf '%s\n' "$to") | head -n 5 | tr '\n' ' ')"
    docker rm -f "$PG_NAME" >/dev/null
    rm -rf "${CONTAINERS:?}/$PG_NAME"
    kept=$DATA_MOUNT/postgres.before-managed-$(date -u +%Y%m%dT%H%M%SZ)
    if [[ -d $DATA_MOUNT/postgres ]]; then mv "$DATA_MOUNT/postgres" "$kept"; fi
    rm -f "$MOVING"
    changed "moved $(wc -l <<<"$from") tables, $(awk -F'\t' '{ n += $1 } END { print n + 0 }' <<<"$from") rows, from $PG_NAME to the managed PostgreSQL in $((SECONDS - started)) s (its data directory kept as $kept)"
  fi
fi

# --- A host that ran its Redis in Docker, with cache.mode managed: its keys move to the managed
# Valkey (docs/runbooks/move-to-managed-postgres.md). Writes to the Docker Redis are paused (CLIENT
# PAUSE WRITE: writers wait, keys neither expire nor are evicted), every key of database 0 is copied
# with DUMP and RESTORE (its TTL kept; the payload is the last argument, redis-cli -x) over TLS verified against this host's trust store (DigitalOcean's
# Valkey certificates are Let's Encrypt's), the counts must match, and only then is the container
# removed; its data directory stays on the volume. Converges from any point: MOVING_CACHE says the
# managed Valkey's keys are this move's (a re-run empties it and copies again).
MOVING_CACHE=$DATA_MOUNT/.nodehost-moving-cache-to-managed
# Run in a throw-away container of the Docker Redis's image (its redis-cli, on the host's network),
# the two passwords on stdin: `probe` prints the managed Valkey's key count; `copy MOVING` copies.
# shellcheck disable=SC2016 # expanded by sh in the container
MOVE_CACHE_SH='set -eu
IFS= read -r SRC_PW; IFS= read -r DST_PW
host=$1 port=$2 user=$3 what=$4
src() { REDISCLI_AUTH=$SRC_PW redis-cli -h 127.0.0.1 -p 6379 "$@"; }
dst() { REDISCLI_AUTH=$DST_PW redis-cli --tls --cacert /etc/nodehost-ca.pem --sni "$host" -h "$host" -p "$port" --user "$user" "$@"; }
pong=$(dst PING 2>&1) || true
[ "$pong" = PONG ] || { echo "the managed Valkey at $host:$port does not answer over verified TLS as $user: $pong"; exit 1; }
if [ "$what" = probe ]; then dst DBSIZE; exit 0; fi
[ "$(printf ab | head -c -1)" = a ] || { echo "this image has no GNU head (head -c -1)"; exit 1; }
if [ "$(dst DBSIZE)" != 0 ]; then
  [ "$5" = 1 ] || { echo "the managed Valkey holds keys"; exit 1; }
  out=$(dst FLUSHDB); [ "$out" = OK ] || { echo "FLUSHDB on the managed Valkey said: $out"; exit 1; }
fi
src CLIENT PAUSE 600000 WRITE >/dev/null
src --scan >/tmp/keys
total=$(src DBSIZE) copied=0 expiring=0
while IFS= read -r key; do
  ttl=$(src PTTL "$key")
  case $ttl in -2) continue ;; -1) ttl=0 ;; *) expiring=$((expiring + 1)) ;; esac
  out=$(src --raw DUMP "$key" | head -c -1 | dst -x RESTORE "$key" "$ttl" 2>&1) || true
  [ "$out" = OK ] || { echo "RESTORE into the managed Valkey said: $out"; exit 1; }
  copied=$((copied + 1))
  if [ $((copied % 1000)) = 0 ]; then src CLIENT PAUSE 600000 WRITE >/dev/null; fi
done </tmp/keys
echo "$total $copied $expiring $(dst DBSIZE)"'
cache_mover() {
  local image
  image=$(docker inspect -f '{{.Image}}' "$REDIS_NAME")
  { sed -n 's/^requirepass //p' "$ETC/redis/redis.conf"; printf '%s\n' "$MANAGED_REDIS_PASSWORD"; } |
    docker run --rm -i --network host --entrypoint sh -v /etc/ssl/certs/ca-certificates.crt:/etc/nodehost-ca.pem:ro \
      "$image" -c "$MOVE_CACHE_SH" sh "$MANAGED_REDIS_HOST" "$MANAGED_REDIS_PORT" "$MANAGED_REDIS_USER" "$@"
}
if [[ $CACHE_MODE == managed ]] && docker container inspect "$REDIS_NAME" >/dev/null 2>&1; then
  apt_install ca-certificates
  started=$SECONDS
  if [[ $(docker inspect -f '{{.State.Running}}' "$REDIS_NAME") != true ]]; then docker start "$REDIS_NAME" >/dev/null; fi
  wait_until 300 "$REDIS_NAME to be healthy" healthy "$REDIS_NAME" || die "$REDIS_NAME is not healthy: its keys cannot be moved"
  rcli() { docker exec "$REDIS_NAME" nodehost-redis-cli "$@"; }
  others=$(rcli INFO keyspace | grep -oE '^db[1-9][0-9]*' | tr '\n' ' ') || true
  [[ -z $others ]] || die "$REDIS_NAME has keys in databases other than 0 ($others): the move copies database 0 only; nothing was moved"
  probe=$(cache_mover probe) || die "$probe"
  [[ $probe =~ ^[0-9]+$ ]] || die "the managed Valkey's DBSIZE gave '$probe'"
  if [[ ! -f $MOVING_CACHE && $probe != 0 ]]; then
    die "the managed Valkey already holds $probe keys, and this host's $REDIS_NAME still holds the stack's cache: nothing was moved or changed (docs/runbooks/move-to-managed-postgres.md)"
  fi
  touch "$MOVING_CACHE"
  if ! moved=$(cache_mover copy 1) || ! [[ $moved =~ ^([0-9]+)\ ([0-9]+)\ ([0-9]+)\ ([0-9]+)$ ]]; then
    rcli CLIENT UNPAUSE >/dev/null 2>&1 || true
    die "moving $REDIS_NAME's keys to the managed Valkey failed: $moved ($REDIS_NAME keeps them and takes writes again)"
  fi
  read -r total copied expiring now <<<"$moved"
  # Keys with a TTL may expire on the managed side while the copy runs; none appear there uninvited.
  if ((copied != total || now > copied || now < copied - expiring)); then
    rcli CLIENT UNPAUSE >/dev/null 2>&1 || true
    die "moving $REDIS_NAME's keys: $total keys, $copied copied, $now on the managed Valkey ($expiring with a TTL; a key name with a newline is not copied): $REDIS_NAME keeps them"
  fi
  docker rm -f "$REDIS_NAME" >/dev/null
  rm -rf "${CONTAINERS:?}/$REDIS_NAME" "${ETC:?}/redis"
  kept=$DATA_MOUNT/redis.before-managed-$(date -u +%Y%m%dT%H%M%SZ)
  if [[ -d $DATA_MOUNT/redis ]]; then mv "$DATA_MOUNT/redis" "$kept"; fi
  rm -f "$MOVING_CACHE"
  changed "moved $copied keys from $REDIS_NAME to the managed Valkey in $((SECONDS - started)) s (its data directory kept as $kept)"
fi

step_done docker-data
