#!/bin/sh
# The official image's postgres user (uid/gid 999), and no cluster made by the package.
set -eu
groupadd -r -g 999 postgres
useradd -r -u 999 -g 999 -d /var/lib/postgresql -s /bin/bash postgres
mkdir -p /etc/postgresql-common
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
