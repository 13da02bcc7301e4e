"""A fake IoT Hub service API on 127.0.0.1 (HTTPS), following the wire reference section C.

Drivable by the unmodified ``azure-iot-hub`` 2.7 clients: ``HostName=127.0.0.1:PORT`` in the
connection string, the fake's self-signed certificate trusted through ``REQUESTS_CA_BUNDLE`` or
the target's ``ca_file``. What it implements, as the reference records it:

* SAS: ``Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..``; ``sr`` must be
  ``quote_plus(host)``, ``se`` in the future, ``skn`` the policy, ``sig`` (URL-unquoted) the
  base64 HMAC-SHA256 of ``sr + "\\n" + se`` under the base64-decoded key. 401 otherwise.
* ``api-version=2021-04-12`` on every call; percent-encoded path segments (``%24edgeAgent``).
* Devices: PUT create -> 200 only (409 DeviceAlreadyExists), PUT with ``If-Match`` update,
  GET one / list, DELETE -> 204 (``If-Match: "*"`` or the etag, else 412). Edge devices get
  ``$edgeAgent`` and ``$edgeHub`` module twins.
* Twins: GET, PATCH (tags and desired merged; a null removes), module twins.
* ``applyConfigurationContent`` -> 204 (400 for a device that is not an IoT Edge device).
* Configurations: PUT create (409 if it exists) / update with ``If-Match`` (only labels,
  metrics, priority, targetCondition may change: 400 otherwise), GET one / list (``top``),
  DELETE -> 204 (``If-Match: *``). Target conditions and metric queries in ``query.py``.
* Content resolution per device (what the device's agent gets): the matching non-layered
  configuration of highest priority (then the latest created) wins, and matching layered ones of
  higher priority are merged on top in priority order (dotted ``properties.desired.a.b`` keys);
  without a matching configuration, the content set by ``applyConfigurationContent``.
* ``systemMetrics.results``: ``targetedCount`` (devices matching), ``appliedCount`` (devices
  whose content it is part of); ``metrics.results``: each custom query's count of devices.
* Errors: ``{"Message":"ErrorCode:<Name>;<detail>","ExceptionMessage":"Tracking ID:..."}`` with
  the ``iothub-errorcode`` header; never a 5xx (the SDK would retry).

Not in the service API, for the device simulator only (a real device talks MQTT/AMQP): under
``/_device/{id}/``, authenticated with the device's own SAS token (``sr`` =
``quote_plus(host/devices/id)``, no ``skn``), ``GET twin/$edgeAgent`` (the resolved content and
the ``$edgeAgent`` desired ``$version``; marks the device connected) and ``PATCH
twin/$edgeAgent/reported`` (replaces the agent's reported properties).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus

from edge_fakes.query import QueryError, parse_condition, parse_query

API_VERSION = "2021-04-12"
NEVER = "0001-01-01T00:00:00Z"
MUTABLE = {"labels", "metrics", "priority", "targetCondition", "etag", "id", "schemaVersion"}


class HubError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_etag() -> str:
    """A fresh etag (base64 of 6 random bytes)."""
    return base64.b64encode(uuid.uuid4().bytes[:6]).decode()


def sas_signature(key_b64: str, sr: str, se: str) -> str:
    """base64(HMAC-SHA256(b64decode(key), sr + "\\n" + se)), unquoted."""
    digest = hmac.new(base64.b64decode(key_b64), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def device_token(host: str, device_id: str, key: str, ttl: int = 3600) -> str:
    """A device SAS token (what a device SDK sends), for the simulator."""
    sr = quote_plus(f"{host}/devices/{device_id}")
    se = str(int(time.time()) + ttl)
    return f"SharedAccessSignature sr={sr}&sig={quote_plus(sas_signature(key, sr, se))}&se={se}"


class HubState:
    """Everything the hub holds, guarded by one lock; ``content_for`` resolves a device's content."""

    def __init__(self, host: str, policy: str, key: str) -> None:
        self.host, self.policy, self.key = host, policy, key
        self.lock = threading.RLock()
        self.devices: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.sequence = itertools.count()
        self.requests: list[str] = []  # "METHOD path" of every service call, for tests

    # -- devices ------------------------------------------------------------------------------
    def create_device(self, body: dict[str, Any]) -> dict[str, Any]:
        device_id = body["deviceId"]
        if device_id in self.devices:
            raise HubError(409, "DeviceAlreadyExists", device_id)
        edge = bool((body.get("capabilities") or {}).get("iotEdge"))
        generation = f"6{next(self.sequence):017d}"
        device = {
            "deviceId": device_id,
            "generationId": generation,
            "etag": new_etag(),
            "connectionState": "Disconnected",
            "status": body.get("status", "enabled"),
            "statusReason": body.get("statusReason"),
            "connectionStateUpdatedTime": NEVER,
            "statusUpdatedTime": NEVER,
            "lastActivityTime": NEVER,
            "cloudToDeviceMessageCount": 0,
            "authentication": body.get("authentication") or {"type": "sas", "symmetricKey": {}},
            "capabilities": {"iotEdge": edge},
            "deviceScope": f"ms-azure-iot-edge://{device_id}-{generation}" if edge else None,
            "parentScopes": [],
        }
        self.devices[device_id] = {
            "device": device,
            "tags": {},
            "desired": {},
            "reported": {},
            "twin_version": 1,
            "twin_etag": new_etag(),
            "direct": None,
            "modules": {m: self._module_twin() for m in ("$edgeAgent", "$edgeHub")} if edge else {},
            "applied": [],
        }
        return device

    @staticmethod
    def _module_twin() -> dict[str, Any]:
        return {"desired": {}, "desired_version": 1, "reported": {}, "reported_version": 1, "etag": new_etag()}

    def device(self, device_id: str) -> dict[str, Any]:
        if device_id not in self.devices:
            raise HubError(404, "DeviceNotFound", device_id)
        return self.devices[device_id]

    def twin(self, device_id: str) -> dict[str, Any]:
        entry = self.device(device_id)
        d = entry["device"]
        return {
            "deviceId": device_id,
            "etag": entry["twin_etag"],
            "deviceEtag": d["etag"],
            "status": d["status"],
            "statusUpdateTime": NEVER,
            "connectionState": d["connectionState"],
            "lastActivityTime": d["lastActivityTime"],
            "cloudToDeviceMessageCount": 0,
            "authenticationType": "sas",
            "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
            "version": entry["twin_version"],
            "tags": copy.deepcopy(entry["tags"]),
            "properties": {
                "desired": {**entry["desired"], "$version": entry["twin_version"]},
                "reported": {"$version": 1},
            },
            "capabilities": d["capabilities"],
            "deviceScope": d["deviceScope"],
            "parentScopes": [],
        }

    def patch_twin(self, device_id: str, patch: dict[str, Any], if_match: str | None) -> dict[str, Any]:
        entry = self.device(device_id)
        if if_match not in (None, "*", '"*"', f'"{entry["twin_etag"]}"', entry["twin_etag"]):
            raise HubError(412, "PreconditionFailed", f"etag of twin {device_id}")
        _merge(entry["tags"], patch.get("tags") or {})
        _merge(entry["desired"], (patch.get("properties") or {}).get("desired") or {})
        entry["twin_version"] += 1
        entry["twin_etag"] = new_etag()
        self.refresh()
        return self.twin(device_id)

    def module_twin(self, device_id: str, module_id: str) -> dict[str, Any]:
        entry = self.device(device_id)
        if module_id not in entry["modules"]:
            raise HubError(404, "ModuleNotFound", f"{device_id}/{module_id}")
        m = entry["modules"][module_id]
        return {
            "deviceId": device_id,
            "moduleId": module_id,
            "etag": m["etag"],
            "deviceEtag": entry["device"]["etag"],
            "status": "enabled",
            "connectionState": entry["device"]["connectionState"],
            "lastActivityTime": entry["device"]["lastActivityTime"],
            "authenticationType": "sas",
            "version": m["desired_version"] + m["reported_version"],
            "properties": {
                "desired": {**copy.deepcopy(m["desired"]), "$version": m["desired_version"]},
                "reported": {**copy.deepcopy(m["reported"]), "$version": m["reported_version"]},
            },
        }

    # -- content resolution -------------------------------------------------------------------
    def _row(self, device_id: str) -> dict[str, Any]:
        twin = self.twin(device_id)
        twin["configurations"] = self._config_status(device_id)
        return twin

    def _config_status(self, device_id: str) -> dict[str, Any]:
        entry = self.devices[device_id]
        row = {"deviceId": device_id, "tags": entry["tags"], "capabilities": entry["device"]["capabilities"]}
        status = {}
        for cid, config in self.configs.items():
            if _matches(config, row):
                status[cid] = {"status": "Applied" if cid in entry["applied"] else "Targeted"}
        return status

    def resolve(self, device_id: str) -> tuple[dict[str, Any] | None, list[str]]:
        """(modulesContent the device gets, ids of the configurations it is made of)."""
        entry = self.devices[device_id]
        row = {"deviceId": device_id, "tags": entry["tags"], "capabilities": entry["device"]["capabilities"]}
        matching = [c for c in self.configs.values() if c.get("content", {}).get("modulesContent") and _matches(c, row)]
        bases = [c for c in matching if not _layered(c)]
        if not bases:
            return (copy.deepcopy(entry["direct"]) if entry["direct"] else None), []
        base = max(bases, key=lambda c: (c["priority"], c["_sequence"]))
        layers = sorted(
            (c for c in matching if _layered(c) and c["priority"] > base["priority"]),
            key=lambda c: (c["priority"], c["_sequence"]),
        )
        content = copy.deepcopy(base["content"]["modulesContent"])
        for layer in layers:
            for module, props in layer["content"]["modulesContent"].items():
                target = content.setdefault(module, {})
                for dotted, value in props.items():
                    _set_path(target, dotted, copy.deepcopy(value))
        return content, [base["id"], *(c["id"] for c in layers)]

    def refresh(self) -> None:
        """Recompute every device's content and module twins' desired properties (versions bump on change)."""
        for device_id, entry in self.devices.items():
            content, applied = self.resolve(device_id)
            entry["applied"] = applied
            for module_id, props in (content or {}).items():
                twin = entry["modules"].setdefault(module_id, self._module_twin())
                desired = props.get("properties.desired", {})
                if desired != twin["desired"]:
                    twin["desired"] = copy.deepcopy(desired)
                    twin["desired_version"] += 1
                    twin["etag"] = new_etag()

    # -- configurations -----------------------------------------------------------------------
    def put_configuration(self, config_id: str, body: dict[str, Any], if_match: str | None) -> dict[str, Any]:
        if body.get("id") not in (None, config_id):
            raise HubError(400, "ArgumentInvalid", "the body's id differs from the URL's")
        existing = self.configs.get(config_id)
        if if_match is None:
            if existing is not None:
                raise HubError(409, "ConfigurationAlreadyExists", config_id)
            try:
                _ = parse_condition(body.get("targetCondition") or "deviceId='*none*'")
                for query in ((body.get("metrics") or {}).get("queries") or {}).values():
                    parse_query(query)
            except QueryError as error:
                raise HubError(400, "ArgumentInvalid", str(error)) from None
            config = {
                **body,
                "id": config_id,
                "priority": int(body.get("priority") or 0),
                "createdTimeUtc": _now(),
                "lastUpdatedTimeUtc": _now(),
                "etag": new_etag(),
                "_sequence": next(self.sequence),
            }
            self.configs[config_id] = config
        else:
            if existing is None:
                raise HubError(404, "ConfigurationNotFound", config_id)
            if if_match not in ("*", existing["etag"]):
                raise HubError(412, "PreconditionFailed", f"etag of configuration {config_id}")
            if body.get("content") not in (None, existing.get("content")):
                raise HubError(400, "ArgumentInvalid", "Configuration identifier and Content cannot be updated")
            existing.update({k: v for k, v in body.items() if k in MUTABLE and k != "id"})
            existing.update(etag=new_etag(), lastUpdatedTimeUtc=_now())
        self.refresh()
        return self.configuration(config_id)

    def configuration(self, config_id: str) -> dict[str, Any]:
        if config_id not in self.configs:
            raise HubError(404, "ConfigurationNotFound", config_id)
        config = {k: v for k, v in self.configs[config_id].items() if not k.startswith("_")}
        rows = {d: self._row(d) for d in self.devices}
        targeted = sum(1 for d in self.devices if _matches(config, rows[d]))
        applied = sum(1 for d, e in self.devices.items() if config_id in e["applied"])
        config["systemMetrics"] = {
            "results": {"targetedCount": targeted, "appliedCount": applied},
            "queries": {
                "targetedCount": f"SELECT deviceId FROM devices WHERE {config.get('targetCondition')}",
                "appliedCount": f"SELECT deviceId FROM devices WHERE configurations.[[{config_id}]].status = 'Applied'",
            },
        }
        queries = (config.get("metrics") or {}).get("queries") or {}
        config["metrics"] = {"results": {n: self._count(q, rows) for n, q in queries.items()}, "queries": queries}
        return config

    def _count(self, query: str, rows: dict[str, dict[str, Any]]) -> int:
        collection, predicate = parse_query(query)
        found = set()
        for device_id, row in rows.items():
            if collection == "devices":
                if predicate(row):
                    found.add(device_id)
                continue
            for module_id in self.devices[device_id]["modules"]:
                module_row = {**self.module_twin(device_id, module_id), "configurations": row["configurations"]}
                if predicate(module_row):
                    found.add(device_id)
        return len(found)

    def delete_configuration(self, config_id: str, if_match: str | None) -> None:
        if config_id not in self.configs:
            raise HubError(404, "ConfigurationNotFound", config_id)
        if if_match not in ("*", self.configs[config_id]["etag"]):
            raise HubError(412, "PreconditionFailed", f"etag of configuration {config_id}")
        del self.configs[config_id]
        self.refresh()


def _layered(config: dict[str, Any]) -> bool:
    content = config["content"]["modulesContent"]
    return any(key != "properties.desired" for props in content.values() for key in props)


def _matches(config: dict[str, Any], row: dict[str, Any]) -> bool:
    condition = config.get("targetCondition")
    if not condition:
        return False
    if condition.strip() == "*":
        return True
    return parse_condition(condition)(row)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    """``properties.desired.modules.x`` -> target["properties.desired"]["modules"]["x"] = value."""
    parts = dotted.split(".")
    if parts[:2] != ["properties", "desired"]:
        return
    node = target.setdefault("properties.desired", {})
    for part in parts[2:-1]:
        node = node.setdefault(part, {})
    if len(parts) == 2:
        _merge(node, value)
    else:
        node[parts[-1]] = value
