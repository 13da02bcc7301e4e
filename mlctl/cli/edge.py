"""``mlctl edge``: IoT Edge devices in an IoT Hub, and models pushed to them as modules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from mlctl.cli import _state

app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
)
device_app = typer.Typer(rich_markup_mode=None, help="IoT Edge device identities and their tags.", no_args_is_help=True)
deployment_app = typer.Typer(rich_markup_mode=None, help="At-scale (and layered) deployments.", no_args_is_help=True)
app.add_typer(device_app, name="device")
app.add_typer(deployment_app, name="deployment")

_HUB = typer.Option(None, "--target", "-t", help="Target of kind iot-edge (default: the only one configured).")
_SPEC = typer.Option(..., "--file", "-f", help="A spec file with one `kind: EdgeDeployment` document.")
_SET = typer.Option([], "--set", help=_state.SET_HELP)


def _hub(target: str | None) -> Any:
    from mlctl import config
    from mlctl.edge.hub import KIND, connect
    from mlctl.errors import TargetError

    if target is None:
        hubs = [t.name for t in config.load().targets.values() if t.kind == KIND]
        if len(hubs) != 1:
            raise TargetError(
                f"{'several' if hubs else 'no'} targets of kind {KIND}: name one with --target",
                hint=f"add one: `mlctl target add hub1 --kind {KIND} --option connection_string_env=VAR`",
            )
        target = hubs[0]
    return connect(target)


def _spec(file: Path, set_: list[str]) -> Any:
    from mlctl.edge.spec import EdgeDeploymentSpec
    from mlctl.spec import load_one

    return load_one([file], EdgeDeploymentSpec, _state.overrides(set_))


# -- devices ------------------------------------------------------------------------------------


@device_app.command("create")
def device_create(
    device_id: str = typer.Argument(..., help="Device id."),
    tag: list[str] = typer.Option([], "--tag", help="k=v device twin tag; repeatable."),
    connection_string_file: Path | None = typer.Option(
        None, "--connection-string-file", help="Write the device's connection string here (mode 0600)."
    ),
    reveal: bool = typer.Option(False, "--reveal", help="Also print the device's connection string (a secret)."),
    target: str | None = _HUB,
) -> None:
    """Register an IoT Edge device; its connection string goes to a 0600 file (or --reveal)."""
    from mlctl.edge.hub import device_connection_string

    hub, reporter = _hub(target), _state.reporter()
    tags = _state.pairs(tag, "--tag")
    device = hub.create_edge_device(device_id)
    if tags:
        hub.set_tags(device_id, tags)
    secret = device_connection_string(hub.host, device)
    path = (
        connection_string_file or _state.home() / "edge" / hub.host.replace(":", "_") / f"{device_id}.connection-string"
    )
    try:
        _write_private(path, secret + "\n")
    except OSError as exc:  # nothing half-done: a device whose connection string is lost is removed again
        hub.delete_device(device_id)
        from mlctl.errors import SpecError

        raise SpecError(
            f"cannot write {path}: {exc.strerror}", hint="choose another --connection-string-file"
        ) from None
    doc = {**_device_row(device), "tags": tags, "connection_string_file": str(path.resolve())}
    if reveal:
        doc["connection_string"] = secret
    reporter.result(doc, lambda d: reporter.ok(f"created IoT Edge device {device_id}; connection string in {path}"))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _device_row(device: dict[str, Any]) -> dict[str, Any]:
    """A device without its keys."""
    return {
        "device_id": device["deviceId"],
        "iot_edge": bool((device.get("capabilities") or {}).get("iotEdge")),
        "status": device.get("status"),
        "connection_state": device.get("connectionState"),
        "last_activity_time": device.get("lastActivityTime"),
    }


@device_app.command("list")
def device_list(target: str | None = _HUB) -> None:
    """List the hub's devices (no keys)."""
    rows = [_device_row(d) for d in _hub(target).devices()]
    reporter = _state.reporter()
    columns = ["device_id", "iot_edge", "status", "connection_state", "last_activity_time"]
    reporter.result(rows, lambda _: reporter.table(rows, columns, empty="no devices"))


@device_app.command("show")
def device_show(device_id: str = typer.Argument(..., help="Device id."), target: str | None = _HUB) -> None:
    """Show a device: identity (no keys), twin tags."""
    hub = _hub(target)
    doc = {**_device_row(hub.device(device_id)), "tags": hub.twin(device_id).get("tags") or {}}
    reporter = _state.reporter()
    reporter.result(doc, lambda d: reporter.fields(list(d.items())))


