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


def wrk(url: str, body: bytes, *, seconds: float, connections: int) -> tuple[float, str, str, int]:
    """Load ``url`` with wrk as the shared peer harness does (``-t1 -cN --timeout 5s``, POST ``body``
    as JSON, keep-alive); returns (req/s, p50, p99 as wrk prints them, non-2xx + socket errors).

    Raises:
        subprocess.CalledProcessError: wrk failed (not installed: ``apt-get install wrk``).
    """
    import json
    import re
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        lua.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
        command += ["--latency", "-s", lua.name, url]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return rps, p50, p99, errors
