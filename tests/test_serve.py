"""The scoring server (mlctl.serve) over real HTTP on 127.0.0.1, as a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BATCH_SCORE, ECHO_SCORE, free_port, get, post, serving, start_server, stop_servers, wait_for, write

Server = Callable[..., str]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Server]:
    """Start ``python -m mlctl.serve`` on an entry script; returns its base URL once ready."""
    started: list[subprocess.Popen[bytes]] = []

    def start(script: str, *args: str, model: str = "v1") -> str:
        folder = tmp_path / f"srv{len(started)}"
        write(folder / "model" / "model.txt", model)
        entry = write(folder / "score.py", script)
        options = ["--entry-script", str(entry), "--model-dir", str(folder / "model"), "--workers", "1"]
        options += ["--status-file", str(folder / "status.json"), *args]
        return start_server(started, options, folder / "server.log")

    yield start
    stop_servers(started)


def test_run_gets_the_raw_body_and_its_result_is_json(serve: Server) -> None:
    base = serve(ECHO_SCORE)
    status, headers, body = post(base + "/score", b'{"data": [1, 2]}')
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["echo"] == {"data": [1, 2]} and json.loads(body)["model"] == "v1"


def test_probes_and_swagger(serve: Server) -> None:
    base = serve(ECHO_SCORE)
    assert get(base + "/") == (200, b"Healthy")
    assert get(base + "/healthz")[0] == 200
    assert json.loads(get(base + "/readyz")[1]) == {"status": "ready"}
    swagger = json.loads(get(base + "/swagger.json")[1])
    assert swagger["swagger"] == "2.0" and "/score" in swagger["paths"]


def test_request_id_is_echoed_or_generated(serve: Server) -> None:
    base = serve(ECHO_SCORE)
    assert post(base + "/score", b"{}", {"x-request-id": "abc-123"})[1]["x-request-id"] == "abc-123"
    generated = post(base + "/score", b"{}")[1]["x-request-id"]
    assert len(generated) == 36 and generated.count("-") == 4
    assert post(base + "/score", b"{}", {"x-request-id": "x" * 101})[0] == 431


def test_run_raising_gives_500_with_azure_mls_message_and_the_request_id_without_traceback(serve: Server) -> None:
    base = serve(ECHO_SCORE)
    status, headers, body = post(base + "/score", b'{"fail": true}', {"x-request-id": "req-9"})
    doc = json.loads(body)
    assert status == 500 and doc["request_id"] == "req-9" and headers["x-ms-run-function-failed"] == "True"
    assert doc["message"] == "An unexpected error occurred in scoring script. Check the logs for more info."
    assert "traceback" not in doc and "asked to fail" not in body.decode()
    assert post(base + "/score", b'{"x": 1}')[0] == 200  # the worker survives


def test_debug_puts_the_traceback_in_the_500_body(serve: Server) -> None:
    base = serve(ECHO_SCORE, "--debug")
    doc = json.loads(post(base + "/score", b'{"fail": true}')[2])
    assert doc["detail"] == "asked to fail" and any("ValueError" in line for line in doc["traceback"])


def test_oversize_body_gets_413_wrong_method_405_unknown_route_404(serve: Server) -> None:
    base = serve(ECHO_SCORE, "--max-request-bytes", "2048")
    assert post(base + "/score", b"{" + b" " * 4096 + b"}")[0] == 413
    assert post(base + "/score", b"{" + b" " * 1000 + b"}")[0] == 200
    request = urllib.request.Request(base + "/score", data=b"{}", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    info.value.close()
    assert info.value.code == 405
    assert get(base + "/nope")[0] == 404
    assert post(base + "/healthz", b"")[0] == 405


def test_inference_schema_decorated_run_is_called_as_azure_ml_does(serve: Server) -> None:
    base = serve("""
        import numpy as np
        from inference_schema.schema_decorators import input_schema, output_schema
        from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
        from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

        def init():
            pass

        @input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
        @input_schema("scale", StandardPythonParameterType(1.0))
        @output_schema(NumpyParameterType(np.array([3.0])))
        def run(data, scale=2.0):
            assert isinstance(data, np.ndarray)
            return (data.sum(axis=1) * scale).tolist()
        """)
    headers = {"Content-Type": "application/json"}
    status, _, body = post(base + "/score", b'{"data": [[1, 2], [3, 4]], "scale": 10}', headers)
    assert status == 200 and json.loads(body) == [30.0, 70.0]
    assert json.loads(post(base + "/score", b'{"data": [[1, 2]]}', headers)[2]) == [6.0]  # default scale
    assert post(base + "/score", b'{"scale": 1}', headers)[0] == 400
    assert post(base + "/score", b'{"data": [[1, 2]]}', {"Content-Type": "text/plain"})[0] == 415
    swagger = json.loads(get(base + "/swagger.json")[1])
    assert "data" in swagger["definitions"]["ServiceInput"]["properties"]
    openapi = json.loads(get(base + "/swagger.json?version=3.1")[1])
    assert openapi["openapi"] == "3.1.0" and "data" in openapi["components"]["schemas"]["ServiceInput"]["properties"]


def test_rawhttp_scripts_get_the_request_and_may_answer_with_aml_response(serve: Server) -> None:
    base = serve("""
        from azureml.contrib.services.aml_request import AMLRequest, rawhttp
        from azureml.contrib.services.aml_response import AMLResponse

        def init():
            pass

        @rawhttp
        def run(request):
            if request.method != "POST":
                return AMLResponse("bad method", 405)
            body = request.get_data(cache=False)
            return AMLResponse(body[::-1], 201, {"Content-Type": "image/x-test", "X-Kind": request.args.get("k")})
        """)
    status, headers, body = post(base + "/score?k=flip", b"\x00\x01\xff")
    assert (status, body, headers["content-type"], headers["x-kind"]) == (201, b"\xff\x01\x00", "image/x-test", "flip")


def test_request_headers_parameter_receives_the_headers(serve: Server) -> None:
    base = serve("""
        def init():
            pass

        def run(data, request_headers):
            return {"data": data, "tenant": request_headers.get("x-tenant")}
        """)
    doc = json.loads(post(base + "/score", b"hello", {"X-Tenant": "t1"})[2])
    assert doc == {"data": "hello", "tenant": "t1"}


def _run_to_exit(tmp_path: Path, script: str, *args: str) -> tuple[int, str]:
    entry = write(tmp_path / "score.py", script)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlctl.serve",
            "--entry-script",
            str(entry),
            "--port",
            str(free_port()),
            "--workers",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr


def test_init_raising_stops_the_server_with_exit_3_and_the_traceback(tmp_path: Path) -> None:
    code, log = _run_to_exit(
        tmp_path, "def init():\n    raise RuntimeError('no model here')\ndef run(x):\n    return x\n"
    )
    assert code == 3
    assert "RuntimeError: no model here" in log and "failed during load or init()" in log


@pytest.mark.parametrize(
    "script, message",
    [
        ("def run(x):\n    return x\n", "does not define init()"),
        ("def init():\n    pass\n", "does not define run()"),
        ("def init():\n    pass\ndef run(*args):\n    return 1\n", "cannot accept positional-only arguments, *args"),
    ],
)
def test_entry_script_without_the_contract_exits_3(tmp_path: Path, script: str, message: str) -> None:
    code, log = _run_to_exit(tmp_path, script)
    assert code == 3 and message in log


def test_port_in_use_exits_4(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        entry = write(tmp_path / "score.py", ECHO_SCORE)
        proc = subprocess.run(
            [sys.executable, "-m", "mlctl.serve", "--entry-script", str(entry), "--port", str(busy.getsockname()[1])],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 4 and "cannot listen" in proc.stderr


def test_server_imports_none_of_the_cli_dependencies() -> None:
    code = """
