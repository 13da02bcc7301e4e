"""No-code model kinds on the scoring server: ONNX files and MLflow model folders, on /score, OIP and /invocations."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import get, post, start_server, stop_servers
from mlflow_models import save_models
from oip_checks import check_with_spec_schemas, infer, openapi_infer, triton_infer


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(kind, model_path)``: ``python -m mlctl.serve`` with no entry script; returns its base URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str, model: Path, *options: str) -> str:
        args = ["--model-kind", kind, "--model-path", str(model), "--workers", "1", "--model-name", "m", *options]
        return start_server(started, args, tmp_path / f"server{len(started)}.log")

    yield start
    stop_servers(started)


def two_input_graph(path: Path) -> Path:
    """An ONNX graph ``Z = X + Y`` (FP32, shape [batch, 2]) and ``N = X > Y`` (BOOL)."""
    import onnx
    from onnx import TensorProto, helper

    def tensor(name: str, kind: int) -> Any:
        return helper.make_tensor_value_info(name, kind, ["batch", 2])

    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "Y"], ["Z"]), helper.make_node("Greater", ["X", "Y"], ["N"])],
        "add",
        [tensor("X", TensorProto.FLOAT), tensor("Y", TensorProto.FLOAT)],
        [tensor("Z", TensorProto.FLOAT), tensor("N", TensorProto.BOOL)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def regression_graph(folder: Path) -> Path:
    """A scikit-learn linear regression on 3 features, converted with skl2onnx, in ``folder``."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    model = LinearRegression().fit(x, x @ np.array([1.0, 2.0, 3.0]) + 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "regression.onnx").write_bytes(to_onnx(model, x[:1]).SerializeToString())
    return folder


def score_input_schema(base: str) -> Any:
    """The schema of ``POST /score``'s body in the service's Swagger 2.0 document (its ``$ref`` followed)."""
    doc = json.loads(get(base + "/swagger.json")[1])
    schema = doc["paths"]["/score"]["post"]["parameters"][0]["schema"]
    if "$ref" in schema:
        schema = doc["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_an_onnx_folder_serves_its_single_input_graph_on_score_and_oip(serve: Any, tmp_path: Path) -> None:
    base = serve("onnx", regression_graph(tmp_path / "model"))
    status, _, body = post(base + "/score", b'{"data": [[1, 1, 1], [2, 0, 0]]}')
    assert status == 200 and np.allclose(json.loads(body), [6.5, 2.5], atol=1e-4)
    swagger = score_input_schema(base)
    assert swagger["required"] == ["data"]
    metadata = check_with_spec_schemas(base, "m")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]
    out = triton_infer(base, "m", {"X": np.array([[1, 1, 1]], dtype=np.float32)}, ["variable"])
    assert np.allclose(out["variable"], [[6.5]], atol=1e-4)
    response = openapi_infer(base, "m", [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 1]}])
    assert np.allclose(response.outputs[0].data.__root__, [3.5], atol=1e-4)
    status, body = infer(base, "m", [{"name": "X", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}])
    assert status == 400 and "'X' has 2 at dimension 1" in body["error"]
    status, _, body = post(base + "/score", b'{"data": [1, 2, 3]}')
    assert status == 400 and b"'X' has rank 1" in body


def test_onnx_answers_are_the_same_bytes_inline_and_on_the_thread_pool(serve: Any, tmp_path: Path) -> None:
    """The no-code back-end writes its answers' JSON itself (``JSONText``); both runner modes send it."""
    model = regression_graph(tmp_path / "model")
    inline, pooled = serve("onnx", model), serve("onnx", model, "--concurrency", "2")
    for body in (b'{"data": [[1, 1, 1], [2, 0, 0]]}', b'{"X": [[1e38, 1e38, 1e38]]}', b'{"data": [1]}', b"[1"):
        first, second = post(inline + "/score", body), post(pooled + "/score", body)
        assert first[0] == second[0], (body, first, second)
        if first[0] == 200:
            assert first[2] == second[2], (body, first, second)
        else:  # errors carry each request's id
            assert json.loads(first[2])["message"] == json.loads(second[2])["message"], (body, first, second)
    status, headers, answer = post(pooled + "/score", b'{"data": [[1e38, 1e38, 1e38]]}')
    assert status == 200 and answer == b"[Infinity]" and headers["content-type"] == "application/json"


