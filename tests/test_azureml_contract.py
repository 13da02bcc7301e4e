"""The differential tier: mlctl.serve against azureml-inference-server-http itself.

The same entry scripts and the same requests go over real HTTP to the reference server (its own
venv, made by ``tests/reference_server.py`` on first use) and to ``python -m mlctl.serve``; what a
client of the contract sees must be the same, except the deliberate differences listed in
docs/azureml-v1.md (normalised in ``reference_server.normalised``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, write
from reference_server import Server, exchange, pair, request, same, start, stop

PLAIN = """
import json, os, time

def init():
    print("init says hello")

def run(data):
    doc = json.loads(data)
    print("run says", doc.get("say", "nothing"))
    if doc.get("fail"):
        raise ValueError("asked to fail")
    if doc.get("sleep"):
        time.sleep(doc["sleep"])
    if doc.get("env"):
        return {k: os.environ.get(k) for k in doc["env"]}
    return {"echo": doc}
"""

RAW = """
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

@rawhttp
def run(request):
    if request.method == "OPTIONS":
        return AMLResponse("", 200, {"Allow": "GET, POST"})
    if request.method == "GET":
        return AMLResponse(dict(request.args), 200, json_str=True)
    body = request.get_data()
    kind = request.headers.get("X-Kind", "")
    if kind == "teapot":
        return AMLResponse("short and stout", 418, {"X-Extra": "a, b"})
    if kind == "broken":
        return AMLResponse("down", 503, {"x-ms-run-function-failed": "False"})
    if kind == "stream":
        return AMLResponse((str(i).encode() for i in range(5)), 200)
    return AMLResponse(body[::-1], 200, {"Content-Type": "application/octet-stream"})
"""

SCHEMA = """
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", StandardPythonParameterType([1.0, 2.0]))
@output_schema(StandardPythonParameterType({"total": 3.0}))
def run(data):
    return {"total": sum(data)}
