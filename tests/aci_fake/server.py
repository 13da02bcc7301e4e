"""The fake's control plane: ARM's ``Microsoft.ContainerInstance/containerGroups`` over HTTPS on
127.0.0.1, following ``shared/reference/azure-wire.md`` A (api-version 2023-05-01).

* Every request needs ``Authorization: Bearer <the fake's token>`` (else 401
  ``InvalidAuthenticationToken``) and, on the provider's paths, ``api-version=2023-05-01`` (else
  400 ``NoRegisteredProviderFound``); an unknown resource group is 404 ``ResourceGroupNotFound``.
* PUT: 201 (create) or 200 (update) with ``provisioningState: Pending`` and an absolute
  ``Azure-AsyncOperation`` URL (``.../locations/{loc}/operations/{guid}?api-version=2018-06-01``);
  no Location, no Retry-After. The operation answers ``Pending`` at least once, then
  ``Succeeded`` (with the events) or ``Failed`` + ``error``. The group's GET reflects the engine.
* DELETE: 200 with the last state (``instanceView.state: Stopped``), or 204 when absent.
* GET ``.../containerGroups`` lists the resource group; ``.../containers/{c}/logs[?tail=N]``.
* POST ``.../restart``: 204, no body, an ``Azure-AsyncOperation`` URL (no final GET follows a POST);
  the container restarts on the engine.
* Secrets (``secureValue``, registry ``password``, secret volume contents) are never echoed.
* Capacity: a GPU, or more than ``max_cpu`` cores, is 409 ``ServiceUnavailable`` (the code ACI
  uses for regional capacity; the spec does not enumerate its codes).
* ``Microsoft.ContainerRegistry/registries/{name}`` (GET) and ``.../listCredentials`` (POST), api-version
  2025-11-01, for registries given to ``FakeAci.registries`` (reference B).
* ``Microsoft.ContainerService/managedClusters/{name}/listClusterUserCredential`` and
  ``.../listClusterAdminCredential`` (POST, any dated api-version) for clusters given to
  ``FakeAci.clusters``, answering as the REST spec's recorded example
  ``ManagedClustersListClusterCredentialResult.json``: 200 ``{"kubeconfigs": [{"name":
  "clusterUser"|"clusterAdmin", "value": BASE64}]}``; 404 ``ResourceNotFound`` for another name,
  403 ``AuthorizationFailed`` for a name in ``FakeAci.denied_clusters``.
* Throttling: while ``FakeAci.throttle`` is positive, each request (counting it down) is 429
  ``TooManyRequests`` with ``Retry-After: 1``, which azure-core's retry policy waits out and retries.
* Never 5xx (the SDK would retry), never ``MissingSubscriptionRegistration``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aci_fake.engine import now

API = "2023-05-01"
PROVIDER = "Microsoft.ContainerInstance"
_GROUP = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/{PROVIDER}/containerGroups"
    r"(?:/(?P<name>[^/]+))?(?:/containers/(?P<container>[^/]+)/logs|/(?P<action>restart))?$"
)
_ACR = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft.ContainerRegistry/registries/"
    r"(?P<name>[^/]+)(?P<list>/listCredentials)?$"
)
_AKS = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft.ContainerService/managedClusters/"
    r"(?P<name>[^/]+)/(?P<action>listClusterUserCredential|listClusterAdminCredential)$"
)
ACR_API = "2025-11-01"  # azure-mgmt-containerregistry 15's default (reference B)
_OP = re.compile(rf"^/subscriptions/[^/]+/providers/{PROVIDER}/locations/[^/]+/operations/(?P<op>[^/]+)$")


def arm_error(code: str, message: str) -> dict[str, Any]:
    """ARM's error envelope."""
    return {"error": {"code": code, "message": message}}


