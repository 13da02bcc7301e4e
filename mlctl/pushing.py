"""Push built image versions to an OCI registry and pull them back (through the Docker engine).

A version built for one platform is pushed as ``REGISTRY/NAME:N``; one built for several is pushed
as one tag per platform (``REGISTRY/NAME:N-arm64``, ...) plus the image index ``REGISTRY/NAME:N``
over them (``mlctl.oci_index``). The record keeps where it went (``pushed``) and its ``digest``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlctl import platforms as platforms_mod
from mlctl.errors import TargetError
from mlctl.registry import Registry


def push(
    registry: Registry,
    name: str,
    version: int,
    target: str,
    progress: Callable[[str], None],
    auth: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Tag ``name:version`` as ``target/name:version`` and push it; records where it went. A
    multi-platform version (``variants`` in its record): each variant as ``target/name:version-<arch>``,
    then the image index ``target/name:version`` over them (``digest`` is the index's).

    Credentials: ``auth`` (``{username, password}``, e.g. read from a registry resource), else the
    Docker configuration (``docker login``), or ``MLCTL_REGISTRY_USERNAME`` and
    ``MLCTL_REGISTRY_PASSWORD``; they are never printed.

    Raises:
        TargetError: the registry refused the push (unreachable, authentication), or the index.
    """
    from mlctl.builder import docker_client

    client = docker_client()
    repository = f"{target}/{name}"
    auth = auth or _auth_from_environment()
    variants = registry.image(name, version).get("variants") or {}
    if variants:  # one tag per platform, then the index over them under NAME:VERSION
        for platform, variant in variants.items():
            tag = f"{version}-{platforms_mod.suffix(platform)}"
            progress(f"pushing the {platform} variant")
            _push_tag(client, variant["tag"], repository, tag, progress, auth)
        from mlctl import oci_index

        progress("writing the image index")
        mapping = {p: f"{version}-{platforms_mod.suffix(p)}" for p in variants}
        digest = oci_index.compose(target, name, str(version), mapping, auth or _docker_login(target))
    else:
        _push_tag(client, f"{name}:{version}", repository, str(version), progress, auth)
        digest = client.images.get_registry_data(f"{repository}:{version}", auth_config=auth).id
    registry.update_image(name, version, {"pushed": f"{repository}:{version}", "digest": digest})
    return registry.image(name, version)


def _push_tag(
    client: Any, local: str, repository: str, tag: str, progress: Callable[[str], None], auth: dict[str, str] | None
) -> None:
    client.images.get(local).tag(repository, tag)
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in chunk:
            raise TargetError(
                f"pushing {repository}:{tag} failed: {chunk['error']}",
                hint="is the registry reachable, and are you logged in (`docker login`, or "
                "MLCTL_REGISTRY_USERNAME/MLCTL_REGISTRY_PASSWORD)?",
            )
        if chunk.get("status"):
            progress(str(chunk["status"])[:60])


def _docker_login(host: str) -> dict[str, str] | None:
    """Credentials ``docker login`` stored for ``host`` (for the registry HTTP API), or None."""
    from docker import auth

    found = auth.resolve_authconfig(auth.load_config(), host) or {}
    if found.get("username") and found.get("password"):
        return {"username": found["username"], "password": found["password"]}
    return None


def pull(registry: Registry, name: str, version: int) -> None:
    """Make ``name:version`` local again from where it was pushed.

    Raises:
        NotFoundError: it is neither local nor pushed.
        TargetError: the pull failed.
    """
    from docker.errors import APIError, ImageNotFound

    from mlctl.builder import docker_client
    from mlctl.errors import NotFoundError

    client = docker_client()
    try:
        client.images.get(f"{name}:{version}")
        return
    except ImageNotFound:
        pass
    pushed = registry.image(name, version).get("pushed")
    if not pushed:
        raise NotFoundError(
            f"image {name}:{version} is not in the Docker engine and was never pushed",
            hint="build it again: `mlctl image build`",
        )
    repository, _, tag = pushed.rpartition(":")
    try:
        image = client.images.pull(repository, tag=tag, auth_config=_auth_from_environment())
    except APIError as exc:
        raise TargetError(
            f"pulling {pushed} failed: {exc.explanation or exc}",
            hint="is the registry reachable, and are you logged in (`docker login`)?",
        ) from None
    image.tag(name, str(version))


def _auth_from_environment() -> dict[str, str] | None:
    import os

    user, password = os.environ.get("MLCTL_REGISTRY_USERNAME"), os.environ.get("MLCTL_REGISTRY_PASSWORD")
    return {"username": user, "password": password} if user and password else None
