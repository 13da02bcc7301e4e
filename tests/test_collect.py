"""Model data collection (issue 19): the ``azureml.monitoring`` stand-in inside a real scoring
server over real HTTP, writing to the local store."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azurite import API_VERSION, Azurite
from conftest import free_port, get, mlctl, post, start_server, stop_servers, wait_for

HERE = Path(__file__).parent / "collect"
CORRELATION = [
    "$aml_dc_correlation_id",
    "$aml_dc_scoring_timestamp",
    "$aml_dc_boundary",
    "$aml_workspace",
    "$aml_service_name",
    "$aml_model_name",
    "$aml_model_version",
    "$aml_request_id",
]


def read_rows(root: Path, designation: str) -> list[dict[str, str]]:
    """Every row of ``designation`` under the local store ``root`` (any day)."""
    found = []
    for file in sorted(root.glob(f"*/*/*/*/*/*/{designation}/*/*/*/data.csv")):
        with file.open(newline="") as handle:
            found += list(csv.DictReader(handle))
    return found


@pytest.fixture
def dc_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """The sample script served by ``python -m mlctl.serve`` (2 workers) with collection to a local store."""
    models = tmp_path / "app" / "azureml-models" / "weights.txt" / "3"
    models.mkdir(parents=True)
    (models / "weights.txt").write_text("2")
    store = tmp_path / "modeldata"
    env = {
        **os.environ,
        "AML_MODEL_DC_STORAGE_ENABLED": "true",
        "MLCTL_DC_LOCAL": str(store),
        "SERVICE_NAME": "dc-svc",
        "MLCTL_DC_MODELS": "weights.txt:3",
    }
    started: list[subprocess.Popen[bytes]] = []
    options = ["--entry-script", str(HERE / "score_dc.py"), "--model-dir", str(models), "--workers", "2"]
    base = start_server(started, options, tmp_path / "server.log", cwd=tmp_path / "app", env=env)
    try:
        yield base, store, started
    finally:
        stop_servers(started)


def test_sample_script_rows_carry_v1_columns_request_ids_and_layout(
    dc_server: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    base, store, started = dc_server
    for n in range(6):
        body = {"data": [[n, 1, 1], [n, 2, 2]]}
        status, _, answer = post(base + "/score", json.dumps(body).encode(), {"x-request-id": f"req-np-{n}"})
        assert status == 200, answer
    frame = {"frame": True, "data": [[1, 2, 3], [4, 5, 6]]}
    assert post(base + "/score", json.dumps(frame).encode(), {"x-request-id": "req-df"})[0] == 200
    stop_servers(started)  # a graceful stop writes what is buffered
    inputs, predictions = read_rows(store, "inputs"), read_rows(store, "predictions")
    assert len(inputs) == 14 and len(predictions) == 6 + 2
    assert list(inputs[0])[:8] == CORRELATION and list(inputs[0])[8:] == ["feat1", "feat2", "feat3"]
    files = [p.relative_to(store).parts for p in store.rglob("data.csv")]
    assert {f[:7] for f in files} == {
        ("default", "default", "default", "dc-svc", "weights.txt", "3", d) for d in ("inputs", "predictions")
    }
    assert all(len(f) == 11 and len(f[7]) == 4 for f in files)  # .../yyyy/mm/dd/data.csv
    by_request = {r["$aml_request_id"]: r for r in inputs}
    assert set(by_request) == {f"req-np-{n}" for n in range(6)} | {"req-df"}
    row = by_request["req-np-4"]
    assert (row["$aml_service_name"], row["$aml_model_name"], row["$aml_model_version"]) == (
        "dc-svc",
        "weights.txt",
        "3",
    )
    assert row["$aml_dc_boundary"] == "1440" and row["feat1"] == "4"
    # predictions carry the correlation of their request's inputs (sample: no add_correlations)
    prediction = next(p for p in predictions if p["$aml_request_id"] == "req-np-4")
    assert prediction["$aml_dc_correlation_id"] == row["$aml_dc_correlation_id"]
    assert prediction["prediction"] == "12.0" and prediction["1"] == "16.0"
    frames = [p for p in predictions if p["$aml_request_id"] == "req-df"]
    assert [f["prediction"] for f in frames] == ["12.0", "30.0"]  # add_correlations values not duplicated
    assert len(list(frames[0])) == 8 + 2


SCRIPT = """
import numpy
from azureml.monitoring import ModelDataCollector
dc = ModelDataCollector("m", designation="inputs", feature_names=["a"])
print("RESULT", dc.collect(numpy.array([[1.0]])), dc.collect([1, 2]), dc.add_correlations([1], None))
"""


def test_outside_a_deployment_collect_does_nothing(tmp_path: Path) -> None:
    compat = Path(__file__).parents[1] / "mlctl" / "serve" / "_compat"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AML_MODEL_DC", "MLCTL_DC"))}
    env["PYTHONPATH"] = str(compat)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    assert "RESULT None None [1]" in out.stdout and "not enabled" in out.stdout
    assert not list(tmp_path.iterdir())


def test_debug_switch_prints_rows_instead(tmp_path: Path) -> None:
    compat = Path(__file__).parents[1] / "mlctl" / "serve" / "_compat"
    env = {**os.environ, "PYTHONPATH": str(compat), "AML_MODEL_DC_DEBUG": "true", "AML_MODEL_DC_BOUNDARY": "hour"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[1].split(",") == [*CORRELATION, "a"]
    assert lines[2].split(",")[2] == "60" and lines[2].endswith(",1.0")


def dc_project(tmp_path: Path, *, port: int, storage: str = "", workers: int = 2) -> Path:
    """A project deploying the sample script with ``collect_model_data: true`` on the process target."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "score_dc.py").write_text((HERE / "score_dc.py").read_text())
    (project / "weights.txt").write_text("2")
    (project / "service.yaml").write_text(
        "apiVersion: mlctl/v1\nkind: Service\nname: dcsvc\nmodel_files: [weights.txt]\n"
        "inference_config:\n  entry_script: score_dc.py\n  environment: current\n"
        f"deployment_config:\n  port: {port}\n  workers: {workers}\n  collect_model_data: true\n{storage}"
    )
    return project


