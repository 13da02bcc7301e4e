#!/usr/bin/env bash
# Make a Docker engine and the tests' base image available on this machine (idempotent):
# installs Debian's docker.io, docker-registry, debootstrap and mosquitto if missing, starts dockerd in the background if no
# daemon answers, waits for `docker info`, then builds the local Python base image.
# Needs root for the first two steps; tests that need Docker skip with a reason when it fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-registry >/dev/null \
  || ! [ -x /usr/sbin/mosquitto ]; then  # mosquitto: edgeHub's MQTT endpoint in tests/test_edge_messages.py
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-registry debootstrap mosquitto >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd > /tmp/mlctl-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see /tmp/mlctl-dockerd.log" >&2; exit 1; }
fi
bash "$here/base-image.sh" "${MLCTL_TEST_BASE_IMAGE:-mlctl-test/python:bookworm}"
# arm64 images (tests/test_arm64.py): QEMU in binfmt_misc and the arm64 base image (first run: minutes).
bash "$here/binfmt-up.sh" "${MLCTL_TEST_ARM64_BASE_IMAGE:-mlctl-test/python:bookworm-arm64}"
