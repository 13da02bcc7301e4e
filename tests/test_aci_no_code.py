"""No-code models on the aci target: an ONNX file deploys with no entry script against the ACI fake
(tests/aci_fake) and answers /score; the rendered container command names no entry script (the
image's MLCTL_MODEL_KIND and MLCTL_MODEL_PATH say what it serves)."""

from __future__ import annotations

import shutil
from pathlib import Path

from aci_fake.world import RESOURCE_GROUP, AciWorld
from conftest import mlctl
from mlflow_models import save_models

from mlctl import images
from mlctl.registry import Registry
from mlctl.spec import ServiceSpec, load_one
from mlctl.targets import Deployment
from mlctl.targets.aci import Driver

pytest_plugins = ["aci_fixtures"]

NAME = "aci-onnx"
OPTIONS = {
    "subscription_id": "sub-1",
    "resource_group": "rg-1",
    "location": "westeurope",
    "registry_login_server": "acr.example",
}


def _project(tmp_path: Path, trained: Path, *, target: str = "aci-dev") -> Path:
    """A copy of the ONNX example (no entry script) whose Service spec targets ``target`` as ``aci-onnx``."""
    project = tmp_path / "onnx"
    shutil.copytree(trained / "onnx", project, ignore=shutil.ignore_patterns("__pycache__"))
    spec = (project / "service.yaml").read_text().replace("name: diabetes-onnx\n", f"name: {NAME}\n")
    spec = spec.replace("target: process", f"target: {target}")
    (project / "service.yaml").write_text(
        spec.replace("  workers: 1\n", "  workers: 1\n  cpu_cores: 1\n  memory_gb: 1\n")
    )
    return project


def test_render_of_an_onnx_model_runs_the_server_with_no_entry_script(
    trained_examples: Path, tmp_path: Path, mlctl_home: Path
) -> None:
    project = _project(tmp_path, trained_examples)
    spec = load_one([project / "service.yaml"], ServiceSpec)
    assert spec.inference is not None and spec.inference.entry_script is None
    model = Registry(mlctl_home).register("diabetes", project / "diabetes.onnx")
    plan = Driver(Registry(mlctl_home), mlctl_home, **OPTIONS).render(Deployment(spec=spec, models=(model,)))
    command = plan["body"]["properties"]["containers"][0]["properties"]["command"]
    assert command[:3] == [images.PYTHON, "-m", "mlctl.serve"]
    assert "--entry-script" not in command


def test_an_onnx_model_deploys_on_aci_with_no_entry_script(
    aci_env: AciWorld, trained_examples: Path, tmp_path: Path
) -> None:
    world = aci_env
    added = mlctl("target", "add", "aci-dev", "--kind", "aci", *world.target_options())
    assert added.code == 0, added.err
    project = _project(tmp_path, trained_examples)
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"), timeout=900)
    assert deployed.code == 0, deployed.err
    try:
        assert deployed.json()["state"] == "running" and deployed.json()["target"] == "aci"
        group = world.fake.get(RESOURCE_GROUP, NAME)[1]
        assert "--entry-script" not in group["properties"]["containers"][0]["properties"]["command"]
        tested = mlctl("-o", "json", "service", "test", NAME)
        assert tested.code == 0 and tested.json()["passed"] is True, tested.out + tested.err
    finally:
        assert mlctl("service", "delete", NAME).code == 0


def test_render_of_a_registered_mlflow_model_runs_the_server_with_no_entry_script(
    tmp_path: Path, mlctl_home: Path
) -> None:
    _, custom = save_models(tmp_path / "models")
    registry = Registry(mlctl_home)
    model = registry.register("custom", custom)
    spec_file = tmp_path / "service.yaml"
    spec_file.write_text(
        f"apiVersion: mlctl/v1\nkind: Service\nname: {NAME}\nmodels: [custom:1]\ninference_config: {{}}\n"
        "deployment_config: {port: 8123}\n"
    )
    spec = load_one([spec_file], ServiceSpec)
    plan = Driver(registry, mlctl_home, **OPTIONS).render(Deployment(spec=spec, models=(model,)))
    command = plan["body"]["properties"]["containers"][0]["properties"]["command"]
    assert command[:3] == [images.PYTHON, "-m", "mlctl.serve"] and "--entry-script" not in command
