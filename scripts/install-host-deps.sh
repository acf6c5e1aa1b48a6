#!/usr/bin/env bash
# Installs the Debian packages fcvm and its tests need, skipping those already present.
# Needs root (or sudo) when something is missing.
set -euo pipefail
packages=(
  qemu-system-x86 qemu-utils       # the QEMU backend (and qemu-img for overlays)
  busybox-static cpio              # stage-1 initramfs and the test image
  mmdebstrap e2fsprogs             # guest root filesystem
  passt iproute2 iptables nftables # networking
  containernetworking-plugins      # bench:net compares with the CNI bridge plugin
  procps util-linux xz-utils zstd lz4
  gcc libc6-dev                    # UFFD tests and bench:uffd compile C clients and a C handler
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-host-deps: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
else SUDO=; fi
echo "install-host-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
