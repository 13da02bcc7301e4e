"""Azure ML SDK v1 entry scripts run unchanged: ``Model.get_model_path``, ``@rawhttp`` with flask's
(werkzeug's) request and response, CORS preflights; the scoring server as a real subprocess,
real HTTP on 127.0.0.1, and the examples in specs/examples/azureml_v1 deployed on the process target
from a model file and from a registered model."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES, free_port, get, mlctl, post, start_server, stop_servers, write

V1 = EXAMPLES / "azureml_v1"
DIABETES_ROW = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
DIABETES_PREDICTION = 4952.815189530526

Server = Callable[..., str]


@pytest.fixture
def serve_in(tmp_path: Path) -> Iterator[Server]:
    """Start ``python -m mlctl.serve`` on ``script`` with ``cwd`` as its app root (where
    ``azureml-models/`` is, as in Azure ML); returns the base URL once ready."""
    started: list[subprocess.Popen[bytes]] = []

    def start(script: str, cwd: Path, *, env: dict[str, str] | None = None) -> str:
        entry = write(cwd / "score.py", script)
        options = ["--entry-script", str(entry), "--workers", "1"]
        return start_server(started, options, cwd / f"server{len(started)}.log", cwd=cwd, env=env)

    yield start
    stop_servers(started)


# run() calls Model.get_model_path with the JSON body's arguments and answers the path, or the error.
MODEL_PATH_SCORE = """
import json, sys
from azureml.core import Model as TopLevelModel
from azureml.core.model import Model

def init():
    assert TopLevelModel is Model

def run(raw):
    args = json.loads(raw)
    try:
        return {"path": Model.get_model_path(*args)}
    except Exception as error:
        return {"error": type(error).__name__, "message": str(error), "werkzeug": "werkzeug" in sys.modules}
"""


def _ask(base: str, *args: object) -> dict[str, object]:
    status, _, body = post(base + "/score", json.dumps(list(args)).encode())
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def test_get_model_path_answers_as_azureml_core_does_in_a_web_service(serve_in: Server, tmp_path: Path) -> None:
    app = tmp_path / "app"
    for version in (1, 2, 10):  # the highest is 10, not 2: versions compare as numbers
        write(app / "azureml-models" / "ridge" / str(version) / "sklearn_regression_model.pkl", f"v{version}")
    write(app / "azureml-models" / "digits" / "1" / "model" / "weights.bin", "w")  # a folder model
    write(app / "azureml-models" / "two" / "1" / "a.pkl", "a")
    write(app / "azureml-models" / "two" / "1" / "b.pkl", "b")
    write(app / "local.pkl", "beside the script")
    base = serve_in(MODEL_PATH_SCORE, app)

    assert _ask(base, "ridge") == {"path": "azureml-models/ridge/10/sklearn_regression_model.pkl"}
    assert _ask(base, "ridge", 2) == {"path": "azureml-models/ridge/2/sklearn_regression_model.pkl"}
    assert _ask(base, "digits") == {"path": "azureml-models/digits/1/model"}
    # v1's deploy-from-model-file registered a file under its file name: that name resolves too
    assert _ask(base, "sklearn_regression_model.pkl") == {
        "path": "azureml-models/ridge/10/sklearn_regression_model.pkl"
    }
    assert _ask(base, "local.pkl") == {"path": "local.pkl"}  # ./<name>, azureml-core's fallback

    missing = _ask(base, "nothing-here")
    assert missing["error"] == "ModelNotFoundException"
    assert "nothing-here" in str(missing["message"]) and "azureml-models" in str(missing["message"])
    assert str(app) in str(missing["message"])  # and the working directory it looked in
    assert _ask(base, "ridge", "1")["error"] == "WebserviceException"  # a version must be an int
    assert "can contain only 1 file or folder" in str(_ask(base, "two")["message"])
    assert missing["werkzeug"] is False  # a plain run() never loads the @rawhttp machinery


def test_an_installed_azureml_core_wins_over_the_stand_in(serve_in: Server, tmp_path: Path) -> None:
    site = tmp_path / "site"  # a stand-in for site-packages holding the real SDK
    write(site / "azureml" / "__init__.py", "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n")
    write(site / "azureml" / "core" / "__init__.py", "")
    write(
        site / "azureml" / "core" / "model.py",
        "class Model:\n    @staticmethod\n    def get_model_path(name, version=None, _workspace=None):\n"
        "        return 'real:' + name\n",
    )
    script = MODEL_PATH_SCORE.replace("from azureml.core import Model as TopLevelModel\n", "").replace(
        "    assert TopLevelModel is Model\n",
        "    from azureml.contrib.services.aml_request import rawhttp  # still ours\n",
    )
    base = serve_in(script, tmp_path / "app", env={**os.environ, "PYTHONPATH": f"{site}"})
    assert _ask(base, "ridge") == {"path": "real:ridge"}


RAW_SCORE = """
import json
import os
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

