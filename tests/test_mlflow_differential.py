"""Differential test: the same MLflow models, the same requests, to MLflow's own scoring server
(``mlflow models serve`` from the full ``mlflow`` in its own venv, ``tests/mlflow_oracle.py``) and
to mlctl's server (``--model-kind mlflow``): same statuses, same predictions."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import free_port, get, post, start_server, stop_servers, wait_for
from mlflow_models import save_models
from mlflow_oracle import oracle_env, oracle_python

JSON = "application/json"
SKLEARN_REQUESTS: list[tuple[str, str]] = [
    (JSON, '{"dataframe_split": {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5], [2.5, 1, 3]]}}'),
    (JSON, '{"dataframe_split": {"index": [7], "columns": ["x2", "x1", "x0"], "data": [[5, 0, 1]]}}'),
    (JSON, '{"dataframe_records": [{"x0": 1, "x1": 0, "x2": 5}, {"x0": 2.5, "x1": 1, "x2": 3}]}'),
    (JSON, '{"instances": [{"x0": 1, "x1": 0, "x2": 5}]}'),
    (JSON, '{"inputs": {"x0": [1.0, 2.0], "x1": [0.0, 1.0], "x2": [5.0, 3.0]}}'),
    ("text/csv", "x0,x1,x2\n1,0,5\n2.5,1,3\n"),
    (JSON, '{"dataframe_split": {"columns": ["x0", "x1"], "data": [[1, 0]]}}'),  # a column missing
    (JSON, '{"rows": [[1, 0, 5]]}'),  # no known format
    (JSON, '{"dataframe_split": {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5]]}, "inputs": [1]}'),  # two
    (JSON, '{"dataframe_records": {"x0": 1}}'),  # records must be a list
    (JSON, "{not json"),
    ("text/plain", "x0,x1,x2\n1,0,5\n"),
]
CUSTOM_REQUESTS: list[tuple[str, str]] = [
    (JSON, '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}'),
    (JSON, '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}, "params": {"scale": 10}}'),
    (JSON, '{"dataframe_records": [{"a": 1.5, "b": 2}], "params": {"scale": 2}}'),
    (JSON, '{"inputs": {"a": [1, 2], "b": [0.5, 0.5]}}'),
    ("text/csv", "a,b\n1,2\n"),
    (JSON, '{"dataframe_split": {"columns": ["a"], "data": [[1]]}}'),  # b missing
    (JSON, '{"dataframe_split": {"columns": ["a", "b"], "data": [["x", 1]]}}'),  # a is not a number
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, str]]]:
    """Per model (``sklearn``, ``custom``): (MLflow's server base URL, mlctl's base URL)."""
    folder = tmp_path_factory.mktemp("differential")
    oracle = oracle_python()
    models = dict(zip(("sklearn", "custom"), save_models(folder / "models"), strict=True))
    ours: list[subprocess.Popen[bytes]] = []
    theirs: list[subprocess.Popen[bytes]] = []
    bases = {}
    try:
        for name, model in models.items():
            args = ["--model-kind", "mlflow", "--model-path", str(model), "--workers", "1"]
            mine = start_server(ours, args, folder / f"mlctl-{name}.log")
            bases[name] = (_mlflow_server(theirs, oracle, model, folder / f"mlflow-{name}.log"), mine)
        yield bases
    finally:
        stop_servers(ours)
        for proc in theirs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _mlflow_server(started: list[subprocess.Popen[bytes]], python: Path, model: Path, log: Path) -> str:
    port = free_port()
    command = [str(python), "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager", "local"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=oracle_env(python),
        )
    started.append(proc)
    base = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: proc.poll() is not None or _pings(base), 120), log.read_text()
    assert proc.poll() is None, log.read_text()
    return base


def _pings(base: str) -> bool:
    try:
        return get(base + "/ping", timeout=1)[0] == 200
    except OSError:
        return False


def _invoke(base: str, content_type: str, body: str) -> tuple[int, Any]:
    status, _, reply = post(base + "/invocations", body.encode(), {"Content-Type": content_type})
    return status, json.loads(reply) if status == 200 else None


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:  # an error: the statuses were compared
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-12, atol=0))
    except (TypeError, ValueError):
        return bool(a == b)


@pytest.mark.parametrize(
    ("model", "content_type", "body"),
    [
        *(("sklearn", c, b) for c, b in SKLEARN_REQUESTS),
        *(("custom", c, b) for c, b in CUSTOM_REQUESTS),
    ],
)
def test_mlctl_answers_like_mlflows_own_scoring_server(
    servers: dict[str, tuple[str, str]], model: str, content_type: str, body: str
) -> None:
    theirs, ours = servers[model]
    expected, got = _invoke(theirs, content_type, body), _invoke(ours, content_type, body)
    assert got[0] == expected[0], (body, expected, got)
    assert _same(got[1], expected[1]), (body, expected, got)
