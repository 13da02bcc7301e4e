"""``mlctl edge`` end to end: a fake IoT Hub (HTTPS, SAS), simulated IoT Edge devices running the
modules on the real Docker engine, a real OCI registry with a password, real mlctl images.

What is fake and what is real: see ``tests/edge_fakes/__init__.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, free_port, mlctl, remove_images, self_signed_certificate, write
from edge_fakes.fleet import provisioned
from edge_fakes.hub_http import RunningHub, serve
from oci_registry import run_registry

EDGE = EXAMPLES / "edge"
ROWS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]
USER = "edge"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("hub-tls"))
    with serve(cert, key) as running:
        yield running


@pytest.fixture(scope="module")
def registry_password() -> str:
    return f"canary-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory, registry_password: str) -> Iterator[str]:
    """docker-registry on 127.0.0.1 asking for USER and the canary password."""
    import bcrypt

    folder = tmp_path_factory.mktemp("edge-registry")
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(registry_password.encode(), bcrypt.gensalt()).decode()}\n")
    with run_registry(folder, htpasswd) as address:
        yield address


@pytest.fixture
def env(hub: RunningHub, oci: str, registry_password: str, tmp_path: Path, engine: Any) -> dict[str, str]:
    """The environment of mlctl runs (and of the pipeline script)."""
    devices = tmp_path / "devices"
    devices.mkdir()
    return {
        "EDGE_HUB_CONNECTION_STRING": hub.connection_string,
        "EDGE_HUB_CA": str(hub.ca_file),
        "EDGE_REGISTRY": oci,
        "EDGE_REGISTRY_USERNAME": USER,
        "EDGE_REGISTRY_PASSWORD": registry_password,
        "MLCTL_REGISTRY": oci,
        "MLCTL_REGISTRY_USERNAME": USER,
        "MLCTL_REGISTRY_PASSWORD": registry_password,
        "EDGE_DEVICES_DIR": str(devices),
        "MLCTL_BASE_IMAGE": os.environ["MLCTL_BASE_IMAGE"],
    }


@pytest.fixture(autouse=True)
def _cleanup(engine: Any, hub: RunningHub) -> Iterator[None]:
    """Images this test's pushes made and everything left on the hub are removed afterwards."""
    yield
    remove_images(engine, lambda tag: "edge-diabetes" in tag or "edge-nothing" in tag)
    with hub.state.lock:
        hub.state.devices.clear()
        hub.state.configs.clear()


