"""``mlctl edge logs`` and ``mlctl edge restart`` end to end: the fake IoT Hub (HTTPS, SAS) relays
the edgeAgent direct methods to a simulated device, which answers from a real container on the
Docker engine (its real logs; a real restart). What is fake: see ``tests/edge_fakes/__init__.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_IMAGE, Result, engine_or_skip, mlctl, self_signed_certificate, write
from edge_fakes.device import SimulatedDevice
from edge_fakes.hub import device_token
from edge_fakes.hub_http import RunningHub, serve
from oci_registry import run_registry

DEVICE = "edgelogs-dev1"
MODULE = "ticker"
# The module: a line at start, then "tick N <unix time>" every 0.2 s; exits at once on SIGTERM.
TICKER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "print('started', time.time(), flush=True)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    print('tick', n, time.time(), flush=True)\n"
    "    time.sleep(0.2)\n"
)


@dataclass
class Setup:
    hub: RunningHub
    engine: Any
    env: dict[str, str]
    home: Path
    outputs: list[str]
    device: Any = None  # the SimulatedDevice, once started

    def run(self, *args: str, **extra: str) -> Result:
        result = mlctl(*args, **{**self.env, **extra})
        self.outputs.append(result.out + result.err)
        return result

    def container(self) -> Any:
        return self.engine.containers.get(f"{DEVICE}-{MODULE}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A hub target, device DEVICE simulated and running MODULE (pushed with `mlctl edge push`)."""
    engine = engine_or_skip()
    for stale in engine.containers.list(all=True, filters={"label": f"edge.device={DEVICE}"}):  # a killed run's
        stale.remove(force=True)
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("edgelogs-tls"))
    folder = tmp_path_factory.mktemp("edgelogs")
    with serve(cert, key) as hub, run_registry(folder) as oci:
        repository = f"{oci}/edgelogs-ticker"
        engine.images.get(BASE_IMAGE).tag(repository, "1")
        try:
            pushed = list(engine.images.push(repository, tag="1", stream=True, decode=True))
            assert not [p for p in pushed if "error" in p], pushed
            home = folder / "home"
            env = {"MLCTL_HOME": str(home), "EDGELOGS_HUB": hub.connection_string}
            setup = Setup(hub, engine, env, home, [])
            added = setup.run(
                "target", "add", "hub1", "--kind", "iot-edge",
                "--option", "connection_string_env=EDGELOGS_HUB", "--option", f"ca_file={hub.ca_file}",
            )  # fmt: skip
            assert added.code == 0, added.err
            cs_file = folder / f"{DEVICE}.connection-string"
            created = setup.run("edge", "device", "create", DEVICE, "--connection-string-file", str(cs_file))
            assert created.code == 0, created.err
            setup.device = SimulatedDevice(cs_file.read_text(), hub.ca_file, engine, prefix="").start()
            try:
                spec = write(
                    folder / "edge.yaml",
                    f"""
                    apiVersion: mlctl/v1
                    kind: EdgeDeployment
                    name: edgelogs
                    target: hub1
                    device_id: {DEVICE}
                    modules:
                      {MODULE}:
                        image: {repository}:1
                        create_options: {json.dumps({"Cmd": ["python3", "-u", "-c", TICKER]})}
                    """,
                )
                pushed_module = setup.run("edge", "push", "-f", str(spec), "--timeout", "120")
                assert pushed_module.code == 0, pushed_module.err + repr(setup.device.errors)
                yield setup
            finally:
                setup.device.stop()
        finally:
            engine.images.remove(f"{repository}:1", noprune=True)


def _ticks(lines: list[str]) -> list[tuple[int, float]]:
    return [(int(p[1]), float(p[2])) for p in (line.split() for line in lines) if p[:1] == ["tick"]]


def _logs(setup: Setup, *args: str) -> list[str]:
    result = setup.run("-o", "json", "edge", "logs", DEVICE, MODULE, *args)
    assert result.code == 0, result.err
    return list(result.json()["lines"])


