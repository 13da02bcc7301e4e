"""``mlctl image``: build container images of web services (versioned NAME:1, NAME:2, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlctl.cli import _state

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)  # its help: GROUPS in mlctl/cli/__init__.py


@app.command("build")
def build(
    file: Path = typer.Option(..., "--file", "-f", help="An Image spec, or a Service spec (its image part)."),
    set_: list[str] = typer.Option([], "--set", help=_state.SET_HELP),
    context_only: Path | None = typer.Option(None, "--context-only", help="Write the build context here; no build."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the Dockerfile and what goes in; build nothing."),
    push_: bool = typer.Option(False, "--push", help="Push it to the configured registry (MLCTL_REGISTRY)."),
    platform: list[str] = typer.Option(
        [],
        "--platform",
        help="Build for this platform (linux/amd64, linux/arm64, linux/arm/v7; repeat or comma-separate "
        "for several: one version, one image per platform, an image index when pushed). Default: the engine's.",
    ),
    platform_base: list[str] = typer.Option(
        [], "--platform-base", help="PLATFORM=IMAGE: the base image for that platform (else the spec's base image)."
    ),
) -> None:
    """Build the next version of an image through the Docker engine (or only write its context)."""
    from mlctl import builder, images, platforms

    registry, reporter = _state.registry(), _state.reporter()
    wanted, bases = platforms.parse_list(platform), platforms.parse_bases(platform_base)
    plan = _plan(file, set_, registry, reporter)
    for note in plan.notes:
        reporter.warn(note)
    if dry_run:
        doc = {
            "name": plan.name,
            "base_image": plan.base_image,
            "models": [m.ref for m in plan.models],
            "requirements": list(plan.requirements),
            "dockerfile": plan.dockerfile(),
            "platforms": list(wanted),
            "dry_run": True,
        }
        reporter.result(doc, lambda d: reporter.raw(d["dockerfile"]))
        return
    if context_only is not None:
        written = images.write_context(plan, context_only, registry)
        doc = {"name": plan.name, "context": str(written.resolve())}
        reporter.result(doc, lambda _: reporter.ok(f"wrote the build context of {plan.name} to {written}"))
        return
    target = _push_target() if push_ else None
    with reporter.step(f"building image {plan.name}") as progress:
        record = builder.build(plan, registry, progress, platforms=wanted, bases=bases)
    if target is not None:
        with reporter.step(f"pushing to {target}") as progress:
            record = builder.push(registry, record["name"], record["version"], target, progress)
    reporter.result(
        record,
        lambda r: reporter.ok(
            f"built image {r['name']}:{r['version']} for {', '.join(r['platforms'])} ({r['image_id'][:19]})"
        ),
    )


@app.command("push")
def push(ref: str = typer.Argument(..., help="NAME:VERSION.")) -> None:
    """Push a built image version to the configured registry (MLCTL_REGISTRY or `registry` in the config)."""
    from mlctl import builder

    name, version = _ref(ref)
    if version is None:
        raise typer.BadParameter("name the version to push: NAME:VERSION", param_hint="REF")
    registry, reporter = _state.registry(), _state.reporter()
    registry.image(name, version)
    target = _push_target()
    with reporter.step(f"pushing {name}:{version} to {target}") as progress:
        record = builder.push(registry, name, version, target, progress)
    reporter.result(record, lambda r: reporter.ok(f"pushed {r['pushed']} ({r['digest'][:19]})"))


def _push_target() -> str:
    from mlctl import config
    from mlctl.errors import TargetError

    target = config.image_registry()
    if target is None:
        raise TargetError(
            "no registry to push to", hint="set MLCTL_REGISTRY=host:port, or `registry:` in the configuration"
        )
    return target


@app.command("list")
def list_images(name: str | None = typer.Option(None, "--name", help="Only this image.")) -> None:
    """List built image versions."""
    rows = _state.registry().images(name)
    reporter = _state.reporter()
    reporter.result(
        rows,
        lambda _: reporter.table(
            rows, ["name", "version", "models", "base_image", "platforms", "created_at"], empty="no images built"
        ),
    )


@app.command("show")
def show(ref: str = typer.Argument(..., help="NAME or NAME:VERSION.")) -> None:
    """Show one image version (the latest without a version)."""
    name, version = _ref(ref)
    record = _state.registry().image(name, version)
    reporter = _state.reporter()
    first = ("name", "version", "image_id", "created_at")
    keys = [*(k for k in first if k in record), *(k for k in record if k not in first and k != "requirements")]
    reporter.result(record, lambda d: reporter.fields([(k, _readable(k, d[k])) for k in keys]))


def _readable(key: str, value: Any) -> Any:
    """Table output only (JSON keeps raw values): sizes in MB, labels one per line."""
    if key == "size" and isinstance(value, int):
        return f"{value / 1e6:.1f} MB"
    if key == "labels" and isinstance(value, dict):
        return "\n".join(f"{k}={v}" for k, v in sorted(value.items()))
    if key == "platforms" and isinstance(value, list):
        return ", ".join(value)
    if key == "variants" and isinstance(value, dict):
        return "\n".join(f"{p}: {v['tag']} ({v['image_id'][:19]})" for p, v in value.items())
    return value


@app.command("delete")
def delete(
    ref: str = typer.Argument(..., help="NAME:VERSION."),
    force: bool = typer.Option(False, "--force", help="Delete even while a service's container uses it."),
) -> None:
    """Delete an image version from the Docker engine and the registry (refused while in use)."""
    from docker.errors import ImageNotFound

    from mlctl import builder

    name, version = _ref(ref)
    if version is None:
        raise typer.BadParameter("name the version to delete: NAME:VERSION", param_hint="REF")
    registry = _state.registry()
    record = registry.image(name, version)
    client = builder.docker_client()
    users = client.containers.list(all=True, filters={"label": f"mlctl.image={name}:{version}"})
    if users and not force:
        from mlctl.errors import ConflictError

        services = sorted({c.labels.get("mlctl.service", c.name) for c in users})
        raise ConflictError(
            f"image {name}:{version} is used by service(s) {', '.join(services)}",
            hint="delete those services first, or pass --force",
        )
    for tag in [f"{name}:{version}", *(v["tag"] for v in (record.get("variants") or {}).values())]:
        try:
            client.images.remove(tag, force=force)
        except ImageNotFound:
            pass  # already gone from the engine: forget the record all the same
    registry.forget_image(name, version)
    reporter = _state.reporter()
    reporter.result(
        {"image": f"{name}:{version}", "image_id": record["image_id"], "deleted": True},
        lambda _: reporter.ok(f"deleted image {name}:{version}"),
    )


def _plan(file: Path, set_: list[str], registry: Any, reporter: Any) -> Any:
    from mlctl import config, images, services
    from mlctl.errors import SpecError
    from mlctl.spec import ImageSpec, ServiceSpec, load

    records = load([file], _state.overrides(set_))
    image_specs = [r for r in records if isinstance(r, ImageSpec)]
    service_specs = [r for r in records if isinstance(r, ServiceSpec) and r.inference is not None]
    if len(image_specs) == 1:
        spec = image_specs[0]
        models = tuple(registry.get(ref) for ref in spec.models)
        base = spec.base_image or config.base_image()
        return images.plan_context(
            spec.name,
            spec.inference,
            models,
            base_image=base,
            description=spec.description,
            warn=reporter.warn,
            registry=registry,
        )
    if not image_specs and len(service_specs) == 1:
        service = service_specs[0]
        assert service.inference is not None  # selected above
        models = services.resolve_models(service, registry, reporter)
        return images.plan_context(
            service.name,
            service.inference,
            models,
            base_image=service.inference.image.base_image or config.base_image(),
            description=service.description,
            warn=reporter.warn,
            registry=registry,
        )
    raise SpecError(
        f"{file}: expected one Image document, or one Service document with an inference_config",
        hint="put exactly one of them in the file",
    )


def _ref(text: str) -> tuple[str, int | None]:
    name, _, version = text.partition(":")
    if not name or (version and not version.isdigit()):
        raise typer.BadParameter(f"{text!r} is not NAME or NAME:VERSION", param_hint="REF")
    return name, int(version) if version else None
