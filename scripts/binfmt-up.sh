#!/usr/bin/env bash
# Let this machine run arm64 (aarch64) binaries, in chroots and in containers, by QEMU user
# emulation, then build the tests' arm64 base image (idempotent; needs root):
#   installs Debian's qemu-user-static and binfmt-support if missing, mounts binfmt_misc (not
#   mounted on a new machine), enables qemu-aarch64 and checks its F (fix-binary) flag, which
#   containers need: the kernel opens the interpreter when it is registered, so it need not
#   exist inside the container's file system. Then scripts/base-image.sh IMAGE arm64.
#
#   bash scripts/binfmt-up.sh [IMAGE]   # default mlctl-test/python:bookworm-arm64
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE=${1:-${MLCTL_TEST_ARM64_BASE_IMAGE:-mlctl-test/python:bookworm-arm64}}
if ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true  # "already enabled" is not an error
entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
grep -qx enabled "$entry" || { echo "qemu-aarch64 is not enabled in binfmt_misc" >&2; exit 1; }
grep -q '^flags: .*F' "$entry" || { echo "qemu-aarch64 is registered without the F flag: containers cannot use it" >&2; exit 1; }
bash "$here/base-image.sh" "$IMAGE" arm64
