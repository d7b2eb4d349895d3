#!/usr/bin/env bash
# The official redis image's entrypoint contract for Debian's redis-server: `redis-server
# [config-file] [--options]`, data in /data, runs as the redis user.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# The official build defaults protected-mode to no (the container's port mapping is the guard);
# Debian's binary defaults to yes, so say it unless a config file is given.
if [ "$1" = redis-server ] && { [ $# -eq 1 ] || [ "${2:0:1}" = '-' ]; }; then
  set -- "$@" --protected-mode no
fi
umask 0077
exec "$@"