"""


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    folder = tmp_path_factory.mktemp("plain")
    script = write(folder / "score.py", PLAIN)
    models = folder / "models"
    models.mkdir()
    env = {"AZUREML_MODEL_DIR": str(models)}
    with pair(script, (free_port(), free_port()), env=env) as servers:
        yield servers


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    script = write(tmp_path_factory.mktemp("raw") / "score.py", RAW)
    with pair(script, (free_port(), free_port())) as servers:
        yield servers


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    script = write(tmp_path_factory.mktemp("schema") / "score.py", SCHEMA)
    with pair(script, (free_port(), free_port())) as servers:
        yield servers


JSON = {"Content-Type": "application/json"}


def test_plain_json(plain: tuple[Server, Server]) -> None:
    seen = same(exchange(plain, "POST", "/score", body=b'{"a": [1, 2]}', headers=JSON))
    assert seen["status"] == 200 and seen["body"] == {"echo": {"a": [1, 2]}}


def test_plain_get_with_query(plain: tuple[Server, Server]) -> None:
    same(exchange(plain, "GET", "/score?a=1&b=[1,2]&c=x&c=y"))


# Deliberate difference: mlctl's 404 and 405 carry the request-tracking headers too.
UNROUTED = ("x-request-id", "x-ms-request-id", "x-ms-server-version")


def test_plain_options_and_unknown_method(plain: tuple[Server, Server]) -> None:
    same(exchange(plain, "OPTIONS", "/score"))
    same(exchange(plain, "PUT", "/score", body=b"{}"), ignore_headers=UNROUTED)
    same(exchange(plain, "DELETE", "/"), ignore_headers=UNROUTED)


def test_liveness_and_not_found(plain: tuple[Server, Server]) -> None:
    same(exchange(plain, "GET", "/"))
    same(exchange(plain, "HEAD", "/"))
    same(exchange(plain, "GET", "/nothing-here"), ignore_headers=UNROUTED)


def test_run_raising(plain: tuple[Server, Server]) -> None:
    seen = same(exchange(plain, "POST", "/score", body=b'{"fail": true}', headers=JSON))
    assert seen["status"] == 500 and seen["headers"]["x-ms-run-function-failed"] == ["True"]


def test_not_utf8(plain: tuple[Server, Server]) -> None:
    same(exchange(plain, "POST", "/score", body=b"\xff\xfe", headers=JSON))


def test_environment_the_script_sees(plain: tuple[Server, Server]) -> None:
    names = ["AML_APP_ROOT", "AZUREML_ENTRY_SCRIPT", "AZUREML_MODEL_DIR", "WORKER_COUNT"]
    body = json.dumps({"env": names}).encode()
    ref, ours = exchange(plain, "POST", "/score", body=body, headers=JSON)
    assert ours.status == ref.status == 200
    seen_ref, seen_ours = ref.json(), ours.json()
    seen_ref.pop("WORKER_COUNT"), seen_ours.pop("WORKER_COUNT")  # mlctl's default is 2 workers
    assert seen_ours == seen_ref
    assert seen_ours["AML_APP_ROOT"] and seen_ours["AZUREML_ENTRY_SCRIPT"].endswith("score.py")


REQUEST_ID_CASES = [
    {},
    {"x-request-id": "A-id"},
    {"x-ms-request-id": "B-id"},
    {"x-ms-client-request-id": "C-id"},
    {"x-request-id": "A-id", "x-ms-request-id": "B-id"},
    {"x-ms-request-id": "B-id", "x-ms-client-request-id": "C-id"},
    {"x-request-id": "A-id", "x-ms-client-request-id": "C-id"},
    {"x-request-id": "A-id", "x-ms-request-id": "B-id", "x-ms-client-request-id": "C-id"},
    {"x-request-id": "A" * 101},
    {"x-ms-request-id": "B" * 101},
    {"x-ms-client-request-id": "C" * 101},
    {"x-request-id": "A" * 100, "TraceId": "trace-1"},
]


@pytest.mark.parametrize("ids", REQUEST_ID_CASES, ids=lambda ids: "+".join(f"{k}:{len(v)}" for k, v in ids.items()))
def test_request_id_table(plain: tuple[Server, Server], ids: dict[str, str]) -> None:
    ref, ours = exchange(plain, "POST", "/score", body=b"{}", headers={**JSON, **ids})
    same((ref, ours))
    if not ids:  # the generated id is the same in both headers
        assert ours.header("x-request-id") == ours.header("x-ms-request-id")


def test_request_ids_on_liveness(plain: tuple[Server, Server]) -> None:
    same(exchange(plain, "GET", "/", headers={"x-ms-client-request-id": "C-id"}))


def test_server_version_header(plain: tuple[Server, Server]) -> None:
    ref, ours = exchange(plain, "GET", "/")
    assert (ref.header("x-ms-server-version") or "").startswith("azmlinfsrv/")
    assert (ours.header("x-ms-server-version") or "").startswith("mlctl/")


def test_raw_binary_body(raw: tuple[Server, Server]) -> None:
    body = bytes(range(256))
    seen = same(exchange(raw, "POST", "/score", body=body, headers={"Content-Type": "application/octet-stream"}))
    assert seen["body"] == body[::-1]


def test_raw_get_query_and_options(raw: tuple[Server, Server]) -> None:
    same(exchange(raw, "GET", "/score?x=1&y=two"))
    same(exchange(raw, "OPTIONS", "/score"))


def test_raw_response_status_and_headers(raw: tuple[Server, Server]) -> None:
    ref, ours = exchange(raw, "POST", "/score", body=b"x", headers={"X-Kind": "teapot"})
    same((ref, ours))
    assert ours.headers.get("x-extra") == ref.headers.get("x-extra")


def test_raw_5xx_forces_run_function_failed(raw: tuple[Server, Server]) -> None:
    ref, ours = exchange(raw, "POST", "/score", body=b"x", headers={"X-Kind": "broken"})
    same((ref, ours))
    assert ours.headers["x-ms-run-function-failed"] == ["True"]


def test_raw_generator_body(raw: tuple[Server, Server]) -> None:
    seen = same(exchange(raw, "POST", "/score", body=b"x", headers={"X-Kind": "stream"}))
    assert seen["body"] == b"01234"


def test_schema_good_and_bad_input(schema: tuple[Server, Server]) -> None:
    same(exchange(schema, "POST", "/score", body=b'{"data": [1.5, 2.5]}', headers=JSON))
    same(exchange(schema, "POST", "/score", body=b'{"other": 1}', headers=JSON))
    same(exchange(schema, "POST", "/score", body=b"[1, 2]", headers=JSON))
    same(exchange(schema, "POST", "/score", body=b"not json", headers=JSON))
    same(exchange(schema, "POST", "/score", body=b'{"data": [1]}', headers={"Content-Type": "text/plain"}))
    same(exchange(schema, "GET", "/score?data=[1,2]"))


@pytest.mark.parametrize(
    "version", ["", "?version=2", "?version=2.0", "?version=3", "?version=3.0", "?version=3.1", "?version=4"]
)
def test_swagger_versions(schema: tuple[Server, Server], version: str) -> None:
    ref, ours = exchange(schema, "GET", f"/swagger.json{version}")
    assert ours.status == ref.status
    if ref.status != 200:
        same((ref, ours))
        return
    want, got = ref.json(), ours.json()
    for key in ("swagger", "openapi", "info"):
        assert got.get(key) == want.get(key)
    assert sorted(got["paths"]) == sorted(want["paths"])
    schemas = ("definitions",) if "swagger" in want else ("components", "schemas")
    for name in ("ServiceInput", "ServiceOutput", "ErrorResponse"):
        assert _dig(got, *schemas, name) == _dig(want, *schemas, name), name


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc[key]
    return doc


def test_timeout(tmp_path: Path) -> None:
    script = write(tmp_path / "score.py", PLAIN)
    with pair(script, (free_port(), free_port()), env={"SCORING_TIMEOUT_MS": "300"}) as servers:
        seen = same(exchange(servers, "POST", "/score", body=b'{"sleep": 2}', headers=JSON))
    assert seen["status"] == 500 and seen["body"] == {"message": "Scoring timeout after 300 ms"}


@pytest.mark.parametrize("origins", ["https://a.example", "https://a.example, https://b.example", "*"])
def test_cors(tmp_path: Path, origins: str) -> None:
    script = write(tmp_path / "score.py", PLAIN)
    with pair(script, (free_port(), free_port()), env={"AML_CORS_ORIGINS": origins}) as servers:
        for origin in ("https://a.example", "https://b.example", "https://evil.example"):
            headers = {**JSON, "Origin": origin}
            same(exchange(servers, "POST", "/score", body=b"{}", headers=headers))
            preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            same(exchange(servers, "OPTIONS", "/score", headers=preflight))


def test_cors_off(plain: tuple[Server, Server]) -> None:
    ref, ours = exchange(plain, "POST", "/score", body=b"{}", headers={**JSON, "Origin": "https://a.example"})
    same((ref, ours))
    assert "access-control-allow-origin" not in ours.headers


def test_start_by_reference_variables(tmp_path: Path) -> None:
    """AZUREML_ENTRY_SCRIPT relative to AML_APP_ROOT, WORKER_COUNT, SERVICE_NAME: no flags but the port."""
    app = tmp_path / "app"
    write(app / "src" / "main_score.py", PLAIN)
    env = {
        "AML_APP_ROOT": str(app),
        "AZUREML_ENTRY_SCRIPT": "src/main_score.py",
        "WORKER_COUNT": "1",
        "SERVICE_NAME": "my-service",
    }

    body = json.dumps({"env": ["AML_APP_ROOT", "AZUREML_ENTRY_SCRIPT", "WORKER_COUNT"]}).encode()
    ours = _start_without_script("mlctl", app, env, tmp_path / "ours.log")
    try:
        ours_env = request(ours, "POST", "/score", body=body, headers=JSON).json()
        title = request(ours, "GET", "/swagger.json?version=3").json()["info"]["title"]
    finally:
        stop(ours)
    assert ours_env == {
        "AML_APP_ROOT": str(app),
        "AZUREML_ENTRY_SCRIPT": str(app / "src" / "main_score.py"),
        "WORKER_COUNT": "1",
    }
    assert title == "my-service"


def _start_without_script(kind: str, app: Path, env: dict[str, str], log: Path) -> Server:
    import os
    import subprocess
    import sys

    from reference_server import wait_ready

    port = free_port()
    cmd = [sys.executable, "-m", "mlctl.serve", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=app)
    server = Server(kind, port, process, log)
    wait_ready(server)
    return server


def test_script_with_syntax_error(tmp_path: Path) -> None:
    script = write(tmp_path / "score.py", "def init():\n    pass\n\ndef run(data)\n    return data\n")
    with pytest.raises(RuntimeError) as ref:
        stop(start("reference", script, free_port(), tmp_path / "ref.log"))
    with pytest.raises(RuntimeError) as ours:
        stop(start("mlctl", script, free_port(), tmp_path / "ours.log"))
    for failure in (ref.value, ours.value):
        assert f'File "{script}", line 4' in str(failure)
        assert "SyntaxError" in str(failure)


def test_rawhttp_by_the_reference_module_path(tmp_path: Path) -> None:
    """``azureml_inference_server_http.api`` imports work: the real package there, mlctl's stand-in here."""
    text = RAW.replace("azureml.contrib.services", "azureml_inference_server_http.api")
    script = write(tmp_path / "score.py", text)
    with pair(script, (free_port(), free_port())) as servers:
        body = b"\x00\x01binary\xff"
        headers = {"Content-Type": "application/octet-stream"}
        seen = same(exchange(servers, "POST", "/score", body=body, headers=headers))
        same(exchange(servers, "GET", "/score?q=1"))
    assert seen["body"] == body[::-1]


