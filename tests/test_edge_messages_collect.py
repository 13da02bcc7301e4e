"""Model data collection in the edgeHub message process (issues 19 and 21): a graceful stop (SIGTERM)
writes every buffered row first, as an HTTP worker does. The server as a plain process with the IoT
Edge runtime's environment, the unmodified ``azure-iot-device`` client, Mosquitto in edgeHub's place
(see ``tests/test_edge_messages.py``) and the local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, self_signed_certificate, wait_for, write
from edge_fakes.broker import EdgeHubSide, run_broker
from edge_fakes.workload import serve_workload
from test_collect import read_rows

COLLECTING = """
import json
from azureml.monitoring import ModelDataCollector

def init():
    global inputs_dc, predictions_dc
    inputs_dc = ModelDataCollector("sensor", designation="inputs", feature_names=["a", "b"])
    predictions_dc = ModelDataCollector("sensor", designation="predictions", feature_names=["total"])

def run(raw_data):
    rows = json.loads(raw_data)["data"]
    for row in rows:
        inputs_dc.collect(row)
        predictions_dc.collect([sum(row)])
    return [json.dumps([sum(row) for row in rows])]
"""
MESSAGES = 6
ROWS_PER_MESSAGE = 2


def test_sigterm_writes_the_rows_the_message_process_still_buffers(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The store is unusable while messages are scored (a file where its folder goes), so every row
    stays buffered and the writer backs off (up to 5 s); the store is repaired and the server stopped
    at once: only the stop's flush (retrying without waiting out the backoff) can write the rows
    before the process leaves with ``os._exit``."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("edgemsg-dc"))
    script = write(tmp_path / "score.py", COLLECTING)
    store = write(tmp_path / "modeldata", "not a folder yet")
    log = tmp_path / "server.log"
    with run_broker(cert, key), serve_workload(tmp_path / "workload", cert.read_text()) as workload:
        side = EdgeHubSide(cert, "dev-dc", "collector", lambda: {"$version": 1})
        env = {
            **os.environ,
            **workload.module_env("dev-dc", "collector"),
            "AML_MODEL_DC_STORAGE_ENABLED": "true",
            "MLCTL_DC_LOCAL": str(store),
            "SERVICE_NAME": "edge-dc",
        }
        command = [sys.executable, "-m", "mlctl.serve", "--entry-script", str(script), "--port", str(free_port())]
        with log.open("wb") as sink:
            server = subprocess.Popen([*command, "--workers", "1"], env=env, stdout=sink, stderr=sink)
        try:
            assert wait_for(lambda: bool(side.reported), timeout=30), log.read_text()
            for n in range(MESSAGES):
                rows = [[n, k] for k in range(ROWS_PER_MESSAGE)]
                side.route_in(json.dumps({"data": rows}).encode(), "amlInput", **{"$.mid": f"m{n}"})
                output, _, body = side.next_output(30)
                assert (output, json.loads(body)) == ("amlOutput", [sum(r) for r in rows])
            time.sleep(7)  # failed writes: 0.1 + 0.2 + ... + 3.2 s, the writer now pauses 5 s
            assert not store.is_dir() and read_rows(tmp_path, "inputs") == []
            store.unlink()
            server.terminate()
            server.wait(30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            side.close()
    assert server.returncode == 0, log.read_text()
    inputs, predictions = read_rows(store, "inputs"), read_rows(store, "predictions")
    expected = [(str(n), str(k)) for n in range(MESSAGES) for k in range(ROWS_PER_MESSAGE)]
    assert sorted((r["a"], r["b"]) for r in inputs) == expected, log.read_text()
    assert len(predictions) == MESSAGES * ROWS_PER_MESSAGE, log.read_text()
    assert {r["$aml_service_name"] for r in inputs} == {"edge-dc"}
