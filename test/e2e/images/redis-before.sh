#!/bin/sh
# The official redis image's user (uid/gid 999).
set -eu
groupadd -r -g 999 redis
useradd -r -u 999 -g 999 -d /data -s /usr/sbin/nologin redis
