#!/bin/busybox sh
# fcvm stage-1 init (the initramfs's /init). The Debian cloud kernel has virtio as modules, so this
# loads them, mounts the root disk, copies the per-VM files injected at VM start (/fcvm/: the agent
# bundle and extras, appended to the initrd as a second cpio archive) into the new root's /run/fcvm,
# and hands over to the guest init.
#
# Kernel command line (the contract with fcvm's hypervisor backends):
#   fcvm.init=PATH   guest init to run as PID 1 (default /sbin/fcvm-init)
#   fcvm.root=DEV    root block device (default /dev/vda)
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "fcvm-stage1: $*" >&2
  # Nothing sensible is left to do: power off so the VMM exits instead of hanging.
  poweroff -f
}

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev

init=/sbin/fcvm-init
root=/dev/vda
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    fcvm.init=*) init="${arg#fcvm.init=}" ;;
    fcvm.root=*) root="${arg#fcvm.root=}" ;;
  esac
done

# One module name per line, in dependency order (computed from the modules' own "depends").
while read -r module; do
  [ -n "$module" ] || continue
  insmod "/lib/modules/$module.ko" || echo "fcvm-stage1: could not load $module" >&2
done < /etc/fcvm-modules

tries=0
while [ ! -b "$root" ]; do
  tries=$((tries + 1))
  [ "$tries" -le 500 ] || fail "root device $root did not appear"
  usleep 10000
done

mkdir -p /newroot
mount -t ext4 -o rw "$root" /newroot || fail "could not mount $root"
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "guest init $init is missing in the root file system"

# /run is a fresh tmpfs: the per-VM files must not touch the (shared, copy-on-write) root disk.
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/run || fail "could not mount /run"
if [ -d /fcvm ]; then
  mkdir -p /newroot/run/fcvm
  chmod 0700 /newroot/run/fcvm
  cp -a /fcvm/. /newroot/run/fcvm/ || fail "could not copy the injected files to /run/fcvm"
fi

# What udev would do (the guest runs none): /dev/virtio-ports/NAME for each named virtio-serial
# port, e.g. the agent channel fcvm.agent on QEMU. The host sends a port's name shortly after the
# driver binds, so wait a moment for names that have not arrived yet.
for port in /sys/class/virtio-ports/vport*; do
  [ -e "$port" ] || continue
  tries=0
  while [ ! -s "$port/name" ] && [ "$tries" -lt 100 ]; do
    tries=$((tries + 1))
    usleep 10000
  done
  name="$(cat "$port/name" 2>/dev/null)"
  [ -n "$name" ] || continue
  mkdir -p /dev/virtio-ports
  ln -sf "../${port##*/}" "/dev/virtio-ports/$name"
done

mount --move /dev /newroot/dev
umount /sys
umount /proc
exec switch_root /newroot "$init"