class Handler(BaseHTTPRequestHandler):
    """One request; ``server.fake`` is the FakeAci holding the state."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # the tests read ``fake.requests`` instead
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        fake.record(method, url.path, query, dict(self.headers.items()), body)
        if self.headers.get("Authorization") != f"Bearer {fake.token}":
            return self._send(401, arm_error("InvalidAuthenticationToken", "The access token is invalid."))
        if fake.take_throttle():
            return self._send(
                429, arm_error("TooManyRequests", "The request is being throttled."), {"Retry-After": "1"}
            )
        op = _OP.match(url.path)
        if op and method == "GET":
            return self._send(*fake.operation(op.group("op")))
        acr = _ACR.match(url.path)
        if acr is not None:
            return self._send(
                *fake.registry(acr.group("rg"), acr.group("name"), method, bool(acr.group("list")), query)
            )
        aks = _AKS.match(url.path)
        if aks is not None and method == "POST":
            return self._send(*fake.managed_cluster(aks.group("rg"), aks.group("name"), aks.group("action"), query))
        match = _GROUP.match(url.path)
        if match is None:
            return self._send(404, arm_error("InvalidResourceType", f"no route for {method} {url.path}"))
        if query.get("api-version") != API:
            return self._send(
                400,
                arm_error(
                    "NoRegisteredProviderFound",
                    f"No registered resource provider found for API version '{query.get('api-version')}' "
                    f"for type 'containerGroups'. The supported api-versions are '{API}'.",
                ),
            )
        rg = match.group("rg")
        if rg not in fake.resource_groups:
            return self._send(404, arm_error("ResourceGroupNotFound", f"Resource group '{rg}' could not be found."))
        name, container = match.group("name"), match.group("container")
        if container is not None and method == "GET":
            return self._send(*fake.logs(rg, name, container, query.get("tail")))
        if name is None and method == "GET":
            return self._send(200, {"value": fake.list(rg)})
        if name is not None and method == "GET":
            return self._send(*fake.get(rg, name))
        if name is not None and method == "PUT":
            return self._send(*fake.put(match.group("sub"), rg, name, body or {}, self._base()))
        if name is not None and method == "DELETE":
            return self._send(*fake.delete(rg, name))
        if match.group("action") == "restart" and method == "POST":
            return self._send(*fake.restart(match.group("sub"), rg, name, self._base()))
        return self._send(405, arm_error("MethodNotAllowed", f"{method} is not supported here"))

    def _base(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def _send(self, status: int, doc: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        if doc is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)


def validate(body: dict[str, Any]) -> str | None:
    """What the service would reject in a ContainerGroup body (None: acceptable)."""
    props = body.get("properties") or {}
    if props.get("osType") not in ("Linux", "Windows"):
        return "properties.osType must be Linux or Windows"
    containers = props.get("containers") or []
    if not containers:
        return "properties.containers is required"
    for c in containers:
        requests = ((c.get("properties") or {}).get("resources") or {}).get("requests") or {}
        if (
            not c.get("name")
            or not c["properties"].get("image")
            or "cpu" not in requests
            or "memoryInGB" not in requests
        ):
            return "each container needs name, image and resources.requests.{cpu,memoryInGB}"
    for credential in props.get("imageRegistryCredentials") or []:
        if "://" in credential.get("server", "://"):
            return "imageRegistryCredentials.server must be a login server without a scheme"
    if not body.get("location"):
        return "location is required"
    return None


def public(group: dict[str, Any]) -> dict[str, Any]:
    """A group as the API returns it: internal fields dropped, secrets never echoed."""
    doc = copy.deepcopy({k: v for k, v in group.items() if not k.startswith("_")})
    props = doc["properties"]
    for c in props["containers"]:
        cp = c["properties"]
        cp["environmentVariables"] = [
            {k: v for k, v in e.items() if k != "secureValue"} for e in cp.get("environmentVariables") or []
        ]
        cp.setdefault("ports", [])
    for credential in props.get("imageRegistryCredentials") or []:
        credential.pop("password", None)
    for volume in props.get("volumes") or []:
        if "secret" in volume:
            volume["secret"] = {}
    return doc


class Operation:
    """One async operation: Pending until the provisioning thread finished AND it was polled once."""

    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id
        self.started = now()
        self.done = threading.Event()
        self.polls = 0
        self.error: dict[str, str] | None = None
        self.events: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        """The operation document (ARM async-operation contract)."""
        self.polls += 1
        doc: dict[str, Any] = {"id": self.resource_id, "startTime": self.started, "properties": {"events": []}}
        if self.polls < 2 or not self.done.is_set():
            return {**doc, "status": "Pending"}
        if self.error is not None:
            return {**doc, "status": "Failed", "endTime": now(), "error": self.error}
        return {**doc, "status": "Succeeded", "endTime": now(), "properties": {"events": self.events}}