@device_app.command("delete")
def device_delete(device_id: str = typer.Argument(..., help="Device id."), target: str | None = _HUB) -> None:
    """Delete a device identity (succeeds when it does not exist)."""
    deleted = _hub(target).delete_device(device_id)
    reporter = _state.reporter()
    message = f"deleted device {device_id}" if deleted else f"device {device_id} does not exist; nothing to delete"
    reporter.result({"device_id": device_id, "deleted": deleted}, lambda _: reporter.ok(message))


@device_app.command("tag")
def device_tag(
    device_id: str = typer.Argument(..., help="Device id."),
    tags: list[str] = typer.Argument(None, help="k=v tags to set."),
    remove: list[str] = typer.Option([], "--remove", help="Tag to remove; repeatable."),
    target: str | None = _HUB,
) -> None:
    """Set (or remove) device twin tags, which at-scale deployments target."""
    patch: dict[str, Any] = {**_state.pairs(tags or [], "TAGS"), **dict.fromkeys(remove)}
    twin = _hub(target).set_tags(device_id, patch)
    reporter = _state.reporter()
    doc = {"device_id": device_id, "tags": twin.get("tags") or {}}
    reporter.result(doc, lambda d: reporter.fields(list(d.items())))


# -- deploying ------------------------------------------------------------------------------------


@app.command("push")
def push(
    file: Path = _SPEC,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the device(s) run it."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait (exit 9 after)."),
    min_success: float = typer.Option(
        1.0, "--min-success", min=0.0, max=1.0, help="At scale: the share of targeted devices that must succeed."
    ),
    set_: list[str] = _SET,
) -> None:
    """Deploy the spec's modules to its device, or to every device its target condition matches."""
    from mlctl.edge import deploy

    spec, reporter = _spec(file, set_), _state.reporter()
    doc = deploy.push(spec, _state.registry(), reporter, wait_for=wait, timeout_s=timeout, min_success=min_success)
    reporter.result(doc, lambda d: reporter.ok(_pushed_text(d)))


def _pushed_text(doc: dict[str, Any]) -> str:
    if "device_id" in doc:
        return f"pushed {', '.join(doc['modules'])} to device {doc['device_id']}" + (
            " (running)" if doc.get("waited") else ""
        )
    if doc.get("unchanged"):
        return f"deployment {doc['deployment']} is unchanged"
    counts = doc.get("counts")
    applied = f": applied to {counts['applied']} of {counts['targeted']} device(s)" if counts else ""
    retired = f"; removed {', '.join(doc['retired'])}" if doc.get("retired") else ""
    return f"created deployment {doc['deployment']}{applied}{retired}"


@app.command("manifest")
def show_manifest(
    file: Path = _SPEC,
    reveal: bool = typer.Option(False, "--reveal", help="Put the registry passwords in (a secret)."),
    set_: list[str] = _SET,
) -> None:
    """Print the deployment manifest (`az iot edge set-modules --content` form); passwords redacted."""
    from mlctl.edge import deploy, manifest

    spec, reporter = _spec(file, set_), _state.reporter()
    images = deploy.resolve_images(spec, _state.registry(), reporter, build=False)
    if reveal:
        from mlctl.edge.hub import target_options

        spec = manifest.with_registry_resources(spec, target_options(spec.target))
    content = deploy.checked(spec, images, manifest.resolve_secrets(spec) if reveal else None)
    reporter.result(content, lambda d: reporter.raw(json.dumps(d, indent=2)))


@app.command("status")
def status(device_id: str = typer.Argument(..., help="Device id."), target: str | None = _HUB) -> None:
    """What a device's IoT Edge agent reports: applied version, status, each module's state (and message counts)."""
    from mlctl.edge import wait
    from mlctl.edge.messages import add_message_status

    hub = _hub(target)
    doc = add_message_status(hub, wait.device_status(hub, device_id))
    reporter = _state.reporter()
    reporter.result(doc, lambda d: reporter.fields(list(d.items())))


# -- running modules ------------------------------------------------------------------------------

_METHOD_TIMEOUT = typer.Option(
    30, "--timeout", min=5, max=300, help="Seconds the device's agent has to answer (exit 9 after)."
)
_CONNECT_TIMEOUT = typer.Option(
    0, "--connect-timeout", min=0, max=300, help="Seconds to wait for a disconnected device to connect (exit 6 after)."
)


