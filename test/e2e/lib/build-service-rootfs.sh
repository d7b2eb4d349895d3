#!/usr/bin/env bash
# Builds the root filesystem of a service image (Postgres, Redis) natively on this machine.
# Usage: build-service-rootfs.sh <rootfs-dir> <suite> <package,list> <setup-before> <setup-after>
# The setup files are shell scripts run inside the chroot before and after apt-get install.
set -euo pipefail

root=$1 suite=$2 packages=$3 before=$4 after=$5
mirror=http://deb.debian.org/debian

# shellcheck source=test/e2e/lib/chroot.sh
. "$(dirname "$0")/chroot.sh"
chroot_bootstrap "$suite" "$mirror"
install -m 0755 "$before" "$root/tmp/before.sh"
install -m 0755 "$after" "$root/tmp/after.sh"
in_root /tmp/before.sh
chroot_install "$packages"
in_root /tmp/after.sh
in_root apt-get clean

rm -f "$root/tmp/before.sh" "$root/tmp/after.sh"
chroot_finish
# What a container never reads: docs, man pages, translations, apt's lists and caches, logs.
rm -rf "${root:?}"/usr/share/{doc,man,info,lintian,locale} "${root:?}"/var/lib/apt/lists/* \
  "${root:?}"/var/cache/apt/* "${root:?}"/var/cache/debconf/*-old "${root:?}"/var/log/*