def _wait_for_ticks(setup: Setup, count: int) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        lines = _logs(setup)
        if len(_ticks(lines)) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_logs_show_the_module_lines_through_the_hub(setup: Setup) -> None:
    lines = _wait_for_ticks(setup, 15)
    assert lines[0].startswith("started") and len(_ticks(lines)) >= 15
    engine_lines = setup.container().logs().decode().splitlines()
    assert engine_lines[: len(lines)] == lines  # the container's own log, read on the "device"
    assert f"POST /twins/{DEVICE}/modules/%24edgeAgent/methods" in setup.hub.state.requests  # as the SDK sends it

    text = setup.run("edge", "logs", DEVICE, MODULE)  # people get the lines as they are
    assert text.code == 0, text.err
    assert text.out.splitlines()[: len(lines)] == lines and text.out.endswith("\n")

    last = _ticks(lines)[-1][0]
    tail = setup.run("-o", "json", "edge", "logs", DEVICE, MODULE, "--tail", "3")
    assert tail.code == 0, tail.err
    doc = tail.json()
    assert doc["device_id"] == DEVICE and doc["module"] == MODULE and doc["filter"] == {"tail": 3}
    numbers = [n for n, _ in _ticks(doc["lines"])]
    assert len(doc["lines"]) == 3 and numbers == list(range(numbers[0], numbers[0] + 3)) and numbers[0] > last - 3

    asked = time.time()
    recent = _ticks(_logs(setup, "--since", "2s"))
    assert recent and all(t >= asked - 2 - 1.5 for _, t in recent)  # whole seconds on the device
    assert recent[0][0] > 1 and len(recent) < len(_ticks(_logs(setup)))

    ticks = _ticks(lines)
    epoch = int(ticks[5][1]) + 2  # a whole second, 1-2 s after tick 6 (Docker stamps a line a little later)
    cut = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    since_time = _ticks(_logs(setup, "--since", cut))
    assert since_time[0][0] > ticks[5][0] and since_time[0][1] >= epoch - 0.5
    assert _logs(setup, "--since", "15m")[0].startswith("started")  # the module is younger than that
    until = _ticks(_logs(setup, "--until", cut))
    assert until and until[-1][0] >= ticks[5][0] and until[-1][1] < epoch + 0.01

    bad = setup.run("edge", "logs", DEVICE, MODULE, "--since", "yesterday")
    assert bad.code == 2 and "duration" in bad.err


def test_restart_really_restarts_the_module(setup: Setup) -> None:
    _wait_for_ticks(setup, 2)
    before = setup.container().attrs["State"]["StartedAt"]
    restarted = setup.run("-o", "json", "edge", "restart", DEVICE, MODULE)
    assert restarted.code == 0, restarted.err
    assert restarted.json() == {"device_id": DEVICE, "module": MODULE, "restarted": True}
    state = setup.container().attrs["State"]
    assert state["Running"] and state["StartedAt"] != before
    deadline = time.monotonic() + 20
    while len([x for x in _logs(setup) if x.startswith("started")]) < 2:  # it answers again, from the start
        assert time.monotonic() < deadline, _logs(setup)
        time.sleep(0.3)
    again = setup.run("edge", "restart", DEVICE, MODULE)
    assert again.code == 0 and f"restarted module {MODULE} on device {DEVICE}" in again.out


def test_an_unknown_module_is_exit_4_naming_the_modules_it_runs(setup: Setup) -> None:
    for verb in ("logs", "restart"):
        unknown = setup.run("-o", "json", "edge", verb, DEVICE, "nope")
        assert unknown.code == 4, unknown.err
        error = json.loads(unknown.err.strip().splitlines()[-1])
        assert error["error"] == "not_found" and "module nope does not run" in error["message"]
        assert f"it runs {MODULE}" in error["hint"] and unknown.out == ""
    # the regex is anchored: a prefix of the name is no match
    assert setup.run("edge", "logs", DEVICE, MODULE[:3]).code == 4
    assert setup.run("edge", "logs", "edgelogs-nodevice", MODULE).code == 4


def test_a_device_that_is_not_connected_is_exit_6_and_a_silent_one_exit_9(setup: Setup, tmp_path: Path) -> None:
    created = setup.run("edge", "device", "create", "edgelogs-off", "--connection-string-file", str(tmp_path / "off"))
    assert created.code == 0, created.err
    for verb in ("logs", "restart"):
        offline = setup.run("-o", "json", "edge", verb, "edgelogs-off", MODULE)
        assert offline.code == 6, offline.err
        error = json.loads(offline.err.strip().splitlines()[-1])
        assert "not connected" in error["message"] and "404103" in error["message"]
        assert "iotedge system status" in error["hint"]
    started = time.monotonic()
    waited = setup.run("edge", "logs", "edgelogs-off", MODULE, "--connect-timeout", "1")
    assert waited.code == 6 and time.monotonic() - started >= 1

    created = setup.run("edge", "device", "create", "edgelogs-mute", "--connection-string-file", str(tmp_path / "mute"))
    assert created.code == 0, created.err
    fields = dict(p.split("=", 1) for p in (tmp_path / "mute").read_text().strip().split(";"))
    stop = threading.Event()
    thread = threading.Thread(target=_take_and_never_answer, args=(setup.hub, fields["SharedAccessKey"], stop))
    thread.start()
    try:
        time.sleep(0.5)
        silent = setup.run("edge", "logs", "edgelogs-mute", MODULE, "--timeout", "5")
        assert silent.code == 9 and "did not answer within 5s" in silent.err, silent.err
    finally:
        stop.set()
        thread.join(10)


