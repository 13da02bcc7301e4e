#!/usr/bin/env bash
# Build the local Python base image that tests and CI use instead of a public one (no Docker Hub
# here): Debian bookworm minbase with python3, venv, pip and ca-certificates, the machine's CA
# bundle copied in (outbound TLS is intercepted on this network), then `docker import`.
#
#   bash scripts/base-image.sh [IMAGE] [ARCH] # default mlctl-test/python:bookworm; no-op if present
#
# ARCH (a Debian architecture, e.g. arm64) other than the machine's builds a foreign tree: the
# first debootstrap stage here, the second in a chroot run by QEMU user emulation (needs
# scripts/binfmt-up.sh first; some minutes), loaded with an image config saying linux/ARCH
# (scripts/rootfs-image.py: the engine 20.10's `docker import` records its own architecture). The file system is kept as a tarball in
# MLCTL_BASE_CACHE (default /var/cache/mlctl), so an image removed from the engine is imported again
# in seconds instead of being bootstrapped again (minutes; for arm64, under emulation).
set -euo pipefail
IMAGE=${1:-mlctl-test/python:bookworm}
ARCH=${2:-$(dpkg --print-architecture)}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE is present"
  exit 0
fi
cache=${MLCTL_BASE_CACHE:-/var/cache/mlctl}/$(echo "$IMAGE" | tr '/:' '__').tar
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
import_tar() {
  if [ "$ARCH" = "$(dpkg --print-architecture)" ]; then
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$1" "$IMAGE"
  else
    python3 "$here/rootfs-image.py" "$1" "$IMAGE" "linux/$ARCH" | docker load
  fi
}
if [ -s "$cache" ]; then
  import_tar "$cache"
  echo "imported $IMAGE from $cache"
  exit 0
fi
# The Debian mirror this machine's apt uses (deb822 .sources first, then sources.list).
mirror=$(grep -hoP '^URIs:\s*\K\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)
if [ -z "$mirror" ]; then
  mirror=$(grep -hoP '^deb\s+(\[[^]]*\]\s+)?\K\S+(?=\s+bookworm\s)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
fi
[ -n "$mirror" ] || { echo "no Debian mirror found in the apt sources" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
packages=python3,python3-venv,python3-pip,ca-certificates
if [ "$ARCH" = "$(dpkg --print-architecture)" ]; then
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror"
else
  debootstrap --arch="$ARCH" --foreign --variant=minbase --include="$packages" bookworm "$root" "$mirror"
  chroot "$root" /debootstrap/debootstrap --second-stage  # runs under qemu-*-static via binfmt_misc (F flag)
fi
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mkdir -p "$(dirname "$cache")"
tar -C "$root" -c -f "$cache.partial" . && mv "$cache.partial" "$cache"
import_tar "$cache"
echo "built $IMAGE"
