"""A stand-in for the IoT Edge daemon's workload API (aziot-edged), HTTP on a Unix socket.

What ``azure-iot-device``'s ``IoTEdgeHsm`` calls (``create_from_edge_environment``):

* ``GET /trust-bundle?api-version=V`` -> ``{"certificate": "<PEM>"}``: the CA the module trusts
  for edgeHub's TLS (here: the tests' certificate of the Mosquitto broker);
* ``POST /modules/{module}/genid/{genid}/sign?api-version=V`` with ``{"keyId": "primary",
  "algo": "HMACSHA256", "data": "<base64>"}`` -> ``{"digest": "<base64 HMAC-SHA256>"}`` with the
  module identity's key (here: a random key per module, never printed).

Unknown modules or generation ids are 404, a missing ``api-version`` 400, other key ids or
algorithms 400. The real daemon also checks the caller's identity (the process's container); this
one does not. Each signed payload is recorded (``signed``) so a test can check what the SDK asked
to sign (``<host>/devices/<device>/modules/<module>\\n<expiry>``) and that no digest leaks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "2019-01-30"
_SIGN = re.compile(r"^/modules/([^/]+)/genid/([^/]+)/sign$")


@dataclass
class Workload:
    """The stand-in's state: trust bundle, module identities ``(module, genid) -> key``, what it signed."""

    socket_path: Path
    trust_bundle: str
    keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    signed: list[tuple[str, str]] = field(default_factory=list)  # (module, payload)
    digests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def add_module(self, module: str) -> str:
        """Register a module identity with a fresh key; returns its generation id."""
        genid = secrets.token_hex(8)
        self.keys[(module, genid)] = secrets.token_bytes(32)
        return genid

    def module_env(self, device: str, module: str) -> dict[str, str]:
        """The IoT Edge runtime's variables for a new identity of ``module`` on ``device`` (as edgeAgent
        sets them for a module container), pointing at this stand-in and an edgeHub on 127.0.0.1."""
        return {
            "IOTEDGE_IOTHUBHOSTNAME": "hub.example",
            "IOTEDGE_GATEWAYHOSTNAME": "127.0.0.1",
            "IOTEDGE_DEVICEID": device,
            "IOTEDGE_MODULEID": module,
            "IOTEDGE_MODULEGENERATIONID": self.add_module(module),
            "IOTEDGE_WORKLOADURI": f"unix://{self.socket_path}",
            "IOTEDGE_APIVERSION": API_VERSION,
        }

    def key(self, module: str) -> bytes:
        """The key of ``module`` (for checking signatures in tests; never print it)."""
        return next(k for (m, _), k in self.keys.items() if m == module)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def address_string(self) -> str:  # a Unix socket has no peer address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.server.state.requests.append(format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._versioned(url.query):
            return
        if url.path == "/trust-bundle":
            self._send(200, {"certificate": self.server.state.trust_bundle})
        else:
            self._send(404, {"message": f"not found: {url.path}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._versioned(url.query):
            return
        match = _SIGN.match(url.path)
        state: Workload = self.server.state
        key = state.keys.get((unquote(match.group(1)), match.group(2))) if match else None
        if match is None or key is None:
            self._send(404, {"message": f"module not found: {url.path}"})
            return
        try:
            request = json.loads(body)
            data = base64.b64decode(request["data"])
        except (ValueError, KeyError, TypeError):
            self._send(400, {"message": "malformed sign request"})
            return
        if request.get("keyId") != "primary" or request.get("algo") != "HMACSHA256":
            self._send(400, {"message": "only keyId primary with HMACSHA256"})
            return
        digest = base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()
        state.signed.append((unquote(match.group(1)), data.decode("utf-8", "replace")))
        state.digests.append(digest)
        self._send(200, {"digest": digest})

    def _versioned(self, query: str) -> bool:
        if parse_qs(query).get("api-version"):
            return True
        self._send(400, {"message": "api-version is required"})
        return False

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def serve_workload(folder: Path, trust_bundle: str) -> Iterator[Workload]:
    """Serve the workload API on ``folder/workload.sock`` (mode 0666: modules run as other users)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    path = folder / "workload.sock"
    path.unlink(missing_ok=True)
    state = Workload(path, trust_bundle)
    server = _Server(str(path), _Handler)
    server.state = state  # type: ignore[attr-defined]
    os.chmod(path, 0o666)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)
