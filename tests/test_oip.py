"""The Open Inference Protocol on entry-script services: real servers, real OIP clients, the spec's schemas."""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import start_server, stop_servers, write
from oip_checks import call, check_with_spec_schemas, infer, openapi_infer, triton_infer, validate

INFER_SCRIPT = """
import json

def init():
    pass

def run(raw_data):
    return json.loads(raw_data)

def infer(inputs):
    x = inputs["x"]
    return {"doubled": x * 2, "total": x.sum(axis=-1), "label": ["even" if v % 2 == 0 else "odd" for v in x[:, 0]]}
"""

SCHEMA_SCRIPT = """
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
    return (data.sum(axis=1) * scale).tolist()
"""

PLAIN_SCRIPT = """
def init():
    pass

def run(raw_data):
    return raw_data
"""


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    """Start ``python -m mlctl.serve`` on a script (``serve(source, *options)``); returns its base URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(source: str, *options: str) -> str:
        entry = write(tmp_path / f"score{len(started)}.py", textwrap.dedent(source))
        args = ["--entry-script", str(entry), "--workers", "1", "--model-name", "svc", *options]
        return start_server(started, args, tmp_path / f"server{len(started)}.log")

    yield start
    stop_servers(started)


def test_an_entry_script_with_infer_answers_tritonclient_and_open_inference_clients(serve) -> None:  # type: ignore[no-untyped-def]
    base = serve(INFER_SCRIPT)
    metadata = check_with_spec_schemas(base, "svc")
    assert metadata["platform"] == "mlctl_entry_script"
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    out = triton_infer(base, "svc", {"x": x}, ["doubled", "total", "label"])
    assert out["doubled"].tolist() == [[2, 4, 6], [8, 10, 12]] and out["doubled"].dtype == np.int32
    assert out["total"].tolist() == [6, 15]
    assert [v.decode() if isinstance(v, bytes) else v for v in out["label"].tolist()] == ["odd", "even"]
    response = openapi_infer(base, "svc", [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [0.5, 1.5]}])
    assert {o.name: o.data.__root__ for o in response.outputs}["total"] == [2.0]
    status, body = infer(
        base,
        "svc",
        [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2]]}],
        outputs=[{"name": "total"}],
        id="r-7",
        parameters={"p": 1},
    )
    assert status == 200 and body["id"] == "r-7" and body["parameters"] == {"p": 1}
    assert body["outputs"] == [{"name": "total", "datatype": "FP32", "shape": [1], "data": [3.0]}]
    assert call(base, "/score", {"a": 1}) == (200, {"a": 1})  # /score is unchanged beside it


def test_every_oip_datatype_round_trips_through_infer(serve) -> None:  # type: ignore[no-untyped-def]
    base = serve("""
        def init():
            pass
        def run(raw_data):
            return raw_data
        def infer(inputs):
            return dict(inputs)
        """)
    values = {"BOOL": [True, False], "BYTES": ["a", "b"], "FP16": [0.5, 1.5], "FP32": [0.5, 1.5], "FP64": [0.5, 1.5]}
    for bits in (8, 16, 32, 64):
        values[f"INT{bits}"], values[f"UINT{bits}"] = [-1, 2], [1, 2]
    inputs = [{"name": k.lower(), "shape": [2], "datatype": k, "data": v} for k, v in values.items()]
    status, body = infer(base, "svc", inputs)
    assert status == 200, body
    got = {o["name"]: (o["datatype"], o["data"]) for o in body["outputs"]}
    assert got == {k.lower(): (k, v) for k, v in values.items()}


def test_outputs_are_written_as_json_dumps_writes_their_response_output_objects() -> None:
    from mlctl.serve.tensors import encode, encode_json

    values = [
        np.array([[1.5, float("nan")], [float("inf"), -0.0]], dtype=np.float32),
        np.array([206.1165771484375, 1e-300]),
        np.arange(6, dtype=np.uint8).reshape(2, 3, 1),
        np.array([True, False]),
        np.array(["a", "é"], dtype=object),
        np.array([b"x", b"\xff"]),
        np.float64(2.5),
        [1, 2, 3],
        7,
    ]
    for name in ("out", 'naïve "name"'):
        for value in values:
            assert encode_json(name, value) == json.dumps(encode(name, value)), (name, value)


def test_a_schema_decorated_run_gets_named_inputs_and_its_metadata(serve) -> None:  # type: ignore[no-untyped-def]
    base = serve(SCHEMA_SCRIPT)
    metadata = check_with_spec_schemas(base, "svc")
    assert {t["name"]: t["shape"] for t in metadata["inputs"]} == {"data": [-1, -1], "scale": [-1]}
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert triton_infer(base, "svc", {"data": x}, ["output"])["output"].tolist() == [6.0, 14.0]
    data = {"name": "data", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}
    scale = {"name": "scale", "shape": [], "datatype": "FP64", "data": 10}
    assert infer(base, "svc", [data, scale])[1]["outputs"][0]["data"] == [30.0]
    status, body = infer(base, "svc", [{**data, "name": "nope"}])
    assert status == 400 and "'nope'" in body["error"] and "data" in body["error"]


def test_a_plain_script_says_what_it_needs_and_protocol_errors_are_400_or_404(serve) -> None:  # type: ignore[no-untyped-def]
    base = serve(PLAIN_SCRIPT)
    check_with_spec_schemas(base, "svc")
    good = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}
    status, body = infer(base, "svc", [good])
    assert status == 400 and "infer(inputs)" in body["error"] and "@input_schema" in body["error"]
    for tensor, words in [
        ({**good, "shape": [3]}, "does not fit shape"),
        ({**good, "datatype": "FP8"}, "unknown datatype"),
        ({**good, "datatype": ["FP32"]}, "unknown datatype"),
        ({"name": "x", "shape": [2], "datatype": "FP32"}, "has no 'data'"),
        ({"shape": [2], "datatype": "FP32", "data": [1, 2]}, "has no 'name'"),
        ({**good, "name": ["x"]}, "is not a string"),
        ([1, 2], "must be an object"),
    ]:
        status, body = infer(base, "svc", [tensor])
        assert status == 400 and words in body["error"], body
        validate(body, "error_response")
    assert call(base, "/v2/models/svc/infer", {"inputs": []})[0] == 400
    for outputs in (None, {}, [{}], "x"):
        status, body = call(base, "/v2/models/svc/infer", {"inputs": [good], "outputs": outputs})
        assert (status, body) == (400, {"error": "outputs must be a list of objects with a name"}), outputs
    assert call(base, "/v2/models/other/infer", {"inputs": [good]}) == (
        404,
        {"error": "model not found: /v2/models/other/infer; this service serves svc"},
    )
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    )
    binary = urllib.request.Request(  # Triton's binary extension: a JSON header, then the raw tensor bytes
        base + "/v2/models/svc/infer",
        data=header.encode() + np.array([1, 2], dtype=np.float32).tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(binary, timeout=10)
    with refused.value:
        assert refused.value.code == 400 and "binary_data=False" in json.loads(refused.value.read())["error"]
    assert call(base, "/v2/models/svc")[0] == 200 and call(base, "/v2/models/svc/versions/3/ready")[0] == 200


def test_auth_request_ids_and_metrics_apply_to_infer(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = write(tmp_path / "keys.json", json.dumps({"primary": "canary-key-1", "secondary": "canary-key-2"}))
    base = serve(INFER_SCRIPT, "--keys-file", str(keys), "--model-version", "2")
    tensor = {"name": "x", "shape": [1, 1], "datatype": "INT64", "data": [3]}
    status, body = call(base, "/v2/models/svc/versions/2/infer", {"inputs": [tensor]})
    assert status == 401
    validate(body, "error_response")
    status, body = call(
        base, "/v2/models/svc/versions/2/infer", {"inputs": [tensor]}, authorization="Bearer canary-key-2"
    )
    assert status == 200 and body["model_version"] == "2"
    assert (
        call(base, "/v2/models/svc/versions/1/infer", {"inputs": [tensor]}, authorization="Bearer canary-key-2")[0]
        == 404
    )
    metrics = call_text(base + "/metrics")
    assert 'route="/v2/models/{model}/infer",status="200"' in metrics


def call_text(url: str) -> str:
    """GET ``url``; its body as text."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())
