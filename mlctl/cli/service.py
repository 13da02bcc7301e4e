"""``mlctl service``: deploy, update, test, inspect and delete web services."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import typer

from mlctl.cli import _state
from mlctl.errors import ServiceTestFailed

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)  # its help: GROUPS in mlctl/cli/__init__.py

_SPEC = typer.Option(..., "--file", "-f", help="A spec file with one `kind: Service` document.")
_SET = typer.Option([], "--set", help=_state.SET_HELP)
_TIMEOUT = typer.Option(300.0, "--timeout", help="Seconds to wait for readiness.")
_DRY_RUN = typer.Option(False, "--dry-run", help="Show what would change and the plan; change nothing.")


@app.command("deploy")
def deploy(
    file: Path = _SPEC,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the service is ready."),
    timeout: float = _TIMEOUT,
    set_: list[str] = _SET,
    dry_run: bool = _DRY_RUN,
) -> None:
    """Deploy a web service from model files, registered models or an image."""
    spec, driver = _spec_and_driver(file, set_)
    if dry_run:
        _dry_run(spec, driver)
        return
    _deployed("deploy", spec, driver, wait=wait, timeout=timeout, verb="deployed")


@app.command("update")
def update(
    file: Path = _SPEC,
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="Wait for the new version (the process target always waits: it must retire the old).",
    ),
    timeout: float = _TIMEOUT,
    set_: list[str] = _SET,
    dry_run: bool = _DRY_RUN,
) -> None:
    """Update a web service to a new spec; the old one serves until the new one is ready."""
    spec, driver = _spec_and_driver(file, set_)
    if dry_run:
        _dry_run(spec, driver)
        return
    _deployed("update", spec, driver, wait=wait, timeout=timeout, verb="updated")


@app.command("render")
def render(file: Path = _SPEC, set_: list[str] = _SET) -> None:
    """Print what deploying the spec would create on its target, changing nothing (secrets
    redacted). Kubernetes: the manifests as YAML documents for `kubectl apply -f -`."""
    spec, driver = _spec_and_driver(file, set_)
    _print_rendered(_rendered(spec, driver))


@app.command("test")
def test(
    name: str | None = typer.Argument(None, help="Service name (or give -f).", autocompletion=_state.complete_services),
    file: Path | None = typer.Option(None, "--file", "-f", help="Service spec: its name and test block."),
    data: Path | None = typer.Option(None, "--data", help="File whose content is the request body."),
    set_: list[str] = _SET,
) -> None:
    """Send sample data to a web service and print the prediction.

    With an expected output (spec `test.expected`), exits 8 when the answer differs beyond the
    tolerance; the JSON result is printed either way. An Open Inference Protocol request (`inputs`:
    tensors with name, shape, datatype, data) goes to /v2/models/NAME/infer; its prediction is the
    outputs' data.
    """
    from mlctl import keys, services

    name, case = _test_case(name, file, data, set_)
    registry, home, reporter = _state.registry(), _state.home(), _state.reporter()
    driver = services.driver_of_service(name, registry, home)
    state = driver.status(name)
    keys_file = state.details.get("keys_file")
    key = keys.read(Path(keys_file))["primary"] if keys_file else None
    try:
        with _endpoint(driver, name, state.scoring_uri) as scoring_uri:
            doc = services.run_test(name, scoring_uri, case, key=key, tls_cert=state.details.get("tls_cert"))
    except ServiceTestFailed as error:
        result = getattr(error, "result", None)
        if result is not None:
            reporter.result(result, lambda d: reporter.fields([("prediction", json.dumps(d["prediction"]))]))
        raise
    reporter.result(doc, lambda d: _print_test(d))


@app.command("keys")
def keys_(
    name: str = typer.Argument(..., help="Service name.", autocompletion=_state.complete_services),
    regenerate: str | None = typer.Option(None, "--regenerate", help="primary or secondary: replace that key."),
    reveal: bool = typer.Option(False, "--reveal", help="Print the key values (secrets!) instead of fingerprints."),
    dry_run: bool = _DRY_RUN,
) -> None:
    """Show (fingerprints) or regenerate the authentication keys of an auth_enabled service.

    Clients send `Authorization: Bearer KEY`; both keys are valid, so rotate one at a time. A new
    key is valid at once (the server re-reads the key file), the old one stops working.
    """
    from mlctl import keys, services
    from mlctl.errors import ConflictError

    driver = services.driver_of_service(name, _state.registry(), _state.home())
    state = driver.status(name)
    keys_file = state.details.get("keys_file")
    if not keys_file:
        raise ConflictError(
            f"service {name!r} does not use keys",
            hint="set deployment_config.auth_enabled: true and update the service",
        )
    path = Path(keys_file)
    if regenerate is not None:
        if regenerate not in keys.KEY_NAMES:
            raise typer.BadParameter("primary or secondary", param_hint="--regenerate")
        if not dry_run:
            keys.regenerate(path, regenerate)
            push = getattr(driver, "keys_changed", None)  # targets whose servers cannot read the key store
            if push is not None:
                push(name, _state.reporter())
    values = keys.read(path)
    doc: dict[str, Any] = {
        "name": name,
        "keys_file": str(path),
        "regenerated": regenerate,
        "dry_run": dry_run,
        **keys.describe(path),
    }
    if reveal:
        doc.update(primary_key=values["primary"], secondary_key=values["secondary"])
    reporter = _state.reporter()
    reporter.result(doc, lambda d: reporter.fields(list(d.items())))


@app.command("logs")
def logs(
    name: str = typer.Argument(..., help="Service name.", autocompletion=_state.complete_services),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C to stop)."),
    tail: int | None = typer.Option(None, "--tail", min=1, help="Only the last N lines."),
) -> None:
    """Print a web service's logs (JSON: {"service", "lines"}; with -f, one JSON object per line)."""
    from mlctl import services

    reporter = _state.reporter()
    driver = services.driver_of_service(name, _state.registry(), _state.home())
    lines = driver.logs(name, follow=follow, tail=tail)
    if reporter.machine and not follow:
        reporter.result({"service": name, "lines": [line.rstrip("\n") for line in lines]})
        return
    for line in lines:
        reporter.raw(json.dumps({"service": name, "line": line.rstrip("\n")}) + "\n" if reporter.machine else line)


