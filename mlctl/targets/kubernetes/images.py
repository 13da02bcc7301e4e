"""The image a kubernetes service runs: built (``mlctl.builder.build``) and pushed
(``mlctl.builder.push``) to the configured registry (``MLCTL_REGISTRY``), which the cluster
pulls from under the same address. Registry credentials (``MLCTL_REGISTRY_USERNAME`` and
``MLCTL_REGISTRY_PASSWORD``) become the service's ``kubernetes.io/dockerconfigjson`` Secret;
they are never printed. With the target's ``registry_resource`` (an Azure Container Registry),
the login server and admin credentials come from ARM instead, through the aci target's code
(``mlctl.targets.aci.arm.with_registry_resource``), held in memory only.
"""

from __future__ import annotations

import os
from typing import Any

from mlctl import config
from mlctl.errors import TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec.records import ServiceSpec
from mlctl.targets import Deployment

UNSET = "<MLCTL_REGISTRY>"


def target_registry() -> str:
    """The registry images are pushed to and pulled from (``host[:port]``).

    Raises:
        TargetError: none is configured.
    """
    found = config.image_registry()
    if not found:
        raise TargetError(
            "the kubernetes target needs an image registry the cluster can pull from, and none is configured",
            hint="set MLCTL_REGISTRY=HOST[:PORT] (e.g. myregistry.azurecr.io) or `registry:` in the mlctl "
            "configuration; credentials: MLCTL_REGISTRY_USERNAME and MLCTL_REGISTRY_PASSWORD",
        )
    return found


def registry_auth() -> tuple[str, str, str] | None:
    """(registry, user, password) when credentials are configured, else None."""
    user, password = os.environ.get("MLCTL_REGISTRY_USERNAME"), os.environ.get("MLCTL_REGISTRY_PASSWORD")
    registry = config.image_registry()
    return (registry, user, password) if registry and user and password else None


def placeholder_image(spec: ServiceSpec, registry: Registry) -> str:
    """The image reference ``render`` shows: the given image under the registry, or the next
    build of the service's image (a constant, so the fingerprint does not change per build)."""
    where = config.image_registry() or UNSET
    if spec.image is not None:
        return f"{where}/{spec.image}"
    return f"{where}/{spec.name}:<next version>"


def image_for(
    deployment: Deployment, registry: Registry, reporter: Reporter, *, auth: tuple[str, str, str] | None = None
) -> str:
    """Build (unless the spec names an image) and push the service's image; returns the reference
    the cluster pulls: ``REGISTRY/NAME:VERSION@sha256:...`` (the pushed digest pins it: versions are
    numbered per MLCTL_HOME, so a node may hold another image under the same tag, which
    ``imagePullPolicy: IfNotPresent`` would run), ``REGISTRY/NAME:VERSION`` when no digest is known.
    ``auth`` (registry, user, password; from ``acr_auth``): pushed there with those credentials.

    Raises:
        TargetError: no registry configured, Docker unreachable, the push failed.
        NotFoundError: the spec's image was never built.
        DeploymentError: the build failed.
    """
    from mlctl.builder import push, service_image

    where = auth[0] if auth is not None else target_registry()
    login = {"username": auth[1], "password": auth[2]} if auth is not None else None
    spec = deployment.spec
    if spec.image is not None:  # pushed there already: nothing to do
        name, _, version = spec.image.partition(":")
        known = registry.image(name, int(version))
        if known.get("pushed") == f"{where}/{name}:{version}":
            return _pinned(known)
    name, number = service_image(deployment, registry, reporter)
    version = str(number)
    with reporter.step(f"pushing {name}:{version} to {where}") as progress:
        pushed = push(registry, name, int(version), where, progress, login)
    return _pinned(pushed)


def _pinned(image: dict[str, Any]) -> str:
    digest = image.get("digest")
    return f"{image['pushed']}@{digest}" if digest else str(image["pushed"])
