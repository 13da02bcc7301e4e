"""`mlctl import azureml`: Azure's documentation samples of v1 config files -> specs that validate
and deploy, a report of every key, secrets never written, bad input located (exit 3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, mlctl, post

FIXTURES = Path(__file__).parent / "azureml_v1"
CANARY = "canary-key-0f9e8d7c6b5a"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixtures (the import writes beside them)."""
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES, folder)
    return folder


def _import(project: Path, dc: str, *extra: str, ic: str = "inferenceconfig.json", name: str = "imp-svc") -> Any:
    return mlctl(
        "-o",
        "json",
        "import",
        "azureml",
        "--inference-config",
        str(project / ic),
        "--deployment-config",
        str(project / dc),
        "--name",
        name,
        "--out",
        str(project / "out"),
        *extra,
    )


def _leaves(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        keys |= _leaves(value, path + ".") if isinstance(value, dict) and value else {path}
    return keys


def _sample(project: Path) -> Path:
    (project / "sample.json").write_text('{"x": 1}')
    return project / "sample.json"


def _service(project: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    return dict(YAML(typ="safe").load((project / "out" / "service.yaml").read_text()))


def test_the_aks_sample_becomes_a_kubernetes_service_that_validates_with_every_key_reported(project: Path) -> None:
    sample = project / "aks-deploymentconfig.json"
    sample.write_text(json.dumps({**json.loads(sample.read_text()), "maxQueueWaitMs": 750}))
    result = _import(project, "aks-deploymentconfig.json", "--model", "sklearn_mnist_model.pkl:1")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["target"] == "kubernetes" and doc["target_available"] is True
    assert "not in this mlctl yet" not in result.err
    reported = {(e["file"].split("/")[-1], e["key"]) for e in doc["report"]}
    for name in ("aks-deploymentconfig.json", "inferenceconfig.json"):
        source = json.loads((project / name).read_text())
        assert {(name, key) for key in _leaves(source)} <= reported  # every source key, none forgotten
    service = _service(project)
    assert service["target"] == "kubernetes" and service["models"] == ["sklearn_mnist_model.pkl:1"]
    assert service["deployment_config"] == {
        "autoscale_enabled": True,
        "autoscale_min_replicas": 1,
        "autoscale_max_replicas": 3,
        "autoscale_refresh_seconds": 1,
        "autoscale_target_utilization": 70,
        "auth_enabled": True,
        "cpu_cores": 0.5,
        "memory_gb": 1.0,
        "max_request_wait_time": 750,
    }
    assert service["inference_config"] == {
        "entry_script": "../score.py",
        "runtime": "python",
        "conda_file": "../myenv.yml",
    }
    not_carried = {e["key"]: e for e in doc["report"] if e["status"] == "not carried"}
    assert "Blob storage" in not_carried["dataCollection.storageEnabled"]["note"]  # the targets refuse it
    validated = mlctl("spec", "validate", str(project / "out" / "service.yaml"))
    assert validated.code == 0 and validated.err == "", validated.err  # valid, and the target exists
    table = mlctl("import", "azureml", "--ic", str(project / "inferenceconfig.json"), "--dc",
                  str(project / "aks-deploymentconfig.json"), "-n", "imp-svc", "-m", "m:1", "--out",
                  str(project / "out"), "--force")  # fmt: skip
    assert table.code == 0 and "autoScaler.maxReplicas" in table.out and "autoscale_max_replicas" in table.out


@pytest.mark.parametrize(("compute", "auth"), [("ACI", False), ("aks", True), ("AKSENDPOINT", True)])
def test_v1_defaults_that_differ_between_aci_and_aks_are_written(project: Path, compute: str, auth: bool) -> None:
    (project / "minimal.json").write_text(json.dumps({"computeType": compute}))
    result = _import(project, "minimal.json", "-m", "m:1")
    assert result.code == 0, result.err
    config = _service(project)["deployment_config"]
    assert config == {"cpu_cores": 0.1, "memory_gb": 0.5, "auth_enabled": auth}
    defaults = [e for e in result.json()["report"] if e["status"] == "default"]
    assert {e["destination"] for e in defaults} == {f"deployment_config.{k}" for k in config}
    assert mlctl("spec", "validate", str(project / "out" / "service.yaml")).code == 0


def test_the_aci_sample_with_keys_runs_on_process_with_those_keys_and_never_writes_them(project: Path) -> None:
    source = json.loads((project / "aci-deploymentconfig.json").read_text())
    source.update(
        keys={"primaryKey": CANARY, "secondaryKey": CANARY + "-2"},
        vnetName="vnet",
        subnetName="sub",
        vaultBaseUrl="https://v.vault.azure.net",
        keyName="k",
        keyVersion="1",
        appInsightsEnabled=True,
        dnsNameLabel="imp-label",
        location="westeurope",
        gpuCores=1,
    )
    (project / "aci.json").write_text(json.dumps(source))
    as_aci = _import(project, "aci.json", "--model-file", str(project / "model.txt"))
    assert as_aci.code == 0, as_aci.err
    statuses = {e["key"]: (e["status"], e["note"]) for e in as_aci.json()["report"]}
    assert statuses["vnetName"][0] == statuses["vaultBaseUrl"][0] == "not carried"
    assert "virtual network" in statuses["vnetName"][1] and "customer-managed" in statuses["keyName"][1]
    assert "Application Insights" in statuses["appInsightsEnabled"][1]
    assert statuses["gpuCores"] == ("unknown", "v1 read it only for AKS, and ignored it here")
    assert statuses["keys.primaryKey"][0] == "not carried" and "refused" in statuses["keys.primaryKey"][1]
    assert _service(project)["deployment_config"]["dns_name_label"] == "imp-label"
    assert _service(project)["deployment_config"]["location"] == "westeurope"
    port = free_port()
    here = _import(project, "aci.json", "--model-file", str(project / "model.txt"), "--target", "process", "--force")
    assert here.code == 0, here.err
    assert sorted(here.json()["keys_stored"]) == ["primary", "secondary"]
    service = _service(project)
    assert service["target"] == "process" and "dns_name_label" not in service["deployment_config"]
    (project / "out" / "service.yaml").write_text((project / "out" / "service.yaml").read_text() + f"  port: {port}\n")
    applied = mlctl("apply", "-f", str(project / "out"))
    assert applied.code == 0, applied.err
    uri = f"http://127.0.0.1:{port}/score"
    assert post(uri, b"{}")[0] == 401
    status, _, body = post(uri, b'{"x": 1}', {"Authorization": f"Bearer {CANARY}"})
    assert status == 200 and json.loads(body)["model"] == "v1"  # the imported key still works
    texts = [as_aci.out, as_aci.err, here.out, here.err, applied.out, applied.err]
    texts += [p.read_text() for p in (project / "out").iterdir()]
    assert all(CANARY not in text for text in texts)
    mlctl("service", "delete", "imp-svc")


def test_the_inline_environment_sample_deploys_on_process_with_its_variables(project: Path) -> None:
    (project / "local.json").write_text(json.dumps({"computeType": "local", "port": free_port()}))
    result = _import(
        project,
        "local.json",
        "--model-file",
        str(project / "model.txt"),
        "--local-target",
        "process",
        ic="inferenceconfig-environment.json",
    )
    assert result.code == 0, result.err
    report = {e["key"]: e for e in result.json()["report"]}
    assert report["environment.docker.baseImage"]["status"] == "not carried"  # Azure ML's default image
    assert report["environment.environmentVariables"]["destination"] == "deployment_config.environment_variables"
    assert "cannot" not in result.err
    conda = (project / "out" / "environment.yml").read_text()
    assert "project_environment" in conda and "python=3.11" in conda
    service = _service(project)
    assert service["inference_config"]["entry_script"] == "../source_dir/score.py"
    assert service["inference_config"]["conda_file"] == "environment.yml"
    assert service["deployment_config"]["environment_variables"] == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    applied = mlctl("apply", "-f", str(project / "out"))
    assert applied.code == 0, applied.err
    tested = mlctl("-o", "json", "service", "test", "imp-svc", "--data", str(_sample(project)))
    assert tested.code == 0, tested.out + tested.err
    assert tested.json()["prediction"]["env"] == "EXAMPLE_VALUE"
    again = mlctl("-o", "json", "apply", "-f", str(project / "out"))
    assert again.json()["changed"] is False
    mlctl("service", "delete", "imp-svc")


def test_the_local_sample_deploys_on_docker_and_applies_twice_without_changes(project: Path, engine: Any) -> None:
    (project / "deploymentconfig.yml").write_text(f"computeType: LOCAL\nport: {free_port()}\n")  # YAML, as v1 took
    result = _import(project, "deploymentconfig.yml", "--model-file", str(project / "model.txt"), name="imp-local")
    assert result.code == 0, result.err
    assert _service(project)["target"] == "docker"
    try:
        applied = mlctl("-o", "json", "apply", "-f", str(project / "out"))
        assert applied.code == 0, applied.err
        tested = mlctl("-o", "json", "service", "test", "imp-local", "--data", str(_sample(project)))
        assert tested.code == 0 and tested.json()["prediction"]["model"] == "v1", tested.out + tested.err
        again = mlctl("-o", "json", "apply", "-f", str(project / "out"))
        assert again.code == 0 and again.json()["changed"] is False, again.out
    finally:
        mlctl("service", "delete", "imp-local")
        mlctl("image", "delete", "imp-local:1", "--force")


def test_a_dry_run_writes_nothing_and_prints_the_specs(project: Path) -> None:
    result = _import(project, "aci-deploymentconfig.json", "-m", "m:1", "--dry-run")
    assert result.code == 0, result.err
    assert not (project / "out").exists()
    assert "target: aci" in result.json()["documents"]["service.yaml"]
    (project / "local.json").write_text('{"computeType": "local"}')
    on_docker = _import(project, "local.json", "-m", "m:1", "--dry-run", ic="inferenceconfig-environment.json")
    documents = on_docker.json()["documents"]
    assert "dependencies:\n    - ../source_dir/vocabulary.txt\n" in documents["service.yaml"]  # sourceDirectory's files
    assert "target: docker" in documents["service.yaml"] and "python=3.11" in documents["environment.yml"]
    assert not (project / "out").exists()


def test_unknown_keys_get_a_did_you_mean(project: Path) -> None:
    # the Dutch docs' AKS sample spells the cluster key "ComputeTarget"; v1 ignored it silently
    (project / "nl.json").write_text(json.dumps({"computeType": "aks", "ComputeTarget": "akscomputetarget"}))
    result = _import(project, "nl.json", "-m", "m:1")
    assert result.code == 0
    assert "nl.json:1: ComputeTarget: unknown: not a key v1 read; did you mean 'computeTargetName'?" in result.err


@pytest.mark.parametrize(
    ("ic", "dc", "code", "says"),
    [
        ({"entryScript": "score.py"}, None, 3, "dc.json"),  # unreadable: does not exist
        ({"entryScript": "score.py"}, [1, 2], 3, "dc.json is not a mapping"),
        ({"entryScript": "score.py"}, {"port": 1}, 3, "computeType is missing"),
        ({"entryScript": "score.py"}, {"computeType": "MIR"}, 3, "unknown computeType 'MIR'"),
        ({"entryScript": "score.py"}, {"computeType": "FPGA"}, 6, "Brainwave"),
        (
            {"entryScript": "score.py"},
            {"computeType": "aci", "containerResourceRequirements": {"cpu": "lots"}},
            3,
            "containerResourceRequirements.cpu must be a number",
        ),  # fmt: skip
        ({"condaFile": "myenv.yml"}, {"computeType": "aci"}, 3, "entryScript is missing"),
        ({"entryScript": "nope.py"}, {"computeType": "aci"}, 3, "entryScript: file not found"),
        (
            {"entryScript": "score.py", "condaFile": "myenv.yml", "environment": {"python": {}}},
            {"computeType": "aci"},
            3,
            "environment and condaFile are both given",
        ),  # fmt: skip
        (
            {"entryScript": "score.py", "environment": "AzureML-Minimal"},
            {"computeType": "aci"},
            3,
            "cannot read offline",
        ),  # fmt: skip
        ({"entryScript": "score.py", "runtime": "spark-py"}, {"computeType": "aci"}, 3, "only python"),
    ],
)
def test_bad_input_is_located(project: Path, ic: Any, dc: Any, code: int, says: str) -> None:
    (project / "ic.json").write_text(json.dumps(ic))
    if dc is not None:
        (project / "dc.json").write_text(json.dumps(dc))
    result = _import(project, "dc.json", "-m", "m:1", ic="ic.json")
    assert result.code == code, result.err
    error = json.loads(result.err.strip().splitlines()[-1])
    text = error["message"] + " ".join(error.get("details", []))
    assert says in text, text
    assert "json" in text  # the file is named
    assert not (project / "out").exists()  # nothing written


def test_a_registry_password_becomes_a_reference_and_image_keys_map(project: Path) -> None:
    (project / "steps.dockerfile").write_text("RUN true\n")
    inference = {
        "entryScript": "score.py",
        "condaFile": "myenv.yml",
        "extraDockerfileSteps": "steps.dockerfile",
        "enableGpu": True,
        "cudaVersion": 11.8,
        "baseImage": "myregistry.azurecr.io/base:1",
        "baseImageRegistry": {"address": "myregistry.azurecr.io", "username": "me", "password": CANARY},
    }
    (project / "ic.json").write_text(json.dumps(inference))
    result = _import(project, "aci-deploymentconfig.json", "-m", "m:1", ic="ic.json")
    assert result.code == 0, result.err
    config = _service(project)["inference_config"]
    assert config["docker_file"] == "../steps.dockerfile" and config["enable_gpu"] is True
    assert config["cuda_version"] == "11.8" and config["base_image"] == "myregistry.azurecr.io/base:1"
    assert config["base_image_registry"] == {
        "address": "myregistry.azurecr.io",
        "username": "me",
        "password_env": "IMP_SVC_REGISTRY_PASSWORD",
    }
    assert "export IMP_SVC_REGISTRY_PASSWORD" in result.err
    assert CANARY not in result.out + result.err + (project / "out" / "service.yaml").read_text()
    assert mlctl("spec", "validate", str(project / "out" / "service.yaml")).code == 0
    on_process = _import(project, "aci-deploymentconfig.json", "-m", "m:1", "--target", "process", "--force",
                         ic="ic.json")  # fmt: skip
    assert on_process.code == 0 and "docker_file" not in _service(project)["inference_config"]
    assert "builds no image" in on_process.err


def test_ssl_files_stay_paths_and_their_contents_stay_out(project: Path) -> None:
    from conftest import self_signed_certificate

    cert, key = self_signed_certificate(project)
    source = {
        "computeType": "ACI",
        "sslEnabled": True,
        "sslCertificate": cert.name,
        "sslKey": key.name,
        "cname": "x.io",
    }
    (project / "tls.json").write_text(json.dumps(source))
    result = _import(project, "tls.json", "-m", "m:1")
    assert result.code == 0, result.err
    config = _service(project)["deployment_config"]
    assert config["ssl_cert_pem_file"] == "../cert.pem" and config["ssl_key_pem_file"] == "../key.pem"
    assert config["ssl_enabled"] is True and config["ssl_cname"] == "x.io"
    private = key.read_text().splitlines()[1]  # a line of the key itself
    assert private not in result.out + result.err + (project / "out" / "service.yaml").read_text()
    (project / "gone.json").write_text(json.dumps({**source, "sslKey": "missing.pem"}))
    missing = _import(project, "gone.json", "-m", "m:1", "--force")
    assert missing.code == 3 and "gone.json" in missing.err and "sslKey" in missing.err


@pytest.mark.parametrize(
    ("sample", "target", "config"),
    [
        ("aci-deploymentconfig.json", "aci", {"cpu_cores": 0.5, "memory_gb": 1.0, "auth_enabled": True}),
        ("aks-deploymentconfig.json", "kubernetes", {"autoscale_max_replicas": 3, "auth_enabled": True}),
        ("local-deploymentconfig.json", "docker", {"port": 32267}),
    ],
)
def test_each_docs_sample_unchanged_becomes_specs_that_validate_with_every_key_reported(
    project: Path, sample: str, target: str, config: dict[str, Any]
) -> None:
    result = _import(project, sample, "--model-file", str(project / "model.txt"))
    assert result.code == 0, result.err
    reported = {(e["file"].split("/")[-1], e["key"]) for e in result.json()["report"]}
    for name in (sample, "inferenceconfig.json"):
        source = json.loads((project / name).read_text())
        assert {(name, key) for key in _leaves(source)} <= reported
    service = _service(project)
    assert service["target"] == target and service["models"] == ["model.txt@latest"]
    assert config.items() <= service["deployment_config"].items()
    for spec in ("service.yaml", "models.yaml"):
        validated = mlctl("spec", "validate", str(project / "out" / spec))
        assert validated.code == 0 and validated.err == "", validated.err


def test_every_aks_key_v1_read_lands_on_its_snake_case_name_and_validates(project: Path) -> None:
    source = {
        "computeType": "aks",
        "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0, "cpuLimit": 1.0, "memoryInGBLimit": 2.0},
        "gpuCores": 0,
        "numReplicas": 2,
        "authEnabled": False,
        "tokenAuthEnabled": False,
        "scoringTimeoutMs": 5000,
        "maxConcurrentRequestsPerContainer": 4,
        "maxQueueWaitMs": 800,
        "livenessProbeRequirements": {"periodSeconds": 5, "initialDelaySeconds": 2, "timeoutSeconds": 3,
                                      "successThreshold": 1, "failureThreshold": 4},
        "namespace": "scoring",
        "appInsightsEnabled": False,
    }  # fmt: skip
    (project / "aks-all.json").write_text(json.dumps(source))
    result = _import(project, "aks-all.json", "-m", "m:1")
    assert result.code == 0, result.err
    assert _service(project)["deployment_config"] == {
        "cpu_cores": 0.5,
        "memory_gb": 1.0,
        "cpu_cores_limit": 1.0,
        "memory_gb_limit": 2.0,
        "gpu_cores": 0,
        "num_replicas": 2,
        "auth_enabled": False,
        "scoring_timeout_ms": 5000,
        "replica_max_concurrent_requests": 4,
        "max_request_wait_time": 800,
        "period_seconds": 5,
        "initial_delay_seconds": 2,
        "timeout_seconds": 3,
        "success_threshold": 1,
        "failure_threshold": 4,
        "namespace": "scoring",
    }
    statuses = {e["key"]: e["status"] for e in result.json()["report"]}
    assert statuses["tokenAuthEnabled"] == statuses["appInsightsEnabled"] == "not carried"
    assert {key for key in _leaves(source)} <= set(statuses)
    validated = mlctl("spec", "validate", str(project / "out" / "service.yaml"))
    assert validated.code == 0, validated.err
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "model.txt")).code == 0
    rendered = mlctl("-o", "json", "service", "render", "-f", str(project / "out" / "service.yaml"),
                     MLCTL_REGISTRY="registry.example:5000")  # fmt: skip
    assert rendered.code == 0, rendered.err  # the kubernetes target takes every key
    deployment = next(m for m in rendered.json()["manifests"] if m["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["metadata"]["namespace"] == "scoring" and deployment["spec"]["replicas"] == 2
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "2048Mi"}
    assert container["livenessProbe"]["periodSeconds"] == 5 and container["livenessProbe"]["failureThreshold"] == 4


def test_both_files_may_be_yaml_and_broken_syntax_is_located(project: Path) -> None:
    (project / "inferenceconfig.yml").write_text("entryScript: score.py\nruntime: python\ncondaFile: myenv.yml\n")
    (project / "broken.json").write_text('{"computeType": "aci",\n  "authEnabled": tru\n')
    broken = _import(project, "broken.json", "-m", "m:1", ic="inferenceconfig.yml")
    assert broken.code == 3, broken.err
    error = json.loads(broken.err.strip().splitlines()[-1])
    assert "broken.json" in error["message"] and "line 2" in error["message"], error
    assert not (project / "out").exists()
    fine = _import(project, "local-deploymentconfig.json", "-m", "m:1", ic="inferenceconfig.yml")
    assert fine.code == 0, fine.err
    assert _service(project)["inference_config"]["conda_file"] == "../myenv.yml"


@pytest.mark.parametrize(
    ("dc", "extra"), [({"computeType": "FPGA"}, ()), ({"computeType": "aci"}, ("--target", "fpga"))]
)
def test_an_import_asking_for_fpga_is_refused_naming_the_successors(
    project: Path, dc: dict[str, str], extra: tuple[str, ...]
) -> None:
    (project / "dc.json").write_text(json.dumps(dc))
    result = _import(project, "dc.json", "-m", "m:1", *extra)
    assert result.code == 6, result.err
    assert "Brainwave" in result.err and "retired" in result.err
    assert "gpu_cores" in result.err and "ONNX Runtime" in result.err
    assert not (project / "out").exists()
