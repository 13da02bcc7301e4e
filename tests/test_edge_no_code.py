"""A no-code model as an IoT Edge module: an Image spec with no entry script (a registered ONNX file)
builds and pushes through the real Docker engine and registry, its container answers /score on the
module port, and the EdgeDeployment manifest that builds it names the pushed image; an Image spec
of a pickle with no entry script is refused with what is missing. Both no-code kinds (the ONNX file,
a registered MLflow sklearn model) run as modules on the simulated device (`edge push`), answer the
Open Inference Protocol under the module's name (real ``tritonclient``), and answer edgeHub
messages in the message process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import free_port, mlctl, post, remove_images, self_signed_certificate, wait_for, write
from mlflow_models import save_models
from oip_checks import call, check_with_spec_schemas, infer, triton_infer

NAME = "edge-onnx-nocode"
SK_NAME = "edge-sk-nocode"
REGISTRY = "127.0.0.1:5000"  # the infrastructure's registry (no password)
ROWS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
SK_ROWS = {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5], [2.5, 1, 3]]}

EDGE_SPEC = """\
apiVersion: mlctl/v1
kind: EdgeDeployment
name: onnx-nocode
target: hub1
device_id: edge-device-1
modules:
  scorer:
    build: image.yaml
"""


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sklearn and custom pyfunc models of ``mlflow_models.save_models`` (saved once)."""
    return save_models(tmp_path_factory.mktemp("mlflow-models"))


def test_a_no_code_onnx_image_runs_as_an_edge_module(trained_examples: Path, tmp_path: Path, engine: Any) -> None:
    onnx = trained_examples / "onnx" / "diabetes.onnx"
    assert mlctl("model", "register", "--name", "diabetes-onnx", "--path", str(onnx)).code == 0
    write(tmp_path / "image.yaml", f"apiVersion: mlctl/v1\nkind: Image\nname: {NAME}\nmodels: [diabetes-onnx@latest]\n")
    write(tmp_path / "edge.yaml", EDGE_SPEC)
    try:
        built = mlctl(
            "-o",
            "json",
            "image",
            "build",
            "--push",
            "-f",
            str(tmp_path / "image.yaml"),
            timeout=900,
            MLCTL_REGISTRY=REGISTRY,
        )
        assert built.code == 0, built.err
        pushed = built.json()["pushed"]
        manifest = mlctl("-o", "json", "edge", "manifest", "-f", str(tmp_path / "edge.yaml"), MLCTL_REGISTRY=REGISTRY)
        assert manifest.code == 0, manifest.err
        agent = manifest.json()["modulesContent"]["$edgeAgent"]["properties.desired"]
        assert agent["modules"]["scorer"]["settings"]["image"] == pushed
        port = free_port()
        container = engine.containers.run(pushed, detach=True, ports={"5001/tcp": ("127.0.0.1", port)})
        try:
            answer = _score(f"http://127.0.0.1:{port}/score", container)
            assert abs(answer[0] - 4952.8) < 1.0, answer
        finally:
            container.remove(force=True)
    finally:
        remove_images(engine, lambda tag: NAME in tag)


def _score(url: str, container: Any, request: Any = None) -> Any:
    """The answer of the container's /score to ``request`` (JSON; default ``{"data": ROWS}``), once it is up."""
    deadline = time.monotonic() + 120
    while True:
        try:
            status, _headers, body = post(
                url, json.dumps(request or {"data": ROWS}).encode(), {"Content-Type": "application/json"}
            )
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(container.logs().decode()[-2000:])
        time.sleep(1)


def test_an_image_spec_of_a_pickle_with_no_entry_script_says_what_is_missing(tmp_path: Path) -> None:
    write(tmp_path / "model.pkl", "not a model")
    assert mlctl("model", "register", "--name", "pickled", "--path", str(tmp_path / "model.pkl")).code == 0
    write(tmp_path / "image.yaml", "apiVersion: mlctl/v1\nkind: Image\nname: pickled\nmodels: [pickled:1]\n")
    result = mlctl("image", "build", "--dry-run", "-f", str(tmp_path / "image.yaml"))
    assert result.code == 3, result.err
    assert "no entry_script" in result.err and "one MLflow model folder" in result.err and "ONNX" in result.err
    assert "pickled:1" in result.err, result.err


