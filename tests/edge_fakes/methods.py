"""Direct methods for the edge fakes: the hub's service call and the simulated edgeAgent's answers.

Hub side (service API, as ``azure-iot-hub``'s ``invoke_device_module_method`` sends it):
``POST /twins/{deviceId}/modules/{moduleId}/methods?api-version=2021-04-12`` with
``{methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds}``; 200
``{"status": <the device's status>, "payload": <the device's payload>}`` whatever status the
device answered. Refusals, with the ``iothub-errorcode`` header and the newer error body nested in
``Message`` (as the hub sends for methods; Azure/iotedge#98, azure-iot-cli-extension#54):

* 404 DeviceNotFound / ModuleNotFound: no such identity;
* 404 DeviceNotOnline (errorCode 404103, "Timed out waiting for device to connect."): the
  device is not connected (has not polled for methods within ``ONLINE_S``) within
  ``connectTimeoutInSeconds`` (default 0: at once);
* 504 GatewayTimeout (errorCode 504101, "Timed out waiting for the response from device."):
  no answer within ``responseTimeoutInSeconds`` (default 30; 5..300, else 400 ArgumentInvalid).

The wait happens outside the hub's lock: the handler returns a ``PendingMethod`` that the HTTP
layer waits on. Device side (a test-only side door, as a real device uses MQTT
``$iothub/methods/POST/#``): ``GET /_device/{id}/methods/{module}`` takes the pending calls,
``POST /_device/{id}/methods/{module}/{rid}`` answers one with ``{status, payload}``.

``AgentMethods`` answers like edgeAgent's ``RequestManager`` (Azure/iotedge edge-agent
``Core/requests``): method names case-insensitive; an unknown one is 400 ``{"message": "Command
'X' not found. The supported commands are - ..."}``; an ArgumentException 400, anything else 500
``{"message": ...}``. ``GetModuleLogs`` (schema 1.x, ``items`` one or a list of ``{id: regex,
filter: {tail, since, until, regex}}``, matched case-insensitively and unanchored against the
modules' names; only ``encoding: none``, ``contentType: text`` here) answers a list of ``{id,
payload}`` for the matching modules only (none: an empty list), the text of the container's
real Docker logs; over 127000 characters is 400 "The payload is too large ...". ``since`` /
``until`` as edgelet's ``parse_since``: RFC 3339, a unix time, or a duration (``15m``, ``2h``,
``1h 30m``) back from now. ``RestartModule`` ``{schemaVersion, id}`` restarts the module's
container for real (500 "Module X not found in the current environment" for an unknown one);
``ping`` answers 200 with no payload. Not simulated: ``loglevel``, gzip, json content, the
upload methods, edgeAgent's and edgeHub's own logs.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from edge_fakes.hub import HubError, HubState

ONLINE_S = 2.0  # a device that polled for methods this recently is connected
MAX_PAYLOAD = 127000


class PendingMethod:
    """One direct method call on its way to a device; ``wait()`` runs outside the hub's lock."""

    def __init__(self, state: HubState, entry: dict[str, Any], module_id: str, body: dict[str, Any]) -> None:
        self.state, self.entry, self.module_id = state, entry, module_id
        self.rid = uuid.uuid4().hex
        self.request = {"rid": self.rid, "methodName": body["methodName"], "payload": body.get("payload")}
        self.response_timeout = _seconds(body, "responseTimeoutInSeconds", 30, 5, 300)
        self.connect_timeout = _seconds(body, "connectTimeoutInSeconds", 0, 0, 300)
        self.answer: dict[str, Any] | None = None
        self.done = threading.Event()

    def wait(self) -> tuple[int, Any]:
        """(200, {status, payload}); raises HubError 404 DeviceNotOnline or 504 GatewayTimeout."""
        deadline = time.monotonic() + self.connect_timeout
        while not _online(self.entry, self.module_id):
            if time.monotonic() >= deadline:
                raise _nested(404, "DeviceNotOnline", 404103, "Timed out waiting for device to connect.")
            time.sleep(0.1)
        with self.state.lock:
            self.entry.setdefault("method_calls", {})[self.rid] = self
            self.entry.setdefault("method_queue", []).append((self.module_id, self.request))
        if not self.done.wait(self.response_timeout):
            with self.state.lock:
                self.entry["method_calls"].pop(self.rid, None)
                queue = self.entry["method_queue"]
                queue[:] = [q for q in queue if q[1]["rid"] != self.rid]
            raise _nested(504, "GatewayTimeout", 504101, "Timed out waiting for the response from device.")
        assert self.answer is not None
        return 200, {"status": self.answer.get("status"), "payload": self.answer.get("payload")}