def test_prints_carry_the_request_id(tmp_path: Path) -> None:
    """mlctl only: the reference documents the prefix (its docs' print hook); 1.5.1 logs prints without it."""
    script = write(tmp_path / "score.py", PLAIN)
    server = start("mlctl", script, free_port(), tmp_path / "mlctl.log", args=("--workers", "1"))
    try:
        headers = {**JSON, "x-request-id": "log-req-1"}
        assert request(server, "POST", "/score", body=b'{"say": "hi\\nthere"}', headers=headers).status == 200
    finally:
        stop(server)
    lines = server.output().splitlines()
    assert "00000000-0000-0000-0000-000000000000,init says hello" in lines
    assert "log-req-1,run says hi" in lines and "log-req-1,there" in lines


STREAM = """
import time
from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

def items(n):
    yield "first;"
    time.sleep(1.5)
    for i in range(n):
        yield f"{i};"

def run(data):
    return AMLResponse(items(3), 200, {"Content-Type": "text/plain"})
"""


@pytest.mark.parametrize("raw", [False, True], ids=["plain-run", "rawhttp"])
def test_generator_bodies_are_streamed(tmp_path: Path, raw: bool) -> None:
    """The first item reaches the client before the generator ends, on both servers."""
    import http.client
    import time

    text = STREAM.replace("def run(data)", "@rawhttp\ndef run(data)") if raw else STREAM
    script = write(tmp_path / "score.py", text)
    with pair(script, (free_port(), free_port()), args=("--worker_count", "1")) as servers:
        for server in servers:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            started = time.monotonic()
            conn.request("POST", "/score", body=b"{}", headers=JSON)
            response = conn.getresponse()
            first = response.read1(64)
            first_s = time.monotonic() - started
            rest = response.read()
            conn.close()
            assert response.status == 200 and response.getheader("transfer-encoding") == "chunked", server.name
            assert first.startswith(b"first;") and first_s < 1.2, (server.name, first, first_s)
            assert first + rest == b"first;0;1;2;", server.name


