"""``mlctl service``: deploy, update, test, inspect and delete web services."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Optional

import typer

from mlctl.cli import _state
from mlctl.errors import ServiceTestFailed

app = typer.Typer(
    help="Deploy a model as a web service, test it, update it, read its logs, delete it.", no_args_is_help=True
)

_SPEC = typer.Option(..., "--file", "-f", help="A spec file with one `kind: Service` document.")
_TIMEOUT = typer.Option(300.0, "--timeout", help="Seconds to wait for readiness.")


@app.command("deploy")
def deploy(
    file: Path = _SPEC,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the service is ready."),
    timeout: float = _TIMEOUT,
) -> None:
    """Deploy a web service from model files, registered models or an image."""
    from mlctl import services
    from mlctl.targets import driver_for

    spec = _load_service(file)
    registry, home, reporter = _state.registry(), _state.home(), _state.reporter()
    driver = driver_for(spec.target, registry=registry, home=home)
    state = driver.deploy(services.deployment_for(spec, registry, reporter), reporter, wait=wait, timeout_s=timeout)
    reporter.result(state.to_dict(), lambda _: _print_deployed(state.to_dict(), "deployed"))


@app.command("update")
def update(file: Path = _SPEC, timeout: float = _TIMEOUT) -> None:
    """Update a web service to a new spec; the old one serves until the new one is ready."""
    from mlctl import services
    from mlctl.targets import driver_for

    spec = _load_service(file)
    registry, home, reporter = _state.registry(), _state.home(), _state.reporter()
    driver = driver_for(spec.target, registry=registry, home=home)
    state = driver.update(services.deployment_for(spec, registry, reporter), reporter, wait=True, timeout_s=timeout)
    reporter.result(state.to_dict(), lambda _: _print_deployed(state.to_dict(), "updated"))


@app.command("test")
def test(
    name: Optional[str] = typer.Argument(None, help="Service name (or give -f)."),  # noqa: UP045
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Service spec: its name and test block."),  # noqa: UP045
    data: Optional[Path] = typer.Option(None, "--data", help="File whose content is the request body."),  # noqa: UP045
) -> None:
    """Send sample data to a web service and print the prediction.

    With an expected output (spec `test.expected`), exits 8 when the answer differs beyond the
    tolerance; the JSON result is printed either way.
    """
    from mlctl import services

    name, case = _test_case(name, file, data)
    registry, home, reporter = _state.registry(), _state.home(), _state.reporter()
    state = services.driver_of_service(name, registry, home).status(name)
    try:
        doc = services.run_test(name, state.scoring_uri, case)
    except ServiceTestFailed as error:
        result = getattr(error, "result", None)
        if result is not None:
            reporter.result(result, lambda d: reporter.fields([("prediction", json.dumps(d["prediction"]))]))
        raise
    reporter.result(doc, lambda d: _print_test(d))


@app.command("logs")
def logs(
    name: str = typer.Argument(..., help="Service name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C to stop)."),
    tail: Optional[int] = typer.Option(None, "--tail", min=1, help="Only the last N lines."),  # noqa: UP045
) -> None:
    """Print a web service's logs (JSON: {"service", "lines"}; with -f, one JSON object per line)."""
    from mlctl import services

    reporter = _state.reporter()
    driver = services.driver_of_service(name, _state.registry(), _state.home())
    lines = driver.logs(name, follow=follow, tail=tail)
    if reporter.mode == "json" and not follow:
        reporter.result({"service": name, "lines": [line.rstrip("\n") for line in lines]})
        return
    for line in lines:
        reporter.raw(
            json.dumps({"service": name, "line": line.rstrip("\n")}) + "\n" if reporter.mode == "json" else line
        )


@app.command("list")
def list_services() -> None:
    """List web services on every compute target."""
    from mlctl import services

    states = [s.to_dict() for d in services.all_drivers(_state.registry(), _state.home()) for s in d.list()]
    reporter = _state.reporter()
    reporter.result(
        states,
        lambda rows: reporter.table(rows, ["name", "target", "state", "scoring_uri", "models"], empty="no services"),
    )


@app.command("show")
def show(name: str = typer.Argument(..., help="Service name.")) -> None:
    """Show a web service: state, scoring URI, models, environment."""
    from mlctl import services

    state = services.driver_of_service(name, _state.registry(), _state.home()).status(name)
    reporter = _state.reporter()
    reporter.result(state.to_dict(), lambda doc: reporter.fields(list(doc.items())))


@app.command("delete")
def delete(name: str = typer.Argument(..., help="Service name.")) -> None:
    """Stop and remove a web service (succeeds when it does not exist)."""
    from mlctl import services
    from mlctl.errors import NotFoundError

    registry, reporter = _state.registry(), _state.reporter()
    try:
        deleted = services.driver_of_service(name, registry, _state.home()).delete(name, reporter)
    except NotFoundError:
        deleted = False
    message = f"deleted service {name}" if deleted else f"service {name} does not exist; nothing to delete"
    reporter.result({"name": name, "deleted": deleted}, lambda _: reporter.ok(message))


def _load_service(file: Path) -> Any:
    from mlctl.spec import ServiceSpec, load_one

    return load_one([file], ServiceSpec)


def _test_case(name: str | None, file: Path | None, data: Path | None) -> tuple[str, Any]:
    from mlctl.services import ScoringCase

    stored: dict[str, Any] | None = None
    if file is not None:
        spec = _load_service(file)
        name = spec.name
        if spec.test is not None:
            t = spec.test
            stored = {"body": t.body, "expected": t.expected, "has_expected": t.has_expected, "tolerance": t.tolerance}
    elif name is not None:
        record = _state.registry().service(name)
        if record is None:
            from mlctl.errors import NotFoundError

            raise NotFoundError(f"service {name!r} does not exist", hint="`mlctl service list` shows services")
        if record.get("test"):
            stored = dict(record["test"], body=base64.b64decode(record["test"]["body"]))
    else:
        raise typer.BadParameter("name the service, or give -f SPEC", param_hint="NAME")
    if data is not None:
        if not data.is_file():
            raise typer.BadParameter(f"{data} is not a file", param_hint="--data")
        return name, ScoringCase(body=data.read_bytes())
    if stored is None:
        raise typer.BadParameter(
            "no sample input: pass --data FILE, or add `test.input` to the spec", param_hint="--data"
        )
    return name, ScoringCase(**stored)


def _print_deployed(doc: dict[str, Any], verb: str) -> None:
    reporter = _state.reporter()
    reporter.ok(f"{verb} service {doc['name']} ({doc['state']}) on target {doc['target']}")
    reporter.fields(
        [("scoring_uri", doc["scoring_uri"]), ("swagger_uri", doc["swagger_uri"]), ("models", doc["models"])]
    )
    reporter.info(f"test it: mlctl service test {doc['name']}")


def _print_test(doc: dict[str, Any]) -> None:
    reporter = _state.reporter()
    reporter.fields([("prediction", json.dumps(doc["prediction"])), ("latency_ms", doc["latency_ms"])])
    if doc["passed"]:
        reporter.ok(f"matches the expected output (tolerance {doc['tolerance']})")
