"""IoT Edge registry credentials from an Azure Container Registry (``registry_resource``), read
through ARM by the aci and kubernetes targets' code path: against the ARM fake (tests/aci_fake,
its ``registries``) and the fake IoT Hub (tests/edge_fakes); the ACR's admin password (a canary)
reaches the hub's deployment and nothing else: no output, no file under MLCTL_HOME."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from aci_fake import FakeAci, running_fake
from conftest import mlctl, self_signed_certificate, write
from edge_fakes.hub_http import RunningHub, serve

GROUP = "edge-rg"
SPEC = """
    apiVersion: mlctl/v1
    kind: EdgeDeployment
    name: acr-edge
    target: hub1
    target_condition: tags.ring='acr'
    runtime:
      registry_credentials:
        acr: {registry_resource: edge-rg/edgeacr}
    modules:
      m:
        image: edgeacr.azurecr.io/model:1
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeAci, RunningHub]]:
    (tmp_path / "tls").mkdir()
    cert, key = self_signed_certificate(tmp_path / "tls")
    with running_fake(tmp_path / "arm", {GROUP}) as arm, serve(cert, key) as hub:
        yield arm, hub


def test_registry_resource_fills_the_manifests_credentials_and_the_password_stays_secret(
    world: tuple[FakeAci, RunningHub], tmp_path: Path, mlctl_home: Path
) -> None:
    arm, hub = world
    canary = "edge-acr-canary-" + secrets.token_hex(8)
    arm.registries["edgeacr"] = ("edgeacr.azurecr.io", "edgeacr", canary)
    env = {"PATH": f"{arm.az_bin}{os.pathsep}{os.environ['PATH']}", "AZURE_TOKEN_CREDENTIALS": "AzureCliCredential",
           "EDGE_ACR_HUB": hub.connection_string}  # fmt: skip
    options = {"connection_string_env": "EDGE_ACR_HUB", "ca_file": str(hub.ca_file),
               "subscription_id": arm.subscription, "base_url": arm.base_url,
               "ca_bundle": str(arm.ca_file)}  # fmt: skip
    pairs = [a for k, v in options.items() for a in ("--option", f"{k}={v}")]
    added = mlctl("target", "add", "hub1", "--kind", "iot-edge", *pairs, **env)
    assert added.code == 0, added.err
    spec = write(tmp_path / "edge.yaml", SPEC)
    shown = mlctl("-o", "json", "edge", "manifest", "-f", str(spec), **env)
    assert shown.code == 0, shown.err
    settings = shown.json()["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    assert settings["registryCredentials"]["acr"] == {
        "username": "<registry_resource:edge-rg/edgeacr>",
        "password": "<redacted: registry_resource edge-rg/edgeacr>",
        "address": "<registry_resource:edge-rg/edgeacr>",
    }  # no ARM call without --reveal
    assert not any("registries" in r["path"] for r in arm.requests)
    pushed = mlctl("-o", "json", "edge", "push", "-f", str(spec), "--no-wait", **env)
    assert pushed.code == 0, pushed.err
    content = hub.state.configs[pushed.json()["deployment"]]["content"]
    sent = content["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]["registryCredentials"]
    assert sent["acr"] == {"username": "edgeacr", "password": canary, "address": "edgeacr.azurecr.io"}
    assert any(r["path"].endswith("/registries/edgeacr/listCredentials") for r in arm.requests)
    listed = mlctl("-o", "json", "edge", "deployment", "show", pushed.json()["deployment"], **env)
    assert listed.code == 0, listed.err
    for result in (added, shown, pushed, listed):
        assert canary not in result.out + result.err
    for path in mlctl_home.rglob("*"):
        assert not path.is_file() or canary.encode() not in path.read_bytes(), path
    arm.registries.clear()
    missing = mlctl("edge", "push", "-f", str(spec), "--no-wait", **env)
    assert missing.code == 4 and "Azure Container Registry edge-rg/edgeacr does not exist" in missing.err, missing.err
