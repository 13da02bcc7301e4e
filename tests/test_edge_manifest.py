"""The pure manifest renderer: golden files (chunking, schema versions, layered paths, at-scale
bodies), validation against the official schemas, and the spec's own checks. No hub, no Docker."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import mlctl, write

from mlctl.edge import manifest
from mlctl.edge.spec import EdgeDeploymentSpec
from mlctl.errors import SpecError
from mlctl.spec import load

GOLDEN = Path(__file__).parent / "edge_golden"
IMAGES = {"model": "127.0.0.1:5000/model:3", "sidecar": "127.0.0.1:5000/sidecar:1"}

DEVICE = """
apiVersion: mlctl/v1
kind: EdgeDeployment
name: demo
target: hub1
device_id: dev-1
runtime:
  routes:
    upstream: FROM /messages/* INTO $$upstream
    modelOut: {route: "FROM /messages/modules/model/outputs/* INTO $$upstream", priority: 2, time_to_live_secs: 600}
  store_and_forward_ttl_secs: 3600
  registry_credentials:
    local: {address: "127.0.0.1:5000", username: ci, password_env: EDGE_TEST_PASSWORD}
modules:
  model:
    image: model:3
    version: "2.0"
    startup_order: 1
    restart_policy: on-failure
    env: {MODEL_NAME: diabetes, THRESHOLD: 0.5, VERBOSE: true}
    create_options:
      HostConfig: {PortBindings: {"5001/tcp": [{HostPort: "9000"}]}}
    desired_properties: {threshold: 0.5}
"""


def _spec(tmp_path: Path, text: str) -> EdgeDeploymentSpec:
    [record] = load([write(tmp_path / "edge.yaml", text)])
    assert isinstance(record, EdgeDeploymentSpec)
    return record


def _golden(name: str, doc: Any) -> None:
    path = GOLDEN / name
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    if os.environ.get("MLCTL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; MLCTL_UPDATE_GOLDEN=1 rewrites it after review"


def test_a_single_device_manifest_matches_its_golden_file_and_validates(tmp_path: Path) -> None:
    content = manifest.render(_spec(tmp_path, DEVICE), IMAGES)
    _golden("device.json", content)
    manifest.validate(content, layered=False)
    credentials = content["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    assert credentials["registryCredentials"]["local"]["password"] == "<redacted: env EDGE_TEST_PASSWORD>"


def test_the_password_is_rendered_only_from_the_secrets_given(tmp_path: Path) -> None:
    spec = _spec(tmp_path, DEVICE)
    with pytest.raises(SpecError, match="EDGE_TEST_PASSWORD is not set"):
        manifest.resolve_secrets(spec)
    os.environ["EDGE_TEST_PASSWORD"] = "s3cret"
    try:
        content = manifest.render(spec, IMAGES, manifest.resolve_secrets(spec))
    finally:
        del os.environ["EDGE_TEST_PASSWORD"]
    assert '"password": "s3cret"' in json.dumps(content)


def test_a_password_file_is_read_at_send_time_only(tmp_path: Path) -> None:
    spec = _spec(tmp_path, DEVICE.replace("password_env: EDGE_TEST_PASSWORD", "password_file: secrets/pw.txt"))
    rendered = manifest.render(spec, IMAGES)
    assert "<redacted: file pw.txt>" in json.dumps(rendered)
    with pytest.raises(SpecError, match="cannot read .*pw.txt") as info:
        manifest.resolve_secrets(spec)
    assert str(tmp_path) not in info.value.hint  # the message names the file, the hint what to check
    write(tmp_path / "secrets" / "pw.txt", "from-a-file\n")
    assert manifest.resolve_secrets(spec) == {"local": "from-a-file"}
    sent = manifest.render(spec, IMAGES, manifest.resolve_secrets(spec))
    settings = sent["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    assert settings["registryCredentials"]["local"] == {
        "username": "ci",
        "password": "from-a-file",
        "address": "127.0.0.1:5000",
    }


def test_edge_hub_schema_1_3_is_rendered_and_checked_with_the_1_2_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path, DEVICE.replace("store_and_forward_ttl_secs: 3600", 'hub_schema_version: "1.3"'))
    content = manifest.render(spec, IMAGES)
    assert content["modulesContent"]["$edgeHub"]["properties.desired"]["schemaVersion"] == "1.3"
    manifest.validate(content, layered=False)
    content["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["bad"] = {"route": "x", "priority": 10}
    with pytest.raises(SpecError) as info:
        manifest.validate(content, layered=False)
    assert any("routes.bad" in line and "azure-iot-edgehub-deployment-1.2.json" in line for line in info.value.details)


def test_long_create_options_are_chunked_by_the_runtime_rule_with_older_schema_versions(tmp_path: Path) -> None:
    binds = "\n".join(f"        - /var/lib/model-data-{i:03d}/some/long/path:/data/{i:03d}:ro" for i in range(40))
    text = f"""
apiVersion: mlctl/v1
kind: EdgeDeployment
name: chunky
target: hub1
device_id: dev-1
runtime: {{agent_schema_version: "1.0", hub_schema_version: "1.0", version: "1.4"}}
modules:
  model:
    image: model:3
    create_options:
      WorkingDir: /data
      HostConfig:
        Binds:
{binds}
"""
    content = manifest.render(_spec(tmp_path, text), IMAGES)
    _golden("chunked.json", content)
    manifest.validate(content, layered=False)
    settings = content["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["model"]["settings"]
    names = [k for k in settings if k != "image"]
    assert names == ["createOptions", *(f"createOptions{i:02d}" for i in range(1, 5))]
    assert all(len(settings[n]) <= 512 for n in names) and len(settings["createOptions"]) == 512
    joined = json.loads("".join(settings[n] for n in names))
    assert joined["WorkingDir"] == "/data" and len(joined["HostConfig"]["Binds"]) == 40
    assert content["modulesContent"]["$edgeHub"]["properties.desired"]["schemaVersion"] == "1.0"


def test_a_layered_deployment_uses_dotted_paths_and_its_configuration_body(tmp_path: Path) -> None:
    text = """
apiVersion: mlctl/v1
kind: EdgeDeployment
name: canary
target: hub1
layered: true
target_condition: tags.ring='canary' AND tags.fleet='x'
priority: 50
labels: {team: ml}
metrics: {canaries: "SELECT deviceId FROM devices WHERE tags.ring='canary'"}
runtime:
  routes: {sidecarOut: "FROM /messages/modules/sidecar/outputs/* INTO $$upstream"}
  registry_credentials:
    local: {address: "127.0.0.1:5000", username: ci, password_file: pw.txt}
modules:
  sidecar:
    image: sidecar:1
    desired_properties: {mode: shadow}
"""
    spec = _spec(tmp_path, text)
    content = manifest.render(spec, IMAGES)
    manifest.validate(content, layered=True)
    body = manifest.configuration(spec, content, config_id="canary-v2", priority=51, version=2)
    _golden("layered-configuration.json", body)
    agent = body["content"]["modulesContent"]["$edgeAgent"]
    assert set(agent) == {
        "properties.desired.modules.sidecar",
        "properties.desired.runtime.settings.registryCredentials.local",
    }
    assert body["labels"] == {"team": "ml", "mlctl.name": "canary", "mlctl.version": "2"}


def test_an_invalid_manifest_names_the_json_path(tmp_path: Path) -> None:
    bad = DEVICE.replace("MODEL_NAME: diabetes", "MODEL.NAME: diabetes")
    content = manifest.render(_spec(tmp_path, bad), IMAGES)
    with pytest.raises(SpecError) as info:
        manifest.validate(content, layered=False)
    assert any(
        line.startswith("$.modulesContent.$edgeAgent['properties.desired'].modules.model.env:") and "MODEL.NAME" in line
        for line in info.value.details
    ), info.value.details


def test_misnumbered_or_oversized_chunks_and_unknown_schema_versions_are_refused() -> None:
    module = {"type": "docker", "status": "running", "restartPolicy": "always"}
    desired: dict[str, Any] = {
        "schemaVersion": "1.2",
        "runtime": {"type": "docker", "settings": {}},
        "systemModules": {},
        "modules": {"m": {**module, "settings": {"image": "x", "createOptions": "{", "createOptions02": "}"}}},
    }
    content = {"modulesContent": {"$edgeAgent": {"properties.desired": desired}, "$edgeHub": {}}}
    with pytest.raises(SpecError) as info:
        manifest.validate(content, layered=False)
    text = "\n".join(info.value.details)
    assert "agent schemaVersion '1.2' is not one of 1.0, 1.1" in text
    assert "createOptions02: chunk 1 must be named 'createOptions01'" in text
    assert "$.modulesContent.$edgeHub: missing 'properties.desired'" in text
    desired["modules"]["m"]["settings"] = {"image": "x", "createOptions": "x" * 513}
    with pytest.raises(SpecError, match="problem"):
        manifest.validate({"modulesContent": {"$edgeAgent": {"properties.desired": desired}}}, layered=False)
    with pytest.raises(SpecError, match="need 102 chunks; the runtime reads 100"):
        manifest.chunk_create_options({"Env": ["x" * 52_000]})


def test_the_spec_schema_refuses_what_the_runtime_would(tmp_path: Path) -> None:
    too_new = DEVICE.replace("store_and_forward_ttl_secs: 3600", 'agent_schema_version: "1.2"')
    result = mlctl("-o", "json", "spec", "validate", str(write(tmp_path / "a.yaml", too_new)))
    assert result.code == 3 and "'1.2' is not one of '1.0', '1.1'" in result.out
    both = DEVICE.replace("device_id: dev-1", "device_id: dev-1\ntarget_condition: tags.x='y'")
    result = mlctl("-o", "json", "spec", "validate", str(write(tmp_path / "b.yaml", both)))
    assert result.code == 3 and "exactly one of 'device_id', 'target_condition'" in result.out
    route_objects_on_1_0 = DEVICE.replace("store_and_forward_ttl_secs: 3600", 'hub_schema_version: "1.0"')
    result = mlctl("-o", "json", "spec", "validate", str(write(tmp_path / "c.yaml", route_objects_on_1_0)))
    assert result.code == 3 and "need hub_schema_version 1.1 or later" in result.out
    for bad, problem in (
        (
            DEVICE.replace("  model:\n    image", "  my.model:\n    image"),
            "'my.model' is not valid here: must match ^[a-zA-Z0-9_-]+$",
        ),
        (DEVICE.replace("    upstream: FROM", "    up$stream: FROM"), "'up$stream' is not valid here"),
        (DEVICE.replace("    local: {address", "    local#1: {address"), "'local#1' is not valid here"),
    ):
        result = mlctl("-o", "json", "spec", "validate", str(write(tmp_path / "d.yaml", bad)))
        assert result.code == 3 and problem in result.out, result.out
    assert mlctl("spec", "schema", "EdgeDeployment").code == 0


def test_the_official_schemas_ship_inside_the_package() -> None:
    from importlib import resources

    files = {p.name for p in resources.files("mlctl.edge").joinpath("schemas").iterdir()}
    assert {"azure-iot-edgeagent-deployment-1.1.json", "azure-iot-edgehub-deployment-1.2.json"} <= files
