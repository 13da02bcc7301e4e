#!/usr/bin/env bash
# The scoring server (python -m mlctl.serve) beside its peers, in one run of the shared peer
# benchmark (../shared/bench): same diabetes score.py, same machine, loopback, wrk.
#
#   bash bench/serving.sh                                   # mlctl vs ref_asgi, azmlinfsrv (default and tuned)
#   SERVERS=ref_asgi,candidate DURATION=5 KEY_ROUNDS=1 bash bench/serving.sh
#   SCENARIO=peers,collection,kinds bash bench/serving.sh   # + issue 19's and issue 21's ratios, same run
#
# Knobs: SERVERS, WORKERS (mlctl workers, 2), DURATION, KEY_ROUNDS, BENCH_VENV, SHARED_BENCH.
# The report lands in bench/results/; copy its ratio table into docs/benchmarks.md.
#
# SCENARIO (comma list, default peers): peers = the shared harness above; collection =
# bench/collection.py (model data collection on vs off: the v1 AKS sample on the diabetes Ridge,
# then the numpy stress case); kinds = bench/model_kinds.py (entry
# script /score vs OIP infer, ONNX no-code vs the ONNX example's old score.py, MLflow no-code vs
# `mlflow models serve`). Both run with the key cell's settings: wrk -t1, KEY_CONNS (64)
# connections, WORKERS (2) workers, the harness's body2.json and body100.json, KEY_ROUNDS (3)
# alternating rounds of DURATION (10) s after WARMUP (3) s each; they print their ratio tables.
# They run in SCENARIO_PYTHON (default .venv/bin/python, `make install`: numpy, skl2onnx,
# onnxruntime, mlflow-skinny); kinds builds the full-mlflow venv of tests/mlflow_oracle.py once.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
SCENARIO=${SCENARIO:-peers}
for scenario in ${SCENARIO//,/ }; do
    case "$scenario" in peers|collection|kinds) ;; *) echo "unknown SCENARIO $scenario (peers, collection, kinds)" >&2; exit 2;; esac
done

run_peers() {
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
}

key_cell_options() {  # sets options: the key cell's settings, for bench/collection.py and bench/model_kinds.py
    local body
    options=(--connections "${KEY_CONNS:-64}" --workers "${WORKERS:-2}" --rounds "${KEY_ROUNDS:-3}" --warmup "${WARMUP:-3}")
    for body in body2 body100; do
        [ -f "$SHARED/bodies/$body.json" ] || { echo "missing $SHARED/bodies/$body.json (run the peers scenario once)" >&2; exit 2; }
        options+=(--body "$SHARED/bodies/$body.json")
    done
}

PY=${SCENARIO_PYTHON:-$REPO/.venv/bin/python}
for scenario in ${SCENARIO//,/ }; do
    case "$scenario" in
        peers) run_peers ;;
        collection)
            key_cell_options
            echo "## Model data collection on vs off (bench/collection.py): the v1 AKS sample, diabetes Ridge"
            "$PY" "$REPO/bench/collection.py" --client wrk --duration "${DURATION:-10}" "${options[@]}"
            echo "## ... and the stress case: a numpy dot product, where collection is most of the work"
            "$PY" "$REPO/bench/collection.py" --model linear --client wrk --duration "${DURATION:-10}" "${options[@]}" ;;
        kinds)
            key_cell_options
            echo "## Model kinds and protocols (bench/model_kinds.py)"
            "$PY" "$REPO/bench/model_kinds.py" --seconds "${DURATION:-10}" "${options[@]}" ;;
    esac
done