def _since(value: str | None) -> str | None:
    from mlctl.edge.methods import check_since

    if value is None:
        return None
    try:
        return check_since(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("logs")
def logs(
    device_id: str = typer.Argument(..., help="Device id."),
    module: str = typer.Argument(..., help="Module name (as in the deployment's modules)."),
    tail: int | None = typer.Option(None, "--tail", min=0, help="Only the last N lines."),
    since: str | None = typer.Option(
        None, "--since", help="Only lines since: a duration back from now (15m, 2h, 1h 30m), RFC 3339 or unix time."
    ),
    until: str | None = typer.Option(None, "--until", help="Only lines until (same forms as --since)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (polls; Ctrl-C to stop)."),
    timeout: int = _METHOD_TIMEOUT,
    connect_timeout: int = _CONNECT_TIMEOUT,
    target: str | None = _HUB,
) -> None:
    """Print a module's log lines, read on the device by its IoT Edge agent (GetModuleLogs).
    JSON: {"device_id", "module", "filter", "lines"}; with -f, one JSON object per line."""
    from mlctl.edge import methods

    hub, reporter = _hub(target), _state.reporter()
    if follow:
        if until is not None:
            raise typer.BadParameter("--until cannot be combined with --follow", param_hint="--until")
        call = {"timeout_s": timeout, "connect_timeout_s": connect_timeout}
        for line in methods.follow_logs(hub, device_id, module, tail=tail, since=_since(since), **call):
            doc = {"device_id": device_id, "module": module, "line": line}
            reporter.raw(json.dumps(doc) + "\n" if reporter.machine else f"{line}\n")
        return
    doc = methods.module_logs(
        hub,
        device_id,
        module,
        tail=tail,
        since=_since(since),
        until=_since(until),
        timeout_s=timeout,
        connect_timeout_s=connect_timeout,
    )

    def human(d: dict[str, Any]) -> None:
        if d["lines"]:
            reporter.raw("".join(f"{line}\n" for line in d["lines"]))
        else:
            reporter.info(f"no log lines from module {module} on device {device_id}")

    reporter.result(doc, human)


@app.command("restart")
def restart(
    device_id: str = typer.Argument(..., help="Device id."),
    module: str = typer.Argument(..., help="Module name."),
    timeout: int = _METHOD_TIMEOUT,
    connect_timeout: int = _CONNECT_TIMEOUT,
    target: str | None = _HUB,
) -> None:
    """Restart a module on the device through its IoT Edge agent (RestartModule)."""
    from mlctl.edge import methods

    hub, reporter = _hub(target), _state.reporter()
    doc = methods.restart_module(hub, device_id, module, timeout_s=timeout, connect_timeout_s=connect_timeout)
    reporter.result(doc, lambda d: reporter.ok(f"restarted module {module} on device {device_id}"))


# -- deployments ----------------------------------------------------------------------------------


@deployment_app.command("list")
def deployment_list(target: str | None = _HUB) -> None:
    """List the hub's deployments with their counts."""
    from mlctl.edge import wait

    hub = _hub(target)
    rows = [wait.deployment_counts(hub, c["id"]) for c in hub.configurations()]
    reporter = _state.reporter()
    columns = ["id", "priority", "target_condition", "targeted", "applied", "reported_successful", "reported_failed"]
    reporter.result(rows, lambda _: reporter.table(rows, columns, empty="no deployments"))


@deployment_app.command("show")
def deployment_show(deployment_id: str = typer.Argument(..., help="Deployment id."), target: str | None = _HUB) -> None:
    """Show a deployment: counts and content (passwords redacted)."""
    from mlctl.edge import deploy, wait

    hub = _hub(target)
    counts = wait.deployment_counts(hub, deployment_id)
    doc = {**counts, "content": deploy.redact(hub.configuration(deployment_id).get("content") or {})}
    reporter = _state.reporter()
    reporter.result(doc, lambda d: reporter.fields([(k, v) for k, v in d.items() if k != "content"]))


@deployment_app.command("delete")
def deployment_delete(
    deployment_ids: list[str] = typer.Argument(None, help="Deployment ids."),
    name: str | None = typer.Option(None, "--name", help="Every version of this EdgeDeployment spec name."),
    target: str | None = _HUB,
) -> None:
    """Delete deployments (succeeds for ones that do not exist). Devices keep their last content
    only while another deployment or their own content targets them."""
    from mlctl.edge import deploy

    hub = _hub(target)
    ids = list(deployment_ids or []) + ([c["id"] for c in deploy.versions(hub, name)] if name else [])
    if not ids:
        raise typer.BadParameter("name deployment ids, or --name", param_hint="DEPLOYMENT_IDS")
    rows = [{"id": i, "deleted": hub.delete_configuration(i)} for i in ids]
    reporter = _state.reporter()
    reporter.result(rows, lambda _: reporter.table(rows, ["id", "deleted"], empty="nothing to delete"))
