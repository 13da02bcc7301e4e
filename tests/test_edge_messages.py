"""edgeHub message scoring inside an IoT Edge module, for real: Mosquitto (TLS, 127.0.0.1:8883) in
edgeHub's place, the unmodified ``azure-iot-device`` module client inside an image mlctl builds,
run by the device simulator with the runtime's ``IOTEDGE_*`` environment and a workload-API
stand-in on a Unix socket; the module is pushed with ``mlctl edge push`` through the fake hub.

What is real and what is stood in: see ``tests/edge_fakes/broker.py`` and ``workload.py``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from conftest import free_port, mlctl, post, remove_images, self_signed_certificate, wait_for, write
from edge_fakes.broker import EdgeHubSide, run_broker
from edge_fakes.device import SimulatedDevice
from edge_fakes.hub import HubError
from edge_fakes.hub_http import RunningHub, serve
from edge_fakes.workload import serve_workload
from oci_registry import run_registry
from oip_checks import call, check_with_spec_schemas, infer, triton_infer

from mlctl.serve.edge_convert import merge_patch, output_bodies
from mlctl.serve.edge_messages import settings_from_env

DEVICE = "edgemsg-dev1"
MODULE = "anomaly"

# An anomaly detector in the shape of Azure's IoT Edge ML samples: it reads the SimulatedTemperatureSensor's
# messages, takes its threshold from the registered model, and the module twin's desired properties override it.
SCORE = """
import json, os

threshold = None

def init():
    global threshold
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "threshold.json")) as f:
        threshold = json.load(f)["threshold"]
    print("anomaly init", os.getpid(), flush=True)

def on_desired_properties(properties):
    global threshold
    threshold = float(properties.get("threshold", threshold))
    print("desired properties", sorted(properties), flush=True)

def run(raw_data):
    temperature = json.loads(raw_data)["machine"]["temperature"]
    return [json.dumps({"temperature": temperature, "anomaly": temperature > threshold, "threshold": threshold})]

def infer(inputs):  # Open Inference Protocol requests: a tensor of temperatures
    temperature = inputs["temperature"]
    return {"anomaly": temperature > threshold, "margin": temperature - threshold}
"""


def _message(temperature: float) -> bytes:
    """A message as SimulatedTemperatureSensor sends it on temperatureOutput."""
    return json.dumps(
        {
            "machine": {"temperature": temperature, "pressure": 1.2},
            "ambient": {"temperature": 21.0, "humidity": 25},
            "timeCreated": "2026-01-01T00:00:00Z",
        }
    ).encode()


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("edgemsg-hub"))
    with serve(cert, key) as running:
        yield running


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    write(folder / "score.py", SCORE)
    write(folder / "model" / "threshold.json", '{"threshold": 25.0}')
    write(folder / "requirements.txt", "numpy  # infer() takes the OIP request's tensors as numpy arrays\n")
    write(
        folder / "image.yaml",
        """
        apiVersion: mlctl/v1
        kind: Image
        name: edgemsg-anomaly
        models: [edgemsg-anomaly@latest]
        entry_script: score.py
        requirements: requirements.txt
        """,
    )
    return folder


def _edge_spec(folder: Path, port: int) -> Path:
    return write(
        folder / "edge.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: EdgeDeployment
        name: edgemsg
        target: hub1
        device_id: {DEVICE}
        runtime:
          routes:
            sensorUpstream: FROM /messages/modules/tempSensor/outputs/* INTO $$upstream
        modules:
          {MODULE}:
            image: edgemsg-anomaly:1
            messages:
              from: /messages/modules/tempSensor/outputs/temperatureOutput
              retry_interval_secs: 2
            desired_properties: {{threshold: 30}}
            create_options:
              HostConfig: {{PortBindings: {{5001/tcp: [{{HostPort: "{port}"}}]}}}}
        """,
    )


@pytest.fixture
def cleanup_images(engine: Any) -> Iterator[None]:
    """Images with this area's prefix are removed afterwards (the build cache stays)."""
    yield
    remove_images(engine, lambda tag: "edgemsg-" in tag)


class Module:
    """The pushed module seen from edgeHub's side: route a message in, read what comes out."""

    def __init__(self, side: EdgeHubSide) -> None:
        self.side = side
        self.counts = {"amlOutput": 0, "amlError": 0}

    def score(self, body: bytes, message_id: str, **properties: str) -> tuple[str, dict[str, str], Any]:
        self.side.route_in(body, "amlInput", **{"$.mid": message_id, **properties})
        output, props, payload = self.side.next_output(timeout=45)
        self.counts[output] += 1
        return output, props, json.loads(payload)


