"""The no-code ONNX back-end's /score answers and errors, in process on real ONNX Runtime sessions.

``call_body`` (the fast path) writes the answer's JSON itself and runs the compiled session
directly; these tests hold it to what the plain path gives: ``json.dumps`` of ``call``'s value
(the front-end's encoding), the same ``BadInput`` messages, the same errors of ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlctl.serve.answers import JSONText, to_json
from mlctl.serve.backends.entry_script import BadInput
from mlctl.serve.backends.onnx import OnnxModel
from mlctl.serve.request import Request


def graph(
    path: Path,
    nodes: list[Any],
    inputs: dict[str, tuple[int, list[Any]]],
    outputs: dict[str, int],
    initializers: tuple[Any, ...] = (),
) -> Path:
    """Save a graph of ``nodes`` (inputs: name -> (element type, shape); outputs: name -> element type)."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(name, kind, shape) for name, (kind, shape) in inputs.items()],
        [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs.items()],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def loaded(path: Path) -> OnnxModel:
    model = OnnxModel(path)
    model.init()
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OnnxModel]:
    """Graphs whose outputs cover the element types and shapes /score answers."""
    from onnx import TensorProto as T
    from onnx import helper

    folder = tmp_path_factory.mktemp("onnx")
    node = helper.make_node
    return {
        # X / Y (NaN and infinities from zeros), X > Y, X as int64, float16 and uint8
        "many": loaded(
            graph(
                folder / "many.onnx",
                [
                    node("Div", ["X", "Y"], ["quotient"]),
                    node("Greater", ["X", "Y"], ["greater"]),
                    node("Cast", ["X"], ["whole"], to=T.INT64),
                    node("Cast", ["X"], ["half"], to=T.FLOAT16),
                    node("Cast", ["X"], ["unsigned"], to=T.UINT8),
                ],
                {"X": (T.FLOAT, ["batch", 2]), "Y": (T.FLOAT, ["batch", 2])},
                {"quotient": T.FLOAT, "greater": T.BOOL, "whole": T.INT64, "half": T.FLOAT16, "unsigned": T.UINT8},
            )
        ),
        # one value a row ([N, 1] -> a list of N), as converted regressors give: X @ [[1], [1], [1]]
        "column": loaded(
            graph(
                folder / "column.onnx",
                [node("MatMul", ["X", "ones"], ["total"])],
                {"X": (T.DOUBLE, ["batch", 3])},
                {"total": T.DOUBLE},
                (helper.make_tensor("ones", T.DOUBLE, [3, 1], [1.0, 1.0, 1.0]),),
            )
        ),
        "strings": loaded(  # a string output: its value is left to the front-end's json.dumps
            graph(
                folder / "strings.onnx",
                [node("Identity", ["S"], ["same"])],
                {"S": (T.STRING, [-1])},
                {"same": T.STRING},
            )
        ),
        "doubles": loaded(
            graph(
                folder / "doubles.onnx",
                [node("Div", ["X", "X"], ["ratio"])],
                {"X": (T.DOUBLE, ["batch", 2])},
                {"ratio": T.DOUBLE},
            )
        ),
    }


def _call(model: OnnxModel, body: bytes) -> Any:
    """``call``'s answer (the plain path: a POST request object)."""
    return model.call(Request("POST", "/score", b"", [], body, None, "http"))


def _expected_text(model: OnnxModel, body: bytes) -> bytes:
    """What the front-end sends for ``call``'s value: ``json.dumps`` with its numpy hook."""
    return json.dumps(_call(model, body), default=to_json).encode()


BODIES = {
    "many": [
        b'{"X": [[1, -2], [0, 0.5]], "Y": [[0, 0], [0, 2]]}',  # 1/0, -2/0, 0/0
        b'{"X": [[1e30, 3.25]], "Y": [[1e-30, 1]]}',  # float32 overflow: inf
        b'{"X": [[255, 256.75]], "Y": [[-1, 1]]}',  # casts past uint8's range
    ],
    "column": [b'{"data": [[1, 2, 3], [0.1, 0.2, 0.3]]}', b'{"X": [[1e308, 1e308, 0]]}'],
    "doubles": [b'{"data": [[1, 0], [-0.0, 2.5]]}', b'{"data": [[1e-320, 3]]}'],
}


@pytest.mark.parametrize("name, body", [(name, body) for name, bodies in BODIES.items() for body in bodies])
def test_the_fast_path_writes_the_json_text_of_the_plain_answer(
    models: dict[str, OnnxModel], name: str, body: bytes
) -> None:
    model = models[name]
    text = model.call_body(body)
    assert type(text) is JSONText
    assert bytes(text) == _expected_text(model, body)