def test_separate_health_port(tmp_path: Path) -> None:
    """SEPERATE_HEALTH_ENDPOINT=true and HEALTH_PORT: liveness answers on a second port too."""
    script = write(tmp_path / "score.py", PLAIN)
    replies = []
    for kind in ("reference", "mlctl"):
        health = free_port()
        env = {"SEPERATE_HEALTH_ENDPOINT": "true", "HEALTH_PORT": str(health)}
        server = start(
            kind, script, free_port(), tmp_path / f"{kind}.log", env=env, args=("--health_port", str(health))
        )
        try:
            replies.append(request(Server(kind, health, server.process, server.log), "GET", "/"))
        finally:
            stop(server)
    seen = same((replies[0], replies[1]))
    assert seen["status"] == 200 and seen["body"] == b"Healthy"


PRELOAD = """
import os

def init():
    with open(os.path.join(os.path.dirname(__file__), f"init-{os.environ['MARK']}.txt"), "a") as f:
        f.write(f"{os.getpid()}\\n")

def run(data):
    return {"pid": os.getpid()}
"""


@pytest.mark.parametrize("preload", ["true", "false"])
def test_worker_preload(tmp_path: Path, preload: str) -> None:
    """WORKER_PRELOAD=true: init() once, before the workers fork; else once per worker."""
    script = write(tmp_path / "score.py", PRELOAD)
    for kind in ("reference", "mlctl"):
        env = {"WORKER_PRELOAD": preload, "MARK": kind}
        server = start(kind, script, free_port(), tmp_path / f"{kind}.log", env=env, args=("--worker_count", "2"))
        try:
            assert request(server, "POST", "/score", body=b"{}").status == 200
            time.sleep(1)  # both workers finished init()
        finally:
            stop(server)
        init_pids = (tmp_path / f"init-{kind}.txt").read_text().split()
        assert len(init_pids) == (1 if preload == "true" else 2), kind
        if preload == "true":
            assert init_pids == [str(server.process.pid)], kind  # the supervisor (gunicorn's arbiter)


