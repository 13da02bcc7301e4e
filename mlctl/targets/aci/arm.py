"""The ACI target's Azure half: the SDK client, ARM errors as mlctl errors, and long-running
operations followed with a progress line per container event.

Uses ``azure-mgmt-containerinstance`` (api-version 2023-05-01) with ``DefaultAzureCredential``
unchanged (environment, workload or managed identity, ``az login``, ...;
``AZURE_TOKEN_CREDENTIALS`` narrows the chain). The SDK is pointed elsewhere only through its
documented settings: ``base_url`` and ``connection_verify`` (a CA bundle). Both SDKs are
imported here, lazily, so ``mlctl --help`` never loads them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlctl.errors import ConflictError, DeploymentError, MlctlError, NotFoundError, TargetError
from mlctl.targets.aci.render import Settings

LOGIN_HINT = (
    "sign in with `az login` (and `az account set -s SUBSCRIPTION`), or set AZURE_TENANT_ID, "
    "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal"
)


def client(settings: Settings) -> Any:
    """A ``ContainerInstanceManagementClient`` for ``settings`` (no request is sent yet).

    Raises:
        TargetError: no subscription or resource group is configured.
    """
    if not settings.configured:
        raise TargetError(
            "the aci target needs a subscription and a resource group",
            hint="`mlctl target add NAME --kind aci --option subscription_id=... --option resource_group=... "
            "--option location=...`, or set AZURE_SUBSCRIPTION_ID and AZURE_DEFAULTS_GROUP",
        )
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    return ContainerInstanceManagementClient(
        DefaultAzureCredential(),
        settings.subscription_id,
        base_url=settings.base_url,
        polling_interval=settings.polling_interval,  # the SDK default is 30 s per poll
        connection_verify=settings.ca_bundle or True,
    )


@contextmanager
def arm_errors(settings: Settings, name: str = "") -> Iterator[None]:
    """Turn Azure SDK exceptions inside the block into mlctl errors carrying the ARM code and message.

    ResourceGroupNotFound and authentication failures: TargetError (6); the group not found:
    NotFoundError (4); any 409 (quota, capacity, conflicts): ConflictError (5); InaccessibleImage:
    DeploymentError (7) naming the registry credentials used; others: TargetError.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    try:
        yield
    except MlctlError:
        raise
    except ClientAuthenticationError as exc:
        raise TargetError(f"Azure authentication failed: {_first_line(exc)}", hint=LOGIN_HINT) from None
    except ResourceNotFoundError as exc:
        code, message = _code(exc)
        if code == "ResourceGroupNotFound":
            raise TargetError(
                f"({code}) {message}",
                hint=f"create it (`az group create -n {settings.resource_group} -l LOCATION`) or choose another "
                "resource_group",
            ) from None
        raise NotFoundError(f"service {name!r} does not exist on ACI ({code})", hint="`mlctl service list`") from None
    except ResourceExistsError as exc:
        code, message = _code(exc)
        raise ConflictError(
            f"ACI refused the container group ({code}): {message}",
            hint="ask for less cpu_cores/memory_gb/gpu_cores, another location, or a quota increase",
        ) from None
    except ServiceRequestError as exc:
        raise TargetError(
            f"cannot reach Azure Resource Manager at {settings.base_url}: {_first_line(exc)}",
            hint="check the network, the base_url option and the CA bundle (ca_bundle, REQUESTS_CA_BUNDLE)",
        ) from None
    except HttpResponseError as exc:
        code, message = _code(exc)
        if code == "InaccessibleImage":
            raise DeploymentError(
                f"({code}) {message}",
                phase="image pull",
                hint=f"the group used {settings.credentials_text()}: check them, and that the image was pushed",
            ) from None
        raise TargetError(f"Azure refused the request ({code}): {message}", hint="see the message above") from None


def follow(poller: Any, watch: Callable[[], None], interval_s: float) -> Any:
    """Wait for an LRO ``poller`` (the SDK polls it), calling ``watch`` between waits (to report
    new events); returns its result. Raises what ``poller.result()`` raises."""
    while not poller.done():
        watch()
        poller.wait(max(interval_s, 0.2))
    watch()
    return poller.result()


class EventWatch:
    """Reports each new event of the group's container once, as ``NAME: message`` (ACI's Pulling,
    Pulled, Created, Started, Killing, ...)."""

    def __init__(self, get_group: Callable[[], Any], progress: Callable[[str], None], reporter_info: Any) -> None:
        self.get_group = get_group
        self.progress = progress
        self.info = reporter_info
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self) -> None:
        """Fetch the group once; report events not reported before (errors are ignored: the
        poller reports the operation's own failure)."""
        try:
            group = self.get_group()
        except Exception:  # noqa: BLE001 - a missing or half-created group has no events yet
            return
        for event in events_of(group):
            key = (str(event.get("name")), str(event.get("first")), str(event.get("message")))
            if key not in self.seen:
                self.seen.add(key)
                self.info(f"ACI: {event['name']}: {event['message']}")
                self.progress(str(event["name"]))


