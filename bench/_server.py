"""What the benchmark scripts share: a free port, starting a scoring server, waiting for its readiness."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float = 60.0) -> None:
    """Poll ``/readyz`` until it answers 200. Raises SystemExit after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def start_server(entry_script: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    """``python -m mlctl.serve`` with 2 workers on 127.0.0.1:``port`` (output discarded); the caller
    stops it (SIGTERM) and waits."""
    command = [sys.executable, "-m", "mlctl.serve", "--entry-script", str(entry_script), "--port", str(port)]
    return subprocess.Popen(
        [*command, "--workers", "2", *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