def test_a_temperature_message_is_scored_in_the_module_and_a_failing_one_is_answered_on_the_error_output(
    hub: RunningHub,
    project: Path,
    engine: Any,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    cleanup_images: None,
) -> None:
    outputs: list[str] = []
    env = {"EDGE_HUB": hub.connection_string, "MLCTL_BASE_IMAGE": os.environ["MLCTL_BASE_IMAGE"]}

    def run(*args: str) -> Any:
        result = mlctl("-o", "json", *args, **env)
        outputs.append(result.out + result.err)
        assert result.code == 0, result.err
        return result.json()

    cert, key = self_signed_certificate(tmp_path_factory.mktemp("edgemsg-broker"))
    port = free_port()
    spec = str(_edge_spec(project, port))
    with run_registry(tmp_path) as oci, run_broker(cert, key) as broker:
        env["MLCTL_REGISTRY"] = oci
        ca = f"ca_file={hub.ca_file}"
        run("target", "add", "hub1", "--kind", "iot-edge", "--option", "connection_string_env=EDGE_HUB", "--option", ca)
        run("model", "register", "--name", "edgemsg-anomaly", "--path", str(project / "model" / "threshold.json"))
        run("image", "build", "-f", str(project / "image.yaml"), "--push")
        manifest = run("edge", "manifest", "-f", spec)["modulesContent"]
        assert manifest["$edgeHub"]["properties.desired"]["routes"] == {
            "anomaly-input": "FROM /messages/modules/tempSensor/outputs/temperatureOutput "
            'INTO BrokeredEndpoint("/modules/anomaly/inputs/amlInput")',
            "anomaly-output": "FROM /messages/modules/anomaly/outputs/amlOutput INTO $upstream",
            "anomaly-errors": "FROM /messages/modules/anomaly/outputs/amlError INTO $upstream",
            "sensorUpstream": "FROM /messages/modules/tempSensor/outputs/* INTO $upstream",
        }
        connection = tmp_path / f"{DEVICE}.connection-string"
        run("edge", "device", "create", DEVICE, "--connection-string-file", str(connection))

        def desired() -> dict[str, Any]:
            try:
                return dict(hub.state.module_twin(DEVICE, MODULE)["properties"]["desired"])
            except HubError:
                return {}

        def upstream(patch: dict[str, Any]) -> None:  # edgeHub sends reported properties on to IoT Hub
            with hub.state.lock:
                twin = hub.state.devices[DEVICE]["modules"][MODULE]
                twin["reported"] = merge_patch(twin["reported"], patch)
                twin["reported_version"] += 1

        side = EdgeHubSide(cert, DEVICE, MODULE, desired, upstream)
        with serve_workload(tmp_path / "workload", cert.read_text()) as workload:
            device = SimulatedDevice(connection.read_text(), hub.ca_file, engine, prefix="edgemsg-", workload=workload)
            device.start()
            try:
                _exercise(run, spec, port, Module(side), broker, engine)
            finally:
                logs = _logs(engine)
                device.stop()
                side.close()
        assert not device.errors, device.errors
        _check_secrets(workload, hub, logs + broker.log.read_text(errors="replace"), outputs)