def test_spec_keys_reach_the_server_options() -> None:
    from mlctl.spec.records import DeploymentConfig
    from mlctl.targets import server_options

    d = DeploymentConfig(cors_origins=("https://a.example", "https://b.example"), preload=True)
    options = server_options(d, host="127.0.0.1", status_file="s", control_socket="c")
    i = options.index("--access-control-allow-origins")
    assert options[i + 1] == "https://a.example,https://b.example" and "--preload" in options
    assert "--preload" not in server_options(DeploymentConfig(), host="h", status_file="s", control_socket="c")


def test_spec_accepts_cors_origins_and_preload(tmp_path: Path) -> None:
    from mlctl.spec import load

    write(tmp_path / "score.py", PLAIN)
    write(tmp_path / "model.txt", "m")
    spec = write(
        tmp_path / "service.yaml",
        """
        apiVersion: mlctl/v1
        kind: Service
        name: cors
        model_files: [model.txt]
        inference_config:
          entry_script: score.py
          environment: current
        deployment_config:
          cors_origins: ["https://a.example", "*"]
          preload: true
        """,
    )
    deployment = load([spec])[0].deployment  # type: ignore[union-attr]
    assert deployment.cors_origins == ("https://a.example", "*") and deployment.preload


def test_start_by_reference_flags_and_service_variables(tmp_path: Path) -> None:
    """--model_dir and --access_control_allow_origins flags; SERVICE_* shape the swagger documents."""
    script = write(tmp_path / "score.py", PLAIN)
    models = tmp_path / "models"
    models.mkdir()
    args = ("--model_dir", str(models), "--access_control_allow_origins", "https://a.example")
    env = {"SERVICE_NAME": "svc", "SERVICE_VERSION": "2.5", "SERVICE_PATH_PREFIX": "api/v1/"}
    with pair(script, (free_port(), free_port()), env=env, args=args) as servers:
        body = json.dumps({"env": ["AZUREML_MODEL_DIR"]}).encode()
        seen = same(exchange(servers, "POST", "/score", body=body, headers={**JSON, "Origin": "https://a.example"}))
        assert seen["body"] == {"AZUREML_MODEL_DIR": str(models)}
        assert seen["headers"]["access-control-allow-origin"] == ["https://a.example"]
        for version in ("2", "3.1"):
            ref, ours = (r.json() for r in exchange(servers, "GET", f"/swagger.json?version={version}"))
            assert ours["info"] == ref["info"] == {**ref["info"], "title": "svc", "version": "2.5"}
            assert (
                sorted(ours["paths"]) == sorted(ref["paths"]) == ["/api/v1/", "/api/v1/score", "/api/v1/swagger.json"]
            )