def test_a_no_code_module_scores_edgehub_messages(
    trained_examples: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The server as a plain process with the IoT Edge runtime's environment (as test_edge_messages):
    the message process loads the ONNX model, not an entry script, and answers a message on amlOutput."""
    model = trained_examples / "onnx" / "diabetes.onnx"
    (body,) = _message_answers("onnx", model, {"data": ROWS}, 1, tmp_path, tmp_path_factory)[0]
    assert abs(float(str(json.loads(body)).strip("[]")) - 4952.8) < 1.0, body


def test_a_no_code_mlflow_module_scores_edgehub_messages(
    mlflow_models: tuple[Path, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """As above for the MLflow sklearn model: a message of two rows (Azure ML v2's ``input_data``, as
    /score takes) is answered with one message a prediction (a list result), the predictions /score
    of the same process gives."""
    request = {"input_data": SK_ROWS}
    bodies, scored = _message_answers("mlflow", mlflow_models[0], request, 2, tmp_path, tmp_path_factory)
    assert [json.loads(b) for b in bodies] == pytest.approx(scored), (bodies, scored)


def _message_answers(
    kind: str, model: Path, request: Any, count: int, tmp_path: Path, factory: pytest.TempPathFactory
) -> tuple[list[bytes], Any]:
    """Run ``python -m mlctl.serve --model-kind KIND --model-path MODEL`` as an IoT Edge module (a
    Mosquitto edgeHub, a workload API stand-in), route ``request`` (JSON) to amlInput; returns the
    bodies of the ``count`` messages it answers on amlOutput, and the server's own /score answer
    to the same request. Fails if the server does not exit 0 on SIGTERM or its OIP model is not
    named after the module (``IOTEDGE_MODULEID``, here ``kind``)."""
    from edge_fakes.broker import EdgeHubSide, run_broker
    from edge_fakes.workload import serve_workload

    cert, key = self_signed_certificate(factory.mktemp("edge-nocode"))
    port = free_port()
    with run_broker(cert, key) as _broker, serve_workload(tmp_path / "workload", cert.read_text()) as workload:
        side = EdgeHubSide(cert, "dev-nocode", kind, lambda: {"$version": 1})
        env = {**os.environ, **workload.module_env("dev-nocode", kind)}
        command = [sys.executable, "-m", "mlctl.serve", "--model-kind", kind, "--model-path", str(model)]
        log = tmp_path / "server.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [*command, "--port", str(port), "--workers", "1"], env=env, stdout=sink, stderr=sink
            )
        try:
            assert wait_for(lambda: bool(side.reported), timeout=60), log.read_text()  # the module is up
            side.route_in(json.dumps(request).encode(), "amlInput", **{"$.mid": "rows"})
            bodies = []
            for _ in range(count):
                output, _props, body = side.next_output(60)
                assert output == "amlOutput", (body, log.read_text())
                bodies.append(body)
            status, _, scored = post(f"http://127.0.0.1:{port}/score", json.dumps(request).encode())
            assert status == 200, scored
            # no MLCTL_MODEL_NAME here (no manifest): the runtime's IOTEDGE_MODULEID names the model
            assert call(f"http://127.0.0.1:{port}", f"/v2/models/{kind}/ready")[0] == 200
        finally:
            server.terminate()
            server.wait(30)
            side.close()
    assert server.returncode == 0, log.read_text()
    return bodies, json.loads(scored)


def test_a_no_code_module_runs_on_a_simulated_device(trained_examples: Path, tmp_path: Path, engine: Any) -> None:
    """`mlctl edge push` of a module whose Image spec has no entry script: built, pushed, pulled and
    run by the device simulator (tests/edge_fakes), and it answers /score on its host port."""
    onnx = trained_examples / "onnx" / "diabetes.onnx"
    assert mlctl("model", "register", "--name", "diabetes-onnx", "--path", str(onnx)).code == 0
    with _pushed_module(tmp_path, engine, "diabetes-onnx", NAME) as base:
        answer = _score(f"{base}/score", engine.containers.get("edge-device-1-scorer"))
        assert abs(answer[0] - 4952.8) < 1.0, answer
        metadata = check_with_spec_schemas(base, "scorer")  # the module's name, as the MLflow case below
        assert metadata["platform"] == "onnxruntime_onnx" and metadata["name"] == "scorer", metadata
        (output,) = [o["name"] for o in metadata["outputs"]]
        rows = np.array(ROWS, dtype=np.float32)
        out = triton_infer(base, "scorer", {metadata["inputs"][0]["name"]: rows}, [output])
        assert abs(out[output].ravel()[0] - answer[0]) < 1e-3, out


def test_a_registered_mlflow_model_runs_as_a_module_on_a_simulated_device(
    mlflow_models: tuple[Path, Path], tmp_path: Path, engine: Any
) -> None:
    """As above for the MLflow sklearn model (registered; the image's environment is its own
    requirements.txt, the layer the ACI, docker and kubernetes tests build): /score and MLflow's
    /invocations answer, and the Open Inference Protocol's metadata."""
    assert mlctl("model", "register", "--name", "sk-model", "--path", str(mlflow_models[0])).code == 0
    with _pushed_module(tmp_path, engine, "sk-model", SK_NAME) as base:
        container = engine.containers.get("edge-device-1-scorer")
        scored = _score(f"{base}/score", container, {"input_data": SK_ROWS})
        assert len(scored) == 2 and all(isinstance(v, float) for v in scored), scored
        body = json.dumps({"dataframe_split": SK_ROWS}).encode()
        status, _, reply = post(f"{base}/invocations", body, {"Content-Type": "application/json"})
        assert status == 200 and json.loads(reply) == {"predictions": scored}, reply
        _check_oip_as_module(base, scored)


def _check_oip_as_module(base: str, scored: list[float]) -> None:
    """The Open Inference Protocol under the module's name (``scorer``, the runtime's
    ``IOTEDGE_MODULEID``), not the server's default ``model``: metadata, readiness and inference
    by hand (schema-checked) and through ``tritonclient``, answering as /score does."""
    metadata = check_with_spec_schemas(base, "scorer")
    assert metadata["name"] == "scorer" and metadata["platform"] == "mlflow", metadata
    assert [t["name"] for t in metadata["inputs"]] == ["x0", "x1", "x2"]
    assert call(base, "/v2/models/model")[0] == 404
    columns = {f"x{i}": np.array([[row[i]] for row in SK_ROWS["data"]], dtype=np.float64) for i in range(3)}
    out = triton_infer(base, "scorer", columns, ["predictions"])
    assert np.allclose(out["predictions"].ravel(), scored), (out, scored)
    tensors = [
        {"name": k, "shape": list(v.shape), "datatype": "FP64", "data": v.ravel().tolist()} for k, v in columns.items()
    ]
    status, body = infer(base, "scorer", tensors, id="edge-1")
    assert status == 200 and body["model_name"] == "scorer" and body["id"] == "edge-1", body
    assert np.allclose(body["outputs"][0]["data"], scored), body


@contextmanager
def _pushed_module(tmp_path: Path, engine: Any, model: str, image: str) -> Iterator[str]:
    """`mlctl edge push` of module ``scorer`` built from an Image spec ``image`` of ``model``'s latest
    version (no entry script) onto a simulated device (a fake hub, a registry, the device simulator
    running its containers on ``engine``); yields the module's base URL (its port 5001 on the host).
    The image is removed afterwards."""
    from edge_fakes.device import SimulatedDevice
    from edge_fakes.hub_http import serve
    from oci_registry import run_registry

    write(tmp_path / "image.yaml", f"apiVersion: mlctl/v1\nkind: Image\nname: {image}\nmodels: [{model}@latest]\n")
    (tmp_path / "tls").mkdir()
    (tmp_path / "registry").mkdir()
    cert, key = self_signed_certificate(tmp_path / "tls")
    port = free_port()
    with serve(cert, key) as hub, run_registry(tmp_path / "registry") as oci:
        env = {"EDGENC_HUB": hub.connection_string, "MLCTL_REGISTRY": oci}
        options = ["--option", "connection_string_env=EDGENC_HUB", "--option", f"ca_file={hub.ca_file}"]
        assert mlctl("target", "add", "hub1", "--kind", "iot-edge", *options, **env).code == 0
        cs_file = tmp_path / "device.connection-string"
        created = mlctl("edge", "device", "create", "edge-device-1", "--connection-string-file", str(cs_file), **env)
        assert created.code == 0, created.err
        device = SimulatedDevice(cs_file.read_text(), hub.ca_file, engine, prefix="").start()
        try:
            bindings = f'{{HostConfig: {{PortBindings: {{5001/tcp: [{{HostPort: "{port}"}}]}}}}}}'
            spec = EDGE_SPEC + f"    create_options: {bindings}\n"
            write(tmp_path / "edge.yaml", spec)
            pushed = mlctl("edge", "push", "-f", str(tmp_path / "edge.yaml"), "--timeout", "300", timeout=900, **env)
            assert pushed.code == 0, pushed.err + repr(device.errors)
            yield f"http://127.0.0.1:{port}"
        finally:
            device.stop()
            remove_images(engine, lambda tag: image in tag)
