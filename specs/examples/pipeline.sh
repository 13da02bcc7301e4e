#!/usr/bin/env bash
# A CI step: deploy, test, update and delete a web service using only JSON output and exit codes.
#
#   bash specs/examples/pipeline.sh specs/examples/diabetes/service.yaml [--set path=value ...]
#
# Each step prints one field of mlctl's JSON result; any failure stops the script with mlctl's
# documented exit code (8: the prediction differs from the spec's expected output).
set -euo pipefail
spec=${1:?usage: pipeline.sh SERVICE_SPEC [--set path=value ...]}
shift
mlctl=${MLCTL:-mlctl}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

name=$($mlctl -q -o json service deploy -f "$spec" "$@" | field name)
$mlctl -q -o json service test "$name" | field passed
$mlctl -q -o json service update -f "$spec" "$@" --set deployment_config.workers=1 | field state
$mlctl -q -o json service delete "$name" | field deleted