@app.command("data")
def data(
    name: str = typer.Argument(..., help="Service name.", autocompletion=_state.complete_services),
    designation: str | None = typer.Option(
        None,
        "--designation",
        "-d",
        help="Only this designation (inputs, predictions, ...); default: inputs joined with predictions.",
    ),
    since: str | None = typer.Option(None, "--since", help="Rows scored at or after this UTC time (ISO 8601)."),
    until: str | None = typer.Option(None, "--until", help="Rows scored at or before this UTC time (ISO 8601)."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="table, json or csv (default: the global --output)."
    ),
) -> None:
    """Print the model data a service collected (collect_model_data), from Azure Blob Storage or
    the local store; inputs and predictions are joined on $aml_dc_correlation_id."""
    from mlctl import modeldata
    from mlctl.errors import SpecError

    if output not in (None, "table", "json", "csv"):
        raise SpecError(f"--output {output!r}: use table, json or csv")
    record = _state.registry().service(name) or {}
    ref = record.get("model_data") or {"store": "local", "root": str(modeldata.local_root(_state.home()))}
    if designation:
        found = modeldata.within(modeldata.rows(ref, name, designation), since, until)
    else:
        inputs = modeldata.within(modeldata.rows(ref, name, "inputs"), since, until)
        found = modeldata.joined(inputs, modeldata.rows(ref, name, "predictions"))
    _print_rows(found, modeldata.columns(found), output)


def _print_rows(found: list[dict[str, str]], columns: list[str], output: str | None) -> None:
    import csv
    import sys

    reporter = _state.reporter()
    if output == "csv":
        writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(found)
    elif output == "json" or (output is None and reporter.machine):
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
    else:
        reporter.table(found, columns, empty="no model data collected")


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
def show(name: str = typer.Argument(..., help="Service name.", autocompletion=_state.complete_services)) -> None:
    """Show a web service: state, scoring URI, models, environment."""
    from mlctl import services

    state = services.driver_of_service(name, _state.registry(), _state.home()).status(name)
    reporter = _state.reporter()
    reporter.result(state.to_dict(), lambda doc: reporter.fields(list(doc.items())))


