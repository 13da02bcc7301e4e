"""A wire-faithful fake of Azure Container Instances for mlctl's tests, small on purpose.

What it is: an HTTPS server on 127.0.0.1 (its own CA, ``tls.py``) answering ARM's
``Microsoft.ContainerInstance/containerGroups`` API as recorded in
``shared/reference/azure-wire.md`` (``server.py``), whose container groups really run on the local
Docker engine (``engine.py``), plus a stand-in ``az`` for ``DefaultAzureCredential``
(``az_cli.py``). The unmodified SDK reaches it through documented settings only: the client's
``base_url`` and ``connection_verify`` (mlctl's ``base_url`` and ``ca_bundle`` target options).

Use::

    with running_fake(tmp_path, resource_groups={"aci-rg"}) as fake:
        fake.base_url, fake.ca_file, fake.token, fake.subscription, fake.requests
"""

from __future__ import annotations

import base64
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aci_fake.az_cli import write_az
from aci_fake.engine import Engine, event
from aci_fake.server import ACR_API, PROVIDER, Handler, Operation, arm_error, public, validate
from aci_fake.tls import make_ca_and_server_cert

SUBSCRIPTION = "00000000-0000-0000-0000-00000000ac1f"


class FakeAci:
    """The fake's state: groups by (resource group, name), operations, and every request seen."""

    def __init__(self, folder: Path, resource_groups: set[str], *, max_cpu: float = 4.0) -> None:
        self.folder = folder
        self.resource_groups = set(resource_groups)
        self.max_cpu = max_cpu
        self.token = "aci-token-" + secrets.token_hex(16)
        self.subscription = SUBSCRIPTION
        self.instance = uuid.uuid4().hex[:8]
        self.engine = Engine(folder, self.instance)
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.requests: list[dict[str, Any]] = []
        self.registries: dict[str, tuple[str, str, str]] = {}  # ACR name -> (login server, username, password)
        self.clusters: dict[str, bytes] = {}  # AKS cluster name -> the kubeconfig its credentials list
        self.denied_clusters: set[str] = set()  # listing their credentials is 403 AuthorizationFailed
        self.lock = threading.RLock()
        self.octet = 100 + secrets.randbelow(150)  # 127.X.0.N: unlikely to meet another fake's addresses
        self._addresses: dict[str, str] = {}
        self.base_url = ""
        self.ca_file = Path()
        self.az_bin = Path()
        self.denied_az_bin = Path()
        self.throttle = 0  # this many requests are answered 429 (Retry-After: 1) first

    def take_throttle(self) -> bool:
        """Whether this request is throttled (counting ``throttle`` down)."""
        with self.lock:
            if self.throttle <= 0:
                return False
            self.throttle -= 1
            return True

    def record(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> None:
        """Keep one request (for the wire-shape tests)."""
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": query, "headers": headers, "body": body})

    # -- the API ----------------------------------------------------------------------------------
    def put(self, sub: str, rg: str, name: str, body: dict[str, Any], base: str) -> tuple[int, Any, dict[str, str]]:
        """Create or update a group: 201/200 Pending + Azure-AsyncOperation; provisioning runs in a thread."""
        problem = validate(body)
        if problem:
            return 400, arm_error("InvalidRequestContent", problem), {}
        requests = body["properties"]["containers"][0]["properties"]["resources"]["requests"]
        if requests.get("gpu") or float(requests["cpu"]) > self.max_cpu:
            message = (
                f"The requested resource is not available in the location '{body['location']}' at this moment. "
                f"Please retry with a different resource request or in another location. Resource requested: "
                f"'{requests['cpu']}' CPU '{requests['memoryInGB']}' GB memory 'Linux' OS"
            )
            return 409, arm_error("ServiceUnavailable", message), {}
        resource_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/containerGroups/{name}"
        with self.lock:
            old = self.groups.get((rg, name))
            group = self._new_group(resource_id, name, body, old)
            self.groups[(rg, name)] = group
            op_id = str(uuid.uuid4())
            operation = self.operations[op_id] = Operation(resource_id)
        threading.Thread(target=self._provision, args=(group, old, operation), daemon=True).start()
        url = f"{base}/subscriptions/{sub}/providers/{PROVIDER}/locations/{body['location']}/operations/{op_id}"
        return (200 if old else 201), self._public(group), {"Azure-AsyncOperation": f"{url}?api-version=2018-06-01"}

    def _new_group(self, resource_id: str, name: str, body: dict[str, Any], old: Any) -> dict[str, Any]:
        ip = self._addresses.setdefault(name, f"127.{self.octet}.0.{len(self._addresses) + 2}")
        group = {
            "id": resource_id,
            "name": name,
            "type": f"{PROVIDER}/containerGroups",
            "location": body["location"],
            "tags": body.get("tags") or {},
            "properties": {
                **body["properties"],
                "sku": "Standard",
                "initContainers": [],
                "provisioningState": "Pending",
            },
            "_ip": ip,
            "_events": [],
            "_container": old["_container"] if old else None,
        }
        address = group["properties"].get("ipAddress")
        if address is not None:
            group["properties"]["ipAddress"] = {
                **address,
                "ip": ip,
                "fqdn": ip if address.get("dnsNameLabel") else None,
            }
        return group

    def _provision(self, group: dict[str, Any], old: Any, operation: Operation) -> None:
        try:
            container, error = self.engine.provision(group, old["_container"] if old else None)
        except Exception as exc:  # noqa: BLE001 - the engine refused the container: report it as ACI would
            container, error = None, {"code": "ContainerGroupDeploymentFailed", "message": str(exc)[:300]}
        with self.lock:
            group["_container"] = container
            group["properties"]["provisioningState"] = "Failed" if error else "Succeeded"
            operation.error, operation.events = error, list(group["_events"])
            operation.done.set()

    def restart(self, sub: str, rg: str, name: str, base: str) -> tuple[int, Any, dict[str, str]]:
        """POST .../restart: 204 + Azure-AsyncOperation; the container restarts in a thread."""
        with self.lock:
            group = self.groups.get((rg, name))
            if group is None:
                return 404, self._not_found(rg, name), {}
            op_id = str(uuid.uuid4())
            operation = self.operations[op_id] = Operation(group["id"])
        threading.Thread(target=self._restart, args=(group, operation), daemon=True).start()
        url = f"{base}/subscriptions/{sub}/providers/{PROVIDER}/locations/{group['location']}/operations/{op_id}"
        return 204, None, {"Azure-AsyncOperation": f"{url}?api-version=2018-06-01"}

    def _restart(self, group: dict[str, Any], operation: Operation) -> None:
        container = group["_container"]
        if container is None:
            operation.error = {
                "code": "ContainerGroupNotRunning",
                "message": f"container group {group['name']} has no container",
            }
        else:
            container.restart(timeout=5)
            group["_events"].append(event("Started", f"Started container {group['name']}"))
        with self.lock:
            operation.events = list(group["_events"])
            operation.done.set()

    def operation(self, op_id: str) -> tuple[int, Any]:
        """GET of an Azure-AsyncOperation URL."""
        with self.lock:
            operation = self.operations.get(op_id)
        if operation is None:
            return 404, arm_error("OperationNotFound", f"operation {op_id} not found")
        return 200, operation.status()

    def get(self, rg: str, name: str) -> tuple[int, Any]:
        """GET of one group, with its instance view from the engine."""
        with self.lock:
            group = self.groups.get((rg, name))
        if group is None:
            return 404, self._not_found(rg, name)
        return 200, self._public(group)

    def list(self, rg: str) -> list[dict[str, Any]]:
        """The groups of a resource group."""
        with self.lock:
            groups = [g for (r, _), g in sorted(self.groups.items()) if r == rg]
        return [self._public(g) for g in groups]

    def delete(self, rg: str, name: str) -> tuple[int, Any]:
        """DELETE: 200 with the last state, or 204 when there is no such group."""
        with self.lock:
            group = self.groups.pop((rg, name), None)
        if group is None:
            return 204, None
        doc = self._public(group)
        if group["_container"] is not None:
            self.engine.remove(group["_container"])
        doc["properties"]["instanceView"]["state"] = "Stopped"
        return 200, doc

    def logs(self, rg: str, name: str, container: str, tail: str | None) -> tuple[int, Any]:
        """GET .../containers/{c}/logs."""
        with self.lock:
            group = self.groups.get((rg, name))
        names = [c["name"] for c in group["properties"]["containers"]] if group else []
        if group is None or container not in names:
            return 404, self._not_found(rg, name)
        return 200, {"content": self.engine.logs(group["_container"], int(tail) if tail else None)}

    def registry(self, rg: str, name: str, method: str, credentials: bool, query: dict[str, str]) -> tuple[int, Any]:
        """An Azure Container Registry: GET the registry, or POST listCredentials (admin user)."""
        if query.get("api-version") != ACR_API:
            return 400, arm_error("NoRegisteredProviderFound", f"api-version {query.get('api-version')}")
        if rg not in self.resource_groups:
            return 404, arm_error("ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        if name not in self.registries or method != ("POST" if credentials else "GET"):
            return 404, arm_error(
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerRegistry/registries/{name}' "
                f"under resource group '{rg}' was not found.",
            )
        server, username, password = self.registries[name]
        if credentials:
            return 200, {
                "username": username,
                "passwords": [{"name": "password", "value": password}, {"name": "password2", "value": password + "-2"}],
            }
        resource_id = (
            f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry"
            f"/registries/{name}"
        )
        return 200, {
            "id": resource_id,
            "name": name,
            "type": "Microsoft.ContainerRegistry/registries",
            "location": "westeurope",
            "sku": {"name": "Basic", "tier": "Basic"},
            "properties": {"loginServer": server, "adminUserEnabled": True, "provisioningState": "Succeeded"},
        }

    def managed_cluster(self, rg: str, name: str, action: str, query: dict[str, str]) -> tuple[int, Any]:
        """An AKS cluster's listClusterUserCredential / listClusterAdminCredential (POST)."""
        if not re.match(r"^\d{4}-\d{2}-\d{2}(-preview)?$", query.get("api-version", "")):
            return 400, arm_error("MissingApiVersionParameter", "The api-version query parameter is required.")
        if rg not in self.resource_groups:
            return 404, arm_error("ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        scope = f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/Microsoft.ContainerService"
        if name in self.denied_clusters:
            return 403, arm_error(
                "AuthorizationFailed",
                "The client 'mlctl-test' with object id '00000000-0000-0000-0000-0000000000bb' does not have "
                f"authorization to perform action 'Microsoft.ContainerService/managedClusters/{action}/action' "
                f"over scope '{scope}/managedClusters/{name}' or the scope is invalid.",
            )
        if name not in self.clusters:
            return 404, arm_error(
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group '{rg}' "
                "was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        kind = "clusterAdmin" if action == "listClusterAdminCredential" else "clusterUser"
        value = base64.b64encode(self.clusters[name]).decode()
        return 200, {"kubeconfigs": [{"name": kind, "value": value}]}

    def _public(self, group: dict[str, Any]) -> dict[str, Any]:
        doc = public(group)
        view = self.engine.view(group["_container"], list(group["_events"]))
        doc["properties"]["containers"][0]["properties"]["instanceView"] = view
        pending = group["properties"]["provisioningState"] == "Pending"
        state = "Pending" if pending else ("Running" if view["currentState"]["state"] == "Running" else "Failed")
        doc["properties"]["instanceView"] = {"events": [], "state": state}
        return doc

    def _not_found(self, rg: str, name: str) -> dict[str, Any]:
        return arm_error(
            "ResourceNotFound",
            f"The Resource '{PROVIDER}/containerGroups/{name}' under resource group '{rg}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )


@contextmanager
def running_fake(folder: Path, resource_groups: set[str]) -> Iterator[FakeAci]:
    """Serve a FakeAci on a free port of 127.0.0.1 over HTTPS; removes its containers afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = FakeAci(folder, resource_groups)
    ca, cert, key = make_ca_and_server_cert(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.base_url = f"https://127.0.0.1:{server.server_address[1]}"
    fake.ca_file = ca
    fake.az_bin = write_az(folder / "az-bin", token=fake.token, subscription=fake.subscription)
    fake.denied_az_bin = write_az(folder / "az-denied", token="", subscription=fake.subscription, denied=True)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        fake.engine.cleanup()