import sys
import mlctl.serve.__main__, mlctl.serve.app, mlctl.serve.backends.entry_script, mlctl.serve.request, uvicorn
import mlctl.serve.frontends.azureml, mlctl.serve.frontends.probes, mlctl.serve.frontends.internal
import mlctl.serve.http, mlctl.serve.worker
banned = ("typer", "rich", "docker", "kubernetes", "azure", "ruamel", "jsonschema", "platformdirs")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned)
print(",".join(loaded))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


SLOW_SCORE = """
import json, time

def init():
    pass

def run(raw_data):
    time.sleep(json.loads(raw_data).get("sleep", 0))
    return {"slept": True}
"""


def test_run_over_the_timeout_gets_500_and_the_worker_keeps_serving(serve: Server) -> None:
    base = serve(SLOW_SCORE, "--timeout-ms", "300")  # inline run(), SIGALRM timer
    status, _, body = post(base + "/score", b'{"sleep": 5}', {"x-request-id": "slow-1"})
    assert status == 500 and json.loads(body) == {"message": "Scoring timeout after 300 ms", "request_id": "slow-1"}
    assert post(base + "/score", b'{"sleep": 0}')[0] == 200


def test_thread_pool_mode_times_out_and_refuses_beyond_its_queue_with_503(serve: Server) -> None:
    import concurrent.futures

    base = serve(SLOW_SCORE, "--concurrency", "2", "--queue", "1", "--timeout-ms", "3000")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        slow = [pool.submit(post, base + "/score", b'{"sleep": 1.5}') for _ in range(3)]
        __import__("time").sleep(0.5)  # two running, one queued: the worker is full
        status, headers, _ = post(base + "/score", b'{"sleep": 0}')
        assert (status, headers.get("retry-after")) == (503, "1")
        assert sorted(f.result()[0] for f in slow) == [200, 200, 200]
    assert post(base + "/score", b'{"sleep": 0}')[0] == 200  # capacity is back
    assert post(base + "/score", b'{"sleep": 4}')[0] == 500  # the scoring timeout, as Azure ML


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    import concurrent.futures

    entry = write(tmp_path / "score.py", SLOW_SCORE)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlctl.serve", "--entry-script", str(entry), "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: serving(base), 30)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(post, base + "/score", b'{"sleep": 1}')
            __import__("time").sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            assert in_flight.result()[0] == 200
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_metrics_sum_every_worker_and_the_access_log_has_request_ids(serve: Server, tmp_path: Path) -> None:
    base = serve(
        "import os\ndef init():\n    pass\ndef run(raw):\n    return os.getpid()\n", "--workers", "2", "--access-log"
    )
    pids = set()
    for i in range(40):
        status, _, body = post(base + "/score", b"{}", {"x-request-id": f"m-{i}"})
        assert status == 200
        pids.add(json.loads(body))
    assert len(pids) == 2  # both workers answered: the counts below are their sum
    post(base + "/score", b"{}", {"Content-Type": "application/json", "x-request-id": "x" * 101})
    metrics = get(base + "/metrics")[1].decode()
    assert 'mlctl_requests_total{route="/score",status="200"} 40' in metrics
    assert 'mlctl_requests_total{route="/score",status="431"} 1' in metrics
    assert 'mlctl_request_duration_seconds_count{route="/score",status="200"} 40' in metrics
    assert metrics.count("mlctl_init_duration_seconds{worker=") == 2

    def logged() -> dict[str, dict[str, object]]:
        text = (tmp_path / "srv0" / "server.log").read_text()
        return {doc["request_id"]: doc for doc in (json.loads(line) for line in text.splitlines() if line[:1] == "{")}

    assert wait_for(lambda: "m-7" in logged(), 5)
    line = logged()["m-7"]
    assert line["status"] == 200 and line["path"] == "/score" and line["ms"] > 0