def invoke(state: HubState, device_id: str, module_id: str, body: Any) -> PendingMethod:
    """The service call (under the lock): checks identities and body, returns the pending call."""
    entry = state.device(device_id)
    if module_id not in entry["modules"]:
        raise HubError(404, "ModuleNotFound", f"{device_id}/{module_id}")
    if not isinstance(body, dict) or not isinstance(body.get("methodName"), str) or not body["methodName"]:
        raise HubError(400, "ArgumentInvalid", "methodName is required")
    return PendingMethod(state, entry, module_id, body)


def device_take(state: HubState, device_id: str, module_id: str) -> list[dict[str, Any]]:
    """The device polls: marks it connected, hands over (and removes) its pending calls."""
    entry = state.device(device_id)
    entry.setdefault("methods_polled", {})[module_id] = time.monotonic()
    queue = entry.setdefault("method_queue", [])
    taken = [request for module, request in queue if module == module_id]
    queue[:] = [q for q in queue if q[0] != module_id]
    return taken


def device_answer(state: HubState, device_id: str, rid: str, body: Any) -> None:
    """The device answers call ``rid`` with ``{status, payload}`` (a late answer is dropped)."""
    call = state.device(device_id).get("method_calls", {}).pop(rid, None)
    if call is not None:
        call.answer = body if isinstance(body, dict) else {"status": 500, "payload": None}
        call.done.set()


def _online(entry: dict[str, Any], module_id: str) -> bool:
    polled = entry.get("methods_polled", {}).get(module_id)
    return polled is not None and time.monotonic() - polled < ONLINE_S