def test_an_output_json_cannot_write_as_it_is_is_left_to_the_front_end(models: dict[str, OnnxModel]) -> None:
    value = models["strings"].call_body(b'{"data": ["a", "\\u00e9"]}')
    assert type(value) is list and value == ["a", "é"]


@pytest.mark.parametrize(
    "name, body",
    [
        ("many", b'{"X": [[1, 2]]}'),  # missing input
        ("many", b'{"X": [[1, 2]], "Y": [[1, 2]], "Z": 1}'),  # unknown input
        ("many", b'{"X": [[1, 2, 3]], "Y": [[1, 2, 3]]}'),  # fixed dimension
        ("many", b'{"data": [[1, 2]]}'),  # "data" is only for one-input graphs
        ("column", b'{"data": [1, 2, 3]}'),  # rank
        ("column", b'{"data": [[1, 2]]}'),
        ("column", b'{"data": [["a", 2, 3]]}'),  # not a number
        ("column", b'{"data": [[1, 2, 3], [1]]}'),  # ragged
        ("column", b'{"data": [[1, 2, 3]], "X": [[1, 2, 3, 4]]}'),  # the input's own name wins over data
        ("column", b"[[1, 2, 3]]"),  # not an object
        ("column", b'{"data": [[1, 2, 3]]} x'),  # not JSON
        ("column", b"\xff"),
        ("column", b"{}"),
    ],
)
def test_bad_inputs_get_the_same_bad_input_message_on_both_paths(
    models: dict[str, OnnxModel], name: str, body: bytes
) -> None:
    model = models[name]
    with pytest.raises(BadInput) as plain:
        _call(model, body)
    with pytest.raises(BadInput) as fast:
        model.call_body(body)
    assert str(fast.value) == str(plain.value)


def test_onnx_runtime_errors_are_the_sessions_own(models: dict[str, OnnxModel]) -> None:
    """Inputs that fit each input alone but not the graph fail in ONNX Runtime, as ``InferenceSession.run`` does."""
    model = models["many"]
    body = b'{"X": [[1, 2], [3, 4]], "Y": [[1, 2]]}'  # Div broadcasts [2, 2] / [1, 2]: fine
    assert json.loads(model.call_body(body))["quotient"] == [[1.0, 1.0], [3.0, 2.0]]
    body = b'{"X": [[1, 2], [3, 4]], "Y": [[1, 2], [3, 4], [5, 6]]}'
    x, y = np.array([[1, 2], [3, 4]], np.float32), np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    with pytest.raises(Exception) as direct:
        model.session.run(None, {"X": x, "Y": y})
    with pytest.raises(Exception) as fast:
        model.call_body(body)
    assert type(fast.value) is type(direct.value) and str(fast.value) == str(direct.value)


def test_infer_keeps_its_tensor_errors(models: dict[str, OnnxModel]) -> None:
    from mlctl.serve.tensors import TensorError

    model = models["many"]
    x = np.ones((1, 2), np.float32)
    assert model.infer({"X": x, "Y": x})["whole"].tolist() == [[1, 1]]
    with pytest.raises(TensorError, match="'Y' is missing"):
        model.infer({"X": x})
    with pytest.raises(TensorError, match="'Z' is not an input"):
        model.infer({"X": x, "Y": x, "Z": x})


def test_a_classifier_with_a_zipmap_answers_its_labels_and_probability_maps(tmp_path: Path) -> None:
    """skl2onnx's default for classifiers: a label tensor and a seq(map(int64, float)) of probabilities."""
    import onnxruntime
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlctl.serve import tensors

    features, labels = load_iris(return_X_y=True)
    path = tmp_path / "iris.onnx"
    fitted = LogisticRegression(max_iter=500).fit(features, labels)
    path.write_bytes(to_onnx(fitted, features[:1].astype(np.float32)).SerializeToString())
    rows = features[[0, 100]].astype(np.float32)
    label, maps = onnxruntime.InferenceSession(str(path)).run(None, {"X": rows})
    model = loaded(path)

    answer = model.call_body(json.dumps({"data": rows.tolist()}).encode())
    assert not isinstance(answer, JSONText)
    expected = {"output_label": label.tolist(), "output_probability": [{str(k): v for k, v in m.items()} for m in maps]}
    assert json.loads(json.dumps(answer, default=to_json)) == expected
    assert [spec.shape for spec in model.outputs] == [(-1,), (-1,)]

    out = model.infer({"X": rows})
    encoded = json.loads(tensors.encode_json("output_probability", out["output_probability"]))
    assert (encoded["datatype"], encoded["shape"]) == ("BYTES", [2])
    assert [json.loads(text) for text in encoded["data"]] == expected["output_probability"]