def _exercise(run: Any, spec: str, port: int, module: Module, broker: Any, engine: Any) -> None:
    pushed = run("edge", "push", "-f", spec, "--timeout", "120")
    assert pushed["status"]["modules"][MODULE]["runtime_status"] == "running"
    side = module.side
    assert wait_for(lambda: any(r["mlctl"]["desired_version"] for r in side.reported), timeout=60), side.reported

    # 27 degrees: over the model's threshold (25), under the twin's (30): the hook took it
    output, props, body = module.score(_message(27.0), "t-1", **{"$.cid": "corr-1", "sensor": "tempSensor"})
    assert (output, body) == ("amlOutput", {"temperature": 27.0, "anomaly": False, "threshold": 30.0})
    assert props["$.cid"] == "corr-1" and props["sensor"] == "tempSensor" and props["$.ct"] == "application/json"

    output, props, body = module.score(b"this is not a temperature reading", "bad-1", sensor="tempSensor")
    assert output == "amlError" and props["$.cid"] == "bad-1" and props["sensor"] == "tempSensor"
    assert body["message_id"] == "bad-1" and body["input"] == "amlInput" and "JSONDecodeError" in body["error"]
    output, _, body = module.score(json.dumps({"machine": {}}).encode(), "bad-2")
    assert output == "amlError" and "KeyError" in body["error"]

    # a new desired threshold, pushed through the hub, reaches the entry script while it serves
    run("edge", "push", "-f", spec, "--set", f"modules.{MODULE}.desired_properties.threshold=26", "--timeout", "60")
    deadline = time.monotonic() + 30
    while True:
        output, _, body = module.score(_message(27.0), "t-2")
        if body.get("threshold") == 26.0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (output, body) == ("amlOutput", {"temperature": 27.0, "anomaly": True, "threshold": 26.0})

    status, _, answer = post(f"http://127.0.0.1:{port}/score", _message(40.0))  # HTTP scoring stays on
    assert status == 200 and json.loads(json.loads(answer)[0])["anomaly"] is True
    _check_oip(f"http://127.0.0.1:{port}")

    broker.restart()  # edgeHub restarts: the module reconnects; its session (subscription) survived
    assert side.wait_connected(20)
    output, _, body = module.score(_message(24.0), "t-3")
    assert (output, body["anomaly"]) == ("amlOutput", False)

    def reported() -> dict[str, Any]:
        return dict(side.reported[-1]["mlctl"]) if side.reported else {}

    scored = module.counts["amlOutput"]  # the threshold loop above may have scored t-2 more than once
    assert wait_for(lambda: reported().get("messages_scored") == scored and reported().get("status") == "running", 30)
    status_now = reported()
    assert status_now["errors"] == module.counts["amlError"] == 2 and status_now["last_error"]["message_id"] == "bad-2"
    assert status_now["models"] == [{"name": "edgemsg-anomaly", "version": "1"}]
    assert (status_now["input"], status_now["output"], status_now["error_output"]) == (
        "amlInput",
        "amlOutput",
        "amlError",
    )
    assert status_now["desired_version"] == side.desired()["$version"]
    shown = run("edge", "status", DEVICE)["modules"][MODULE]["messages"]  # through the hub, as an operator sees it
    assert (shown["messages_scored"], shown["errors"]) == (scored, 2) and shown["status"] == "running"
    [container] = engine.containers.list(filters={"label": f"edge.device={DEVICE}"})
    logs = container.logs().decode(errors="replace")
    assert logs.count("anomaly init") == 3, logs  # two HTTP workers and the message process: once each
    assert "message bad-1 on amlInput failed: run() raised JSONDecodeError" in logs
    assert "edgeHub connection restored" in logs


def _check_oip(base: str) -> None:
    """The Open Inference Protocol beside /score, under the module's name (the runtime's
    ``IOTEDGE_MODULEID``), through ``tritonclient`` and by hand: the script's ``infer()`` answers
    with the model's threshold (25: the twin's reaches the message process only)."""
    metadata = check_with_spec_schemas(base, MODULE)
    assert metadata["name"] == MODULE and metadata["platform"] == "mlctl_entry_script", metadata
    assert call(base, "/v2/models/model/ready")[0] == 404
    out = triton_infer(base, MODULE, {"temperature": np.array([24.0, 27.5])}, ["anomaly", "margin"])
    assert out["anomaly"].tolist() == [False, True] and out["margin"].tolist() == [-1.0, 2.5], out
    status, body = infer(base, MODULE, [{"name": "temperature", "shape": [1], "datatype": "FP32", "data": [30]}])
    assert status == 200 and body["model_name"] == MODULE, body
    assert {o["name"]: o["data"] for o in body["outputs"]} == {"anomaly": [True], "margin": [5.0]}, body


def _logs(engine: Any) -> str:
    containers = engine.containers.list(all=True, filters={"label": f"edge.device={DEVICE}"})
    return "".join(f"\n--- {c.name}:\n{c.logs().decode(errors='replace')}" for c in containers)


def _check_secrets(workload: Any, hub: RunningHub, logs: str, outputs: list[str]) -> None:
    """The SDK signed the module's resource URI with the stand-in's key; no key or signature is printed."""
    resource = quote(f"{hub.host}/devices/{DEVICE}/modules/{MODULE}", safe="")
    assert workload.signed and all(m == MODULE and p.split("\n")[0] == resource for m, p in workload.signed)
    secrets = [*workload.digests, base64.b64encode(workload.key(MODULE)).decode(), hub.connection_string]
    text = logs + "\n".join(outputs)
    for secret in secrets:
        assert secret not in text and quote(secret, safe="") not in text