def _seconds(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or not low <= value <= high:
        raise HubError(400, "ArgumentInvalid", f"{key} must be between {low} and {high}")
    return value


def _nested(status: int, name: str, number: int, message: str) -> HubError:
    """A HubError whose ``Message`` holds the newer JSON error body (what the hub sends here)."""
    stamp = datetime.now(timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
    inner = {
        "errorCode": number,
        "trackingId": f"{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}",
        "message": message,
        "info": {"timeout": "00:00:00"} if number == 404103 else {},
        "timestampUtc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return NestedHubError(status, name, json.dumps(inner))


class NestedHubError(HubError):
    """Answered as ``{"Message": "<detail, a JSON text>", "ExceptionMessage": ""}``."""


# -- the simulated edgeAgent's side ---------------------------------------------------------------


class MethodFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AgentMethods:
    """Polls the hub for ``$edgeAgent`` direct methods of one simulated device and answers them."""

    SUPPORTED = ("GetModuleLogs", "RestartModule", "ping")

    def __init__(self, device: Any) -> None:
        self.device = device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AgentMethods:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import urllib.error

        while not self._stop.is_set():
            try:
                for request in self.device._request("GET", "methods/$edgeAgent"):
                    status, payload = self.handle(request["methodName"], request.get("payload"))
                    answer = {"status": status, "payload": payload}
                    self.device._request("POST", f"methods/$edgeAgent/{request['rid']}", answer)
            except urllib.error.HTTPError as error:
                if error.code == 404:  # the identity was deleted
                    return
                self.device.errors.append(repr(error))
            except Exception as error:  # noqa: BLE001 - the agent keeps answering
                self.device.errors.append(repr(error))
            self._stop.wait(0.2)

    def handle(self, name: str, payload: Any) -> tuple[int, Any]:
        """(status, payload) of one method call, as RequestManager.ProcessRequest answers."""
        handlers = {"getmodulelogs": self._logs, "restartmodule": self._restart, "ping": lambda p: None}
        try:
            handler = handlers.get(name.lower())
            if handler is None:
                raise MethodFailed(
                    400, f"Command '{name}' not found. The supported commands are - {','.join(self.SUPPORTED)}"
                )
            return 200, handler(payload)
        except MethodFailed as error:
            return error.status, {"message": str(error)}
        except Exception as error:  # noqa: BLE001 - the agent answers 500 with the message
            return 500, {"message": str(error)}

    def _logs(self, payload: Any) -> list[dict[str, Any]]:
        request = _payload(payload)
        _check_schema(request)
        if request.get("encoding", "none") != "none" or request.get("contentType", "text") != "text":
            raise MethodFailed(400, "the simulator answers encoding none, contentType text only")
        items = request.get("items")
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("id") for i in items):
            raise MethodFailed(400, "Error parsing command payload because of error - items")
        chosen: dict[str, dict[str, Any]] = {}
        names = list(self.device.modules)
        for item in items:
            pattern = re.compile(item["id"], re.IGNORECASE)
            for name in names:
                if pattern.search(name) and name.lower() not in {c.lower() for c in chosen}:
                    chosen[name] = item.get("filter") or {}
        answer = [{"id": name, "payload": self._text(name, f)} for name, f in chosen.items()]
        size = sum(len(a["payload"]) for a in answer)
        if size > MAX_PAYLOAD:
            raise MethodFailed(
                400,
                f"The payload is too large for a direct method. GetModuleLogs supports up to {MAX_PAYLOAD} bytes "
                f"of logs. The current request returned {size} bytes.\nTry reducing the size of the logs by "
                "setting the 'tail', 'since' and 'from' fields in log options filter.",
            )
        return answer

    def _text(self, name: str, log_filter: dict[str, Any]) -> str:
        container = self.device._container(name)
        if container is None:
            return ""
        options: dict[str, Any] = {"stdout": True, "stderr": True}
        if log_filter.get("tail") is not None:
            options["tail"] = int(log_filter["tail"])
        for key in ("since", "until"):
            if log_filter.get(key) is not None:
                options[key] = parse_since(str(log_filter[key]))
        text = container.logs(**options).decode(errors="replace")
        if log_filter.get("regex"):
            pattern = re.compile(log_filter["regex"])
            text = "".join(line for line in text.splitlines(keepends=True) if pattern.search(line))
        return str(text)

    def _restart(self, payload: Any) -> None:
        request = _payload(payload)
        if not isinstance(request.get("id"), str) or not request["id"].strip():
            raise MethodFailed(400, "Error parsing command payload because of error - id")
        _check_schema(request)
        container = self.device._container(request["id"]) if request["id"] in self.device.modules else None
        if container is None:
            raise MethodFailed(500, f"Module {request['id']} not found in the current environment")
        container.restart(timeout=10)
        return None


def _payload(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError as error:
            raise MethodFailed(400, f"Error parsing command payload because of error - {error}") from None
    if not isinstance(payload, dict):
        raise MethodFailed(400, "Request payload not found")
    return payload


def _check_schema(request: dict[str, Any]) -> None:
    version = str(request.get("schemaVersion") or "")
    if not version.strip():
        raise MethodFailed(400, "Error parsing command payload because of error - schemaVersion")
    if version.split(".")[0] != "1":
        raise MethodFailed(400, f"Unsupported schema version {version}")


_DURATION = re.compile(r"(\d+)\s*([a-zA-Z]+)")
_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip


def parse_since(text: str) -> int:
    """edgelet's ``parse_since``: RFC 3339 -> its unix time; an integer -> itself; a duration
    (humantime: ``15m``, ``2h``, ``1h 30m``) -> now minus it. ValueError otherwise."""
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        pass
    if text.strip().lstrip("-").isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip() or any(u not in _UNITS for _, u in parts):
        raise ValueError(f"cannot parse since {text!r}")
    return int(time.time()) - sum(int(n) * _UNITS[u] for n, u in parts)
