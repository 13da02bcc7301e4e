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
message process (here, in ``edge_loop``, the connection and its loop, and by ``edge_convert.reply``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.serve.edge_convert import models_of

log = logging.getLogger("mlctl.serve")

EXIT_INIT_FAILED = 3  # as an HTTP worker: the supervisor stops the server
EXIT_NO_SDK = 6  # azure-iot-device is not installed: HTTP keeps serving, no restart
EXIT_SDK_THREAD_DIED = 1  # a thread of the SDK died: the supervisor starts a new message process
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
    ``os._exit`` (which skips ``atexit``), waiting as an HTTP worker does (``MLCTL_DC_FLUSH_TIMEOUT_S``, 20 s,
    within the 30 s targets give before SIGKILL). Only when the entry script collected."""
    collect = sys.modules.get("mlctl.serve.collect")
    if collect is not None:
        collect.flush_before_exit(log)


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
    from mlctl.serve.edge_loop import MessageLoop

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
