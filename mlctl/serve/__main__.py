"""``python -m mlctl.serve``: a pre-fork supervisor of HTTP workers.

The supervisor binds one listening socket per worker on the same port (``SO_REUSEPORT``, so the
kernel spreads new connections evenly: with one shared socket, a burst of keep-alive
connections can all land on one worker), then forks ``--workers`` processes. Each worker imports
the entry script and calls ``init()`` in its main thread (Azure ML semantics:
one ``init()`` per worker); with ``--preload`` (the reference's ``WORKER_PRELOAD``) the supervisor
does that once before forking, so the workers share the model's memory. Each then serves with
mlctl's HTTP layer on httptools and uvloop
(``mlctl.serve.http``; uvicorn when httptools is missing).

Zero-downtime updates hand the listening sockets themselves from the old server to the new one
(as gunicorn's binary upgrade does): the old supervisor answers on ``--control-socket`` (a Unix
socket) with its listening sockets' file descriptors (SCM_RIGHTS); the deployer passes them to
the new server as ``--listen-fd``. Both then accept from the same queues, so when the old one
stops, no queued connection is reset. To retire, the old server first gets SIGUSR1 (its workers stop
accepting but finish every connection they hold), then SIGTERM. SIGUSR2, which a worker sends when
asked to flush model data (``mlctl.serve.frontends.internal``), is relayed to every worker. The probe socket
(``--status-file``) is a private 127.0.0.1 port that only this server answers, so a deployer
can check *this* server's readiness.

The command line and the start-up settings from the reference server's flags and variables:
``mlctl.serve.settings``.

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 a setting is missing or malformed; 3 the entry script
failed to load or ``init()`` raised;
4 the port cannot be bound; 1 workers kept crashing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mlctl.serve import settings
from mlctl.serve.settings import parse_args
from mlctl.serve.sockets import bind, control_socket, public_sockets, write_status

EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4
EXIT_CRASHING = 1
EXIT_USAGE = 2
EXIT_NO_SDK = 6  # the edgeHub message process without azure-iot-device (mlctl.serve.edge_messages)
_MAX_RESTARTS = 5  # per minute, then the supervisor gives up

log = logging.getLogger("mlctl.serve")


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    args = parse_args(argv)
    level = os.environ.get("AZUREML_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if isinstance(logging.getLevelName(level), int) else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(message)s",
    )
    try:
        settings.resolve(args, os.environ)
    except settings.SettingsError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if args.model_dir is not None:
        args.model_dir = args.model_dir.resolve()
    settings.export(args, os.environ)
    try:
        public = public_sockets(args)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return EXIT_BIND_FAILED
    try:
        health = [bind(args.host, args.health_port, reuse_port=False)] if args.health_port else []
    except OSError as exc:
        log.error("cannot listen on %s:%d (health port): %s", args.host, args.health_port, exc.strerror or exc)
        return EXIT_BIND_FAILED
    probe = None
    if args.status_file is not None:
        probe = bind("127.0.0.1", 0, reuse_port=False)
        write_status(args.status_file, args.port, probe.getsockname()[1])
    log.info("listening on http://%s:%d (%d worker(s))", args.host, args.port, args.workers)
    control = control_socket(args.control_socket) if args.control_socket else None
    supervisor = Supervisor(args, public, probe, control)
    if args.preload:  # init() once here; the workers forked after share the model's pages (copy-on-write)
        supervisor.preloaded = _load_and_init(args)
        if supervisor.preloaded is None:
            return EXIT_INIT_FAILED
    supervisor.shared += health  # every worker also accepts there (the reference's separate health port)
    return supervisor.run()


class Supervisor:
    """Forks and watches workers; stops them all on SIGTERM/SIGINT or when one fails ``init()``."""

    def __init__(
        self,
        args: argparse.Namespace,
        public: list[socket.socket],
        probe: socket.socket | None,
        control: socket.socket | None = None,
    ) -> None:
        from mlctl.serve.metrics import SharedMetrics

        self.args = args
        self.public = public
        self.probe = probe
        self.control = control
        self.metrics = SharedMetrics(args.workers)  # mapped before forking: shared by every worker
        self.slots: dict[int, int] = {}  # worker pid -> its metrics slot
        self.workers: set[int] = set()
        self.stopping = False
        self.restarts: list[float] = []
        self.edge = _edge_settings()  # set when the IoT Edge runtime started this server as a module
        self.messages_pid: int | None = None
        self.shared: list[socket.socket] = [probe] if probe is not None else []  # accepted on by every worker
        self.preloaded: tuple[Any, float] | None = None  # (back-end, init seconds) when init() ran here

    def run(self) -> int:
        """Supervise until stopped; returns the exit code."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR1, self._stop_accepting)
        signal.signal(signal.SIGUSR2, self._relay_flush)
        for slot in range(self.args.workers):
            self._spawn(slot)
        if self.edge is not None:
            self._spawn_messages()
        code = 0
        while self.workers:
            self._serve_control(timeout_s=0.2)
            while self.workers:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return code
                if pid == 0:
                    break
                self.workers.discard(pid)
                code = self._reap(pid, os.waitstatus_to_exitcode(status), code)
        return code

    def _serve_control(self, *, timeout_s: float) -> None:
        """Hand the public listening socket to whoever asks on the control socket (an update)."""
        if self.control is None or self.stopping:
            time.sleep(timeout_s)
            return
        ready, _, _ = select.select([self.control], [], [], timeout_s)
        if ready:
            conn, _ = self.control.accept()
            with conn:
                socket.send_fds(conn, [b"listen-fds"], [s.fileno() for s in self.public])
            log.info("handed the listening sockets to a new server")

    def _reap(self, pid: int, exit_code: int, code: int) -> int:
        if self.stopping:
            return code
        if pid == self.messages_pid and exit_code == EXIT_NO_SDK:
            return code  # logged by the message process; HTTP keeps serving
        if exit_code == EXIT_INIT_FAILED:
            log.error("worker %d failed to initialise; stopping the server", pid)
            self._stop_workers()
            return EXIT_INIT_FAILED
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > _MAX_RESTARTS:
            log.error("workers keep crashing (%d restarts in a minute); stopping", len(self.restarts))
            self._stop_workers()
            return EXIT_CRASHING
        log.warning("worker %d exited with %d; starting a new one", pid, exit_code)
        if pid == self.messages_pid:
            self._spawn_messages()
        else:
            self._spawn(self.slots.pop(pid, 0))  # the new worker continues the old one's counters
        return code

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the server can drain
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # until it serves (then: flush model data)
            self.metrics.use_slot(slot)
            os._exit(_worker(self.args, self._sockets_of(slot), self.metrics, self.preloaded))
        self.workers.add(pid)
        self.slots[pid] = slot

    def _spawn_messages(self) -> None:
        from mlctl.serve.edge_messages import fork_message_process

        self.messages_pid = fork_message_process(self.args, self.edge, self.public)
        self.workers.add(self.messages_pid)

    def _sockets_of(self, slot: int) -> list[socket.socket]:
        """The public sockets worker ``slot`` accepts on (every one has a worker), the probe and health ports."""
        mine = [s for i, s in enumerate(self.public) if i % self.args.workers == slot]
        return mine + self.shared

    def _stop_accepting(self, _signum: int, _frame: object) -> None:
        log.info("received SIGUSR1; workers stop accepting connections (draining)")
        self.stopping = True  # a drained server is retiring: no worker restarts
        self.control = None
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def _relay_flush(self, _signum: int, _frame: object) -> None:
        """SIGUSR2, from a worker asked to flush model data: every HTTP worker flushes (the
        message process of an IoT Edge module is not one: SIGUSR2 would end it)."""
        for pid in [p for p in self.slots if p in self.workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)

    def _stop(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("received %s; stopping workers", signal.Signals(signum).name)
        self.stopping = True
        self._stop_workers()

    def _stop_workers(self) -> None:
        self.stopping = True
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.workers.discard(pid)


def _edge_settings() -> Any:
    """edgeHub message settings when running as an IoT Edge module (imported only then), else None."""
    if not os.environ.get("IOTEDGE_MODULEID"):
        return None
    from mlctl.serve.edge_messages import settings_from_env

    return settings_from_env(os.environ)


def _load_and_init(args: argparse.Namespace) -> tuple[Any, float] | None:
    """The entry script's back-end after ``init()``, and the seconds that took; None (logged) when it failed."""
    from mlctl.serve.backends import load_backend
    from mlctl.serve.backends.entry_script import EntryScriptError

    try:
        started = time.monotonic()
        model_path = args.model_path or args.model_dir
        backend = load_backend(
            args.entry_script.resolve() if args.entry_script else None,
            kind=args.model_kind,
            model_path=model_path.resolve() if model_path else None,
        )
        backend.init()
        seconds = time.monotonic() - started
        log.info("init() completed in %.2fs", seconds)
        return backend, seconds
    except EntryScriptError as exc:  # the script breaks the init()/run() contract: no traceback needed
        log.error("entry script error: %s", exc)
    except BaseException:  # noqa: BLE001 - report anything the script raises, then exit 3
        log.error("entry script failed during load or init():\n%s", traceback.format_exc().rstrip())
    return None


def _worker(
    args: argparse.Namespace, sockets: list[socket.socket], metrics: Any, preloaded: tuple[Any, float] | None = None
) -> int:
    from mlctl.serve.backends.entry_script import EntryScriptError

    loaded = preloaded or _load_and_init(args)
    if loaded is None:
        return EXIT_INIT_FAILED
    backend, init_seconds = loaded
    metrics.set_init_seconds(init_seconds)
    try:
        keys = _keys(args.keys_file)
        _check_tls(args)
        batcher = _batcher(args, backend)
    except EntryScriptError as exc:
        log.error("entry script error: %s", exc)
        return EXIT_INIT_FAILED
    _freeze_loaded_objects()
    _serve(args, sockets, backend, keys, metrics, batcher)
    _flush_model_data()
    return 0


def _freeze_loaded_objects() -> None:
    """Move what loading and ``init()`` made (the model, the modules: ~130,000 objects for a
    scikit-learn model) out of the garbage collector's reach (``gc.freeze``), after collecting
    what is already garbage. A full collection otherwise walks all of them, ~25 ms on the test
    machine with every request of the worker waiting, and requests that keep objects alive for a
    while (model data collection's buffer) make full collections more frequent: the p99 latency
    doubled (docs/benchmarks.md). Those objects live as long as the worker anyway."""
    import gc

    gc.collect()
    gc.freeze()


def _flush_model_data() -> None:
    """Write the rows model data collection still buffers: workers leave with ``os._exit``, which
    skips ``atexit``. Only when the entry script collected (the module is then loaded)."""
    collect = sys.modules.get("mlctl.serve.collect")
    if collect is not None:
        collect.flush_before_exit(log)


def _batcher(args: argparse.Namespace, entry: Any) -> object:
    from mlctl.serve.batching import Batcher

    if args.batch_size <= 0:
        return None
    return Batcher(entry, max_batch_size=args.batch_size, max_wait_ms=args.batch_wait_ms)


def _check_tls(args: argparse.Namespace) -> None:
    """Fail like a broken entry script (exit 3, clear message) when the certificate cannot be used."""
    import ssl

    from mlctl.serve.backends.entry_script import EntryScriptError

    if args.ssl_certfile is None and args.ssl_keyfile is None:
        return
    if args.ssl_certfile is None or args.ssl_keyfile is None:
        raise EntryScriptError("TLS needs both --ssl-certfile and --ssl-keyfile")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise EntryScriptError(f"cannot use the TLS certificate and key: {exc}") from None


def _keys(path: Path | None) -> object:
    from mlctl.serve.auth import KeyStore
    from mlctl.serve.backends.entry_script import EntryScriptError

    if path is None:
        return None
    try:
        return KeyStore(path)
    except (OSError, ValueError) as exc:
        raise EntryScriptError(f"cannot read the keys file {path}: {exc}") from None


def _serve(
    args: argparse.Namespace,
    sockets: list[socket.socket],
    backend: object,
    keys: object,
    metrics: object,
    batcher: object,
) -> None:
    from mlctl.serve.app import ScoringApp
    from mlctl.serve.runner import Runner
    from mlctl.serve.settings import cors_origins
    from mlctl.serve.worker import serve

    runner = Runner(
        concurrency=args.concurrency,
        queue=args.queue,
        timeout_s=args.timeout_ms / 1000,
        max_wait_s=args.max_wait_ms / 1000,
    )
    app = ScoringApp(
        backend,
        max_request_bytes=args.max_request_bytes,
        debug=args.debug,
        runner=runner,
        keys=keys,  # type: ignore[arg-type]
        metrics=metrics,  # type: ignore[arg-type]
        access_log=args.access_log,
        batcher=batcher,  # type: ignore[arg-type]
        cors_origins=cors_origins(args.cors_origins),
        model_name=args.model_name,
        model_version=args.model_version,
    )
    serve(app, sockets, args.ssl_certfile, args.ssl_keyfile)


if __name__ == "__main__":
    sys.exit(main())
