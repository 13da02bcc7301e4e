"""A device simulator standing in for the IoT Edge runtime (edgeAgent) on one device.

It authenticates with the device's own connection string (as written by ``mlctl edge device
create``), reads the content the fake hub resolved for it, and acts like the agent:

* validates: ``$edgeAgent`` schemaVersion must be 1.x and at most 1.1 (else it reports ``412``
  InvalidSchemaVersion); ``createOptions`` chunks must be named ``createOptions``,
  ``createOptions01``, ... without gaps and join to JSON (else ``400`` ConfigFormatError);
* pulls every module's image from its registry **with the manifest's registryCredentials** for
  that host, every time it creates a module (``imagePullPolicy`` on-create); a refused pull is
  reported as ``500`` with "Error calling Create module NAME: ..." and the module never runs;
* runs each module (by ``startupOrder``) as a container ``<prefix><device>-<module>`` on the local
  Docker engine with host networking (no bridge networks here): env from the manifest's ``env``
  and createOptions ``Env``; ``Cmd``, ``Entrypoint``, ``WorkingDir``, ``HostConfig.Binds``; the
  restart policy mapped to Docker's (on-unhealthy -> always). **Port bindings**: with host
  networking nothing is published, so a ``PortBindings`` entry ``{"5001/tcp": [{"HostPort":
  "9000"}]}`` is honoured by making the module's server listen on 127.0.0.1:9000 (+ the
  simulator's ``port_offset``, so several simulated devices share one host): the image's own
  command has its ``--port`` value replaced by the host port and its ``--host`` by 127.0.0.1 (mlctl
  images run ``python -m mlctl.serve ... --host 0.0.0.0 --port 5001``);
* with a workload stand-in (``workload=``): gives each module the runtime's ``IOTEDGE_*``
  environment (edgeHub at 127.0.0.1, a module identity registered with the stand-in) and mounts
  its socket at ``/var/run/iotedge/workload.sock``;
* writes ``$edgeAgent`` reported properties as in wire reference D.6 (``lastDesiredVersion``,
  ``lastDesiredStatus``, per module ``runtimeStatus`` running/backoff/failed/stopped,
  ``exitCode``, ``restartCount`` from Docker, ``statusDescription``), whenever they change; a module
  whose container cannot start (its command missing) is ``failed`` (restart policy never) or
  ``backoff``, with Docker's exit code and error as its exit code and status description.
  edgeAgent and edgeHub themselves are not run (their images are not reachable here): they are
  reported ``running``.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from edge_fakes.hub import device_token
from edge_fakes.methods import AgentMethods

NEVER = "0001-01-01T00:00:00Z"
WORKLOAD_SOCKET = "/var/run/iotedge/workload.sock"
DOCKER_RESTART = {"always": "always", "on-unhealthy": "always", "on-failure": "on-failure", "never": "no"}


class SimulatedDevice:
    """One simulated IoT Edge device; ``start()`` polls in a thread until ``stop()``."""

    architecture: str | None = "x86_64"  # runtime.platform.architecture it reports (None: none); set before start()

    def __init__(
        self,
        connection_string: str,
        ca_file: Path,
        engine: Any,
        *,
        prefix: str = "edge-",
        port_offset: int = 0,
        workload: Any = None,
    ) -> None:
        fields = dict(p.split("=", 1) for p in connection_string.strip().split(";"))
        self.host, self.device_id, self.key = fields["HostName"], fields["DeviceId"], fields["SharedAccessKey"]
        self.ca_file, self.engine, self.prefix, self.port_offset = ca_file, engine, prefix, port_offset
        self.workload = workload  # edge_fakes.workload.Workload: modules get the runtime's IOTEDGE_* environment
        self.applied_version: int | None = None
        self.status: dict[str, Any] = {"code": 200, "description": ""}
        self.modules: dict[str, dict[str, Any]] = {}  # name -> desired module
        self.failed: dict[str, str] = {}  # name -> why it could not be created
        self._last_report: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []
        self.deleted = False
        self.methods = AgentMethods(self)  # answers $edgeAgent direct methods (methods.py)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> SimulatedDevice:
        self._thread.start()
        self.methods.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.methods.stop()
        for container in self._containers():
            container.remove(force=True)

    def _run(self) -> None:
        import urllib.error

        while not self._stop.is_set():
            try:
                self.poll()
            except urllib.error.HTTPError as error:
                if error.code == 404:  # the device identity was deleted: a real device can no longer connect
                    self.deleted = True
                    return
                self.errors.append(repr(error))
            except Exception as error:  # noqa: BLE001 - a simulator keeps running, like the agent
                self.errors.append(repr(error))
            self._stop.wait(0.3)

    # -- one round ----------------------------------------------------------------------------
    def poll(self) -> None:
        twin = self._request("GET", "twin/$edgeAgent")
        desired = twin["desired"]
        if desired.get("$version") != self.applied_version and twin["content"] is not None:
            self._apply(desired)
            self.applied_version = desired.get("$version")
        self._report()

    def _apply(self, desired: dict[str, Any]) -> None:
        problem = _schema_problem(desired) or _chunk_problem(desired)
        if problem:
            self.status = problem
            return
        credentials = ((desired.get("runtime") or {}).get("settings") or {}).get("registryCredentials") or {}
        modules = desired.get("modules") or {}
        for container in self._containers():
            name = container.labels["edge.module"]
            if name not in modules or container.labels.get("edge.spec") != _fingerprint(modules[name]):
                container.remove(force=True)
        self.modules, self.failed = dict(modules), {}
        for name, module in sorted(modules.items(), key=lambda item: item[1].get("startupOrder", 4294967295)):
            if not self._container(name):
                self._create(name, module, credentials)
        errors = [f"Error calling Create module {n}: {why}" for n, why in self.failed.items()]
        self.status = {"code": 500, "description": "; ".join(errors)} if errors else {"code": 200, "description": ""}

    def _create(self, name: str, module: dict[str, Any], credentials: dict[str, Any]) -> None:
        from docker.errors import APIError

        image = module["settings"]["image"]
        repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        auth = next(
            (
                {"username": c["username"], "password": c["password"]}
                for c in credentials.values()
                if image.startswith(c["address"] + "/")
            ),
            None,
        )
        try:
            self.engine.images.pull(repository, tag=tag, auth_config=auth)
        except APIError as error:
            self.failed[name] = str(error.explanation or error)
            return
        options = json.loads(_joined(module["settings"]) or "{}")
        host_config = options.get("HostConfig") or {}
        env = [f"{k}={v['value']}" for k, v in (module.get("env") or {}).items()] + list(options.get("Env") or [])
        container = self.engine.containers.create(
            image,
            command=self._command(image, options),
            entrypoint=options.get("Entrypoint"),
            working_dir=options.get("WorkingDir"),
            environment=env + self._runtime_env(name),
            name=f"{self.prefix}{self.device_id}-{name}",
            network_mode="host",
            volumes=(host_config.get("Binds") or []) + self._runtime_binds(),
            restart_policy={"Name": DOCKER_RESTART[module.get("restartPolicy", "always")]},
            labels={"edge.device": self.device_id, "edge.module": name, "edge.spec": _fingerprint(module)},
        )
        if module.get("status", "running") == "running":
            try:
                container.start()
            except APIError:  # e.g. its command does not exist: Docker keeps the error (and 127) in State
                pass

    def _command(self, image: str, options: dict[str, Any]) -> list[str] | None:
        """The image's command with --port/--host rewritten for the first PortBindings host port."""
        command = options.get("Cmd") or self.engine.images.get(image).attrs["Config"].get("Cmd")
        bindings = (options.get("HostConfig") or {}).get("PortBindings") or {}
        host_ports = [b.get("HostPort") for values in bindings.values() for b in values or [] if b.get("HostPort")]
        if not host_ports or not command or "--port" not in command:
            return command  # type: ignore[no-any-return]
        command = list(command)
        command[command.index("--port") + 1] = str(int(host_ports[0]) + self.port_offset)
        if "--host" in command:
            command[command.index("--host") + 1] = "127.0.0.1"
        return command

    def _runtime_env(self, name: str) -> list[str]:
        """What edgeAgent sets for a module (its identity, edgeHub, the workload API); with a workload stand-in only.

        edgeHub is the MQTT broker on 127.0.0.1 (port 8883, the SDK's); the module's identity is
        registered with the stand-in, which then signs its SAS tokens."""
        if self.workload is None:
            return []
        from edge_fakes.workload import API_VERSION

        return [
            f"IOTEDGE_IOTHUBHOSTNAME={self.host}",
            "IOTEDGE_GATEWAYHOSTNAME=127.0.0.1",
            f"IOTEDGE_DEVICEID={self.device_id}",
            f"IOTEDGE_MODULEID={name}",
            f"IOTEDGE_MODULEGENERATIONID={self.workload.add_module(name)}",
            f"IOTEDGE_WORKLOADURI=unix://{WORKLOAD_SOCKET}",
            f"IOTEDGE_APIVERSION={API_VERSION}",
            "IOTEDGE_AUTHSCHEME=sasToken",
        ]

    def _runtime_binds(self) -> list[str]:
        """The workload socket, mounted where modules expect it."""
        return [f"{self.workload.socket_path}:{WORKLOAD_SOCKET}"] if self.workload is not None else []

    # -- reporting ------------------------------------------------------------------------------
    def _report(self) -> None:
        reported = {
            "schemaVersion": "1.1",
            "version": {"version": "1.5.0-simulated", "build": "simulated", "commit": "simulated"},
            "lastDesiredVersion": self.applied_version,
            "lastDesiredStatus": self.status,
            "runtime": {"type": "docker", "platform": {"os": "linux", "architecture": self.architecture}},
            "systemModules": {
                s: {"runtimeStatus": "running", "exitCode": 0, "restartCount": 0, "lastStartTimeUtc": NEVER}
                for s in ("edgeAgent", "edgeHub")
            },
            "modules": {n: self._module_state(n, m) for n, m in self.modules.items() if n not in self.failed},
        }
        if reported != self._last_report:
            self._request("PATCH", "twin/$edgeAgent/reported", reported)
            self._last_report = reported

    def _module_state(self, name: str, module: dict[str, Any]) -> dict[str, Any]:
        container = self._container(name)
        state = container.attrs["State"] if container else {}
        runtime = _runtime_status(state, module.get("restartPolicy", "always"))
        return {
            "version": module.get("version", ""),
            "type": "docker",
            "status": module.get("status", "running"),
            "restartPolicy": module.get("restartPolicy", "always"),
            "runtimeStatus": runtime,
            "exitCode": state.get("ExitCode", 0),
            "statusDescription": state.get("Error") or state.get("Status", "unknown"),
            "lastStartTimeUtc": state.get("StartedAt", NEVER),
            "lastExitTimeUtc": state.get("FinishedAt", NEVER),
            "restartCount": container.attrs.get("RestartCount", 0) if container else 0,
            "lastRestartTimeUtc": NEVER,
            "imagePullPolicy": module.get("imagePullPolicy", "on-create"),
            "startupOrder": module.get("startupOrder", 4294967295),
            "settings": {**module.get("settings", {}), "imageHash": container.image.id if container else ""},
            "env": module.get("env", {}),
        }

    # -- plumbing -------------------------------------------------------------------------------
    def _containers(self) -> list[Any]:
        return self.engine.containers.list(all=True, filters={"label": f"edge.device={self.device_id}"})  # type: ignore[no-any-return]

    def _container(self, name: str) -> Any:
        found = [c for c in self._containers() if c.labels.get("edge.module") == name]
        return found[0] if found else None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        import ssl

        url = f"https://{self.host}/_device/{self.device_id}/{path.replace('$', '%24')}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Authorization": device_token(self.host, self.device_id, self.key),
            "Content-Type": "application/json",
        }
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.loads(response.read() or b"null")


