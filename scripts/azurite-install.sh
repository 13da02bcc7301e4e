#!/usr/bin/env bash
# Azurite (Microsoft's Azure Storage emulator) for the model data collection tests, from npm into
# .cache/azurite (not global). 3.35.0 is the newest release that runs on Node 20. Without node/npm
# it says so and the Azurite tests fail naming this script.
set -euo pipefail
VERSION=3.35.0
PREFIX="${AZURITE_PREFIX:-$(dirname "$0")/../.cache/azurite}"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
if [ -x "$BIN" ] && grep -q "\"version\": \"$VERSION\"" "$PREFIX/node_modules/azurite/package.json"; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "azurite-install: npm not found; install Node.js 20 (apt-get install nodejs npm)" >&2
    exit 1
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
