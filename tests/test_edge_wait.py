"""``mlctl edge push`` waiting, beyond the pipeline script: a module that cannot run is exit 7 with
its exit code, restart count and the agent's status description; at scale, ``--min-success``, too
many failed devices (exit 7), and an update that does not apply in time (exit 9) keeping the older
versions, which the next applied version retires. Also what the device simulator does with a
module's env and create options, and ``device create``'s default file and ``--reveal``.

Real: the Docker engine, docker-registry asking for a (canary) password, the containers. Fake: the
IoT Hub and the IoT Edge runtime (``tests/edge_fakes``). No image build: the module is the tests'
base image pushed to the registry, printing its environment and sleeping. Every name on the engine starts with ``a12``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_IMAGE, Result, engine_or_skip, mlctl, self_signed_certificate, write
from edge_fakes.device import SimulatedDevice
from edge_fakes.hub_http import RunningHub, serve
from oci_registry import run_registry

from mlctl.edge import manifest

USER = "a12"
DEVICES = ("a12-d1", "a12-d2", "a12-d3")
# The module prints its environment (which must hold no secret) and sleeps.
SLEEP = ["python3", "-c", "import os, time; print(sorted(os.environ.items()), flush=True); time.sleep(600)"]


@dataclass
class World:
    hub: RunningHub
    engine: Any
    repository: str  # REGISTRY/a12-module, tag 1: the base image
    password: str  # the registry's: a canary
    folder: Path
    outputs: list[str] = field(default_factory=list)
    logs: list[bytes] = field(default_factory=list)  # of every module container, before it is removed

    def run(self, *args: str, **env: str) -> Result:
        result = mlctl("-o", "json", *args, **{"A12_REGISTRY_PASSWORD": self.password, **env})
        self.outputs.append(result.out + result.err)
        return result

    def device(self, connection_string: str) -> SimulatedDevice:
        return SimulatedDevice(connection_string, self.hub.ca_file, self.engine, prefix="a12-").start()

    def stop(self, devices: list[SimulatedDevice]) -> None:
        self.logs += [c.logs() for c in self.containers()]
        for device in devices:
            device.stop()

    def containers(self) -> list[Any]:
        found = [self.engine.containers.list(all=True, filters={"label": f"edge.device={d}"}) for d in DEVICES]
        return [c for containers in found for c in containers]

    def printed(self, container: Any) -> bytes:
        """The module's log once it printed its environment (kept for the secret checks)."""
        deadline = time.monotonic() + 30
        while b"A12_STAGE" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.logs.append(container.logs())
        return self.logs[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import bcrypt

    engine = engine_or_skip()
    folder = tmp_path_factory.mktemp("a12-edge-wait")
    password = f"canary-{secrets.token_hex(12)}"
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("a12-tls"))
    with serve(cert, key) as hub, run_registry(folder, htpasswd) as oci:
        repository = f"{oci}/a12-module"
        engine.images.get(BASE_IMAGE).tag(repository, "1")
        try:
            auth = {"username": USER, "password": password}
            pushed = list(engine.images.push(repository, tag="1", stream=True, decode=True, auth_config=auth))
            assert not [p for p in pushed if "error" in p], pushed
            engine.images.remove(f"{repository}:1", noprune=True)  # the devices pull it, with the credentials
            world = World(hub, engine, repository, password, folder)
            yield world
        finally:
            for container in world.containers():
                container.remove(force=True)
            if engine.images.list(name=repository):
                engine.images.remove(f"{repository}:1", noprune=True)


@pytest.fixture(autouse=True)
def _hub_target(world: World) -> Iterator[None]:
    """Target hub1 in this test's MLCTL_HOME; the hub emptied afterwards."""
    added = world.run(
        "target", "add", "hub1", "--kind", "iot-edge",
        "--option", "connection_string_env=A12_HUB", "--option", f"ca_file={world.hub.ca_file}",
    )  # fmt: skip
    assert added.code == 0, added.err
    yield
    with world.hub.state.lock:
        world.hub.state.devices.clear()
        world.hub.state.configs.clear()


