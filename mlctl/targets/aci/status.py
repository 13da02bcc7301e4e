"""What the ACI target reports about a group: a ``ServiceState`` from the group's tags and
instance view (the cloud is the source of truth) and a readiness probe of its scoring URI."""

from __future__ import annotations

from typing import Any

from mlctl.targets import ServiceState
from mlctl.targets.aci import arm, lifecycle
from mlctl.targets.aci.render import TAG_SERVICE, service_url


def state_of(group: Any, driver: Any, kind: str) -> ServiceState:
    """The state of one mlctl group. ``state``: ``running`` (container running and /readyz 200),
    ``unhealthy`` (running, not ready), ``failed`` (anything else)."""
    tags = dict(group.tags or {})
    name = tags[TAG_SERVICE]
    port, tls = int(tags.get("mlctl-port", "0")), tags.get("mlctl-tls") == "true"
    host = lifecycle.address(group)
    scheme = "https" if tls else "http"
    container = arm.container_state(group)
    running = container["state"] == "Running"
    ready = running and lifecycle.ready(f"{scheme}://{host}:{port}/readyz")
    secrets = lifecycle.secrets_dir(driver.home, name)
    auth = tags.get("mlctl-auth") == "true"
    view = getattr(group, "instance_view", None)
    return ServiceState(
        name=name,
        target=kind,
        state="running" if ready else ("unhealthy" if running else "failed"),
        scoring_uri=service_url(scheme, host, port, "/score"),
        swagger_uri=service_url(scheme, host, port, "/swagger.json"),
        models=tuple(filter(None, tags.get("mlctl-models", "").split(","))),
        environment=tags.get("mlctl-image", ""),
        created_at=tags.get("mlctl-created", ""),
        updated_at=tags.get("mlctl-created", ""),
        details={
            "container_group": group.name,
            "resource_group": driver.settings.resource_group,
            "location": group.location,
            "fqdn": getattr(group.ip_address, "fqdn", None) if group.ip_address else None,
            "ip": getattr(group.ip_address, "ip", None) if group.ip_address else None,
            "provisioning_state": group.provisioning_state,
            "group_state": getattr(view, "state", None),
            "container_state": container["state"],
            "restart_count": container["restart_count"],
            "image": tags.get("mlctl-image"),
            "port": port,
            "auth_enabled": auth,
            "keys_file": str(secrets / "keys.json") if auth else None,
            "tls_cert": str(secrets / "tls-cert.pem") if tls else None,
        },
        fingerprint={k[len("mlctl-fp-") :]: v for k, v in tags.items() if k.startswith("mlctl-fp-")},
    )
