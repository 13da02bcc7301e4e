"""Message scoring inside an IoT Edge module: edgeHub messages on an input go to ``run()``, results to an output.

Azure ML images, run as IoT Edge modules, received data through edgeHub routes, not HTTP, e.g.
``FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/M/inputs/amlInput")``
and ``FROM /messages/modules/M/outputs/amlOutput INTO $upstream``. mlctl's server does the same when
the IoT Edge runtime starts it as a module (the runtime sets ``IOTEDGE_MODULEID``,
``IOTEDGE_DEVICEID``, ``IOTEDGE_IOTHUBHOSTNAME``, ``IOTEDGE_GATEWAYHOSTNAME``,
``IOTEDGE_MODULEGENERATIONID``, ``IOTEDGE_WORKLOADURI``, ``IOTEDGE_APIVERSION``):

* the supervisor forks **one** message process beside the HTTP workers (one edgeHub connection
  per module, not per worker); it loads the entry script and calls ``init()`` once, as a worker
  does, and is restarted like one when it dies. HTTP scoring stays on.
* it connects with ``azure-iot-device``'s ``IoTHubModuleClient.create_from_edge_environment``
  (trust bundle and SAS signatures from the workload API, MQTT over TLS to the gateway, port 8883);
* each message on the input (``MLCTL_EDGE_INPUT``, default ``amlInput``) is one ``run()`` call,
  made as for ``POST /score`` with the body and ``Content-Type`` (default ``application/json``);
  custom properties are the request's headers. Each result goes to the output
  (``MLCTL_EDGE_OUTPUT``, default ``amlOutput``): a list is one message per item (strings as they
  are, other values as JSON), anything else one message. Results keep the message's custom
  properties and correlation id (its message id when it has none);
* a message whose body the script cannot take, or whose ``run()`` raises or exceeds the timeout,
  is logged with its message id and answered on the error output (``MLCTL_EDGE_ERROR_OUTPUT``,
  default ``amlError``) with ``{"error", "message_id", "input"}``; the module keeps serving;
* the module twin's desired properties (without ``$version``) are passed to the entry script's
  optional ``on_desired_properties(properties)`` after ``init()``, after each patch (merged, so
  the hook always sees them whole), also for changes missed while disconnected (the SDK gets the
  twin again when it reconnects); it runs in the message process only, between messages;
* reported properties ``mlctl``: status, models (name, version), input/output names, messages
  scored, errors, the last error, the desired ``$version`` seen (at most every 5 s, when changed);
* on SIGTERM (and before a restart after the SDK's thread died) it writes the rows model data
  collection still buffers, as an HTTP worker does, before it leaves;
* after edgeHub restarts the SDK reconnects every ``MLCTL_EDGE_RETRY_S`` seconds (default 10) and
  the module subscribes to its input again (edgeHub may have lost the subscription).

``MLCTL_EDGE_MESSAGES=off`` keeps a module HTTP-only. ``azure-iot-device`` is imported only in the
message process (here and by ``edge_convert.reply``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.serve.edge_convert import merge_patch, message_request, models_of, output_bodies, reply

log = logging.getLogger("mlctl.serve")

EXIT_INIT_FAILED = 3  # as an HTTP worker: the supervisor stops the server
EXIT_NO_SDK = 6  # azure-iot-device is not installed: HTTP keeps serving, no restart
EXIT_SDK_THREAD_DIED = 1  # a thread of the SDK died: the supervisor starts a new message process
HOOK = "on_desired_properties"
RUNTIME_VARIABLES = (
    "IOTEDGE_MODULEID",
    "IOTEDGE_DEVICEID",
    "IOTEDGE_IOTHUBHOSTNAME",
    "IOTEDGE_GATEWAYHOSTNAME",
    "IOTEDGE_MODULEGENERATIONID",
    "IOTEDGE_WORKLOADURI",
    "IOTEDGE_APIVERSION",
)


@dataclass(frozen=True)
class EdgeSettings:
    """Input/output names (edgeHub endpoints of this module), status report interval and reconnect interval (s)."""

    input: str = "amlInput"
    output: str = "amlOutput"
    error_output: str = "amlError"
    report_interval_s: float = 5.0
    retry_interval_s: int = 10


def settings_from_env(environ: Mapping[str, str]) -> EdgeSettings | None:
    """The settings of a module started by the IoT Edge runtime; None when not one, or turned off."""
    if not environ.get("IOTEDGE_MODULEID") or environ.get("MLCTL_EDGE_MESSAGES", "").lower() in ("off", "0", "false"):
        return None
    missing = [v for v in RUNTIME_VARIABLES if not environ.get(v)]
    if missing:
        log.warning("IoT Edge module without %s: no edgeHub messages", ", ".join(missing))
        return None
    return EdgeSettings(
        input=environ.get("MLCTL_EDGE_INPUT") or "amlInput",
        output=environ.get("MLCTL_EDGE_OUTPUT") or "amlOutput",
        error_output=environ.get("MLCTL_EDGE_ERROR_OUTPUT") or "amlError",
        retry_interval_s=_seconds(environ.get("MLCTL_EDGE_RETRY_S"), default=10),
    )


def _seconds(text: str | None, *, default: int) -> int:
    try:
        return max(1, int(text)) if text else default
    except ValueError:
        log.warning("MLCTL_EDGE_RETRY_S=%r is not a number of seconds; using %d", text, default)
        return default


@dataclass
class Status:
    """What the module reports in its twin (reported property ``mlctl``)."""

    settings: EdgeSettings
    models: list[dict[str, str]]
    scored: int = 0
    errors: int = 0
    last_error: dict[str, Any] | None = None
    desired_version: int | None = None
    connected: bool = False
    changed: bool = True
    desired: dict[str, Any] = field(default_factory=dict)

    def failed(self, message_id: str | None, error: str) -> None:
        """Count one failed message (or hook call)."""
        self.errors += 1
        self.last_error = {
            "message_id": message_id,
            "error": error[:500],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.changed = True

    def reported(self) -> dict[str, Any]:
        """The reported-properties patch."""
        s = self.settings
        return {
            "mlctl": {
                "status": "running" if self.connected else "disconnected",
                "models": self.models,
                "input": s.input,
                "output": s.output,
                "error_output": s.error_output,
                "messages_scored": self.scored,
                "errors": self.errors,
                "last_error": self.last_error,
                "desired_version": self.desired_version,
            }
        }


def fork_message_process(args: Any, settings: EdgeSettings, listening: list[Any]) -> int:
    """Fork the message process of a supervisor (``args``: its command line); returns its pid."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's handlers (they signal workers)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # draining concerns HTTP only
        for sock in listening:
            sock.close()  # this process serves no HTTP
        code = serve_messages(_model_of(args), settings, timeout_s=args.timeout_ms / 1000)
        flush_model_data()
        os._exit(code)
    return pid