def events_of(group: Any) -> list[dict[str, Any]]:
    """The first container's events, oldest first: ``{name, message, count, first}``."""
    containers = getattr(group, "containers", None) or []
    view = getattr(containers[0], "instance_view", None) if containers else None
    found = [
        {"name": e.name, "message": e.message, "count": e.count, "first": e.first_timestamp}
        for e in (getattr(view, "events", None) or [])
    ]
    return sorted(found, key=lambda e: str(e["first"]))


def container_state(group: Any) -> dict[str, Any]:
    """The first container's state: ``{state, restart_count, exit_code, detail}`` (from instanceView)."""
    containers = getattr(group, "containers", None) or []
    view = getattr(containers[0], "instance_view", None) if containers else None
    current = getattr(view, "current_state", None)
    return {
        "state": getattr(current, "state", None),
        "restart_count": getattr(view, "restart_count", 0) or 0,
        "exit_code": getattr(current, "exit_code", None),
        "detail": getattr(current, "detail_status", None),
    }


def wait_gone(get_group: Callable[[], Any], timeout_s: float) -> None:
    """Poll until the group is not found (or ``timeout_s`` passes)."""
    from azure.core.exceptions import ResourceNotFoundError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            get_group()
        except ResourceNotFoundError:
            return
        time.sleep(0.5)


def _code(exc: Any) -> tuple[str, str]:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "status_code", None) or "Error"
    message = getattr(error, "message", None) or _first_line(exc)
    return str(code), str(message)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def with_registry_resource(settings: Settings) -> Settings:
    """``settings`` with the login server and admin credentials of the target's registry resource
    (``azure-mgmt-containerregistry``: ``registries.get`` and ``registries.list_credentials``,
    which needs the registry's admin user enabled); unchanged without one.

    Raises:
        the mlctl errors of ``arm_errors``; TargetError when the registry has no admin credentials.
    """
    if not settings.registry_resource:
        return settings
    from dataclasses import replace

    from azure.identity import DefaultAzureCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    group, _, name = settings.registry_resource.rpartition("/")
    group = group or settings.resource_group
    registries = ContainerRegistryManagementClient(
        DefaultAzureCredential(),
        settings.subscription_id,
        base_url=settings.base_url,
        connection_verify=settings.ca_bundle or True,
    ).registries
    try:
        with arm_errors(settings, name):
            login_server = registries.get(group, name).login_server
            credentials = registries.list_credentials(group, name)
    except NotFoundError:
        raise NotFoundError(
            f"Azure Container Registry {group}/{name} does not exist in subscription {settings.subscription_id}",
            hint="`az acr list -o table` lists the registries; check registry_resource and subscription_id",
        ) from None
    passwords = [p.value for p in credentials.passwords or [] if p.value]
    if not credentials.username or not passwords:
        raise TargetError(
            f"registry {settings.registry_resource} gives no admin credentials",
            hint=f"enable its admin user (`az acr update -n {name} --admin-enabled true`) or give registry_username",
        )
    return replace(
        settings, registry=login_server, registry_username=credentials.username, registry_password=passwords[0]
    )


def acr_credentials(options: Mapping[str, str], default_group: str) -> tuple[str, str, str]:
    """(login server, admin user name, password) of ``options['registry_resource']``
    (``NAME`` in ``default_group``, or ``GROUP/NAME``), read through ARM (``with_registry_resource``);
    never stored. The one path the kubernetes target and ``mlctl edge`` read an ACR by; ``options``
    also gives ``subscription_id``, ``base_url`` and ``ca_bundle`` as on the aci target (the
    environment overriding them as ``az`` does).

    Raises:
        TargetError: no subscription, no admin credentials, sign-in failed. NotFoundError: no
            such registry (``arm_errors``).
    """
    from dataclasses import replace

    keys = ("subscription_id", "base_url", "ca_bundle", "registry_resource")
    settings = Settings.resolve({k: options[k] for k in keys if k in options}, os.environ, None)
    if not settings.subscription_id:
        raise TargetError(
            f"registry_resource {settings.registry_resource}: no Azure subscription is known",
            hint="--option subscription_id=... or AZURE_SUBSCRIPTION_ID",
        )
    if "/" not in settings.registry_resource and not settings.resource_group:
        settings = replace(settings, resource_group=default_group)
    found = with_registry_resource(settings)
    return found.registry, found.registry_username, found.registry_password
