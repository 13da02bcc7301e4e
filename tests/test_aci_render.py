"""The aci target's pure half: the ContainerGroup body (REST shape of api-version 2023-05-01),
Azure ML v1's ACI defaults, redaction, stable DNS labels, refused keys, and settings from the
environment as az reads them. No network, no engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import mlctl, self_signed_certificate, service_spec, write

from mlctl.errors import TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec import ServiceSpec, load_one
from mlctl.targets import Deployment
from mlctl.targets.aci import Driver
from mlctl.targets.aci import render as r
from mlctl.targets.aci.checks import check_spec

OPTIONS = {
    "subscription_id": "sub-1",
    "resource_group": "rg-1",
    "location": "westeurope",
    "registry_login_server": "acr.example",
}


def _spec(tmp_path: Path, extra: str = "") -> ServiceSpec:
    write(tmp_path / "model.txt", "m")
    write(tmp_path / "score.py", "def init(): pass\ndef run(x): return x\n")
    path = service_spec(tmp_path / "s.yaml", port=8123, name="aci-render")
    path.write_text(path.read_text().replace("  workers: 1\n", "  workers: 1\n" + extra))
    return load_one([path], ServiceSpec)


def _deployment(tmp_path: Path, mlctl_home: Path, extra: str = "") -> Deployment:
    spec = _spec(tmp_path, extra)
    return Deployment(spec=spec, models=(Registry(mlctl_home).register("m", tmp_path / "model.txt"),))


def test_render_is_the_put_body_with_v1_defaults_and_no_secret(
    tmp_path: Path, mlctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("MLCTL_REGISTRY_USERNAME", "acr-user")
    monkeypatch.setenv("MLCTL_REGISTRY_PASSWORD", "canary-password-42")
    extra = f"  auth_enabled: true\n  ssl_cert_pem_file: {cert}\n  ssl_key_pem_file: {key}\n"
    deployment = _deployment(tmp_path, mlctl_home, extra)
    plan = Driver(Registry(mlctl_home), mlctl_home, **OPTIONS).render(deployment)
    body = plan["body"]
    container = body["properties"]["containers"][0]
    assert container["name"] == "aci-render" and body["location"] == "westeurope"
    assert container["properties"]["resources"]["requests"] == {"cpu": 0.1, "memoryInGB": 0.5}  # v1's ACI defaults
    assert container["properties"]["image"] == "acr.example/aci-render:<next version>"
    command = container["properties"]["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0" and "/mnt/mlctl-secrets/keys.json" in command
    assert body["properties"]["restartPolicy"] == "Always" and body["properties"]["osType"] == "Linux"
    address = body["properties"]["ipAddress"]
    assert address["type"] == "Public" and address["ports"] == [{"port": 8123, "protocol": "TCP"}]
    assert body["properties"]["imageRegistryCredentials"] == [
        {"server": "acr.example", "username": "acr-user", "password": "<redacted>"}
    ]
    assert body["properties"]["volumes"][0]["secret"] == {
        "keys.json": "<redacted>",
        "tls-cert.pem": "<redacted>",
        "tls-key.pem": "<redacted>",
    }
    assert "canary-password-42" not in json.dumps(plan) and not (mlctl_home / "services").exists()
    assert plan["scoring_uri"] == f"https://{address['dnsNameLabel']}.westeurope.azurecontainer.io:8123/score"
    assert body["tags"]["mlctl-service"] == "aci-render" and body["tags"]["mlctl-tls"] == "true"


def test_dns_label_is_stable_per_service_and_given_labels_win(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    settings = r.Settings.resolve(OPTIONS, {}, None)
    assert r.dns_label(spec, settings) == r.dns_label(spec, settings)
    other = r.Settings.resolve({**OPTIONS, "resource_group": "rg-2"}, {}, None)
    assert r.dns_label(spec, settings) != r.dns_label(spec, other)
    labelled = _spec(tmp_path, "  dns_name_label: my-label\n")
    assert r.dns_label(labelled, settings) == "my-label"


def test_the_environment_overrides_options_as_az_does() -> None:
    environ = {
        "AZURE_SUBSCRIPTION_ID": "env-sub",
        "AZURE_DEFAULTS_GROUP": "env-rg",
        "AZURE_DEFAULTS_LOCATION": "env-loc",
    }
    settings = r.Settings.resolve(OPTIONS, environ, "default-registry")
    assert (settings.subscription_id, settings.resource_group, settings.location) == ("env-sub", "env-rg", "env-loc")
    assert settings.registry == "acr.example" and r.Settings.resolve({}, {}, "default-registry").registry == (
        "default-registry"
    )
    assert not r.Settings.resolve({}, {}, None).configured


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("  vnet_name: v\n", "vnet_name"),
        ("  cmk_key_name: k\n", "cmk_key_name"),
        ("  enable_app_insights: true\n", "enable_app_insights"),
        ("  collect_model_data: true\n", "collect_model_data"),
        ("  ssl_enabled: true\n", "ssl_enabled"),
    ],
)
def test_what_aci_cannot_honour_is_refused_by_name(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(TargetError, match=named):
        check_spec(_spec(tmp_path, extra), r.Settings.resolve(OPTIONS, {}, None), Reporter("json", quiet=True))


def test_target_add_validates_options_without_network() -> None:
    added = mlctl("target", "add", "dev", "--kind", "aci", "--option", "subscription_id=s", "--option", "nope=1")
    assert added.code == 6 and "nope" in added.err and "resource_group" in added.err