def _model_of(args: Any) -> tuple[Path | None, str, Path | None]:
    """The supervisor's model: its entry script, model kind and model path (no-code kinds)."""
    model_path = args.model_path or args.model_dir
    entry = args.entry_script.resolve() if args.entry_script else None
    return entry, args.model_kind, model_path.resolve() if model_path else None


def flush_model_data() -> None:
    """Write the rows model data collection still buffers before the message process leaves with
    ``os._exit`` (which skips ``atexit``), waiting as an HTTP worker does (``collect.FLUSH_TIMEOUT_S``,
    within the 30 s targets give before SIGKILL). Only when the entry script collected."""
    collect = sys.modules.get("mlctl.serve.collect")
    if collect is not None and not collect.flush_all():
        log.warning("model data collection: some buffered rows could not be written before stopping")


def serve_messages(model: tuple[Path | None, str, Path | None], settings: EdgeSettings, *, timeout_s: float) -> int:
    """The message process: load the model (``model``: entry script, model kind, model path, as
    ``mlctl.serve.backends.load_backend`` takes them), ``init()``, then score edgeHub messages until SIGTERM.

    Returns the exit code: 0 stopped, 3 the model failed to load, 6 azure-iot-device missing."""
    from mlctl.serve.backends import load_backend
    from mlctl.serve.backends.entry_script import EntryScriptError
    from mlctl.serve.runner import Runner

    try:
        entry = load_backend(model[0], kind=model[1], model_path=model[2])
        entry.init()
    except EntryScriptError as exc:
        log.error("entry script error: %s", exc)
        return EXIT_INIT_FAILED
    except BaseException:  # noqa: BLE001 - as a worker: report anything, exit 3
        log.error("entry script failed during load or init():\n%s", traceback.format_exc().rstrip())
        return EXIT_INIT_FAILED
    try:
        from azure.iot.device import IoTHubModuleClient  # noqa: F401
    except ImportError:
        log.error("IoT Edge module without azure-iot-device: no edgeHub messages (pip install azure-iot-device)")
        return EXIT_NO_SDK
    for noisy in ("azure.iot.device", "paho"):  # the SDK logs every publish at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    threading.excepthook = _restart_on_thread_crash
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    status = Status(settings, models_of(os.environ.get("AZUREML_MODEL_DIR")))
    runner = Runner(concurrency=1, queue=0, timeout_s=timeout_s)
    MessageLoop(entry, runner, settings, status).run(stop)
    return 0


def _restart_on_thread_crash(crash: threading.ExceptHookArgs) -> None:
    """A thread of the SDK died (paho's network thread raises ``ssl.SSLEOFError`` when edgeHub
    goes away in the middle of a write, and then nothing reconnects): exit, so the supervisor
    starts a new message process with a new client, as it does after any crash."""
    log.error(
        "the IoT SDK's thread %s died (%s: %s); restarting the message process",
        crash.thread.name if crash.thread else "?",
        crash.exc_type.__name__,
        crash.exc_value,
    )
    flush_model_data()  # the replacement process starts with an empty buffer
    os._exit(EXIT_SDK_THREAD_DIED)


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