def score(uri: str, request_id: str, rows: list[list[int]], *, frame: bool = False) -> None:
    """One scoring request with ``x-request-id: request_id``; fails the test unless answered 200."""
    body = json.dumps({"data": rows, "frame": frame}).encode()
    status, _, answer = post(uri, body, {"x-request-id": request_id})
    assert status == 200, answer


def test_process_target_collects_and_service_data_joins_inputs_with_predictions(tmp_path: Path) -> None:
    project = dc_project(tmp_path, port=free_port())
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
    assert deployed.code == 0, deployed.err
    uri = str(deployed.json()["scoring_uri"])
    score(uri, "before-update", [[1, 1, 1], [2, 2, 2]], frame=True)
    # an update retires the old server, which writes its buffered rows first
    updated = mlctl("service", "update", "-f", str(project / "service.yaml"))
    assert updated.code == 0, updated.err
    score(uri, "after-update", [[3, 3, 3]])
    assert mlctl("service", "delete", "dcsvc").code == 0  # a delete flushes too

    joined = mlctl("service", "data", "dcsvc", "-o", "json")
    assert joined.code == 0, joined.err
    rows = joined.json()
    assert [(r["$aml_request_id"], r["feat1"], r["prediction:prediction"]) for r in rows] == [
        ("before-update", "1", "6.0"),
        ("before-update", "2", "12.0"),
        ("after-update", "3", "18.0"),
    ]
    assert rows[0]["$aml_model_name"] == "weights.txt" and rows[0]["$aml_model_version"] == "1"
    predictions = mlctl("service", "data", "dcsvc", "--designation", "predictions", "-o", "csv")
    assert predictions.code == 0, predictions.err
    assert (
        predictions.out.splitlines()[0].startswith("$aml_dc_correlation_id,")
        and len(predictions.out.splitlines()) == 1 + 3
    )
    later = mlctl("service", "data", "dcsvc", "--since", rows[-1]["$aml_dc_scoring_timestamp"], "-o", "json").json()
    assert [r["$aml_request_id"] for r in later] == ["after-update"]
    assert mlctl("service", "data", "dcsvc", "--until", "2000-01-01", "-o", "json").json() == []


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    """A running Azurite blob service (in memory) on 127.0.0.1 (``tests/azurite.py``)."""
    server = Azurite(tmp_path, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def blob_rows(server: Azurite, designation: str) -> list[dict[str, str]]:
    """Rows of ``designation`` in Azurite, from every blob of the layout."""
    found = []
    for name, text in server.blob_texts().items():
        if name.split("/")[6] == designation:
            found += list(csv.DictReader(io.StringIO(text)))
    return found


def test_process_target_writes_append_blobs_to_azurite_by_reference(tmp_path: Path, azurite: Azurite) -> None:
    storage = f"  model_data_storage:\n    connection_string_env: DC_CONN\n    api_version: '{API_VERSION}'\n"
    project = dc_project(tmp_path, port=free_port(), storage=storage)
    env = {"DC_CONN": azurite.connection_string}
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"), **env)
    assert deployed.code == 0, deployed.err
    uri = str(deployed.json()["scoring_uri"])
    for n in range(5):
        score(uri, f"blob-{n}", [[n, 0, 0], [n, 1, 1]])
    score(uri, "blob-df", [[1, 2, 3]], frame=True)
    assert wait_for(lambda: len(blob_rows(azurite, "inputs")) == 11, 20)
    names = sorted(azurite.blob_texts())
    assert len(names) == 2 and all(n.startswith("default/default/default/dcsvc/weights.txt/1/") for n in names)
    assert all(n.endswith("/data.csv") for n in names)  # one append blob per file, shared by both workers
    assert {r["$aml_request_id"] for r in blob_rows(azurite, "inputs")} == {f"blob-{n}" for n in range(5)} | {"blob-df"}
    joined = mlctl("service", "data", "dcsvc", "-o", "json", **env)
    assert joined.code == 0, joined.err
    assert len(joined.json()) == 11 and all(r["prediction:prediction"] for r in joined.json())
    assert mlctl("service", "delete", "dcsvc").code == 0


def collection_metrics(base: str) -> dict[str, int]:
    """``collected``, ``written``, ``dropped``, ``write_errors`` from the server's ``/metrics``."""
    found = {"collected": 0, "written": 0, "dropped": 0, "write_errors": 0}
    for line in get(base + "/metrics")[1].decode().splitlines():
        if line.startswith("mlctl_model_data_rows_total{"):
            found[line.split('"')[1]] = int(float(line.split()[-1]))
        elif line.startswith("mlctl_model_data_write_errors_total "):
            found["write_errors"] = int(float(line.split()[-1]))
    return found


def test_storage_outage_loses_no_row_that_fits_the_buffer_and_counts_drops_exactly(tmp_path: Path) -> None:
    storage = Azurite(tmp_path, free_port(), location=tmp_path / "azurite-data")  # on disk: survives restarts
    storage.start()
    models = tmp_path / "app" / "azureml-models" / "weights" / "1"
    models.mkdir(parents=True)
    (models / "weights.txt").write_text("2")
    env = {
        **os.environ,
        "AML_MODEL_DC_STORAGE_ENABLED": "true",
        "AML_MODEL_DC_STORAGE": storage.connection_string,
        "MLCTL_DC_API_VERSION": API_VERSION,
        "MLCTL_DC_BUFFER_ROWS": "50",
        "SERVICE_NAME": "outage",
    }
    started: list[subprocess.Popen[bytes]] = []
    options = ["--entry-script", str(HERE / "score_dc.py"), "--model-dir", str(models), "--workers", "1"]
    try:
        base = start_server(started, options, tmp_path / "server.log", cwd=tmp_path / "app", env=env)
        settled = lambda: (m := collection_metrics(base))["written"] + m["dropped"] == m["collected"]  # noqa: E731
        for n in range(3):
            score(base + "/score", f"up-{n}", [[n, 1, 1], [n, 2, 2]])
        assert wait_for(settled, 10)
        storage.stop()
        for n in range(10):  # 30 rows: they fit the buffer of 50
            score(base + "/score", f"down-{n}", [[n, 1, 1], [n, 2, 2]])
        assert wait_for(lambda: collection_metrics(base)["write_errors"] > 0, 10)
        storage.start()
        assert wait_for(settled, 30)
        assert collection_metrics(base) | {"write_errors": 0} == {
            "collected": 39,
            "written": 39,
            "dropped": 0,
            "write_errors": 0,
        }
        storage.stop()
        for n in range(30):  # 90 rows for a buffer of 50: requests 0-16's inputs and 0-15's predictions fit
            score(base + "/score", f"over-{n}", [[n, 1, 1], [n, 2, 2]])
        assert collection_metrics(base)["dropped"] == 40
        storage.start()
        assert wait_for(settled, 30)
        assert {k: v for k, v in collection_metrics(base).items() if k != "write_errors"} == {
            "collected": 129,
            "written": 89,
            "dropped": 40,
        }
        inputs, predictions = blob_rows(storage, "inputs"), blob_rows(storage, "predictions")
        ids = [r["$aml_request_id"] for r in inputs]
        expected = [f"up-{n}" for n in range(3)] + [f"down-{n}" for n in range(10)] + [f"over-{n}" for n in range(17)]
        assert sorted(ids) == sorted(i for i in expected for _ in range(2))  # every row once, none twice
        assert sorted(r["$aml_request_id"] for r in predictions) == sorted(expected[:-1])
    finally:
        stop_servers(started)
        storage.stop()


def test_rows_the_store_never_took_are_counted_and_logged_as_lost_at_stop(tmp_path: Path) -> None:
    # The store cannot be written at all (a file stands where its folder should be) and the server
    # is stopped: after MLCTL_DC_FLUSH_TIMEOUT_S the worker says how many rows it loses, and the
    # outage itself was logged once, not at every retry.
    models = tmp_path / "app" / "azureml-models" / "weights" / "1"
    models.mkdir(parents=True)
    (models / "weights.txt").write_text("2")
    blocked = tmp_path / "modeldata"
    blocked.write_text("a file where the local store's folder should be")
    env = {
        **os.environ,
        "AML_MODEL_DC_STORAGE_ENABLED": "true",
        "MLCTL_DC_LOCAL": str(blocked),
        "MLCTL_DC_FLUSH_TIMEOUT_S": "1",
        "SERVICE_NAME": "lost",
    }
    started: list[subprocess.Popen[bytes]] = []
    options = ["--entry-script", str(HERE / "score_dc.py"), "--model-dir", str(models), "--workers", "1"]
    log = tmp_path / "server.log"
    try:
        base = start_server(started, options, log, cwd=tmp_path / "app", env=env)
        for n in range(3):  # 2 inputs rows and 1 predictions row each (a 1-D array is one row, as in v1)
            score(base + "/score", f"lost-{n}", [[n, 1, 1], [n, 2, 2]])
        assert wait_for(lambda: collection_metrics(base)["write_errors"] >= 2, 10)  # retried
        assert collection_metrics(base)["collected"] == 9
    finally:
        stop_servers(started)
    text = log.read_text()
    assert text.count("model data collection: writing to the store failed (NotADirectoryError: ") == 1, text
    assert "model data collection: 9 buffered rows were not written within 1 s of stopping" in text, text


def test_canary_connection_string_never_leaks_on_the_process_target(tmp_path: Path, azurite: Azurite) -> None:
    canary = f"{azurite.connection_string}Canary=process-{os.getpid()};"
    storage = f"  model_data_storage:\n    connection_string_env: DC_CONN\n    api_version: '{API_VERSION}'\n"
    project = dc_project(tmp_path, port=free_port(), storage=storage)
    spec = str(project / "service.yaml")
    env = {"DC_CONN": canary}
    outputs = [
        mlctl("-o", "json", "service", "render", "-f", spec, **env),
        mlctl("-o", "json", "service", "deploy", "--dry-run", "-f", spec, **env),
        mlctl("-o", "json", "service", "deploy", "-f", spec, **env),
    ]
    assert outputs[-1].code == 0, outputs[-1].err
    score(str(outputs[-1].json()["scoring_uri"]), "canary-1", [[1, 2, 3]])
    assert wait_for(lambda: len(blob_rows(azurite, "inputs")) == 1, 20)
    outputs += [mlctl(*args, **env) for args in (("service", "show", "dcsvc"), ("service", "logs", "dcsvc"))]
    outputs += [mlctl("-o", "json", "service", "list"), mlctl("service", "data", "dcsvc", **env)]
    secret_files = list(Path(os.environ["MLCTL_HOME"]).rglob("modeldata-connection-string"))
    assert len(secret_files) == 1 and secret_files[0].stat().st_mode & 0o077 == 0
    files = [p for p in Path(os.environ["MLCTL_HOME"]).rglob("*") if p.is_file() and p not in secret_files]
    assert any(p.name == "server.log" for p in files)
    for path in files:
        assert b"Canary=process" not in path.read_bytes(), path
    outputs.append(mlctl("service", "delete", "dcsvc"))
    for result in outputs:
        assert "process-" not in result.out + result.err, result.out
    assert not any(b"Canary=process" in c for c in _cmdlines())


def _cmdlines() -> list[bytes]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_bytes())
        except OSError:  # the process ended meanwhile
            pass
    return found
