#!/usr/bin/env bash
# The scoring server (python -m mlctl.serve) beside its peers, in one run of the shared peer
# benchmark (../shared/bench): same diabetes score.py, same machine, loopback, wrk.
#
#   bash bench/serving.sh                                   # mlctl vs ref_asgi, azmlinfsrv (default and tuned)
#   SERVERS=ref_asgi,candidate DURATION=5 KEY_ROUNDS=1 bash bench/serving.sh
#
# Knobs: SERVERS, WORKERS (mlctl workers, 2), DURATION, KEY_ROUNDS, BENCH_VENV, SHARED_BENCH.
# The report lands in bench/results/; copy its ratio table into docs/benchmarks.md.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
VENV=${BENCH_VENV:-/tmp/benchenv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q scikit-learn joblib numpy psutil azureml-inference-server-http \
    uvicorn uvloop httptools starlette "$REPO"
export BENCH_VENV="$VENV" SKIP_INSTALL=1 OUT_DIR="$REPO/bench/results"
export CANDIDATE_CMD="$VENV/bin/python -m mlctl.serve --entry-script {entry} --model-dir {model_dir} --port {port} --workers ${WORKERS:-2}"
export SERVERS=${SERVERS:-ref_asgi,azml_default,azml_w2_gthread_quiet,candidate}
bash "$SHARED/run_peers.sh"
# print the key cell (ratios to the anchor) and the goal table's inputs
report=$(ls -t "$OUT_DIR"/serving-*.md | head -n 1)
sed -n '/^## Key cell/,/^## All cells/p' "$report" | grep '^|'
grep -E '^\| [a-z_0-9]+ \| body(2|100) \| 64 \|' "$report"