def _models(tmp_path: Path, trained: Path) -> tuple[Path, list[float], Path, list[float]]:
    """The example's diabetes model and a second version (another alpha), with their predictions."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    v1 = trained / "diabetes" / "sklearn_regression_model.pkl"
    x, y = load_diabetes(return_X_y=True)
    v2 = tmp_path / "v2" / "sklearn_regression_model.pkl"
    v2.parent.mkdir()
    joblib.dump(Ridge(alpha=0.01).fit(x, y), v2)
    predict = [joblib.load(p).predict(np.array(ROWS)).tolist() for p in (v1, v2)]
    assert predict[0] != predict[1]
    return v1, predict[0], v2, predict[1]


def test_the_pipeline_script_pushes_to_a_device_and_rolls_a_fleet(
    env: dict[str, str],
    hub: RunningHub,
    engine: Any,
    trained_examples: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    registry_password: str,
) -> None:
    v1, expected_v1, v2, expected_v2 = _models(tmp_path, trained_examples)
    port = _free_block(4)
    fleet = {"edge-f1": 1, "edge-f2": 2, "edge-f3": 3}
    script_env = {
        **os.environ,
        **env,
        "MLCTL": f"{sys.executable} -m mlctl",
        "EDGE_MODEL_V1": str(v1),
        "EDGE_MODEL_V2": str(v2),
        "EDGE_EXPECTED_V1": json.dumps(expected_v1),
        "EDGE_EXPECTED_V2": json.dumps(expected_v2),
        "EDGE_DEVICE": "edge-device-1",
        "EDGE_PORT": str(port),
        "EDGE_FLEET": " ".join(f"{d}:{port + o}" for d, o in fleet.items()),
    }
    with provisioned(Path(env["EDGE_DEVICES_DIR"]), hub.ca_file, engine, fleet) as devices:
        run = subprocess.run(
            ["bash", str(EDGE / "pipeline.sh")], env=script_env, capture_output=True, text=True, timeout=900
        )
        assert run.returncode == 0, (
            run.stdout + run.stderr + _module_logs(engine) + repr({d: s.errors for d, s in devices.items()})
        )
        assert not any(s.errors for s in devices.values()), {d: s.errors for d, s in devices.items()}
        assert all(s.deleted for s in devices.values())  # each noticed its identity is gone
    lines = run.stdout.splitlines()
    assert f"{env['EDGE_REGISTRY']}/edge-diabetes:1" in lines and "running" in lines and "200" in lines
    assert "edge-diabetes:2 pushed: False" in lines  # the fleet's push pushed it
    results = [json.loads(line) for line in lines if line[:1] in "[{"]
    counts = [(r["id"], r["targeted"], r["applied"], r["reported_successful"]) for r in results if "id" in r]
    assert counts == [("diabetes-fleet-v1", 3, 3, 3), ("diabetes-canary-v1", 1, 1, 1)]
    rolled = next(r for r in results if isinstance(r, list) and r[:1] == ["diabetes-fleet-v2"])
    assert rolled[1] == ["diabetes-fleet-v1"] and rolled[2]["targeted"] == rolled[2]["applied"] == 3
    assert [["diabetes-canary-v1", 1, 1, 1], ["diabetes-fleet-v2", 3, 3, 3]] in results
    assert lines[-3:] == ["0", "0", "true"]  # no deployments, no devices, target removed
    assert not engine.containers.list(all=True, filters={"label": "edge.device"})
    secret_values = [hub.connection_string.split("SharedAccessKey=")[1], registry_password]
    _no_secret_anywhere(secret_values, run.stdout + run.stderr, [Path(os.environ["MLCTL_HOME"]), tmp_path])
    device_files = list(Path(env["EDGE_DEVICES_DIR"]).glob("*.connection-string"))  # written on purpose, 0600
    assert len(device_files) == 4 and all(f.stat().st_mode & 0o777 == 0o600 for f in device_files)
    device_keys = [f.read_text().split("SharedAccessKey=")[1].strip() for f in device_files]
    _no_secret_anywhere(device_keys, run.stdout + run.stderr, [Path(os.environ["MLCTL_HOME"])])
    for log in tmp_path_factory.getbasetemp().rglob("*.log"):  # the registry's log among them
        assert not any(secret.encode() in log.read_bytes() for secret in secret_values), log


def _free_block(size: int) -> int:
    """A port P with P .. P+size-1 free on 127.0.0.1 (the simulated devices use offsets from P)."""
    import socket

    for _ in range(50):
        base = free_port()
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no block of free ports")


def _module_logs(engine: Any) -> str:
    """The last log lines of every simulated module container (for failure messages)."""
    containers = engine.containers.list(all=True, filters={"label": "edge.device"})
    return "".join(f"\n--- {c.name} ({c.status}):\n{c.logs(tail=15).decode(errors='replace')}" for c in containers)


def _no_secret_anywhere(secret_values: list[str], output: str, folders: list[Path]) -> None:
    for secret in secret_values:
        assert secret not in output
        for folder in folders:
            for path in folder.rglob("*"):
                if path.is_file() and path.name != "htpasswd":
                    assert secret.encode() not in path.read_bytes(), path


def _module_spec(folder: Path, image: str, where: str = "device_id: edge-dev", file: str = "edge.yaml") -> Path:
    return write(
        folder / file,
        f"""
        apiVersion: mlctl/v1
        kind: EdgeDeployment
        name: broken
        target: hub1
        {where}
        runtime:
          registry_credentials:
            registry: {{address: "${{EDGE_REGISTRY}}", username: {USER}, password_env: EDGE_REGISTRY_PASSWORD}}
        modules:
          m:
            image: {image}
        """,
    )


def test_failures_have_their_documented_exit_codes_and_print_no_secret(
    env: dict[str, str], hub: RunningHub, engine: Any, tmp_path: Path, registry_password: str, oci: str
) -> None:
    outputs: list[str] = []

    def run(*args: str, **extra: str) -> Any:
        result = mlctl("-o", "json", *args, **{**env, **extra})
        outputs.append(result.out + result.err)
        return result

    assert run("target", "add", "hub0", "--kind", "iot-edge").code == 6  # needs a connection string source
    added = run(
        "target", "add", "hub1", "--kind", "iot-edge", "--option", "connection_string_env=EDGE_HUB_CONNECTION_STRING"
    )
    assert added.code == 0, added.err
    assert "ca_file" in run("target", "show", "hub1").json()["available_options"]
    spec = str(_module_spec(tmp_path, f"{oci}/edge-nothing:1"))
    untrusted = run("edge", "device", "list")
    assert untrusted.code == 6 and "TLS certificate is not trusted" in untrusted.err
    env = {**env, "REQUESTS_CA_BUNDLE": str(hub.ca_file)}  # the other way to trust it (the script uses ca_file)

    unknown = run("--debug", "edge", "push", "-f", spec, "--set", "device_id=edge-nope")
    assert unknown.code == 4 and "mlctl edge device create edge-nope" in unknown.err

    sent = len(hub.state.requests)
    invalid = run("edge", "push", "-f", spec, "--set", "modules.m.env={A.B: 1}")
    assert invalid.code == 3, invalid.err
    error = json.loads(invalid.err.strip().splitlines()[-1])
    assert error["message"].startswith("invalid deployment manifest")
    assert any(
        d.startswith("$.modulesContent.$edgeAgent['properties.desired'].modules.m.env") for d in error["details"]
    )
    assert len(hub.state.requests) == sent  # nothing was sent

    elsewhere = tmp_path / "not-provisioned"
    created = run("edge", "device", "create", "edge-silent", "--connection-string-file", str(elsewhere / "cs"))
    assert created.code == 0 and (elsewhere / "cs").stat().st_mode & 0o777 == 0o600
    key = (elsewhere / "cs").read_text().split("SharedAccessKey=")[1].strip()
    silent = run("edge", "push", "-f", spec, "--set", "device_id=edge-silent", "--timeout", "2")
    assert silent.code == 9 and "never reported" in silent.err
    tagged = run("edge", "device", "tag", "edge-silent", "ring=none", "zone=b")
    assert tagged.json()["tags"] == {"ring": "none", "zone": "b"}
    assert run("edge", "device", "tag", "edge-silent", "--remove", "zone").json()["tags"] == {"ring": "none"}
    assert run("edge", "device", "show", "edge-silent").json()["tags"] == {"ring": "none"}

    scale = [str(_module_spec(tmp_path, f"{oci}/edge-nothing:1", "target_condition: tags.ring='none'", "scale.yaml"))]
    queued = run("edge", "push", "-f", *scale, "--no-wait")
    assert queued.code == 0, queued.err
    assert queued.json()["deployment"] == "broken-v1" and queued.json()["waited"] is False
    shown = run("edge", "deployment", "show", "broken-v1").json()
    assert shown["targeted"] == 1 and shown["reported_successful"] == 0
    assert (
        shown["content"]["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"][
            "registryCredentials"
        ]["registry"]["password"]
        == "<redacted>"
    )
    assert run("edge", "push", "-f", *scale, "--no-wait").json()["unchanged"] is True
    assert run("edge", "deployment", "delete", "broken-v1").json() == [{"id": "broken-v1", "deleted": True}]

    devices = Path(env["EDGE_DEVICES_DIR"])
    with provisioned(devices, hub.ca_file, engine, {}) as running:
        cs = devices / "edge-wrongpw.connection-string"
        assert run("edge", "device", "create", "edge-wrongpw", "--connection-string-file", str(cs)).code == 0
        wrong = run("edge", "push", "-f", spec, "--set", "device_id=edge-wrongpw", EDGE_REGISTRY_PASSWORD="not-it")
        assert wrong.code == 7, wrong.err
        assert "Error calling Create module m" in wrong.err and "refused the deployment: 500" in wrong.err
        status = run("edge", "status", "edge-wrongpw").json()
        assert status["last_desired_status"]["code"] == 500 and status["modules"] == {}
        assert not engine.containers.list(all=True, filters={"label": "edge.device=edge-wrongpw"})
        assert not running["edge-wrongpw"].errors

    redacted = run("edge", "manifest", "-f", spec)
    assert redacted.code == 0 and "<redacted: env EDGE_REGISTRY_PASSWORD>" in redacted.out
    revealed = mlctl("-o", "json", "edge", "manifest", "-f", spec, "--reveal", **env)  # asked for: not scanned
    assert registry_password in revealed.out

    bad_key = hub.connection_string.split("SharedAccessKey=")[0] + "SharedAccessKey=" + "A" * 44
    refused = run("edge", "device", "list", EDGE_HUB_CONNECTION_STRING=bad_key)
    assert refused.code == 6 and "refused the credentials" in refused.err
    cs_file = write(tmp_path / "hub.cs", hub.connection_string)
    assert run("target", "add", "hubf", "--kind", "iot-edge", "--option", f"connection_string_file={cs_file}").code == 0
    assert run("edge", "device", "list").code == 6  # two hubs now: which one?
    listed = run("edge", "device", "list", "-t", "hubf").json()
    assert {d["device_id"] for d in listed} == {"edge-silent", "edge-wrongpw"} and "authentication" not in listed[0]
    assert run("edge", "device", "show", "-t", "hubf", "edge-nope").code == 4
    assert run("edge", "device", "delete", "-t", "hub1", "edge-nope").json()["deleted"] is False

    hub_key = hub.connection_string.split("SharedAccessKey=")[1]
    _no_secret_anywhere([hub_key, registry_password, key], "\n".join(outputs), [Path(os.environ["MLCTL_HOME"])])
