#!/usr/bin/env bash
# The official postgres image's entrypoint contract, for Debian's PostgreSQL: POSTGRES_USER,
# POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE, read as the postgres user), POSTGRES_DB; initdb into PGDATA on first start; /docker-entrypoint-initdb.d;
# TCP on all interfaces with password auth, trust on the local socket and loopback; runs as postgres.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
[ "$1" = postgres ] || exec "$@"

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA" || :
  chmod 3777 /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chown postgres:postgres /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# As the official file_env: VAR_FILE names a file whose content becomes VAR; both set is an error.
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    echo >&2 'error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set (but are exclusive)'
    exit 1
  fi
  POSTGRES_PASSWORD=$(< "$POSTGRES_PASSWORD_FILE")
fi
unset POSTGRES_PASSWORD_FILE

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}" "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    echo >&2 'error: database is uninitialized and POSTGRES_PASSWORD is not set'
    exit 1
  fi
  pwfile=$(mktemp)
  # With the newline, as the official image (docker-entrypoint.sh:91-92 @6edb0a8): initdb refuses
  # an empty --pwfile, and a trust-only server (the restore drill's) has an empty password.
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  # shellcheck disable=SC2086
  # No --auth, as the official image: initdb's defaults trust the local socket and 127.0.0.1/::1
  # inside the container; every other address (the host's traffic through the published port)
  # gets POSTGRES_HOST_AUTH_METHOD from the line appended below.
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  export PGUSER="$POSTGRES_USER" PGDATABASE=postgres
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --no-psqlrc -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
   
    case "$f" in
      *.sh) echo "running $f"; bash "$f" ;;
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$POSTGRES_DB" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGUSER PGDATABASE
  echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
