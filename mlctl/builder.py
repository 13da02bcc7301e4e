"""Build images through the Docker Engine API (the docker SDK), streaming the build output.

A build runs under a temporary tag; only a successful build gets the next version (``NAME:N``,
recorded in the registry with its image id), so a failed or interrupted build leaves no version.
Builds use host networking, so pip reaches the package index where bridge networking cannot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl import platforms as platforms_mod
from mlctl.errors import DeploymentError, SpecError, TargetError
from mlctl.images import ContextPlan, fingerprint, write_context
from mlctl.output import strip_ansi
from mlctl.pushing import pull
from mlctl.pushing import push as push  # re-exported: `builder.push` is where callers find it
from mlctl.registry import Registry
from mlctl.spec.records import RegistryAuth

if TYPE_CHECKING:
    from mlctl.output import Reporter
    from mlctl.targets import Deployment

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_TAIL = 25


def docker_client() -> Any:
    """A docker SDK client from the environment (``DOCKER_HOST``, or the local socket).

    Raises:
        TargetError: the Docker daemon does not answer.
    """
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise TargetError(
            f"the Docker daemon is unreachable: {exc}",
            hint="is it running? try `docker info`; DOCKER_HOST selects another daemon",
        ) from None
    return client


def build(
    plan: ContextPlan,
    registry: Registry,
    progress: Callable[[str], None],
    *,
    cache: bool = True,
    platforms: tuple[str, ...] = (),
    bases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build ``plan`` and record it as the next version of its name; returns the image record.
    ``cache``: reuse cached layers (off only to measure a cold build). ``platforms``: normalized
    ``linux/ARCH`` (see ``mlctl.platforms``), built one after the other (another architecture runs
    under QEMU emulation, registered in binfmt_misc); none: the engine's own. ``bases``: platform ->
    base image for it (else the plan's, which must then be of that platform). The record's
    ``platforms`` lists what was built, and with several, ``variants`` maps each to its image id and
    local tag (``NAME:N-<suffix>``; ``NAME:N`` is the engine's platform's variant, else the first).

    Raises:
        TargetError: Docker is unreachable.
        SpecError: a base image is of another platform than the one it is to build.
        DeploymentError: phase ``image build``: a Dockerfile step failed (its last log lines in
            ``details``, the step named in the message).
    """
    client = docker_client()
    variants = []  # (platform or None, the plan with that platform's base), all checked before any build
    for platform in platforms or (None,):
        base = (bases or {}).get(platform or "", plan.base_image)
        variant = plan if base == plan.base_image else dataclasses.replace(plan, base_image=base)
        if variant.registry is not None:
            pull_base(client, variant.base_image, variant.registry, progress, platform=platform)
        if platform is not None:
            _check_base(client, variant.base_image, platform)
        variants.append((platform, variant))
    built: dict[str, tuple[Any, str]] = {}  # platform -> (image, its base image), in build order
    temporary: list[str] = []
    try:
        for platform, variant in variants:
            tag = f"{plan.name}:building-{uuid.uuid4().hex[:12]}"
            temporary.append(tag)
            if platform is not None and len(variants) > 1:
                progress(f"building for {platform}")
            image = _build_one(client, variant, tag, registry, progress, cache=cache, platform=platform)
            built[platforms_mod.of_image(image.attrs)] = (image, variant.base_image)
        return _record(client, plan, registry, built, labelled=bool(platforms))
    finally:
        for tag in temporary:
            with contextlib.suppress(Exception):  # a failed build left no such tag
                client.images.remove(tag, noprune=True)


def _build_one(
    client: Any,
    plan: ContextPlan,
    tag: str,
    registry: Registry,
    progress: Callable[[str], None],
    *,
    cache: bool,
    platform: str | None,
) -> Any:
    with tempfile.TemporaryDirectory(prefix="mlctl-context-") as tmp:
        context = write_context(plan, Path(tmp) / "context", registry)
        _stream(
            client.api.build(
                path=str(context),
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                network_mode="host",
                pull=False,
                nocache=not cache,
                platform=platform,
                labels={"mlctl.platform": platform} if platform else None,
            ),
            progress,
            base_image=plan.base_image,
        )
    return client.images.get(tag)


def _check_base(client: Any, base_image: str, platform: str) -> None:
    """A local base image must be of ``platform`` (the engine holds one platform per tag)."""
    from docker.errors import ImageNotFound

    try:
        found = platforms_mod.of_image(client.images.get(base_image).attrs)
    except ImageNotFound:
        return  # the build's FROM step fails with its own hint
    if found != platform:
        raise SpecError(
            f"the base image {base_image} is {found}, so it cannot build for {platform}",
            hint=f"give a base image of that platform: --platform-base {platform}=IMAGE "
            "(tests: scripts/binfmt-up.sh builds mlctl-test/python:bookworm-arm64)",
        )


def _record(
    client: Any, plan: ContextPlan, registry: Registry, built: dict[str, tuple[Any, str]], *, labelled: bool
) -> dict[str, Any]:
    info = client.info()
    host = platforms_mod.from_architecture(info.get("Architecture"), info.get("OSType"))
    primary = host if host in built else next(iter(built))
    image, base = built[primary]
    record = {
        "base_image": base,
        "models": [m.ref for m in plan.models],
        "requirements": list(plan.requirements),
        "labels": {**plan.labels, "mlctl.platform": primary} if labelled else plan.labels,
        "size": image.attrs.get("Size"),
        "fingerprint": fingerprint(plan),
        "platforms": list(built),
    }
    version = registry.add_image(plan.name, image.id, record)
    image.tag(plan.name, str(version))
    if len(built) > 1:
        variants = {}
        for platform, (variant, variant_base) in built.items():
            tag = f"{version}-{platforms_mod.suffix(platform)}"
            variant.tag(plan.name, tag)
            variants[platform] = {
                "image_id": variant.id,
                "tag": f"{plan.name}:{tag}",
                "base_image": variant_base,
                "size": variant.attrs.get("Size"),
            }
        registry.update_image(plan.name, version, {"variants": variants})
    return registry.image(plan.name, version)