def _schema_problem(desired: dict[str, Any]) -> dict[str, Any] | None:
    version = str(desired.get("schemaVersion", ""))
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        major, minor = -1, -1
    if major != 1 or minor > 1:
        return {"code": 412, "description": f"Desired properties schema version {version} is not supported"}
    return None


def _chunk_problem(desired: dict[str, Any]) -> dict[str, Any] | None:
    for group in ("systemModules", "modules"):
        for name, module in (desired.get(group) or {}).items():
            try:
                json.loads(_joined(module.get("settings") or {}) or "{}")
            except ValueError as error:
                return {"code": 400, "description": f"module {name}: createOptions: {error}"}
    return None


def _joined(settings: dict[str, Any]) -> str:
    """createOptions chunks joined in ordinal order (JsonEx.ChunkedValue); ValueError on misnumbering."""
    names = [k for k in settings if k.lower().startswith("createoptions")]
    ordered = sorted(names, key=lambda k: int(k[13:] or 0) if k[13:].isdigit() else -1)
    for i, key in enumerate(ordered):
        suffix = key[13:]
        if (i == 0 and suffix) or (i > 0 and (len(suffix) != 2 or int(suffix) != i)):
            raise ValueError(f"chunk {key!r} is out of order")
    return "".join(settings[k] for k in ordered[:100])


def _runtime_status(state: dict[str, Any], restart_policy: str) -> str:
    status = state.get("Status")
    if status == "running":
        return "running"
    if status == "restarting":
        return "backoff"
    if status == "exited":
        if restart_policy == "never" and state.get("ExitCode") == 0:
            return "stopped"
        return "failed" if restart_policy == "never" else "backoff"
    if status == "created":  # never started; with an error: it could not start, and the agent backs off
        if state.get("Error"):
            return "failed" if restart_policy == "never" else "backoff"
        return "stopped"
    return "unknown"


def _fingerprint(module: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(module, sort_keys=True).encode()).hexdigest()[:16]
