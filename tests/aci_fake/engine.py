"""The fake's data plane: each container group's container really runs on the local Docker engine.

* The image is pulled from its registry WITH the group's ``imageRegistryCredentials`` (the entry
  whose ``server`` is the image's registry host); a refused pull fails the operation with
  ``InaccessibleImage``, as ACI does, and leaves a running previous container alone.
* Host networking (no bridge network is ever created): each group gets its own loopback address
  (``127.X.0.N``) as its public IP and FQDN (the fake has no DNS, so the FQDN it reports is that
  address); a server that asks to bind ``--host 0.0.0.0`` (a group's own network namespace, in
  ACI) binds the group's address instead, so two groups can use the same port.
* ``resources.requests`` become limits (``cpu`` -> nano-CPUs, ``memoryInGB`` -> memory).
* ``environmentVariables`` (``value`` and ``secureValue``) become the container's environment;
  secret volumes become read-only bind mounts of files written under the fake's folder.
* instanceView (state, restart count, exit code), events (Pulling, Pulled, Killing, Created,
  Started) and logs come from the engine.
"""

from __future__ import annotations

import base64
import datetime
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

LABEL = "aci-fake"


def now() -> str:
    """ARM's timestamp format."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Engine:
    """Runs groups' containers; ``instance`` labels every container, so ``cleanup`` finds them."""

    def __init__(self, folder: Path, instance: str) -> None:
        import docker

        self.docker = docker.from_env()
        self.folder = folder
        self.instance = instance
        self.lock = threading.Lock()

    def provision(self, group: dict[str, Any], previous: Any) -> tuple[Any, dict[str, str] | None]:
        """Pull, replace ``previous`` (a container), create and start; returns (container, error)."""
        events = group["_events"]
        props = group["properties"]
        spec = props["containers"][0]["properties"]
        image = spec["image"]
        events.append(event("Pulling", f'pulling image "{image}"'))
        error = self._pull(image, props.get("imageRegistryCredentials") or [], group["name"])
        if error is not None:
            events.append(event("Failed", f'Failed to pull image "{image}": {error["message"]}', "Warning"))
            return previous, error
        events.append(event("Pulled", f'Successfully pulled image "{image}"'))
        if previous is not None:
            events.append(event("Killing", "Killing container with id " + previous.id[:12]))
            self.remove(previous)
        container = self.docker.containers.create(image, **self._options(group, spec))
        events.append(event("Created", f"Created container {group['name']}"))
        container.start()
        events.append(event("Started", f"Started container {group['name']}"))
        return container, None

    def _pull(self, image: str, credentials: list[dict[str, Any]], name: str) -> dict[str, str] | None:
        from docker.errors import APIError

        server = image.split("/", 1)[0]
        creds = next((c for c in credentials if c.get("server") == server), None)
        auth = {"username": creds["username"], "password": creds.get("password", "")} if creds else None
        repository, _, tag = image.rpartition(":")
        try:
            self.docker.images.pull(repository, tag=tag, auth_config=auth)
        except APIError:
            return {
                "code": "InaccessibleImage",
                "message": f"The image '{image}' in container group '{name}' is not accessible. "
                "Please check the image and registry credential.",
            }
        return None

    def _options(self, group: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        requests = spec["resources"]["requests"]
        env = {e["name"]: e.get("value", e.get("secureValue", "")) for e in spec.get("environmentVariables", [])}
        command = list(spec.get("command") or [])
        for i in range(len(command) - 1):
            if command[i] == "--host" and command[i + 1] == "0.0.0.0":
                command[i + 1] = group["_ip"]  # the group's own address stands for its namespace
        return {
            "command": command or None,
            "environment": env,
            "network_mode": "host",
            "nano_cpus": int(float(requests["cpu"]) * 1e9),
            "mem_limit": f"{max(6, int(float(requests['memoryInGB']) * 1024))}m",
            "restart_policy": {"Name": "always"},
            "volumes": self._volumes(group, spec),
            "labels": {LABEL: self.instance, "aci-fake.group": group["name"]},
            "name": f"aci-fake-{group['name']}-{uuid.uuid4().hex[:6]}",
        }

    def _volumes(self, group: dict[str, Any], spec: dict[str, Any]) -> dict[str, dict[str, str]]:
        declared = {v["name"]: v for v in group["properties"].get("volumes") or []}
        binds = {}
        for mount in spec.get("volumeMounts") or []:
            volume = declared[mount["name"]]
            folder = self.folder / "volumes" / f"{group['name']}-{uuid.uuid4().hex[:6]}" / mount["name"]
            folder.mkdir(parents=True)
            for filename, content in (volume.get("secret") or {}).items():
                (folder / filename).write_bytes(base64.b64decode(content))
                (folder / filename).chmod(0o444)
            binds[str(folder)] = {"bind": mount["mountPath"], "mode": "ro" if mount.get("readOnly") else "rw"}
        return binds

    def view(self, container: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
        """A container's ``instanceView`` from the engine."""
        if container is None:
            return {
                "restartCount": 0,
                "currentState": {"state": "Waiting", "detailStatus": "Pending"},
                "events": events,
            }
        try:
            container.reload()
        except Exception:  # noqa: BLE001 - removed meanwhile
            return {"restartCount": 0, "currentState": {"state": "Terminated"}, "events": events}
        attrs = container.attrs["State"]
        state = {"running": "Running", "restarting": "Waiting", "created": "Waiting"}.get(
            container.status, "Terminated"
        )
        current: dict[str, Any] = {
            "state": state,
            "startTime": attrs.get("StartedAt"),
            "detailStatus": container.status,
        }
        if state != "Running":
            current.update(exitCode=attrs.get("ExitCode"), finishTime=attrs.get("FinishedAt"))
        return {"restartCount": container.attrs.get("RestartCount", 0), "currentState": current, "events": events}

    def logs(self, container: Any, tail: int | None) -> str:
        """The container's output (stdout and stderr), as ``list_logs`` returns it."""
        if container is None:
            return ""
        try:
            return str(container.logs(tail=tail if tail else "all").decode(errors="replace"))
        except Exception:  # noqa: BLE001 - removed meanwhile
            return ""

    def remove(self, container: Any) -> None:
        """Stop and remove one container (and its secret volume files)."""
        try:
            for bind in container.attrs.get("HostConfig", {}).get("Binds") or []:
                shutil.rmtree(Path(bind.split(":", 1)[0]).parent, ignore_errors=True)
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def cleanup(self) -> None:
        """Remove every container this fake instance started."""
        for container in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.instance}"}):
            self.remove(container)


def event(name: str, message: str, kind: str = "Normal") -> dict[str, Any]:
    """One instanceView event as ACI reports it."""
    stamp = now()
    return {"count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp, "name": name, "message": message, "type": kind}