def service_image(deployment: Deployment, registry: Registry, reporter: Reporter) -> tuple[str, int]:
    """The local image ``(NAME, VERSION)`` a web service runs: its ``image:`` (pulled back from
    where it was pushed when the engine no longer has it), or one built now from its models,
    entry script and environment (``NAME`` = the service's name; notes shown as warnings).

    Raises:
        NotFoundError: the spec's image was never built.
        TargetError, DeploymentError: the pull or the build failed.
    """
    from mlctl import config, images, modeldata

    spec = deployment.spec
    if spec.image is not None:
        name, _, version = spec.image.partition(":")
        registry.image(name, int(version))  # NotFoundError when it was never built
        with reporter.step(f"finding image {spec.image}"):
            pull(registry, name, int(version))
        return name, int(version)
    assert spec.inference is not None
    plan = images.plan_context(
        spec.name,
        spec.inference,
        deployment.models,
        base_image=spec.inference.image.base_image or config.base_image(),
        description=spec.description,
        warn=reporter.warn,
        extra=modeldata.requirements(spec),
        registry=registry,
    )
    for note in plan.notes:
        reporter.warn(note)
    with reporter.step(f"building image {spec.name}") as progress:
        record = build(plan, registry, progress)
    return str(record["name"]), int(record["version"])


def pull_base(
    client: Any,
    base_image: str,
    registry: RegistryAuth,
    progress: Callable[[str], None],
    *,
    platform: str | None = None,
) -> None:
    """Pull ``base_image`` (its ``platform`` variant, if given) from its private ``registry``
    unless the engine has it already, authenticating with the username and the password read
    from its reference (never printed).

    Raises:
        SpecError: the password's environment variable is unset or its file unreadable.
        TargetError: the pull failed (unreachable, refused credentials).
    """
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(base_image)
        return
    except ImageNotFound:
        pass
    repository, tag = _split_tag(base_image)
    progress(f"pulling {base_image} from {registry.address}")
    try:
        client.images.pull(repository, tag=tag, auth_config=registry_credentials(registry), platform=platform)
    except APIError as exc:
        raise TargetError(
            f"pulling the base image {base_image} from {registry.address} failed: {exc.explanation or exc}",
            hint="is the registry reachable, and are base_image_registry's username and password right?",
        ) from None


def registry_credentials(registry: RegistryAuth) -> dict[str, str] | None:
    """``{"username", "password"}`` for the docker SDK from a ``base_image_registry``, the password
    read from its environment variable or file now; None without a username (anonymous pull).

    Raises:
        SpecError: the variable is unset or empty, or the file cannot be read.
    """
    import os

    if registry.username is None:
        return None
    if registry.password_env is not None:
        password = os.environ.get(registry.password_env, "")
        if not password:
            raise SpecError(
                f"base_image_registry: the environment variable {registry.password_env} (the password "
                f"for {registry.username}@{registry.address}) is not set",
                hint=f"export {registry.password_env}=... before building",
            )
    elif registry.password_file is not None:
        try:
            password = registry.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SpecError(f"base_image_registry: cannot read password_file: {exc.strerror}") from None
    else:
        raise SpecError(f"base_image_registry: a username ({registry.username}) needs password_env or password_file")
    return {"username": registry.username, "password": password}


def _split_tag(image: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` -> (``host:5000/a/b``, ``tag``); no tag: ``latest``."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, "latest"
    return name, tag


def _hint(lines: list[str], step: str, base_image: str) -> str:
    from mlctl.environments import pip_hint

    if step.startswith("step 1/"):  # FROM: the engine has not got the base image and cannot pull it
        return (
            f"the Docker engine cannot get the base image {base_image}: pull or build it first "
            "(`docker pull`, or a registry it can reach), or choose another with base_image in the "
            "Image spec, MLCTL_BASE_IMAGE, or base_image in the configuration"
        )

    if any("No matching distribution found" in line for line in lines):
        hint = pip_hint(lines)  # names the package, and says a conda-only one cannot come from pip
        if any("the base image has no conda" in line for line in lines):
            hint += " (this base image has none)"
        return hint
    return "the lines above end with the failing command's output"


def _stream(chunks: Any, progress: Callable[[str], None], *, base_image: str) -> None:
    lines: list[str] = []
    step = ""
    for chunk in chunks:
        for line in strip_ansi(str(chunk.get("stream", ""))).splitlines():
            if line.strip():
                lines.append(line.rstrip())
                match = _STEP.match(line.strip())
                if match:
                    step = f"step {match.group(1)}/{match.group(2)} ({match.group(3)[:60]})"
                    progress(step)
        if "error" in chunk:
            lines.append(strip_ansi(str(chunk["error"])).rstrip())
            raise DeploymentError(
                f"the image build failed at {step or 'its start'}",
                phase="image build",
                details=lines[-_TAIL:],
                hint=_hint(lines, step, base_image),
            )
