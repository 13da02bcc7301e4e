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


# AciWebservice.deploy_configuration's parameters (azureml-core 1.x; AciServiceDeploymentConfiguration)
V1_ACI_PARAMETERS = (
    "cpu_cores memory_gb tags properties description location auth_enabled ssl_enabled enable_app_insights "
    "ssl_cert_pem_file ssl_key_pem_file ssl_cname dns_name_label primary_key secondary_key collect_model_data "
    "cmk_vault_base_url cmk_key_name cmk_key_version vnet_name subnet_name"
).split()
REFUSED = {
    "enable_app_insights": "true",
    "collect_model_data": "true",
    "cmk_vault_base_url": "https://v.vault.azure.net",
    "cmk_key_name": "k",
    "cmk_key_version": "'1'",
    "vnet_name": "v",
    "subnet_name": "s",
}


def test_every_v1_aci_parameter_is_honoured_refused_or_says_where_it_went(
    tmp_path: Path, mlctl_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlctl.errors import SpecError
    from mlctl.spec.schema import schema_for
    from mlctl.targets.aci import DEPLOYMENT_KEYS

    cert, key = self_signed_certificate(tmp_path)
    honoured = {
        "cpu_cores": "  cpu_cores: 2\n",
        "memory_gb": "  memory_gb: 3\n",
        "location": "  location: northeurope\n",
        "auth_enabled": "  auth_enabled: true\n",
        "dns_name_label": "  dns_name_label: a11-label\n",
        "ssl_enabled": f"  ssl_enabled: true\n  ssl_cert_pem_file: {cert}\n  ssl_key_pem_file: {key}\n",
        "ssl_cname": f"  ssl_cname: a11.example\n  ssl_cert_pem_file: {cert}\n  ssl_key_pem_file: {key}\n",
    }
    honoured["ssl_cert_pem_file"] = honoured["ssl_key_pem_file"] = honoured["ssl_enabled"]
    settings = r.Settings.resolve(OPTIONS, {}, None)
    driver = Driver(Registry(mlctl_home), mlctl_home, **OPTIONS)
    plain = driver.render(_deployment(tmp_path, mlctl_home))
    top_level = set(schema_for("Service")["properties"])
    for name in V1_ACI_PARAMETERS:
        if name in honoured:  # it changes the PUT body or the scoring URI: never ignored
            deployment = _deployment(tmp_path, mlctl_home, honoured[name])
            check_spec(deployment.spec, settings, Reporter("json", quiet=True))
            plan = driver.render(deployment)
            assert (plan["body"], plan["scoring_uri"]) != (plain["body"], plain["scoring_uri"]), name
            assert name in DEPLOYMENT_KEYS and name in deployment.spec.deployment.given, name
        elif name in REFUSED:
            with pytest.raises(TargetError, match=name):
                check_spec(_spec(tmp_path, f"  {name}: {REFUSED[name]}\n"), settings, Reporter("json", quiet=True))
        else:  # not a deployment_config key here: the spec is refused, saying where it went
            assert name not in DEPLOYMENT_KEYS and (name in top_level) == (name in ("tags", "description"))
            with pytest.raises(SpecError) as refused:
                _spec(tmp_path, f"  {name}: {{}}\n" if name in ("tags", "properties") else f"  {name}: x\n")
            (line,) = refused.value.details
            assert f"unknown key {name!r} (Azure ML v1's deploy_configuration parameter): " in line, line
            assert ("top-level" in line) and (name not in ("primary_key", "secondary_key")) or "key store" in line
    capsys.readouterr()
    check_spec(_spec(tmp_path, "  ssl_cname: a11.example\n"), settings, Reporter("text"))  # no TLS: said so
    assert "ssl_cname a11.example is used only with TLS" in capsys.readouterr().err


def test_tags_and_description_go_on_the_group_and_azure_is_the_default_endpoint(
    tmp_path: Path, mlctl_home: Path
) -> None:
    write(tmp_path / "model.txt", "m")
    write(tmp_path / "score.py", "def init(): pass\ndef run(x): return x\n")
    path = service_spec(tmp_path / "s.yaml", port=8123, name="aci-render")
    path.write_text(path.read_text() + "description: the a11 service\ntags:\n  team: a11\n")
    spec = load_one([path], ServiceSpec)
    deployment = Deployment(spec=spec, models=(Registry(mlctl_home).register("m", tmp_path / "model.txt"),))
    tags = Driver(Registry(mlctl_home), mlctl_home, **OPTIONS).render(deployment)["body"]["tags"]
    assert tags["team"] == "a11" and tags["description"] == "the a11 service" and tags["mlctl-service"] == "aci-render"
    settings = r.Settings.resolve(OPTIONS, {}, None)
    assert settings.base_url == "https://management.azure.com" and settings.ca_bundle == ""  # Azure's, unless told


def test_target_aci_without_a_named_target_reads_the_environment_as_az_does(
    tmp_path: Path, mlctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``target: aci`` (no options) takes all from the environment, and the environment beats a
    named target's options. Pure: a dry run of a configured target asks Azure whether the group
    exists, which a test here must never do (no base_url leads to the fake without options)."""
    environ = {
        "AZURE_SUBSCRIPTION_ID": "a11-sub",
        "AZURE_DEFAULTS_GROUP": "a11-rg",
        "AZURE_DEFAULTS_LOCATION": "northeurope",
    }
    monkeypatch.setattr(r, "environ", lambda: environ)  # not os.environ: the CLI run at clean-up must not see it
    deployment = _deployment(tmp_path, mlctl_home)
    resource = "/subscriptions/a11-sub/resourceGroups/a11-rg/providers/Microsoft.ContainerInstance/containerGroups/"
    for options in ({}, {**OPTIONS, "subscription_id": "opt-sub", "resource_group": "opt-rg"}):
        plan = Driver(Registry(mlctl_home), mlctl_home, **options).render(deployment)
        assert plan["resource"] == resource + "aci-render" and plan["body"]["location"] == "northeurope", options


def test_the_scoring_address_is_the_fqdn_aci_assigned_else_the_ip() -> None:
    from azure.mgmt.containerinstance.models import ContainerGroup

    from mlctl.targets.aci.lifecycle import address

    def group(ip_address: dict[str, object]) -> ContainerGroup:
        return ContainerGroup.from_dict({"location": "westeurope", "properties": {"ipAddress": ip_address}})

    labelled = {"type": "Public", "ports": [], "ip": "20.1.2.3", "fqdn": "lbl.westeurope.azurecontainer.io"}
    assert address(group(labelled)) == "lbl.westeurope.azurecontainer.io"
    assert address(group({"type": "Public", "ports": [], "ip": "20.1.2.3"})) == "20.1.2.3"


def test_the_scoring_uri_leaves_out_the_schemes_own_port(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    host = "lbl.westeurope.azurecontainer.io"
    assert r.scoring_uri(host, spec) == f"http://{host}:8123/score"
    on_80 = spec.replace(deployment=spec.deployment.replace(port=80))
    assert r.scoring_uri(host, on_80) == f"http://{host}/score"  # as Azure ML wrote an ACI service's URI
    assert r.service_url("https", host, 443, "/score") == f"https://{host}/score"
    assert r.service_url("https", host, 80, "/swagger.json") == f"https://{host}:80/swagger.json"
