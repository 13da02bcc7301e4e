"""The fake IoT Hub's HTTPS layer: routing, SAS checks, error bodies (see ``hub.py`` for the rules)."""

from __future__ import annotations

import hmac
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit

from edge_fakes.hub import API_VERSION, HubError, HubState, new_etag, sas_signature
from edge_fakes.methods import NestedHubError, PendingMethod, device_answer, device_take, invoke

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(f"^{p}$"), h)
    for m, p, h in [
        ("PUT", r"/devices/([^/]+)", "put_device"),
        ("GET", r"/devices/([^/]+)", "get_device"),
        ("GET", r"/devices", "list_devices"),
        ("DELETE", r"/devices/([^/]+)", "delete_device"),
        ("GET", r"/devices/([^/]+)/modules", "list_modules"),
        ("POST", r"/devices/([^/]+)/applyConfigurationContent", "apply_content"),
        ("GET", r"/twins/([^/]+)", "get_twin"),
        ("PATCH", r"/twins/([^/]+)", "patch_twin"),
        ("GET", r"/twins/([^/]+)/modules/([^/]+)", "get_module_twin"),
        ("PUT", r"/configurations/([^/]+)", "put_configuration"),
        ("GET", r"/configurations/([^/]+)", "get_configuration"),
        ("GET", r"/configurations", "list_configurations"),
        ("DELETE", r"/configurations/([^/]+)", "delete_configuration"),
        ("GET", r"/_device/([^/]+)/twin/([^/]+)", "device_get_twin"),
        ("PATCH", r"/_device/([^/]+)/twin/([^/]+)/reported", "device_report"),
        ("POST", r"/twins/([^/]+)/modules/([^/]+)/methods", "invoke_module_method"),
        ("GET", r"/_device/([^/]+)/methods/([^/]+)", "device_take_methods"),
        ("POST", r"/_device/([^/]+)/methods/([^/]+)/([^/]+)", "device_answer_method"),
    ]
]