def test_an_onnx_file_with_two_inputs_takes_named_inputs(serve: Any, tmp_path: Path) -> None:
    base = serve("onnx", two_input_graph(tmp_path / "add.onnx"))
    status, _, body = post(base + "/score", b'{"X": [[1, 2]], "Y": [[3, 1]]}')
    assert status == 200 and json.loads(body) == {"Z": [[4.0, 3.0]], "N": [[False, True]]}
    status, _, body = post(base + "/score", b'{"X": [[1, 2]]}')
    assert status == 400 and b"'Y' is missing" in body
    check_with_spec_schemas(base, "m")
    x, y = np.array([[1, 2]], dtype=np.float32), np.array([[0, 5]], dtype=np.float32)
    out = triton_infer(base, "m", {"X": x, "Y": y}, ["N"])
    assert out["N"].tolist() == [[True, False]]


def test_the_server_refuses_a_folder_without_one_onnx_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "mlctl.serve", "--model-kind", "onnx", "--model-path", str(tmp_path / "empty")]
        + ["--port", "0", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and "no .onnx file" in proc.stderr


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sklearn and custom pyfunc models of ``mlflow_models.save_models``."""
    return save_models(tmp_path_factory.mktemp("mlflow-models"))


JSON = {"Content-Type": "application/json"}
MLFLOW_REQUESTS: list[tuple[str, str]] = [
    ("application/json", '{"dataframe_split": {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5], [2.5, 1, 3]]}}'),
    ("application/json", '{"dataframe_records": [{"x0": 1, "x1": 0, "x2": 5}, {"x0": 2.5, "x1": 1, "x2": 3}]}'),
    ("application/json", '{"instances": [{"x0": 1, "x1": 0, "x2": 5}]}'),
    ("application/json", '{"inputs": {"x0": [1.0], "x1": [0.0], "x2": [5.0]}}'),
    ("text/csv", "x0,x1,x2\n1,0,5\n2.5,1,3\n"),
]


def test_an_mlflow_sklearn_model_answers_mlflow_formats_on_invocations_score_and_oip(
    serve: Any, mlflow_models: tuple[Path, Path]
) -> None:

    sklearn_model, _ = mlflow_models
    base = serve("mlflow", sklearn_model)
    answers = []
    for content_type, body in MLFLOW_REQUESTS:
        status, _, reply = post(base + "/invocations", body.encode(), {"Content-Type": content_type})
        assert status == 200, (body, reply)
        answers.append(json.loads(reply)["predictions"])
    assert np.allclose(answers[0], answers[1]) and np.allclose(answers[0][:1], answers[2])
    status, _, reply = post(base + "/score", b'{"input_data": {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5]]}}')
    assert status == 200 and np.allclose(json.loads(reply), answers[0][:1])
    status, _, reply = post(
        base + "/invocations", b'{"dataframe_split": {"columns": ["x0", "x1"], "data": [[1, 0]]}}', JSON
    )
    assert status == 400 and b"x2" in reply and json.loads(reply)["error_code"] == "BAD_REQUEST"
    assert post(base + "/invocations", b'{"rows": []}', JSON)[0] == 400
    assert post(base + "/invocations", b"x", {"Content-Type": "text/plain"})[0] == 415
    assert get(base + "/ping") == (200, b"\n") and get(base + "/version")[1].startswith(b"3.")
    swagger = score_input_schema(base)
    assert swagger["properties"]["input_data"]["properties"]["columns"]["items"]["enum"] == ["x0", "x1", "x2"]
    metadata = check_with_spec_schemas(base, "m")
    assert metadata["platform"] == "mlflow"
    assert [t["name"] for t in metadata["inputs"]] == ["x0", "x1", "x2"]
    columns = {f"x{i}": np.array([[1.0], [2.5]]) for i in range(3)}
    out = triton_infer(base, "m", columns, ["predictions"])
    same = b'{"dataframe_split": {"columns": ["x0", "x1", "x2"], "data": [[1, 1, 1], [2.5, 2.5, 2.5]]}}'
    assert np.allclose(out["predictions"], json.loads(post(base + "/score", same)[2]))
    status, body = infer(base, "m", [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}])
    assert status == 400 and "x1" in body["error"]


def test_a_custom_pyfunc_model_gets_params_and_named_columns(serve: Any, mlflow_models: tuple[Path, Path]) -> None:

    _, custom = mlflow_models
    base = serve("mlflow", custom)
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}, "params": {"scale": 10}}'
    status, _, reply = post(base + "/invocations", body, JSON)
    assert status == 200 and json.loads(reply) == {"predictions": [30.0, 70.0]}
    status, _, reply = post(base + "/score", b'{"input_data": {"columns": ["a", "b"], "data": [[1, 2]]}}')
    assert status == 200 and json.loads(reply) == [3.0]
    response = openapi_infer(
        base,
        "m",
        [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 1]},
        ],
    )
    assert response.outputs[0].data.__root__ == [2.0, 3.0]
