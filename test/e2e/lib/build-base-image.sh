#!/usr/bin/env bash
# Builds the VM test host's base disk (a DigitalOcean-like Debian 13) without mounting anything.
# Usage: build-base-image.sh <out-dir> <work-dir> <package,list> [<warm,package,list> [<ca-dir>
#        [<docker,archive,list> [<node-major>,<pm2-spec>,<npm-registry>]]]]
# Writes <out-dir>/disk.qcow2, vmlinuz, initrd.img, and with a warm list also warm.qcow2: the same
# root with those packages installed (see image.ts). The *.crt files of <ca-dir> are trusted (this
# machine's egress proxy, which the guest goes through too). Runs as root (debootstrap, chroot).
set -euo pipefail

out=$1 work=$2 packages=$3 warm_packages=${4:-} ca_dir=${5:-} warm_archives=${6:-} warm_runtime=${7:-}
suite=trixie mirror=http://deb.debian.org/debian
root=$work/rootfs
mkdir -p "$out" "$work"

# shellcheck source=test/e2e/lib/chroot.sh
. "$(dirname "$0")/chroot.sh"
# The rest through apt, which orders configuration properly (debootstrap --include of python3
# packages fails to configure them). Nothing may start as a service inside the chroot.
chroot_bootstrap "$suite" "$mirror"
chroot_install "$packages"

if [[ -n $ca_dir ]] && compgen -G "$ca_dir/*.crt" >/dev/null; then
  install -d "$root/usr/local/share/ca-certificates"
  cp "$ca_dir"/*.crt "$root/usr/local/share/ca-certificates/"
  in_root update-ca-certificates >/dev/null
fi

cat > "$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -f "$root/etc/apt/sources.list"

# The image's packages are the main archive's, and the security archive has newer ones for some,
# as a droplet's image has: the base step's first-up pass (unattended-upgrade) installs those in
# the guest, and the suite checks it did. Only the kernel is taken here: the VM boots the kernel
# copied out of this root (below), so one installed in the guest would never boot, and its
# initramfs costs minutes under emulation.
in_root apt-get update -q
in_root apt-get install -y -q --no-install-recommends -o DPkg::Options::=--force-unsafe-io linux-image-amd64
# The kernel it replaced (apt's autoremove keeps old kernels on purpose): only /vmlinuz's boots.
booted=$(basename "$(readlink -f "$root/vmlinuz")")
# shellcheck disable=SC2016 # ${Package} is dpkg-query's field, not the shell's
old_kernels=$(in_root dpkg-query -W -f='${Package}\n' 'linux-image-[0-9]*' | { grep -vx "linux-image-${booted#vmlinuz-}" || true; })
if [[ -n $old_kernels ]]; then
  # shellcheck disable=SC2086 # one package name per word
  in_root apt-get purge -y -q $old_kernels
fi
# What is left pending, for the suite to check the pass took (the security archive's suite is
# "stable-security" in `apt list`).
in_root apt list --upgradable 2>/dev/null | { grep -- '-security' || true; } | cut -d/ -f1 >"$out/pending-security.txt"

echo 'LANG=C.UTF-8' > "$root/etc/default/locale"
echo localhost > "$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# No bootloader, no partition table: QEMU boots the kernel with root=LABEL=nodehost-root (the
# filesystem made below), since virtio disk names follow PCI order, not command-line order.
echo 'LABEL=nodehost-root / ext4 errors=remount-ro 0 1' > "$root/etc/fstab"

# The initrd must find a virtio disk: initramfs-tools' default MODULES=most includes the drivers;
# fail here rather than at boot if that ever changes (a driver may also be built in).
initrd_files=$(in_root lsinitramfs /initrd.img)
builtin=$(cat "$root"/usr/lib/modules/*/modules.builtin)
for m in virtio_blk virtio_pci ext4; do
  grep -q "/$m\.ko" <<< "$initrd_files$builtin" || { echo "initrd lacks $m" >&2; exit 1; }
done

# Network: DHCP on the one NIC via systemd-networkd; slirp's DNS forwarder is always 10.0.2.3.
cat > "$root/etc/systemd/network/20-wired.network" <<NET
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
in_root systemctl enable systemd-networkd.service
rm -f "$root/etc/resolv.conf"
echo 'nameserver 10.0.2.3' > "$root/etc/resolv.conf"

# cloud-init: NoCloud seed only (a droplet gets its metadata from DO's datasource; the test host
# from the cidata disk); networking is fixed above, so cloud-init must not rewrite it.
# manage_etc_hosts as on DigitalOcean's images: the hostname resolves (sudo asks on every call).
cat > "$root/etc/cloud/cloud.cfg.d/90-nodehost-e2e.cfg" <<CFG
datasource_list: [NoCloud, None]
network: {config: disabled}
manage_etc_hosts: true
CFG