@rawhttp
def run(request):
    if request.method == "OPTIONS":
        resp = AMLResponse("", 200)
        resp.headers["Access-Control-Allow-Origin"] = "*"
        resp.headers["Access-Control-Allow-Methods"] = "OPTIONS, POST"
        return resp
    doc = {
        "length": len(request.get_data()),  # first: as in flask, form parsing consumes the stream
        "is_aml_request": isinstance(request, AMLRequest),
        "args": request.args.getlist("k"),
        "form": request.form.to_dict(),
        "files": {k: [f.filename, f.read().decode()] for k, f in request.files.items()},
        "header": request.headers.get("X-Tenant"),
        "json": request.get_json(silent=True),
        "full_path": request.full_path,
    }
    resp = AMLResponse(doc, 207, {"X-Many": "a, b"}, json_str=True)
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers.add("X-Added", "1")
    resp.set_data(resp.get_data() + b" ")
    resp.status_code = 202
    resp.headers["X-Was-Mimetype"] = resp.mimetype  # application/json, from json_str
    resp.mimetype = "application/vnd.v1+json"
    return resp
"""


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for name, (filename, content, mimetype) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(f"{head}Content-Type: {mimetype}\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_rawhttp_run_gets_flask_request_and_answers_with_a_flask_response(serve_in: Server, tmp_path: Path) -> None:
    base = serve_in(RAW_SCORE, tmp_path / "app")
    body, content_type = _multipart({"note": "hi"}, {"image": ("cat.txt", b"meow", "text/plain")})
    status, headers, answer = post(base + "/score?k=1&k=2", body, {"Content-Type": content_type, "X-Tenant": "t1"})
    assert status == 202  # status_code assigned after construction
    assert headers["access-control-allow-origin"] == "*" and headers["x-added"] == "1"
    assert headers["x-was-mimetype"] == "application/json" and headers["content-type"] == "application/vnd.v1+json"
    assert headers["x-ms-run-function-failed"] == "False"
    doc = json.loads(answer)
    assert doc == {
        "is_aml_request": True,
        "args": ["1", "2"],
        "form": {"note": "hi"},
        "files": {"image": ["cat.txt", "meow"]},
        "header": "t1",
        "json": None,
        "length": len(body),
        "full_path": "/score?k=1&k=2",
    }
    as_json = json.loads(post(base + "/score", b'{"a": 1}', {"Content-Type": "application/json"})[2])
    assert as_json["json"] == {"a": 1} and as_json["files"] == {}


def test_options_reaches_a_rawhttp_run_for_cors_preflight(serve_in: Server, tmp_path: Path) -> None:
    base = serve_in(RAW_SCORE, tmp_path / "app")
    request = urllib.request.Request(base + "/score", method="OPTIONS", headers={"Origin": "https://example.com"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"


def _png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _v1_ports() -> list[str]:
    services = ("v1-diabetes", "v1-diabetes-schema", "v1-cors", "v1-binary")
    return [arg for s in services for arg in ("--set", f"Service/{s}:deployment_config.port={free_port()}")]


CURRENT = ["--set", "inference_config.environment=current"]  # the test interpreter: no pip install


def test_the_v1_examples_deploy_from_model_files_and_a_registered_model_and_answer(trained_examples: Path) -> None:
    applied = mlctl("-o", "json", "apply", "-f", str(V1), *CURRENT, *_v1_ports())
    assert applied.code == 0, applied.err
    uri = {s["name"]: s["scoring_uri"] for s in mlctl("-o", "json", "service", "list").json()}
    assert set(uri) == {"v1-diabetes", "v1-diabetes-schema", "v1-cors", "v1-binary"}
    for name in ("v1-diabetes", "v1-diabetes-schema", "v1-cors"):  # each spec's own expected answer
        tested = mlctl("-o", "json", "service", "test", name)
        assert tested.code == 0 and tested.json()["passed"] is True, (name, tested.out, tested.err)

    rows = json.dumps({"data": [DIABETES_ROW]}).encode()
    status, headers, body = post(uri["v1-cors"], rows, {"Origin": "https://www.example.com"})
    assert status == 200 and json.loads(body) == [pytest.approx(DIABETES_PREDICTION, abs=1e-6)]
    assert headers["access-control-allow-origin"] == "https://www.example.com"

    upload, content_type = _multipart({}, {"image": ("pixel.png", _png(640, 480), "image/png")})
    status, _, body = post(uri["v1-binary"], upload, {"Content-Type": content_type})
    assert status == 200 and json.loads(body) == {"filename": "pixel.png", "size": [640, 480]}
    assert get(uri["v1-binary"] + "?x=1")[1] == b"/score?x=1"

    swagger = json.loads(get(uri["v1-diabetes-schema"].replace("/score", "/swagger.json"))[1])
    assert swagger["paths"]["/score"]["post"]["parameters"][0]["schema"] == {"$ref": "#/definitions/ServiceInput"}
    assert "data" in swagger["definitions"]["ServiceInput"]["properties"]


def test_a_script_asking_for_the_file_name_finds_it_in_a_registered_model_too(
    trained_examples: Path, tmp_path: Path
) -> None:
    assert mlctl("model", "register", "-f", str(V1 / "registered.yaml")).code == 0  # diabetes-ridge:1
    spec = (
        (V1 / "service.yaml")
        .read_text()
        .replace("model_files:\n  - ../diabetes/sklearn_regression_model.pkl", "models:\n  - diabetes-ridge:1")
    )
    spec = spec.replace("entry_script: score.py", f"entry_script: {V1 / 'score.py'}")
    spec = spec.replace("conda_file: myenv.yml", f"conda_file: {V1 / 'myenv.yml'}")
    path = write(tmp_path / "registered-service.yaml", spec)
    port = ["--set", f"deployment_config.port={free_port()}"]
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(path), *CURRENT, *port)
    assert deployed.code == 0, deployed.err
    assert deployed.json()["models"] == ["diabetes-ridge:1"]
    tested = mlctl("-o", "json", "service", "test", "v1-diabetes")
    assert tested.code == 0 and tested.json()["passed"] is True, tested.out


@pytest.mark.slow
def test_the_v1_conda_file_builds_an_environment_without_azureml_defaults(
    trained_examples: Path, mlctl_home: Path
) -> None:
    port = ["--set", f"deployment_config.port={free_port()}"]
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(V1 / "cors.yaml"), *port)
    assert deployed.code == 0, deployed.err
    assert "not installing azureml-defaults" in deployed.err and "keep_azureml_defaults" in deployed.err
    key = deployed.json()["environment"]
    installed = {p.name.split("-")[0].lower() for p in (mlctl_home / "envs" / key).glob("lib/*/site-packages/*")}
    assert "werkzeug" in installed and "scikit_learn" in installed  # the @rawhttp runtime came along
    assert not any(name.startswith("azureml") for name in installed)
    tested = mlctl("-o", "json", "service", "test", "v1-cors")  # a @rawhttp script in its own environment
    assert tested.code == 0 and tested.json()["passed"] is True, tested.out
