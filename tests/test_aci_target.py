"""The aci target through the CLI against the ACI fake (tests/aci_fake): the diabetes example
deployed from a model file, a registered model and an image, tested, updated (and a broken update
rolled back), its logs, keys and delete; the error paths; and no secret in any output or record."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from aci_fake.az_cli import write_az
from aci_fake.world import REGISTRY_USER, RESOURCE_GROUP, AciWorld, certificate_for_groups
from conftest import EXAMPLES, Result, following_logs, mlctl, wait_for, write

pytest_plugins = ["aci_fixtures"]

NAME = "aci-diabetes"


def _project(tmp_path: Path, trained: Path, *, extra: str = "", source: str = "model_files") -> Path:
    """A copy of the diabetes example whose Service spec targets the fake as ``aci-dev``."""
    project = tmp_path / "diabetes"
    shutil.copytree(trained / "diabetes", project, ignore=shutil.ignore_patterns("__pycache__"))
    spec = (project / "service.yaml").read_text()
    spec = spec.replace("name: diabetes\n", f"name: {NAME}\n").replace("target: process", "target: aci-dev")
    spec = spec.replace("  workers: 2\n", f"  workers: 1\n  cpu_cores: 1\n  memory_gb: 1\n{extra}")
    if source != "model_files":
        spec = spec.replace("model_files:\n  - sklearn_regression_model.pkl\n", source)
    (project / "service.yaml").write_text(spec)
    return project


def _target(world: AciWorld, **options: str) -> None:
    added = mlctl("target", "add", "aci-dev", "--kind", "aci", *world.target_options(**options))
    assert added.code == 0, added.err


def _target_again(world: AciWorld, **options: str) -> None:
    assert mlctl("target", "remove", "aci-dev").code == 0
    _target(world, **options)


def _no_secret(world: AciWorld, home: Path, *results: Result, extra: tuple[str, ...] = ()) -> None:
    """The canaries (registry password, the fake's bearer token, service keys) are in no output,
    no record and no file of MLCTL_HOME outside the key store."""
    canaries = (world.password, world.fake.token, *extra)
    for result in results:
        for canary in canaries:
            assert canary not in result.out and canary not in result.err
    for path in home.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            data = path.read_bytes()
            assert not any(c.encode() in data for c in canaries), path


def _retrain(project: Path, alpha: float) -> None:
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    features, target = load_diabetes(return_X_y=True)
    joblib.dump(Ridge(alpha=alpha).fit(features, target), project / "sklearn_regression_model.pkl")


def test_deploy_test_apply_update_rollback_logs_and_delete(
    aci_env: AciWorld, trained_examples: Path, tmp_path: Path, mlctl_home: Path
) -> None:
    world = aci_env
    _target(world)
    project = _project(tmp_path, trained_examples)
    spec = str(project / "service.yaml")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", spec)
    assert deployed.code == 0, deployed.err
    state = deployed.json()
    assert state["state"] == "running" and state["target"] == "aci" and state["scoring_uri"].startswith("http://127.")
    for event in ("Pulling", "Pulled", "Created", "Started"):
        assert f"ACI: {event}:" in deployed.err
    group = world.fake.get(RESOURCE_GROUP, NAME)[1]  # what the cloud holds: the spec's tags and description
    assert group["tags"]["area"] == "diabetes" and group["tags"]["description"].startswith("Ridge regression")
    assert group["properties"]["containers"][0]["properties"]["resources"]["requests"] == {
        "cpu": 1.0,
        "memoryInGB": 1.0,
    }
    tested = mlctl("-o", "json", "service", "test", NAME)
    assert tested.code == 0 and tested.json()["passed"] is True, tested.err

    applied = [mlctl("apply", "-f", spec) for _ in range(2)]
    assert all(a.code == 0 and "no changes" in a.err + a.out for a in applied), applied[0].out + applied[0].err

    _retrain(project, alpha=0.1)
    updated = mlctl("-o", "json", "service", "update", "-f", spec)
    assert updated.code == 0, updated.err
    assert updated.json()["models"] == ["sklearn_regression_model:2"] and "briefly unavailable" in updated.err
    retested = mlctl("-o", "json", "service", "test", NAME)
    assert retested.code == 8 and retested.json()["prediction"] != tested.json()["prediction"]  # a new model

    (project / "score.py").write_text(
        "def init():\n    raise RuntimeError('broken release')\ndef run(x):\n    return x\n"
    )
    broken = mlctl("-o", "json", "service", "update", "-f", spec)
    assert broken.code == 7, broken.err
    error = json.loads(broken.err.strip().splitlines()[-1])
    assert any("broken release" in line for line in error["details"]), error
    assert any(line.startswith("state: ") for line in error["details"]) and "previous definition" in broken.err
    assert any(line.startswith("event: Started") for line in error["details"]), error
    after = mlctl("-o", "json", "service", "test", NAME)
    assert after.json()["prediction"] == retested.json()["prediction"]  # the previous definition serves again

    logs = mlctl("service", "logs", NAME, "--tail", "50")
    assert logs.code == 0 and "listening on http://127." in logs.out and "init() completed" in logs.out, logs.out
    tail = mlctl("service", "logs", NAME, "--tail", "2")
    assert tail.code == 0 and tail.out.splitlines() == logs.out.splitlines()[-2:], tail.out
    shown = mlctl("-o", "json", "service", "show", NAME)
    assert shown.json()["container_state"] == "Running" and shown.json()["resource_group"] == RESOURCE_GROUP
    listed = mlctl("-o", "json", "service", "list")
    assert [s["name"] for s in listed.json()] == [NAME]

    assert mlctl("service", "delete", NAME).code == 0
    assert not world.fake.engine.docker.containers.list(all=True, filters={"label": f"aci-fake.group={NAME}"})
    assert NAME not in [g["name"] for g in world.fake.list(RESOURCE_GROUP)]
    again = mlctl("-o", "json", "service", "delete", NAME)
    assert again.code == 0 and again.json()["deleted"] is False
    _no_secret(world, mlctl_home, deployed, tested, *applied, updated, broken, logs, shown, listed)


def test_registered_model_image_keys_and_the_error_paths(
    aci_env: AciWorld, trained_examples: Path, tmp_path: Path, mlctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = aci_env
    _target(world)
    cert, key = certificate_for_groups(world, tmp_path)
    tls = f"  ssl_enabled: true\n  ssl_cert_pem_file: {cert}\n  ssl_key_pem_file: {key}\n"
    project = _project(
        tmp_path,
        trained_examples,
        extra=f"  auth_enabled: true\n  access_log: true\n{tls}",
        source="models:\n  - aci-diabetes-model:1\n",
    )
    write(
        project / "model.yaml",
        "apiVersion: mlctl/v1\nkind: Model\nname: aci-diabetes-model\npath: sklearn_regression_model.pkl\n",
    )
    assert mlctl("model", "register", "-f", str(project / "model.yaml")).code == 0
    spec = project / "service.yaml"
    dry = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--dry-run")
    assert dry.code == 0 and dry.json()["plan"]["body"]["properties"]["volumes"][0]["secret"] == {
        "keys.json": "<redacted>",
        "tls-cert.pem": "<redacted>",
        "tls-key.pem": "<redacted>",
    }
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed.code == 0, deployed.err
    assert deployed.json()["scoring_uri"].startswith("https://127.")  # TLS from the secret volume
    with following_logs(NAME) as follower:
        tested = mlctl("-o", "json", "service", "test", NAME)
        assert tested.code == 0 and tested.json()["passed"] is True, tested.err
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(follower.stdout or []), daemon=True)
        reader.start()  # access log lines (status() probes /readyz, then /score), polled by --follow
        assert wait_for(lambda: any('"path": "/score"' in line for line in lines), 20), lines
    keys = mlctl("-o", "json", "service", "keys", NAME, "--reveal").json()
    rotated = mlctl("-o", "json", "service", "keys", NAME, "--regenerate", "primary")
    assert rotated.code == 0, rotated.err
    assert mlctl("service", "test", NAME).code == 0  # the new key reached the group
    served = mlctl("service", "logs", NAME)
    assert served.code == 0 and '"path": "/score"' in served.out, served.out
    outputs = [dry, deployed, tested, rotated, served]
    assert mlctl("service", "delete", NAME).code == 0

    # from an image: the one built for the registered model, pushed already
    image_spec = write(
        project / "image.yaml",
        "apiVersion: mlctl/v1\nkind: Image\nname: aci-diabetes-img\nmodels: [aci-diabetes-model:1]\n"
        "entry_script: score.py\nconda_file: environment.yml\n",
    )
    assert mlctl("image", "build", "-f", str(image_spec)).code == 0
    from_image = spec.read_text().replace("models:\n  - aci-diabetes-model:1\n", "image: aci-diabetes-img:1\n")
    spec.write_text(from_image.replace("  auth_enabled: true\n", "").replace(tls, ""))
    deployed_image = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed_image.code == 0, deployed_image.err
    assert mlctl("-o", "json", "service", "test", NAME).json()["passed"] is True
    # updates refused before the group is touched: a key ACI cannot honour, and an image the group
    # could not pull with its credentials
    sent = len(world.fake.requests)
    refused_key = mlctl("service", "update", "-f", str(spec), "--set", "deployment_config.vnet_name=v")
    assert refused_key.code == 6 and "deployment_config.vnet_name" in refused_key.err, refused_key.err
    monkeypatch.setenv("ACI_WRONG_PW", "not-the-password")
    _target_again(world, registry_password_env="ACI_WRONG_PW")
    unpullable = mlctl("service", "update", "-f", str(spec))
    assert unpullable.code == 7 and "running group was not touched" in unpullable.err, unpullable.err
    assert "username aci-ci, password from $ACI_WRONG_PW" in unpullable.err
    assert not [r for r in world.fake.requests[sent:] if r["method"] in ("PUT", "DELETE", "POST")]
    assert mlctl("-o", "json", "service", "test", NAME).json()["passed"] is True  # still the running group
    assert mlctl("service", "delete", NAME).code == 0

    # a wrong registry password: InaccessibleImage, exit 7, naming the credentials used
    wrong = mlctl("service", "deploy", "-f", str(spec))
    assert wrong.code == 7 and "InaccessibleImage" in wrong.err and "username aci-ci" in wrong.err, wrong.err
    assert "$ACI_WRONG_PW" in wrong.err and not world.fake.list(RESOURCE_GROUP)  # nothing left behind
    # a missing resource group: exit 6
    assert mlctl("target", "remove", "aci-dev").code == 0
    _target(world, resource_group="aci-missing-rg")
    missing = mlctl("service", "deploy", "-f", str(spec))
    assert missing.code == 6 and "ResourceGroupNotFound" in missing.err and "az group create" in missing.err
    # a credential that cannot get a token: exit 6 with the fix
    denied = mlctl("service", "deploy", "-f", str(spec), PATH=world.env(denied=True)["PATH"])
    assert denied.code == 6 and "az login" in denied.err and "AZURE_CLIENT_ID" in denied.err, denied.err
    # a token Azure Resource Manager refuses (401): exit 6 too, with ARM's code
    forged = write_az(tmp_path / "az-forged", token="a11-forged-token", subscription=world.fake.subscription)
    refused = mlctl("service", "deploy", "-f", str(spec), PATH=f"{forged}{os.pathsep}{os.environ['PATH']}")
    assert refused.code == 6 and "InvalidAuthenticationToken" in refused.err and "az login" in refused.err
    # capacity: the fake has no GPU
    assert mlctl("target", "remove", "aci-dev").code == 0
    _target(world)
    gpu = mlctl("service", "deploy", "-f", str(spec), "--set", "deployment_config.gpu_cores=1")
    assert gpu.code == 5 and "ServiceUnavailable" in gpu.err, gpu.err
    cores = mlctl("service", "deploy", "-f", str(spec), "--set", "deployment_config.cpu_cores=8")
    assert cores.code == 5 and "'8.0' CPU" in cores.err and "quota increase" in cores.err, cores.err
    assert not world.fake.list(RESOURCE_GROUP)
    # throttling (429 with Retry-After) is waited out by the SDK's retry policy
    sent, world.fake.throttle = len(world.fake.requests), 2
    listed = mlctl("-o", "json", "service", "list")
    assert listed.code == 0 and listed.json() == [], listed.err
    assert world.fake.throttle == 0 and len(world.fake.requests) - sent >= 3
    vnet = mlctl("service", "deploy", "-f", str(spec), "--set", "deployment_config.vnet_name=v")
    assert vnet.code == 6 and "vnet_name" in vnet.err
    outputs += [deployed_image, unpullable, wrong, missing, denied, refused, gpu, cores, listed]
    tls_key = key.read_text().splitlines()[1]  # a line of the private key's base64
    _no_secret(world, mlctl_home, *outputs, extra=(keys["primary_key"], keys["secondary_key"], tls_key))


def test_a_registry_resource_gives_the_login_server_and_admin_credentials(
    aci_env: AciWorld, trained_examples: Path, tmp_path: Path, mlctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = aci_env
    world.fake.registries["aciacr"] = (world.registry, REGISTRY_USER, world.password)
    for key in ("MLCTL_REGISTRY", "MLCTL_REGISTRY_USERNAME", "MLCTL_REGISTRY_PASSWORD"):
        monkeypatch.delenv(key)  # all of it must come from the registry resource
    _target(world, registry_resource=f"{RESOURCE_GROUP}/aciacr")
    spec = str(_project(tmp_path, trained_examples) / "service.yaml")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", spec)
    assert deployed.code == 0, deployed.err
    assert deployed.json()["environment"].startswith(world.registry + "/aci-diabetes:")
    tested = mlctl("-o", "json", "service", "test", NAME)
    assert tested.code == 0 and tested.json()["passed"] is True, tested.err
    assert any(r["path"].endswith("/registries/aciacr/listCredentials") for r in world.fake.requests)
    assert mlctl("service", "delete", NAME).code == 0
    _no_secret(world, mlctl_home, deployed, tested)


def test_list_without_an_aci_target_is_empty_and_needs_no_network(tmp_path: Path) -> None:
    listed = mlctl("-o", "json", "service", "list", AZURE_TOKEN_CREDENTIALS="no-such-credential")
    assert listed.code == 0 and listed.json() == []
    assert not (EXAMPLES / "nonexistent").exists()