def _take_and_never_answer(hub: RunningHub, key: str, stop: threading.Event) -> None:
    """A connected device whose agent takes method calls and never answers."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(hub.ca_file))
    while not stop.is_set():
        request = urllib.request.Request(
            f"https://{hub.host}/_device/edgelogs-mute/methods/%24edgeAgent",
            headers={"Authorization": device_token(hub.host, "edgelogs-mute", key)},
        )
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            response.read()
        stop.wait(0.2)


def test_no_secret_is_printed_or_stored(setup: Setup) -> None:
    assert setup.run("--debug", "edge", "logs", "edgelogs-nodevice", MODULE).code == 4
    hub_key = setup.hub.connection_string.split("SharedAccessKey=")[1]
    device_keys = [
        e["device"]["authentication"]["symmetricKey"]["primaryKey"] for e in setup.hub.state.devices.values()
    ]
    assert setup.outputs and device_keys
    for secret in [hub_key, *device_keys]:
        assert not any(secret in output for output in setup.outputs)
        for path in setup.home.rglob("*"):
            if path.is_file() and not path.name.endswith(".connection-string"):
                assert secret.encode() not in path.read_bytes(), path
    assert not setup.device.errors, setup.device.errors


def _raw_method(hub: RunningHub, device_id: str, module_id: str, body: Any) -> tuple[int, dict[str, str], Any]:
    """A raw service call ``POST /twins/{id}/modules/{m}/methods``, signed as the SDK signs it."""
    import ssl
    import urllib.error
    import urllib.request
    from urllib.parse import quote, quote_plus

    from edge_fakes.hub import sas_signature

    sr, se = quote_plus(hub.host), str(int(time.time()) + 600)
    key = hub.connection_string.split("SharedAccessKey=")[1]
    auth = f"SharedAccessSignature sr={sr}&sig={quote_plus(sas_signature(key, sr, se))}&se={se}&skn=iothubowner"
    request = urllib.request.Request(
        f"https://{hub.host}/twins/{device_id}/modules/{quote(module_id)}/methods?api-version=2021-04-12",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": auth, "Content-Type": "application/json; charset=utf-8"},
    )
    context = ssl.create_default_context(cafile=str(hub.ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


def test_the_fakes_answer_direct_methods_as_the_hub_and_the_agent_do(setup: Setup, tmp_path: Path) -> None:
    def call(method: str, payload: Any, device: str = DEVICE, **extra: Any) -> tuple[int, dict[str, str], Any]:
        return _raw_method(setup.hub, device, "$edgeAgent", {"methodName": method, "payload": payload, **extra})

    _wait_for_ticks(setup, 2)
    status, _, body = call("GetModuleLogs", {"schemaVersion": "1.0", "items": {"id": "tick", "filter": {"tail": 1}}})
    assert status == 200 and body["status"] == 200  # one item, not a list; an unanchored regex
    assert [a["id"] for a in body["payload"]] == [MODULE] and body["payload"][0]["payload"].startswith("tick ")
    nothing = call("getmodulelogs", {"schemaVersion": "1.0", "items": [{"id": "^zzz$"}]})[2]
    assert nothing == {"status": 200, "payload": []}  # no module matches: an empty list, not an error
    assert call("ping", None)[2] == {"status": 200, "payload": None}
    unknown = call("Reboot", None)[2]
    assert unknown["status"] == 400 and unknown["payload"]["message"].startswith("Command 'Reboot' not found.")
    missing = call("RestartModule", {"schemaVersion": "1.0", "id": "nope"})[2]
    assert missing == {"status": 500, "payload": {"message": "Module nope not found in the current environment"}}
    assert call("ping", None, responseTimeoutInSeconds=2)[0] == 400

    status, headers, body = call("ping", None, device="edgelogs-nodevice")
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotFound"
    assert _raw_method(setup.hub, DEVICE, "nomodule", {"methodName": "ping"})[0] == 404
    created = setup.run("edge", "device", "create", "edgelogs-raw", "--connection-string-file", str(tmp_path / "raw"))
    assert created.code == 0, created.err
    status, headers, body = call("ping", None, device="edgelogs-raw")
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotOnline"
    inner = json.loads(body["Message"])  # the newer error body, nested in Message
    assert inner["errorCode"] == 404103 and inner["message"] == "Timed out waiting for device to connect."


def test_follow_prints_every_new_line_once_until_interrupted(setup: Setup) -> None:
    import os
    import signal
    import subprocess
    import sys

    _wait_for_ticks(setup, 2)
    args = [sys.executable, "-m", "mlctl", "-o", "json", "edge", "logs", DEVICE, MODULE, "--follow", "--tail", "2"]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **setup.env}
    )
    time.sleep(7)  # several polls
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    setup.outputs.append(out + err)
    assert proc.returncode == 130, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert {(d["device_id"], d["module"]) for d in docs} == {(DEVICE, MODULE)}
    numbers = [n for n, _ in _ticks([d["line"] for d in docs])]
    assert len(numbers) >= 15 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # no gap, no repeat
    assert setup.run("edge", "logs", DEVICE, MODULE, "--follow", "--until", "1m").code == 2
