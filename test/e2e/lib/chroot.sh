# Sourced by build-base-image.sh and build-service-rootfs.sh: a debootstrap'd Debian root that
# apt can install into with nothing starting as a service, and its clean unmount.
# Needs: $root (the root filesystem directory), set by the sourcing script.
# shellcheck shell=bash disable=SC2154
: "${root:?chroot.sh: set root before sourcing}"

chroot_unmount() {
  # debootstrap leaves /proc and /sys mounted when it fails half-way.
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$root/$m"; then umount -l "$root/$m"; fi
  done
}

# debootstrap --variant=minbase <suite> into $root, then mount what apt and maintainer scripts
# need and forbid service starts (policy-rc.d) until chroot_finish.
chroot_bootstrap() {
  local suite=$1 mirror=$2
  trap chroot_unmount EXIT
  echo "debootstrap $suite (minbase)"
  debootstrap --variant=minbase "$suite" "$root" "$mirror"
  chroot_mount
}

# Mounts what apt and maintainer scripts need under $root and forbids service starts until
# chroot_finish (also to open a finished root again).
chroot_mount() {
  trap chroot_unmount EXIT
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

# apt-get install of a comma-separated package list inside $root.
chroot_install() {
  local pkgs
  IFS=, read -ra pkgs <<< "$1"
  echo "apt-get install ${pkgs[*]}"
  in_root apt-get install -y --no-install-recommends -o DPkg::Options::=--force-unsafe-io "${pkgs[@]}"
}

# Unmounts, checks nothing is left mounted, lets services start again, and empties what only
# the running chroot used.
chroot_finish() {
  chroot_unmount
  if findmnt -rn -o TARGET | grep -q "^$root"; then echo "still mounted under $root" >&2; exit 1; fi
  rm -f "$root/usr/sbin/policy-rc.d"
  rm -rf "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/* "${root:?}"/run/* "${root:?}"/tmp/*
}
