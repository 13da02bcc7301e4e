"""A no-code model as an IoT Edge module: an Image spec with no entry script (a registered ONNX file)
builds and pushes through the real Docker engine and registry, its container answers /score on the
module port, and the EdgeDeployment manifest that builds it names the pushed image; an Image spec
of a pickle with no entry script is refused with what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, mlctl, post, remove_images, self_signed_certificate, wait_for, write

NAME = "edge-onnx-nocode"
REGISTRY = "127.0.0.1:5000"  # the infrastructure's registry (no password)
ROWS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]

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


def _score(url: str, container: Any) -> Any:
    deadline = time.monotonic() + 120
    while True:
        try:
            status, _headers, body = post(
                url, json.dumps({"data": ROWS}).encode(), {"Content-Type": "application/json"}
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
    from edge_fakes.broker import EdgeHubSide, run_broker
    from edge_fakes.workload import serve_workload

    cert, key = self_signed_certificate(tmp_path_factory.mktemp("edge-nocode"))
    port = free_port()
    with run_broker(cert, key) as _broker, serve_workload(tmp_path / "workload", cert.read_text()) as workload:
        side = EdgeHubSide(cert, "dev-nocode", "onnx", lambda: {"$version": 1})
        env = {
            **os.environ,
            **workload.module_env("dev-nocode", "onnx"),
        }
        model = trained_examples / "onnx" / "diabetes.onnx"
        command = [sys.executable, "-m", "mlctl.serve", "--model-kind", "onnx", "--model-path", str(model)]
        log = tmp_path / "server.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [*command, "--port", str(port), "--workers", "1"], env=env, stdout=sink, stderr=sink
            )
        try:
            assert wait_for(lambda: bool(side.reported), timeout=60), log.read_text()  # the module is up
            side.route_in(json.dumps({"data": ROWS}).encode(), "amlInput", **{"$.mid": "rows"})
            output, _props, body = side.next_output(60)
            assert output == "amlOutput", (body, log.read_text())
            assert abs(float(str(json.loads(body)).strip("[]")) - 4952.8) < 1.0, body
        finally:
            server.terminate()
            server.wait(30)
            side.close()
    assert server.returncode == 0, log.read_text()


def test_a_no_code_module_runs_on_a_simulated_device(trained_examples: Path, tmp_path: Path, engine: Any) -> None:
    """`mlctl edge push` of a module whose Image spec has no entry script: built, pushed, pulled and
    run by the device simulator (tests/edge_fakes), and it answers /score on its host port."""
    from edge_fakes.device import SimulatedDevice
    from edge_fakes.hub_http import serve
    from oci_registry import run_registry

    onnx = trained_examples / "onnx" / "diabetes.onnx"
    assert mlctl("model", "register", "--name", "diabetes-onnx", "--path", str(onnx)).code == 0
    write(tmp_path / "image.yaml", f"apiVersion: mlctl/v1\nkind: Image\nname: {NAME}\nmodels: [diabetes-onnx@latest]\n")
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
            answer = _score(f"http://127.0.0.1:{port}/score", engine.containers.get("edge-device-1-scorer"))
            assert abs(answer[0] - 4952.8) < 1.0, answer
        finally:
            device.stop()
            remove_images(engine, lambda tag: NAME in tag)
