"""The message process's edgeHub connection and main loop (``mlctl.serve.edge_messages`` starts it):
connect through ``azure-iot-device`` (retrying until stopped), then, on one thread, score each
message on the input with the entry script and send its results or error, apply twin patches to
the script's ``on_desired_properties`` hook, renew the input subscription after a reconnection,
and report the module's status (its own thread). ``azure-iot-device`` is imported only here, in
the message process.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from mlctl.serve.edge_convert import merge_patch, message_request, output_bodies, reply

if TYPE_CHECKING:
    from mlctl.serve.edge_messages import EdgeSettings, Status

log = logging.getLogger("mlctl.serve")

HOOK = "on_desired_properties"


class MessageLoop:
    """The edgeHub connection and the main loop; every entry script call happens on this thread."""

    def __init__(self, entry: Any, runner: Any, settings: EdgeSettings, status: Status) -> None:
        self.entry, self.runner, self.settings, self.status = entry, runner, settings, status
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client: Any = None
        self._report_due = 0.0
        self._reports = _Reporter()

    def run(self, stop: threading.Event) -> None:
        """Connect (retrying until ``stop``), then handle messages, patches and reconnections until ``stop``."""
        if not self._connect(stop):
            return
        self._reports.start(self.client)
        try:
            while not stop.is_set():
                try:
                    kind, value = self.inbox.get(timeout=0.5)
                except queue.Empty:
                    kind, value = "idle", None
                self._handle(kind, value)
                self._maybe_report()
        finally:
            self.client.shutdown()

    def _connect(self, stop: threading.Event) -> bool:
        from azure.iot.device import IoTHubModuleClient

        delay = 1.0
        while not stop.is_set():
            try:
                client = IoTHubModuleClient.create_from_edge_environment(
                    connection_retry_interval=self.settings.retry_interval_s
                )
                client.on_message_received = lambda m: self.inbox.put(("message", m))
                client.on_twin_desired_properties_patch_received = lambda p: self.inbox.put(("patch", p))
                client.on_connection_state_change = self._on_connection_state_change  # type: ignore[assignment]
                client.connect()
            except Exception as exc:  # noqa: BLE001 - edgeHub or the workload API not up yet: retry
                log.warning("cannot connect to edgeHub yet (%s); retrying in %.0fs", type(exc).__name__, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.client = client
            log.info("connected to edgeHub: scoring messages on input %r", self.settings.input)
            self.status.connected = True
            self._fetch_twin()
            return True
        return False

    def _on_connection_state_change(self) -> None:
        self.inbox.put(("connection", None))

    def _handle(self, kind: str, value: Any) -> None:
        if kind == "message":
            self._score(value)
        elif kind == "patch":
            self._desired(merge_patch(self.status.desired, value))
        elif kind == "twin":
            self._desired(dict(value.get("desired") or {}))
        elif kind == "connection":
            self._connection_changed()

    def _connection_changed(self) -> None:
        connected = bool(self.client.connected)
        if connected == self.status.connected:
            return
        self.status.connected, self.status.changed = connected, True
        log.info("edgeHub connection %s", "restored" if connected else "lost; the SDK reconnects")
        if connected:  # the SDK itself gets the twin again and hands a newer desired version over as a patch
            self._renew_subscription()

    def _renew_subscription(self) -> None:
        """Subscribe to the input again after a reconnection. edgeHub can lose a client's subscriptions
        when it restarts (Azure/iotedge#4050) and the SDK (clean session off) never subscribes again;
        a SUBSCRIBE to a topic already subscribed only replaces it, so no message is lost. Uses the
        SDK 2.x pipeline's ``enable_feature`` (public handlers offer no re-subscribe)."""
        pipeline = getattr(self.client, "_mqtt_pipeline", None)
        if pipeline is None or not hasattr(pipeline, "enable_feature"):
            return
        try:
            from azure.iot.device.common.evented_callback import EventedCallback

            done = EventedCallback()  # type: ignore[no-untyped-call]
            pipeline.enable_feature("input", callback=done)
            done.wait_for_completion()  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - the subscription may well have survived
            log.warning("could not renew the subscription to input %s: %s", self.settings.input, type(exc).__name__)

    def _fetch_twin(self) -> None:
        client = self.client
        threading.Thread(target=lambda: self.inbox.put(("twin", client.get_twin())), daemon=True).start()

    def _desired(self, desired: dict[str, Any]) -> None:
        version = desired.get("$version")
        if version is not None and version == self.status.desired_version:
            return
        self.status.desired, self.status.desired_version, self.status.changed = desired, version, True
        hook = getattr(getattr(self.entry, "module", None), HOOK, None)  # entry scripts only
        if not callable(hook):
            return
        try:
            hook({k: v for k, v in desired.items() if not k.startswith("$")})
        except Exception as exc:  # noqa: BLE001 - a failing hook is reported, the module keeps serving
            log.error("%s() raised:\n%s", HOOK, traceback.format_exc().rstrip())
            self.status.failed(None, f"{HOOK}() raised {type(exc).__name__}: {exc}")

    def _score(self, message: Any) -> None:
        input_name = getattr(message, "input_name", None)
        if input_name != self.settings.input:
            log.warning("message %s on input %r ignored", message.message_id, input_name)
            return
        try:
            bodies = output_bodies(self.runner.call_inline(self.entry.call, message_request(message)))
        except Exception as exc:  # noqa: BLE001 - any failure of one message is answered, never fatal
            self._failed(message, exc)
            return
        for body in bodies:
            self._send(reply(message, body), self.settings.output)
        self.status.scored += 1
        self.status.changed = True

    def _failed(self, message: Any, exc: BaseException) -> None:
        from mlctl.serve.backends.entry_script import BadInput
        from mlctl.serve.runner import TimedOut

        if isinstance(exc, BadInput):
            error = f"bad input: {exc}"
        elif isinstance(exc, TimedOut):
            error = f"run() took longer than {self.runner.timeout_s:g}s"
        else:
            error = f"run() raised {type(exc).__name__}: {exc}"
        trace = "" if isinstance(exc, (BadInput, TimedOut)) else "\n" + traceback.format_exc().rstrip()
        log.error("message %s on %s failed: %s%s", message.message_id, self.settings.input, error, trace)
        self.status.failed(message.message_id, error)
        body = json.dumps({"error": error, "message_id": message.message_id, "input": self.settings.input})
        self._send(reply(message, body.encode()), self.settings.error_output)

    def _send(self, message: Any, output: str) -> None:
        try:
            self.client.send_message_to_output(message, output)
        except Exception as exc:  # noqa: BLE001 - e.g. cancelled by a shutdown
            log.error("cannot send to output %s: %s", output, type(exc).__name__)
            self.status.failed(message.correlation_id, f"send to {output} failed: {type(exc).__name__}")

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if self.status.changed and now >= self._report_due:
            self.status.changed = False
            self._report_due = now + self.settings.report_interval_s
            self._reports.offer(self.status.reported())


class _Reporter:
    """Sends the newest reported-properties patch on its own thread (a patch waits for edgeHub's answer)."""

    def __init__(self) -> None:
        self._latest: dict[str, Any] | None = None
        self._ready = threading.Condition()

    def start(self, client: Any) -> None:
        threading.Thread(target=self._run, args=(client,), daemon=True, name="mlctl-edge-report").start()

    def offer(self, patch: dict[str, Any]) -> None:
        with self._ready:
            self._latest = patch
            self._ready.notify()

    def _run(self, client: Any) -> None:
        while True:
            with self._ready:
                while self._latest is None:
                    self._ready.wait()
                patch, self._latest = self._latest, None
            try:
                client.patch_twin_reported_properties(patch)
            except Exception as exc:  # noqa: BLE001 - the next change reports again
                log.warning("cannot report the module's status: %s", type(exc).__name__)
