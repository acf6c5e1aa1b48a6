#!/bin/sh
# fcvm guest init: PID 1 of every VM (installed as /sbin/fcvm-init; systemd is not used, it boots
# about three times slower). Mounts what the agent and podman need and runs the agent, which the
# stage-1 init put into /run/fcvm at VM start. Network, clock and containers are the agent's job.
# When the agent ends, the VM powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
busybox=/usr/local/bin/busybox

mount_unless_mounted() { # fstype source target options
  mountpoint -q "$3" || mount -t "$1" -o "$4" "$2" "$3" || echo "fcvm-init: could not mount $3" >&2
}

mount_unless_mounted proc proc /proc nosuid,nodev,noexec
mount_unless_mounted sysfs sysfs /sys nosuid,nodev,noexec
mount_unless_mounted devtmpfs devtmpfs /dev nosuid,mode=0755
mkdir -p /dev/pts /dev/shm
mount_unless_mounted devpts devpts /dev/pts nosuid,noexec,gid=5,mode=0620,ptmxmode=0666
mount_unless_mounted tmpfs tmpfs /dev/shm nosuid,nodev,mode=1777
# The stage-1 init already mounted /run with /run/fcvm in it: keep it.
mount_unless_mounted tmpfs tmpfs /run nosuid,nodev,mode=0755
mount_unless_mounted tmpfs tmpfs /tmp nosuid,nodev,mode=1777
mount_unless_mounted cgroup2 cgroup2 /sys/fs/cgroup nosuid,nodev,noexec,nsdelegate
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /run/lock

hostname -F /etc/hostname 2>/dev/null || "$busybox" hostname fcvm
ip link set lo up

agent=/run/fcvm/fc-agent.mjs
if [ -f "$agent" ]; then
  node "$agent"
  echo "fcvm-init: the agent exited with status $?" >&2
else
  echo "fcvm-init: no agent at $agent (it is injected at VM start)" >&2
fi
sync
echo "fcvm-init: powering off" >&2
exec "$busybox" poweroff -f