# Every clone must get its own SSH host keys and machine-id (clean_for_clones): cloud-init's ssh
# module generates keys on an instance's first boot; the unit below is a fallback should it not.
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<UNIT
[Unit]
Description=Generate SSH host keys missing from the image
Before=ssh.service
After=cloud-init-network.service cloud-init.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
in_root systemctl enable ssh-hostkeys.service

# apt-daily and apt-daily-upgrade stay enabled, as on a droplet's Debian image: they take apt's
# locks at their own times, and the steps must wait for them (lib.sh apt_get), not be spared them.
in_root systemctl enable apt-daily.timer apt-daily-upgrade.timer

# What each clone must make its own (host keys, machine-id), and what only the build used.
clean_for_clones() {
  rm -f "$root"/etc/ssh/ssh_host_*
  : > "$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  in_root apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
}
clean_for_clones

cp -L "$root/vmlinuz" "$out/vmlinuz"
cp -L "$root/initrd.img" "$out/initrd.img"

chroot_finish

# 12 GiB sparse: room for Docker, images and apt caches; the qcow2 keeps only written blocks.
write_disk() {
  truncate -s 12G "$work/disk.raw"
  mkfs.ext4 -q -F -L nodehost-root -d "$root" "$work/disk.raw"
  qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$1"
  rm -f "$work/disk.raw"
}
write_disk "$out/disk.qcow2"

# warm_docker_images ARCHIVE,... : the service images in the warm root's Docker store, as on a host
# that pulled them before (the rebuilds' docker-data then starts containers instead of a `docker
# load` that takes minutes under emulation). The root's own dockerd loads them, run natively: the
# root bind-mounted on itself (docker load's chroot remounts its /), the cgroup tree bound in, no
# networking of its own. The store is the one the guest's same dockerd reads (overlay2).
warm_docker_images() {
  local a f pid
  chroot_unmount
  mount --bind "$root" "$root"
  chroot_mount
  mount -t tmpfs tmpfs "$root/run"
  mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
  in_root dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    --pidfile /run/docker.pid >"$work/dockerd.log" 2>&1 &
  for _ in $(seq 120); do in_root docker info >/dev/null 2>&1 && break; sleep 0.5; done
  pid=$(cat "$root/run/docker.pid")
  IFS=, read -ra a <<< "$1"
  for f in "${a[@]}"; do
    cp "$f" "$root/tmp/image.tar"
    in_root docker load -q -i /tmp/image.tar
    rm -f "$root/tmp/image.tar"
  done
  # dockerd stops its containerd and unmounts its store before it exits.
  kill "$pid"
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  wait || true
  # Each host's own: the engine id (a clone generates one), the network store of this dockerd's
  # flags (the guest's makes its bridge).
  rm -rf "$root/var/lib/docker/engine-id" "$root/var/lib/docker/network"
  umount -R "$root/sys/fs/cgroup"
  umount "$root/run"
  if mountpoint -q "$root/var/lib/docker"; then umount "$root/var/lib/docker"; fi
  chroot_unmount
  umount "$root"
  chroot_mount
}

# warm_node_runtime MAJOR,PM2,REGISTRY : Node.js and PM2 as the node-pm2 step installs them
# (nodehost-runtime, run natively in the root), so the rebuilds' node-pm2 finds them in place.
warm_node_runtime() {
  local major pm2 registry
  IFS=, read -r major pm2 registry <<< "$1"
  install -m 0755 "$(dirname "$0")/../../../scripts/tools/nodehost-runtime" "$root/tmp/nodehost-runtime"
  in_root /tmp/nodehost-runtime install-node "$major" "$registry"
  # npm trusts its own CA list, not the system's, which has this machine's egress-proxy CAs.
  in_root env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt /tmp/nodehost-runtime install-pm2 "$pm2" "$registry"
  rm -f "$root/tmp/nodehost-runtime"
}

# The warm disk: the same root with the steps' packages already installed, as on a host that had
# them before its first `up` (an `existing` host, a team's own snapshot image). apt runs natively
# here, which under emulation takes minutes of a provision. The same kernel and initrd boot it.
if [[ -n $warm_packages ]]; then
  chroot_mount
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  in_root apt-get update -q
  chroot_install "$warm_packages"
  # Kept patched, as an existing host is: the base step's first-up pass finds nothing to install
  # on the rebuilds (the fresh provision proves the pass installs what is pending).
  in_root apt-get upgrade -y -q -o DPkg::Options::=--force-unsafe-io -o Dpkg::Options::=--force-confold
  echo 'nameserver 10.0.2.3' > "$root/etc/resolv.conf"
  if [[ -n $warm_archives ]]; then warm_docker_images "$warm_archives"; fi
  if [[ -n $warm_runtime ]]; then warm_node_runtime "$warm_runtime"; fi
  clean_for_clones
  chroot_finish
  write_disk "$out/warm.qcow2"
fi
echo "built $out"