@pytest.fixture(autouse=True)
def _hub_env(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A12_HUB", world.hub.connection_string)


def _spec(
    world: World, where: str, *, restart_policy: str = "always", entrypoint: str | None = None, credentials: bool = True
) -> Path:
    options: dict[str, Any] = {
        "Cmd": SLEEP,
        "WorkingDir": "/tmp/a12-work",
        "HostConfig": {"Binds": [f"{world.folder}:/a12-data:ro"]},
    }
    if entrypoint:
        options["Entrypoint"] = [entrypoint]
    address = world.repository.split("/")[0]
    registry = {"registry": {"address": address, "username": USER, "password_env": "A12_REGISTRY_PASSWORD"}}
    return write(
        world.folder / f"{secrets.token_hex(4)}.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: EdgeDeployment
        name: a12-wait
        target: hub1
        {where}
        runtime:
          registry_credentials: {json.dumps(registry if credentials else {})}
        modules:
          work:
            image: {world.repository}:1
            restart_policy: {restart_policy}
            env: {{A12_STAGE: edge, A12_N: 3}}
            create_options: {json.dumps(options)}
        """,
    )


def _error(result: Result) -> dict[str, Any]:
    return json.loads(result.err.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _no_secret_anywhere(world: World, secret_values: list[str]) -> None:
    text, logs = "\n".join(world.outputs), b"".join(world.logs)
    assert b"A12_STAGE" in logs  # the modules printed their environment
    for secret in secret_values:
        assert secret not in text and secret.encode() not in logs
        for path in Path(os.environ["MLCTL_HOME"]).rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_a_module_that_cannot_run_is_exit_7_with_its_exit_code_restart_count_and_description(world: World) -> None:
    created = world.run("edge", "device", "create", "a12-d1", "--reveal")
    assert created.code == 0, created.err
    doc = created.json()
    default = Path(os.environ["MLCTL_HOME"]) / "edge" / world.hub.host.replace(":", "_") / "a12-d1.connection-string"
    assert doc["connection_string_file"] == str(default) and default.stat().st_mode & 0o777 == 0o600
    assert default.read_text().strip() == doc["connection_string"] and "DeviceId=a12-d1;" in doc["connection_string"]
    assert world.run("edge", "device", "create", "a12-d1").code == 5  # it exists already
    blocked = write(world.folder / "a-file", "") / "a12-dx.connection-string"  # its folder cannot be made
    unwritable = world.run("edge", "device", "create", "a12-dx", "--connection-string-file", str(blocked))
    assert unwritable.code == 3 and "cannot write" in unwritable.err
    assert world.run("edge", "device", "show", "a12-dx").code == 4  # nothing half-done: the device is gone again
    inline = world.run(
        "target", "add", "hub9", "--kind", "iot-edge", "--option", f"connection_string={world.hub.connection_string}"
    )
    assert inline.code == 6 and "connection_string_env" in inline.err  # never a value in shell history
    device = world.device(doc["connection_string"])
    try:
        spec = _spec(world, "device_id: a12-d1")
        shown = world.run("edge", "manifest", "-f", str(spec))  # what `az iot edge set-modules --content` takes
        assert shown.code == 0, shown.err
        manifest.validate(shown.json(), layered=False)
        pushed = world.run("edge", "push", "-f", str(spec), "--timeout", "60")
        assert pushed.code == 0, pushed.err + repr(device.errors)
        assert pushed.json()["status"]["modules"]["work"]["runtime_status"] == "running"
        [container] = world.engine.containers.list(filters={"label": "edge.device=a12-d1"})
        config, host = container.attrs["Config"], container.attrs["HostConfig"]
        assert {"A12_STAGE=edge", "A12_N=3"} <= set(config["Env"]) and config["Cmd"] == SLEEP
        assert config["WorkingDir"] == "/tmp/a12-work" and host["Binds"] == [f"{world.folder}:/a12-data:ro"]
        assert host["NetworkMode"] == "host" and host["RestartPolicy"]["Name"] == "always"
        reported = world.hub.state.module_twin("a12-d1", "$edgeAgent")["properties"]["reported"]  # wire reference D.6
        agent_keys = {"schemaVersion", "version", "lastDesiredVersion", "lastDesiredStatus", "runtime", "systemModules"}
        module_keys = {"runtimeStatus", "exitCode", "restartCount", "statusDescription", "lastStartTimeUtc", "settings"}
        assert agent_keys < set(reported) and module_keys <= set(reported["modules"]["work"])
        assert b"('A12_N', '3')" in world.printed(container)

        never = _spec(world, "device_id: a12-d1", restart_policy="never", entrypoint="/a12-nope")
        failed = world.run("edge", "push", "-f", str(never), "--timeout", "60")
        assert failed.code == 7, failed.err
        error = _error(failed)
        assert error["message"] == "module work on device a12-d1 is failed: exit code 127, restarted 0 time(s)"
        assert error["phase"] == "module" and "/a12-nope" in error["details"][0]
        always = _spec(world, "device_id: a12-d1", entrypoint="/a12-nope")
        backoff = world.run("edge", "push", "-f", str(always), "--timeout", "60")
        assert backoff.code == 7 and "is backoff: exit code 127" in _error(backoff)["message"], backoff.err
        status = world.run("edge", "status", "a12-d1").json()
        work = status["modules"]["work"]
        assert work["runtime_status"] == "backoff" and work["exit_code"] == 127
        assert status["last_desired_status"]["code"] == 200  # the agent took the deployment; the module fails
        assert not device.errors
    finally:
        world.stop([device])
    assert world.run("edge", "status", "a12-nope").code == 4
    assert world.run("edge", "deployment", "show", "a12-nope").code == 4
    warned = world.run("edge", "manifest", "-f", str(_spec(world, "device_id: a12-d1", credentials=False)))
    assert warned.code == 0 and f"no registry_credentials for {world.repository.split('/')[0]}" in warned.err
    _no_secret_anywhere(world, [world.password, world.hub.connection_string.split("SharedAccessKey=")[1]])


def test_at_scale_min_success_failures_and_an_update_that_does_not_apply(world: World) -> None:
    devices = []
    for device_id in DEVICES:
        created = world.run("edge", "device", "create", device_id, "--tag", "a12fleet=yes")
        assert created.code == 0 and "connection_string" not in created.json(), created.err
        if device_id != "a12-d3":  # a3 is never provisioned: it never reports
            devices.append(world.device(Path(created.json()["connection_string_file"]).read_text()))
    try:
        spec = str(_spec(world, "target_condition: tags.a12fleet='yes'"))
        sent = len(world.hub.state.requests)
        unset = mlctl("-o", "json", "edge", "push", "-f", spec)  # no A12_REGISTRY_PASSWORD: nothing is sent
        assert unset.code == 3 and "A12_REGISTRY_PASSWORD is not set" in unset.err
        assert len(world.hub.state.requests) == sent

        first = world.run("edge", "push", "-f", spec, "--min-success", "0.6", "--timeout", "60")
        assert first.code == 0, first.err + repr([d.errors for d in devices])
        counts = first.json()["counts"]
        assert (counts["targeted"], counts["applied"], counts["reported_successful"]) == (3, 3, 2)
        assert first.json()["deployment"] == "a12-wait-v1" and first.json()["retired"] == []
        assert len([world.printed(c) for c in world.containers()]) == 2  # a12-d3 runs nothing

        late = world.run("edge", "push", "-f", spec, "--set", "modules.work.env.A12_V=2", "--timeout", "3")
        assert late.code == 9 and "did not reach 3 device(s)" in _error(late)["message"], late.err
        listed = {c["id"]: c for c in world.run("edge", "deployment", "list").json()}
        assert set(listed) == {"a12-wait-v1", "a12-wait-v2"}  # not applied in time: the older one stays
        assert listed["a12-wait-v2"]["priority"] > listed["a12-wait-v1"]["priority"]

        wrong = world.run(
            "edge", "push", "-f", spec, "--set", "modules.work.env.A12_V=3", "--min-success", "0.6",
            A12_REGISTRY_PASSWORD="not-it",
        )  # fmt: skip
        assert wrong.code == 7 and "a12-wait-v3: 2 of 3 device(s) failed" in _error(wrong)["message"], wrong.err

        last = world.run("edge", "push", "-f", spec, "--set", "modules.work.env.A12_V=4", "--min-success", "0.6")
        assert last.code == 0, last.err
        assert last.json()["deployment"] == "a12-wait-v4"
        assert last.json()["retired"] == ["a12-wait-v1", "a12-wait-v2", "a12-wait-v3"]
        assert [c["id"] for c in world.run("edge", "deployment", "list").json()] == ["a12-wait-v4"]
        assert not any(d.errors for d in devices), [d.errors for d in devices]
    finally:
        world.stop(devices)
    deleted = world.run("edge", "deployment", "delete", "--name", "a12-wait")
    assert deleted.json() == [{"id": "a12-wait-v4", "deleted": True}]
    _no_secret_anywhere(world, [world.password, world.hub.connection_string.split("SharedAccessKey=")[1]])


def test_an_at_scale_push_is_a_new_version_for_every_change_but_a_lower_priority(world: World) -> None:
    spec = str(_spec(world, "target_condition: tags.a12fleet='none'"))

    def push(*sets: str) -> dict[str, Any]:
        result = world.run("edge", "push", "-f", spec, "--no-wait", *(f"--set={s}" for s in sets))
        assert result.code == 0, result.err
        return result.json()  # type: ignore[no-any-return]

    assert push()["deployment"] == "a12-wait-v1"
    assert push()["unchanged"] is True
    assert push("labels.team=ml")["deployment"] == "a12-wait-v2"  # labels and metrics are the hub's mutable fields,
    assert push("labels.team=ml")["unchanged"] is True  # but a changed spec is still a new version
    metric = "metrics.canaries=SELECT deviceId FROM devices WHERE tags.ring='canary'"
    assert push("labels.team=ml", metric)["deployment"] == "a12-wait-v3"
    assert push("labels.team=ml", metric, "priority=5")["unchanged"] is True  # v3 has 12 already: versions only rise
    raised = push("labels.team=ml", metric, "priority=40")
    assert raised["deployment"] == "a12-wait-v4" and raised["priority"] == 40
    shown = world.run("edge", "deployment", "show", "a12-wait-v4").json()
    assert shown["labels"] == {"team": "ml", "mlctl.name": "a12-wait", "mlctl.version": "4"}
    assert shown["metrics"] == {"canaries": 0} and shown["priority"] == 40
    assert [r["id"] for r in world.run("edge", "deployment", "delete", "--name", "a12-wait").json()] == [
        f"a12-wait-v{n}" for n in range(1, 5)
    ]
