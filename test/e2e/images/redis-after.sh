#!/bin/sh
set -eu
mkdir -p /data
chown redis:redis /data