@pytest.mark.parametrize("level", ["WARNING", "nonsense"])
def test_log_level_by_azureml_log_level(tmp_path: Path, level: str) -> None:
    """AZUREML_LOG_LEVEL sets the server's log level (an unknown name: INFO)."""
    script = write(tmp_path / "score.py", PLAIN)
    env = {"AZUREML_LOG_LEVEL": level}
    server = start("mlctl", script, free_port(), tmp_path / "mlctl.log", env=env, args=("--workers", "1"))
    stop(server)
    assert ("init() completed" in server.output()) == (level == "nonsense")


@pytest.mark.parametrize("version", ["2", "3", "3.1"])
def test_swagger_of_an_undecorated_script(plain: tuple[Server, Server], version: str) -> None:
    ref, ours = (r.json() for r in exchange(plain, "GET", f"/swagger.json?version={version}"))
    schemas = ("definitions",) if version == "2" else ("components", "schemas")
    assert _dig(ours, *schemas, "ServiceInput") == _dig(ref, *schemas, "ServiceInput")
    assert ours.get("openapi") == ref.get("openapi") and ours["info"] == ref["info"]


def test_swagger_describes_the_bearer_scheme_when_keys_are_required(tmp_path: Path) -> None:
    """mlctl only (a documented difference): the reference always describes it."""
    script = write(tmp_path / "score.py", SCHEMA)
    keys = write(tmp_path / "keys.json", json.dumps({"primary": "canary-key-1", "secondary": "canary-key-2"}))
    docs = {}
    for with_keys in (True, False):
        args = ("--workers", "1", *(("--keys-file", str(keys)) if with_keys else ()))
        server = start("mlctl", script, free_port(), tmp_path / f"mlctl-{with_keys}.log", args=args)
        try:
            docs[with_keys] = [request(server, "GET", f"/swagger.json?version={v}").json() for v in ("2", "3")]
        finally:
            stop(server)
    (v2, v3), (plain2, plain3) = docs[True], docs[False]
    assert v2["securityDefinitions"]["Bearer"]["name"] == "Authorization"
    assert v3["components"]["securitySchemes"]["Bearer"]["in"] == "header" and v3["security"] == [{"Bearer": []}]
    assert "securityDefinitions" not in plain2 and "securitySchemes" not in plain3["components"]


def test_swagger_files_shipped_in_the_app_root(tmp_path: Path) -> None:
    """swagger.json / swagger3.json in AML_APP_ROOT (here the working folder) are served as they are."""
    script = write(tmp_path / "score.py", PLAIN)
    write(tmp_path / "swagger.json", json.dumps({"swagger": "2.0", "info": {"title": "mine-2"}, "paths": {}}))
    write(tmp_path / "swagger3.json", json.dumps({"openapi": "3.0.3", "info": {"title": "mine-3"}, "paths": {}}))
    with pair(script, (free_port(), free_port())) as servers:
        for version, title in (("2", "mine-2"), ("3", "mine-3")):
            seen = same(exchange(servers, "GET", f"/swagger.json?version={version}"))
            assert seen["body"]["info"]["title"] == title
