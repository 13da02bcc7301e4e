"""Mosquitto (Debian's ``mosquitto`` 2.0) playing edgeHub's MQTT endpoint, plus the test's side of edgeHub.

Real: the MQTT 3.1.1 protocol over TLS on 127.0.0.1:8883 (``azure-iot-device`` always dials
8883 on ``IOTEDGE_GATEWAYHOSTNAME``) and the IoT Hub MQTT topics the module client uses:
``devices/D/modules/M/inputs/NAME/<properties>`` (messages in), ``devices/D/modules/M/messages/
events/<properties with $.on=OUTPUT>`` (messages out), ``$iothub/twin/GET|PATCH/...`` and
``$iothub/twin/res/STATUS/?$rid=..`` (twin). Sessions persist across a broker restart
(``persistence``), as edgeHub keeps its clients' subscriptions.

Stood in: edgeHub's routing (the test publishes to a module's input topic, as a route would, and
reads its output topic), its twin service (``EdgeHubSide`` answers twin GETs from the desired
properties it is given and records reported patches) and SAS validation (Mosquitto accepts any
username/password; the workload stand-in records what it signed instead).

Only one broker can own 127.0.0.1:8883: ``run_broker`` holds an exclusive lock file while it runs,
so two test sessions on one machine take turns instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import queue
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

PORT = 8883
LOCK = Path(tempfile.gettempdir()) / "mlctl-edge-broker-8883.lock"


class Broker:
    """A running Mosquitto; ``restart()`` stops it (saving sessions) and starts it again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("no mosquitto: `apt-get install mosquitto` (scripts/docker-up.sh installs it)")
        self.proc = subprocess.Popen([binary, "-c", str(self.folder / "mosquitto.conf")], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail("mosquitto did not listen on 127.0.0.1:8883")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its sessions first
            self.proc.wait(15)

    def restart(self, down_s: float = 1.0, *, forget_sessions: bool = False) -> None:
        """Stop (clients see the connection drop), wait ``down_s``, start again; ``forget_sessions``:
        lose every client's session and subscriptions, as edgeHub sometimes does (Azure/iotedge#4050)."""
        self.stop()
        if forget_sessions:
            (self.folder / "mosquitto.db").unlink(missing_ok=True)
        time.sleep(down_s)
        self.start()


@contextmanager
def run_broker(cert: Path, key: Path) -> Iterator[Broker]:
    """Mosquitto with TLS (``cert``/``key``) on 127.0.0.1:8883 until the block ends."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session's broker: wait for it to finish
        folder = Path(tempfile.mkdtemp(prefix="edgemsg-broker-"))
        try:
            _write_config(folder, cert, key)
            broker = Broker(folder)
            broker.start()
            try:
                yield broker
            finally:
                broker.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _write_config(folder: Path, cert: Path, key: Path) -> None:
    """Mosquitto drops root to its own user: its files live in a folder that user owns."""
    for name, source in (("cert.pem", cert), ("key.pem", key)):
        shutil.copyfile(source, folder / name)
    (folder / "mosquitto.conf").write_text(
        "\n".join(
            [
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {folder}/",
                f"log_dest file {folder / 'mosquitto.log'}",
                "connection_messages true",
                f"listener {PORT} 127.0.0.1",
                f"cafile {folder / 'cert.pem'}",
                f"certfile {folder / 'cert.pem'}",
                f"keyfile {folder / 'key.pem'}",
                "",
            ]
        )
    )
    os.chmod(folder, 0o700)
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("mosquitto")
        except KeyError:
            return
        for path in [folder, *folder.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)


class EdgeHubSide:
    """The test's MQTT client in edgeHub's place: routes a message into a module's input, collects
    the module's output messages, answers its twin requests and records its reported properties."""

    def __init__(
        self,
        ca_file: Path,
        device: str,
        module: str,
        desired: Callable[[], dict[str, Any]],
        upstream: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``desired()``: the module twin's desired properties with ``$version`` (e.g. from the fake hub);
        a new ``$version`` is forwarded to the module as a patch, as edgeHub forwards IoT Hub's.
        ``upstream(patch)``: where the module's reported-properties patches go (e.g. the fake hub)."""
        import paho.mqtt.client as mqtt

        self.device, self.module, self.desired, self.upstream = device, module, desired, upstream
        self._forwarded: dict[str, Any] = {}
        self._stop = threading.Event()
        self.reported: list[dict[str, Any]] = []
        self.outputs: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        self.client = mqtt.Client(client_id=f"edgemsg-hub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
        self.client.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
        self.client.on_connect = self._subscribe
        self.client.on_message = self._received
        self.client.on_disconnect = lambda *_: self._connected.clear()
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._connected = threading.Event()
        self.client.connect("127.0.0.1", PORT)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise AssertionError("the test's MQTT client could not connect to the broker")
        threading.Thread(target=self._forward_desired, daemon=True).start()

    def wait_connected(self, timeout: float) -> bool:
        """True once this client is (again) connected and subscribed, e.g. after a broker restart."""
        return self._connected.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()

    def route_in(self, body: bytes, input_name: str, **properties: str) -> None:
        """Publish to ``devices/D/modules/M/inputs/NAME/<properties>`` (what edgeHub delivers, QoS 1)."""
        props = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in properties.items())
        topic = f"devices/{self.device}/modules/{self.module}/inputs/{input_name}/{props}"
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def _forward_desired(self) -> None:
        while not self._stop.wait(0.3):
            desired = self.desired()
            if not self._forwarded:
                self._forwarded = desired  # what the module gets from its first twin GET
            elif desired.get("$version") != self._forwarded.get("$version"):
                patch = {k: v for k, v in desired.items() if self._forwarded.get(k) != v}
                patch.update({k: None for k in self._forwarded if k not in desired})  # removed keys
                self._forwarded = desired
                topic = f"$iothub/twin/PATCH/properties/desired/?$version={desired['$version']}"
                self.client.publish(topic, json.dumps(patch), qos=1)

    def next_output(self, timeout: float = 30) -> tuple[str, dict[str, str], bytes]:
        """``(output name, properties, body)`` of the module's next message."""
        return self.outputs.get(timeout=timeout)

    def _subscribe(self, client: Any, _userdata: Any, _flags: Any, _rc: int) -> None:
        client.subscribe([(f"devices/{self.device}/modules/{self.module}/messages/events/#", 1), ("$iothub/twin/#", 1)])
        self._connected.set()

    def _received(self, client: Any, _userdata: Any, message: Any) -> None:
        topic: str = message.topic
        if topic.startswith(f"devices/{self.device}/modules/{self.module}/messages/events/"):
            properties = _properties(topic.rsplit("/", 1)[1])
            self.outputs.put((properties.pop("$.on", ""), properties, bytes(message.payload)))
        elif topic.startswith("$iothub/twin/GET/"):
            client.publish(f"$iothub/twin/res/200/?$rid={_rid(topic)}", json.dumps(self._twin()), qos=1)
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            self.reported.append(json.loads(message.payload))
            if self.upstream is not None:
                self.upstream(self.reported[-1])
            client.publish(f"$iothub/twin/res/204/?$rid={_rid(topic)}&$version={len(self.reported) + 1}", b"", qos=1)

    def _twin(self) -> dict[str, Any]:
        self._forwarded = self.desired()
        return {"desired": self._forwarded, "reported": {"$version": len(self.reported) + 1}}


def _properties(encoded: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in encoded.split("&") if p]
    return {unquote(p[0]): unquote(p[1]) if len(p) > 1 else "" for p in pairs}


def _rid(topic: str) -> str:
    return _properties(topic.split("?", 1)[1]).get("$rid", "")