def test_micro_batching_answers_each_request_with_its_own_result(serve: Server) -> None:
    import concurrent.futures

    base = serve(BATCH_SCORE, "--batch-size", "8", "--batch-wait-ms", "30")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: post(base + "/score", json.dumps({"x": i}).encode()), range(48)))
    results = [json.loads(body) for status, _, body in answers if status == 200]
    assert len(results) == 48 and [r["x"] for r in results] == list(range(48))
    sizes = [r["batch"] for r in results]
    assert max(sizes) > 1 and max(sizes) <= 8  # requests that waited were scored together
    lone = json.loads(post(base + "/score", b'{"x": 99}')[2])
    assert lone == {"x": 99, "batch": 1}  # alone: no waiting for company
    status, _, body = post(base + "/score", b'{"x": 1, "fail": true}')
    assert status == 500 and "scoring script" in json.loads(body)["message"]


def test_batching_without_run_batch_stops_the_server(tmp_path: Path) -> None:
    code, log = _run_to_exit(tmp_path, "def init():\n    pass\ndef run(x):\n    return x\n", "--batch-size", "4")
    assert code == 3 and "does not define run_batch" in log


def test_in_flight_gauge_counts_scoring_requests_only(serve: Server) -> None:
    """The gauge the kubernetes target's concurrency autoscaling reads: a scrape or a probe is not load."""
    import concurrent.futures
    import re

    base = serve(SLOW_SCORE, "--concurrency", "2")

    def in_flight() -> float:
        found = re.search(r"^mlctl_requests_in_flight (\S+)$", get(base + "/metrics")[1].decode(), re.M)
        assert found is not None
        return float(found.group(1))

    assert get(base + "/readyz")[0] == 200 and in_flight() == 0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(post, base + "/score", b'{"sleep": 1.5}') for _ in range(2)]
        assert wait_for(lambda: in_flight() == 2, 1.2)
        assert [f.result()[0] for f in slow] == [200, 200]
    assert in_flight() == 0