def test_the_message_modules_load_the_sdk_only_when_connecting() -> None:
    code = """
import sys
import mlctl.serve.__main__, mlctl.serve.edge_messages, mlctl.serve.edge_loop, mlctl.serve.edge_convert
print(",".join(sorted(m for m in sys.modules if m.startswith(("azure", "paho")))))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_the_module_settings_come_from_the_runtime_environment() -> None:
    runtime = {
        "IOTEDGE_MODULEID": "m",
        "IOTEDGE_DEVICEID": "d",
        "IOTEDGE_IOTHUBHOSTNAME": "hub.example",
        "IOTEDGE_GATEWAYHOSTNAME": "gateway",
        "IOTEDGE_MODULEGENERATIONID": "g",
        "IOTEDGE_WORKLOADURI": "unix:///var/run/iotedge/workload.sock",
        "IOTEDGE_APIVERSION": "2019-01-30",
    }
    assert settings_from_env({}) is None  # not a module: HTTP only, edge_messages never imported
    assert settings_from_env({**runtime, "IOTEDGE_WORKLOADURI": ""}) is None
    assert settings_from_env({**runtime, "MLCTL_EDGE_MESSAGES": "off"}) is None
    defaults = settings_from_env(runtime)
    assert defaults is not None and (defaults.input, defaults.output, defaults.error_output) == (
        "amlInput",
        "amlOutput",
        "amlError",
    )
    named = settings_from_env({**runtime, "MLCTL_EDGE_INPUT": "in", "MLCTL_EDGE_ERROR_OUTPUT": "bad"})
    assert named is not None and (named.input, named.output, named.error_output) == ("in", "amlOutput", "bad")


def test_a_list_result_is_one_message_per_item_and_patches_merge() -> None:
    assert output_bodies([json.dumps({"a": 1}), 151.5, {"b": [1]}]) == [b'{"a": 1}', b"151.5", b'{"b": [1]}']
    assert output_bodies({"b": 2}) == [b'{"b": 2}'] and output_bodies("text") == [b"text"]
    assert output_bodies([]) == []
    base = {"threshold": 30, "window": {"size": 5, "step": 1}, "$version": 1}
    patched = merge_patch(base, {"window": {"step": None, "size": 6}, "mode": "strict", "$version": 2})
    assert patched == {"threshold": 30, "window": {"size": 6}, "mode": "strict", "$version": 2}


def test_the_defaults_give_one_route_in_and_one_out_and_spec_routes_win(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "edge.yaml",
        """
        apiVersion: mlctl/v1
        kind: EdgeDeployment
        name: defaults
        target: hub1
        device_id: dev-1
        runtime:
          routes:
            m-errors: FROM /messages/modules/m/outputs/amlError INTO BrokeredEndpoint("/modules/alarm/inputs/in")
        modules:
          m:
            image: 127.0.0.1:5000/m:1
            messages: {}
          named:
            image: 127.0.0.1:5000/named:1
            messages:
              input: readings
              output: scores
              error_output: rejects
              to: BrokeredEndpoint("/modules/m/inputs/amlInput")
        """,
    )
    result = mlctl("-o", "json", "edge", "manifest", "-f", str(spec))
    assert result.code == 0, result.err
    content = result.json()["modulesContent"]
    leaves = "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO"
    to_m = 'BrokeredEndpoint("/modules/m/inputs/amlInput")'
    assert content["$edgeHub"]["properties.desired"]["routes"] == {
        "m-input": f"{leaves} {to_m}",
        "m-output": "FROM /messages/modules/m/outputs/amlOutput INTO $upstream",
        "m-errors": 'FROM /messages/modules/m/outputs/amlError INTO BrokeredEndpoint("/modules/alarm/inputs/in")',
        "named-input": f'{leaves} BrokeredEndpoint("/modules/named/inputs/readings")',
        "named-output": f"FROM /messages/modules/named/outputs/scores INTO {to_m}",
        "named-errors": "FROM /messages/modules/named/outputs/rejects INTO $upstream",
    }
    modules = content["$edgeAgent"]["properties.desired"]["modules"]
    assert modules["named"]["env"] == {
        "MLCTL_MODEL_NAME": {"value": "named"},  # the module's name in OIP paths
        "MLCTL_EDGE_INPUT": {"value": "readings"},
        "MLCTL_EDGE_OUTPUT": {"value": "scores"},
        "MLCTL_EDGE_ERROR_OUTPUT": {"value": "rejects"},
    }
    text = spec.read_text().replace("device_id: dev-1", "target_condition: tags.x='y'\nlayered: true\npriority: 20")
    layered = mlctl("-o", "json", "edge", "manifest", "-f", str(write(tmp_path / "layered.yaml", text)))
    assert layered.code == 0, layered.err
    hub_paths = layered.json()["modulesContent"]["$edgeHub"]
    assert (
        hub_paths["properties.desired.routes.named-output"]
        == f"FROM /messages/modules/named/outputs/scores INTO {to_m}"
    )
    assert len(hub_paths) == 6
    bad = mlctl("-o", "json", "edge", "manifest", "-f", str(spec), "--set", "modules.m.messages.input=a b")
    assert bad.code == 3 and "modules.m.messages.input" in bad.err


FRAGILE = """
import json, os, time