@app.command("delete")
def delete(
    name: str = typer.Argument(..., help="Service name.", autocompletion=_state.complete_services),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the service has stopped."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to let it finish requests before killing it."),
    dry_run: bool = _DRY_RUN,
) -> None:
    """Stop and remove a web service (succeeds when it does not exist)."""
    from mlctl import services
    from mlctl.errors import NotFoundError

    registry, reporter = _state.registry(), _state.reporter()
    try:
        driver = services.driver_of_service(name, registry, _state.home())
    except NotFoundError:
        driver = None
    if dry_run:
        from mlctl.cli.apply import report

        action = "delete" if driver is not None else "unchanged"
        report([{"kind": "Service", "name": name, "action": action, "reasons": []}], dry_run=True)
        return
    deleted = driver is not None and driver.delete(name, reporter, wait=wait, timeout_s=timeout)
    message = f"deleted service {name}" if deleted else f"service {name} does not exist; nothing to delete"
    reporter.result({"name": name, "deleted": deleted}, lambda _: reporter.ok(message))


def _spec_and_driver(file: Path, set_: list[str]) -> tuple[Any, Any]:
    from mlctl.targets import driver_for

    spec = _load_service(file, set_)
    return spec, driver_for(spec.target, registry=_state.registry(), home=_state.home())


def _deployed(action: str, spec: Any, driver: Any, *, wait: bool, timeout: float, verb: str) -> None:
    """Deploy or update (``action``) the service and print the resulting state."""
    from mlctl import services

    registry, reporter = _state.registry(), _state.reporter()
    run = services.deploy if action == "deploy" else services.update
    deployment = services.deployment_for(spec, registry, reporter, driver)
    state = run(driver, deployment, reporter, registry, wait=wait, timeout_s=timeout)
    reporter.result(state.to_dict(), lambda _: _print_deployed(state.to_dict(), verb))


def _dry_run(spec: Any, driver: Any) -> None:
    from mlctl import plan
    from mlctl.cli.apply import report

    change = plan.plan_service(spec, _state.registry(), _state.home())
    rendered = _rendered(spec, driver)
    if "manifests" in rendered and not _state.reporter().machine:  # YAML for `kubectl apply -f -`
        action = change.to_dict()
        _state.reporter().info(f"{action['action']} service {action['name']} (dry run: nothing was changed)")
        _print_rendered(rendered)
        return
    report([change.to_dict()], dry_run=True, extra={"plan": rendered})


def _rendered(spec: Any, driver: Any) -> dict[str, Any]:
    from mlctl import plan
    from mlctl.targets import Deployment, check_supported

    check_supported(driver.kind, spec)
    return driver.render(Deployment(spec, plan.predicted_models(spec, _state.registry(), {})))  # type: ignore[no-any-return]


def _print_rendered(rendered: dict[str, Any]) -> None:
    """The plan as the result document; for people, manifests as a multi-document YAML stream."""
    reporter = _state.reporter()
    if reporter.machine or "manifests" not in rendered:
        reporter.result(rendered)
        return
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump_all(rendered["manifests"], out)
    reporter.raw(out.getvalue())


def _endpoint(driver: Any, name: str, scoring_uri: str) -> Any:
    """A context giving a scoring URI reachable from here: the driver's ``endpoint`` (a
    port-forward, on targets whose services are inside a cluster), else the service's own."""
    from contextlib import nullcontext

    return driver.endpoint(name) if hasattr(driver, "endpoint") else nullcontext(scoring_uri)


def _load_service(file: Path, set_: list[str] | None = None) -> Any:
    from mlctl.spec import ServiceSpec, load_one

    return load_one([file], ServiceSpec, _state.overrides(set_ or []))


def _test_case(name: str | None, file: Path | None, data: Path | None, set_: list[str]) -> tuple[str, Any]:
    from mlctl.spec.records import ServiceTest

    stored: dict[str, Any] | None = None
    if file is not None:
        spec = _load_service(file, set_)
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
        return name, ServiceTest(body=data.read_bytes())
    if stored is None:
        raise typer.BadParameter(
            "no sample input: pass --data FILE, or add `test.input` to the spec", param_hint="--data"
        )
    return name, ServiceTest(**stored)


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
