"""``python -m mlctl.serve``: a pre-fork supervisor of uvicorn workers.

The supervisor binds the listening socket(s) once, then forks ``--workers`` processes. Each
worker imports the entry script and calls ``init()`` in its main thread (Azure ML semantics:
one ``init()`` per worker), then serves with uvicorn (uvloop + httptools when installed). The
optional probe socket (``--status-file``) is a private 127.0.0.1 port that only this server
answers, so a deployer can check *this* server's readiness while an older one still holds the
public port (``--reuse-port``, for zero-downtime updates).

Exit codes: 0 stopped by SIGTERM/SIGINT; 3 the entry script failed to load or ``init()`` raised;
4 the port cannot be bound; 1 workers kept crashing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4
EXIT_CRASHING = 1
_MAX_RESTARTS = 5  # per minute, then the supervisor gives up

log = logging.getLogger("mlctl.serve")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m mlctl.serve", description="Serve an Azure ML entry script.")
    p.add_argument("--entry-script", required=True, type=Path, help="file with init() and run()")
    p.add_argument("--model-dir", type=Path, help="sets AZUREML_MODEL_DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8890)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-request-bytes", type=int, default=100 * 1024 * 1024)
    p.add_argument("--reuse-port", action="store_true", help="share the port with an older server (update)")
    p.add_argument("--status-file", type=Path, help="write {pid, port, probe_port} here once bound")
    p.add_argument("--debug", action="store_true", help="tracebacks in 500 responses")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")
    if args.model_dir is not None:
        os.environ["AZUREML_MODEL_DIR"] = str(args.model_dir.resolve())
    try:
        sockets = [_bind(args.host, args.port, reuse_port=args.reuse_port)]
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return EXIT_BIND_FAILED
    if args.status_file is not None:
        sockets.append(_bind("127.0.0.1", 0, reuse_port=False))
        _write_status(args.status_file, args.port, sockets[1].getsockname()[1])
    log.info("listening on http://%s:%d (%d worker(s))", args.host, args.port, args.workers)
    return Supervisor(args, sockets).run()


class Supervisor:
    """Forks and watches workers; stops them all on SIGTERM/SIGINT or when one fails ``init()``."""

    def __init__(self, args: argparse.Namespace, sockets: list[socket.socket]) -> None:
        self.args = args
        self.sockets = sockets
        self.workers: set[int] = set()
        self.stopping = False
        self.restarts: list[float] = []

    def run(self) -> int:
        """Supervise until stopped; returns the exit code."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.args.workers):
            self._spawn()
        code = 0
        while self.workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self.workers.discard(pid)
            code = self._reap(pid, os.waitstatus_to_exitcode(status), code)
        return code

    def _reap(self, pid: int, exit_code: int, code: int) -> int:
        if self.stopping:
            return code
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
        self._spawn()
        return code

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os._exit(_worker(self.args, self.sockets))
        self.workers.add(pid)

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


def _worker(args: argparse.Namespace, sockets: list[socket.socket]) -> int:
    from mlctl.serve.entry import EntryScript

    try:
        started = time.monotonic()
        entry = EntryScript(args.entry_script.resolve())
        entry.init()
        log.info("init() completed in %.2fs", time.monotonic() - started)
    except BaseException:  # noqa: BLE001 - report anything init() raises, then exit 3
        log.error("entry script failed during load or init():\n%s", traceback.format_exc().rstrip())
        return EXIT_INIT_FAILED
    _serve(args, sockets, entry)
    return 0


def _serve(args: argparse.Namespace, sockets: list[socket.socket], entry: object) -> None:
    import uvicorn

    from mlctl.serve.app import ScoringApp

    app = ScoringApp(entry, max_request_bytes=args.max_request_bytes, debug=args.debug)  # type: ignore[arg-type]
    config = uvicorn.Config(app, loop=_loop(), http=_http(), lifespan="on", access_log=False,
                            log_level="warning", server_header=False, date_header=False,
                            timeout_graceful_shutdown=30, log_config=None)
    uvicorn.Server(config).run(sockets=sockets)


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """Listen on host:port. The socket always allows SO_REUSEPORT, so a later server (an update)
    can share the port; unless ``reuse_port``, an exclusive trial bind first proves it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not reuse_port and port != 0:
        with socket.socket(family, socket.SOCK_STREAM) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            trial.bind((host, port))
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _write_status(path: Path, port: int, probe_port: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port, "probe_port": probe_port}))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