def init():
    print("fragile init", os.getpid(), flush=True)

def on_desired_properties(properties):
    raise RuntimeError("cannot use " + ",".join(sorted(properties)))

def run(raw_data):
    data = json.loads(raw_data)
    time.sleep(data.get("sleep", 0))
    if data.get("crash"):
        os._exit(1)
    return [sum(row) for row in data["data"]]
"""


def test_the_message_process_survives_a_failing_hook_a_slow_run_and_its_own_crash(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The server as a plain process with the runtime's environment (no container): the same SDK and broker."""

    cert, key = self_signed_certificate(tmp_path_factory.mktemp("edgemsg-local"))
    script = write(tmp_path / "score.py", FRAGILE)
    port = free_port()
    with run_broker(cert, key) as broker, serve_workload(tmp_path / "workload", cert.read_text()) as workload:
        side = EdgeHubSide(cert, "dev-local", "fragile", lambda: {"threshold": 3, "$version": 4})
        env = {
            **os.environ,
            **workload.module_env("dev-local", "fragile"),
            "MLCTL_EDGE_RETRY_S": "1",
        }
        command = [sys.executable, "-m", "mlctl.serve", "--entry-script", str(script), "--port", str(port)]
        log = tmp_path / "server.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [*command, "--workers", "1", "--timeout-ms", "1000"], env=env, stdout=sink, stderr=sink
            )
        module = Module(side)
        try:
            assert wait_for(lambda: bool(side.reported), timeout=30), log.read_text()
            assert wait_for(lambda: side.reported[-1]["mlctl"]["errors"] == 1, timeout=15)
            first = side.reported[-1]["mlctl"]
            assert first["last_error"]["error"] == "on_desired_properties() raised RuntimeError: cannot use threshold"
            assert first["desired_version"] == 4

            side.route_in(json.dumps({"data": [[1, 2], [3, 4]]}).encode(), "amlInput", **{"$.mid": "rows"})
            assert [side.next_output(30)[::2] for _ in range(2)] == [("amlOutput", b"3"), ("amlOutput", b"7")]

            output, _, body = module.score(json.dumps({"sleep": 3, "data": []}).encode(), "slow")
            assert output == "amlError" and body["error"] == "run() took longer than 1s"

            side.route_in(json.dumps({"crash": True}).encode(), "amlInput", **{"$.mid": "crash"})
            assert wait_for(lambda: "exited with 1; starting a new one" in log.read_text(), timeout=15)
            output, _, body = module.score(json.dumps({"data": [[5, 5]]}).encode(), "after")
            assert (output, body) == ("amlOutput", 10)
            status, _, answer = post(f"http://127.0.0.1:{port}/score", b'{"data": [[1, 1]]}')
            assert (status, json.loads(answer)) == (200, [2])

            broker.restart(forget_sessions=True)  # edgeHub lost the subscriptions: the module subscribes again
            assert side.wait_connected(20)
            # the client reconnects; or, when the broker went away in the middle of a write (paho's
            # network thread dies of SSLEOFError), the message process is replaced by a new one
            replaced = "the IoT SDK's thread"
            assert wait_for(
                lambda: log.read_text().count("edgeHub connection restored") == 1 or replaced in log.read_text(),
                timeout=20,
            ), log.read_text()
            replaced_after_restart = replaced in log.read_text()
            output, _, body = module.score(json.dumps({"data": [[2, 2]]}).encode(), "after-restart")
            assert (output, body) == ("amlOutput", 4)
        finally:
            server.terminate()
            server.wait(30)
            side.close()
    text = log.read_text()
    assert server.returncode == 0, text
    # the HTTP worker, the message process and its replacement (and the next one, when the broker's
    # restart killed the SDK's thread)
    assert text.count("fragile init") == (4 if replaced_after_restart else 3), text
    assert "message slow on amlInput failed: run() took longer than 1s" in text
