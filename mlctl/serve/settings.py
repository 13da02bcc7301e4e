"""The server's command line (``parse_args``), start-up settings by azureml-inference-server-http's
own names, and the entry script's environment.

Source: the reference server's ``amlserver.py`` (flags, and the environment it sets before the
script is imported), ``server/config.py`` (the variables it reads) and its
``docs/AzureMLInferenceServer.md``. Precedence: an explicit command-line flag, then the
reference's environment variable, then mlctl's default.

=========================== ================================ =========================================
variable                    flag                             meaning
=========================== ================================ =========================================
AZUREML_ENTRY_SCRIPT        --entry_script, --entry-script   the script (relative to AML_APP_ROOT)
AZUREML_MODEL_DIR           --model_dir, --model-dir         the model folder, for the script
AML_APP_ROOT                                                 the app folder (default: working folder)
WORKER_COUNT                --worker_count, --workers        worker processes
SCORING_TIMEOUT_MS          --timeout-ms                     ``run()`` time limit, ms
AML_CORS_ORIGINS            --access_control_allow_origins   CORS origins, comma-separated, or ``*``
WORKER_PRELOAD              --preload                        ``init()`` once, then fork the workers
HEALTH_PORT (with           --health_port                    a second port answering liveness
SEPERATE_HEALTH_ENDPOINT)
AZUREML_LOG_LEVEL                                            log level of the server's logger
SERVICE_NAME, SERVICE_PATH_PREFIX, SERVICE_VERSION           the swagger document's title, path, version
SERVER_VERSION_LOG_RESPONSE_ENABLED                          ``false``: no ``x-ms-server-version``
=========================== ================================ =========================================

mlctl's own: ``MLCTL_MODEL_NAME`` (flag ``--model-name``) is the model's name in Open Inference
Protocol paths; unset, an IoT Edge module answers under its module name (``IOTEDGE_MODULEID``,
which the IoT Edge runtime sets), anything else as ``model``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import MutableMapping
from pathlib import Path

from mlctl import __version__

DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_MS = 60000
DEFAULT_MODEL_NAME = "model"  # the model's name in OIP paths when nothing names it


class SettingsError(Exception):
    """A setting is missing or malformed (the server exits 2 naming it)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m mlctl.serve", description="Serve an Azure ML entry script.")
    p.add_argument(
        "--entry-script", "--entry_script", type=Path, help="file with init() and run() (else AZUREML_ENTRY_SCRIPT)"
    )
    p.add_argument(
        "--model-kind",
        choices=("entry_script", "onnx", "mlflow"),
        default=os.environ.get("MLCTL_MODEL_KIND", "entry_script"),
        help="what serves requests: an entry script, an ONNX file, an MLflow model folder (no entry script); "
        "default: $MLCTL_MODEL_KIND (set in images of no-code models), else entry_script",
    )
    p.add_argument(
        "--model-path",
        type=Path,
        default=os.environ.get("MLCTL_MODEL_PATH") or None,
        help="the ONNX file or MLflow model folder (default: $MLCTL_MODEL_PATH, else --model-dir)",
    )
    p.add_argument("--model-dir", "--model_dir", type=Path, help="sets AZUREML_MODEL_DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8890)
    p.add_argument("--workers", "--worker_count", type=int, help="worker processes (else WORKER_COUNT; 2)")
    p.add_argument(
        "--access-control-allow-origins",
        "--access_control_allow_origins",
        dest="cors_origins",
        help="CORS origins, comma-separated, or * (else AML_CORS_ORIGINS; none)",
    )
    p.add_argument("--health-port", "--health_port", type=int, help="a second port answering liveness")
    p.add_argument(
        "--preload",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="call init() once before forking the workers (else WORKER_PRELOAD; off)",
    )
    p.add_argument("--max-request-bytes", type=int, default=100 * 1024 * 1024)
    p.add_argument("--concurrency", type=int, default=1, help="threads calling run() at once, per worker")
    p.add_argument("--queue", type=int, default=64, help="requests waiting beyond those, per worker (then 503)")
    p.add_argument("--timeout-ms", type=int, help="run() time limit, ms (else SCORING_TIMEOUT_MS; 60000); 0: none")
    p.add_argument(
        "--max-wait-ms", type=int, default=0, help="longest wait in the queue before run() (then 503); 0: none"
    )
    p.add_argument("--listen-fd", type=int, action="append", help="inherited listening socket (repeatable)")
    p.add_argument("--control-socket", type=Path, help="Unix socket that hands out the listening socket")
    p.add_argument(
        "--inherit-from",
        type=Path,
        help="control socket of the server this one replaces: take its listening sockets (containers)",
    )
    p.add_argument("--status-file", type=Path, help="write {pid, port, probe_port} here once bound")
    p.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=False, help="one JSON line per request on stdout"
    )
    p.add_argument("--batch-size", type=int, default=0, help="micro-batching: largest batch (0: off; needs run_batch)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0, help="micro-batching: longest wait to fill a batch")
    p.add_argument("--ssl-certfile", type=Path, help="TLS certificate (PEM); with --ssl-keyfile: https")
    p.add_argument("--ssl-keyfile", type=Path, help="TLS private key (PEM)")
    p.add_argument("--keys-file", type=Path, help="JSON {primary, secondary}: /score then needs a Bearer key")
    p.add_argument("--debug", action="store_true", help="tracebacks in 500 responses")
    p.add_argument(
        "--model-name",
        help="the model's name in Open Inference Protocol paths "
        "(else MLCTL_MODEL_NAME; else an IoT Edge module's name, IOTEDGE_MODULEID; else model)",
    )
    p.add_argument("--model-version", help="its version there (default: any version path reaches it)")
    return p.parse_args(argv)


def _int(value: str, name: str, *, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {number}")
    return number


def resolve(args: argparse.Namespace, environ: MutableMapping[str, str]) -> None:
    """Fill the flags left unset in ``args`` from the reference's variables in ``environ``, then defaults.

    Sets ``args.app_root`` (Path), ``args.model_name`` (flag, ``MLCTL_MODEL_NAME``, an IoT Edge
    module's ``IOTEDGE_MODULEID``, ``model``) and makes ``args.entry_script`` an absolute Path (it stays
    ``None`` for a no-code model kind, ``--model-kind onnx|mlflow``, given no script).
    Raises:
        SettingsError: no entry script by flag or ``AZUREML_ENTRY_SCRIPT`` for the entry-script
            kind; a malformed number.
    """
    args.app_root = Path(environ.get("AML_APP_ROOT") or os.getcwd())
    if args.entry_script is None and environ.get("AZUREML_ENTRY_SCRIPT"):
        args.entry_script = args.app_root / environ["AZUREML_ENTRY_SCRIPT"]
    if args.entry_script is None and getattr(args, "model_kind", "entry_script") == "entry_script":
        raise SettingsError("no entry script: pass --entry_script PATH or set AZUREML_ENTRY_SCRIPT")
    if args.entry_script is not None:
        args.entry_script = Path(os.path.realpath(args.entry_script))
    if args.model_dir is None and environ.get("AZUREML_MODEL_DIR"):
        args.model_dir = Path(environ["AZUREML_MODEL_DIR"])
    if args.workers is None:
        workers = environ.get("WORKER_COUNT")
        args.workers = _int(workers, "WORKER_COUNT", minimum=1) if workers else DEFAULT_WORKERS
    if args.timeout_ms is None:
        timeout = environ.get("SCORING_TIMEOUT_MS")
        args.timeout_ms = _int(timeout, "SCORING_TIMEOUT_MS", minimum=0) if timeout else DEFAULT_TIMEOUT_MS
    if args.cors_origins is None:
        args.cors_origins = environ.get("AML_CORS_ORIGINS") or None
    if args.preload is None:
        args.preload = environ.get("WORKER_PRELOAD", "false").lower() == "true"
    if args.health_port is None and environ.get("SEPERATE_HEALTH_ENDPOINT", "").lower() == "true":
        args.health_port = _int(environ.get("HEALTH_PORT") or "5000", "HEALTH_PORT", minimum=1)
    if getattr(args, "model_name", None) is None:
        args.model_name = environ.get("MLCTL_MODEL_NAME") or environ.get("IOTEDGE_MODULEID") or DEFAULT_MODEL_NAME


def export(args: argparse.Namespace, environ: MutableMapping[str, str]) -> None:
    """Set the environment the entry script sees, as the reference does before importing it.

    ``AML_APP_ROOT`` (kept when set, else the working folder), ``AZUREML_ENTRY_SCRIPT`` (the
    script's real path), ``AZUREML_MODEL_DIR`` (as given: flag, else left as found),
    ``WORKER_COUNT``, and ``HTTP_X_MS_SERVER_VERSION`` (mlctl's identity, unless
    ``SERVER_VERSION_LOG_RESPONSE_ENABLED`` is not ``true``).
    """
    environ.setdefault("AML_APP_ROOT", str(args.app_root))
    if args.entry_script is not None:
        environ["AZUREML_ENTRY_SCRIPT"] = str(args.entry_script)
    if args.model_dir is not None:
        environ["AZUREML_MODEL_DIR"] = str(args.model_dir)
    environ["WORKER_COUNT"] = str(args.workers)
    if environ.get("SERVER_VERSION_LOG_RESPONSE_ENABLED", "true").lower() == "true":
        environ.setdefault("HTTP_X_MS_SERVER_VERSION", f"mlctl/{__version__}")
    else:
        environ.pop("HTTP_X_MS_SERVER_VERSION", None)


def cors_origins(value: str | None) -> tuple[str, ...]:
    """The origins of an ``AML_CORS_ORIGINS`` value: comma-separated, blanks stripped; ``("*",)`` for all."""
    if not value:
        return ()
    return tuple(origin.strip() for origin in value.split(",") if origin.strip())