class Handler(BaseHTTPRequestHandler):
    """One request: authenticate, route to ``HubState``, answer JSON."""

    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: tests read HubState.requests instead

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, body = self._dispatch(method, url, raw)
            if isinstance(body, PendingMethod):  # a direct method: waits for the device outside the lock
                status, body = body.wait()
        except NestedHubError as error:
            self._nested_error(error)
            return
        except HubError as error:
            self._error(error)
            return
        self._send(status, body)

    def _dispatch(self, method: str, url: Any, raw: bytes) -> tuple[int, Any]:
        state = self.server.state
        for route_method, pattern, handler in _ROUTES:
            match = pattern.match(url.path)
            if match and route_method == method:
                args = [unquote(g) for g in match.groups()]
                device_call = handler.startswith("device_")
                if device_call:
                    self._check_device_sas(args[0])
                else:
                    self._check_service_sas()
                    if parse_qs(url.query).get("api-version") != [API_VERSION]:
                        raise HubError(400, "InvalidProtocolVersion", f"api-version must be {API_VERSION}")
                body = json.loads(raw) if raw else None
                with state.lock:
                    if not device_call:
                        state.requests.append(f"{method} {url.path}")
                    return getattr(self, handler)(state, *args, body=body, query=parse_qs(url.query))  # type: ignore[no-any-return]
        raise HubError(404, "NotFound", f"{method} {url.path}")

    # -- authentication ------------------------------------------------------------------------
    def _fields(self) -> dict[str, str]:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("SharedAccessSignature "):
            raise HubError(401, "IotHubUnauthorizedAccess", "no SharedAccessSignature")
        return dict(p.split("=", 1) for p in header.removeprefix("SharedAccessSignature ").split("&") if "=" in p)

    def _check_service_sas(self) -> None:
        state = self.server.state
        fields = self._fields()
        self._check_token(fields, quote_plus(state.host), state.key)
        if fields.get("skn") != state.policy:
            raise HubError(401, "IotHubUnauthorizedAccess", "unknown policy")

    def _check_device_sas(self, device_id: str) -> None:
        state = self.server.state
        with state.lock:
            entry = state.device(device_id)
        key = entry["device"]["authentication"]["symmetricKey"]["primaryKey"]
        self._check_token(self._fields(), quote_plus(f"{state.host}/devices/{device_id}"), key)

    @staticmethod
    def _check_token(fields: dict[str, str], sr: str, key: str) -> None:
        if fields.get("sr", "").lower() != sr.lower():
            raise HubError(401, "IotHubUnauthorizedAccess", "sr does not name this hub")
        if not fields.get("se", "").isdigit() or int(fields["se"]) < time.time():
            raise HubError(401, "IotHubUnauthorizedAccess", "the token expired")
        expected = sas_signature(key, fields["sr"], fields["se"])
        if not hmac.compare_digest(unquote(fields.get("sig", "")), expected):
            raise HubError(401, "IotHubUnauthorizedAccess", "signature mismatch")

    # -- service API ---------------------------------------------------------------------------
    def put_device(self, state: HubState, device_id: str, *, body: Any, query: Any) -> tuple[int, Any]:
        if_match = self.headers.get("If-Match")
        if if_match is None:
            return 200, state.create_device({**body, "deviceId": device_id})
        entry = state.device(device_id)
        if if_match not in ('"*"', f'"{entry["device"]["etag"]}"'):
            raise HubError(412, "PreconditionFailed", f"etag of device {device_id}")
        entry["device"].update({k: body[k] for k in ("status", "statusReason", "authentication") if k in body})
        entry["device"]["etag"] = new_etag()  # every update changes it, so a stale If-Match is refused
        return 200, entry["device"]

    def get_device(self, state: HubState, device_id: str, **_: Any) -> tuple[int, Any]:
        return 200, state.device(device_id)["device"]

    def list_devices(self, state: HubState, *, query: Any, **_: Any) -> tuple[int, Any]:
        top = int(query.get("top", ["1000"])[0])
        return 200, [e["device"] for e in list(state.devices.values())[:top]]

    def delete_device(self, state: HubState, device_id: str, **_: Any) -> tuple[int, Any]:
        entry = state.device(device_id)
        if self.headers.get("If-Match") not in ('"*"', f'"{entry["device"]["etag"]}"'):
            raise HubError(412, "PreconditionFailed", f"etag of device {device_id}")
        del state.devices[device_id]
        return 204, None

    def list_modules(self, state: HubState, device_id: str, **_: Any) -> tuple[int, Any]:
        entry = state.device(device_id)
        return 200, [{"moduleId": m, "deviceId": device_id, "managedBy": "IotEdge"} for m in entry["modules"]]

    def apply_content(self, state: HubState, device_id: str, *, body: Any, **_: Any) -> tuple[int, Any]:
        entry = state.device(device_id)
        if not entry["device"]["capabilities"]["iotEdge"]:
            raise HubError(400, "ArgumentInvalid", f"{device_id}: Not an Azure IoT Edge device")
        content = (body or {}).get("modulesContent")
        if not isinstance(content, dict) or "$edgeAgent" not in content:
            raise HubError(400, "ArgumentInvalid", "modulesContent with $edgeAgent is required")
        entry["direct"] = content
        state.refresh()
        return 204, None

    def get_twin(self, state: HubState, device_id: str, **_: Any) -> tuple[int, Any]:
        return 200, state.twin(device_id)

    def patch_twin(self, state: HubState, device_id: str, *, body: Any, **_: Any) -> tuple[int, Any]:
        return 200, state.patch_twin(device_id, body or {}, self.headers.get("If-Match"))

    def get_module_twin(self, state: HubState, device_id: str, module_id: str, **_: Any) -> tuple[int, Any]:
        return 200, state.module_twin(device_id, module_id)

    def put_configuration(self, state: HubState, config_id: str, *, body: Any, **_: Any) -> tuple[int, Any]:
        return 200, state.put_configuration(config_id, body or {}, self.headers.get("If-Match"))

    def get_configuration(self, state: HubState, config_id: str, **_: Any) -> tuple[int, Any]:
        return 200, state.configuration(config_id)

    def list_configurations(self, state: HubState, *, query: Any, **_: Any) -> tuple[int, Any]:
        top = int(query.get("top", ["1000"])[0])
        return 200, [state.configuration(c) for c in list(state.configs)[:top]]

    def delete_configuration(self, state: HubState, config_id: str, **_: Any) -> tuple[int, Any]:
        state.delete_configuration(config_id, self.headers.get("If-Match"))
        return 204, None

    # -- the simulator's side door ---------------------------------------------------------------
    def device_get_twin(self, state: HubState, device_id: str, module_id: str, **_: Any) -> tuple[int, Any]:
        entry = state.device(device_id)
        entry["device"].update(connectionState="Connected", lastActivityTime=_now())
        content, applied = state.resolve(device_id)
        twin = state.module_twin(device_id, module_id)
        return 200, {"content": content, "applied": applied, "desired": twin["properties"]["desired"]}

    def device_report(self, state: HubState, device_id: str, module_id: str, *, body: Any, **_: Any) -> tuple[int, Any]:
        entry = state.device(device_id)
        twin = entry["modules"].setdefault(module_id, state._module_twin())
        twin["reported"] = body or {}
        twin["reported_version"] += 1
        entry["device"].update(connectionState="Connected", lastActivityTime=_now())
        return 200, {"$version": twin["reported_version"]}

    # -- direct methods (methods.py) -------------------------------------------------------------
    def invoke_module_method(
        self, state: HubState, device_id: str, module_id: str, *, body: Any, **_: Any
    ) -> tuple[int, Any]:
        return 200, invoke(state, device_id, module_id, body)

    def device_take_methods(self, state: HubState, device_id: str, module_id: str, **_: Any) -> tuple[int, Any]:
        return 200, device_take(state, device_id, module_id)

    def device_answer_method(
        self, state: HubState, device_id: str, module_id: str, rid: str, *, body: Any, **_: Any
    ) -> tuple[int, Any]:
        device_answer(state, device_id, rid, body)
        return 204, None

    def _nested_error(self, error: NestedHubError) -> None:
        self._send_error(error.status, error.code, {"Message": error.detail, "ExceptionMessage": ""})

    # -- answers ---------------------------------------------------------------------------------
    def _send(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: HubError) -> None:
        stamp = datetime.now(timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
        body = {
            "Message": f"ErrorCode:{error.code};{error.detail}",
            "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}",
        }
        self._send_error(error.status, error.code, body)

    def _send_error(self, status: int, code: str, body: dict[str, str]) -> None:
        """An error answer as the hub sends it: the JSON body and the ``iothub-errorcode`` header."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("iothub-errorcode", code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


@dataclass
class RunningHub:
    """A started fake hub: its state, its service connection string (a secret) and its CA file."""

    state: HubState
    connection_string: str
    ca_file: Path
    host: str


@contextmanager
def serve(cert: Path, key: Path, *, policy: str = "iothubowner", shared_key: str | None = None) -> Iterator[RunningHub]:
    """Run the fake hub on a free port of 127.0.0.1 in a thread, over TLS with ``cert``/``key``."""
    import base64
    import secrets

    shared_key = shared_key or base64.b64encode(secrets.token_bytes(32)).decode()
    server = HubServer(("127.0.0.1", 0), Handler)
    host = f"127.0.0.1:{server.server_address[1]}"
    server.state = HubState(host, policy, shared_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningHub(
            server.state, f"HostName={host};SharedAccessKeyName={policy};SharedAccessKey={shared_key}", cert, host
        )
    finally:
        server.shutdown()
        server.server_close()
