#!/usr/bin/env bash
# Builds the root filesystem of a service image (Postgres, Redis) natively on this machine.
# Usage: build-service-rootfs.sh <rootfs-dir> <suite> <package,list> <setup-before> <setup-after>
# The setup files are shell scripts run inside the chroot before and after apt-get install.
set -euo pipefail

root=$1 suite=$2 packages=$3 before=$4 after=$5
mirror=http://deb.debian.org/debian

cleanup() {
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$root/$m"; then umount -l "$root/$m"; fi
  done
}
trap cleanup EXIT

debootstrap --variant=minbase "$suite" "$root" "$mirror"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }
install -m 0755 "$before" "$root/tmp/before.sh"
install -m 0755 "$after" "$root/tmp/after.sh"
in_root /tmp/before.sh
IFS=, read -ra pkgs <<< "$packages"
in_root apt-get install -y --no-install-recommends -o DPkg::Options::=--force-unsafe-io "${pkgs[@]}"
in_root /tmp/after.sh
in_root apt-get clean

cleanup
if findmnt -rn -o TARGET | grep -q "^$root"; then echo "still mounted under $root" >&2; exit 1; fi
rm -f "$root/usr/sbin/policy-rc.d" "$root/tmp/before.sh" "$root/tmp/after.sh"
# What a container never reads: docs, man pages, translations, apt's lists and caches, logs.
rm -rf "${root:?}"/usr/share/{doc,man,info,lintian,locale} "${root:?}"/var/lib/apt/lists/* \
  "${root:?}"/var/cache/apt/* "${root:?}"/var/cache/debconf/*-old "${root:?}"/var/log/* \
  "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/* "${root:?}"/tmp/* "${root:?}"/run/*
