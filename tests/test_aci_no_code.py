"""No-code models on the aci target: an ONNX file and a registered MLflow sklearn model deploy with no
entry script against the ACI fake (tests/aci_fake) and answer /score (the MLflow model also
/invocations and the Open Inference Protocol, as on the process target); the rendered container
command names no entry script (the image's MLCTL_MODEL_KIND and MLCTL_MODEL_PATH say what it serves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aci_fake.world import RESOURCE_GROUP, AciWorld
from conftest import free_port, mlctl, post, write
from mlflow_models import save_models
from oip_checks import check_with_spec_schemas, infer

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


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sklearn and custom pyfunc models of ``mlflow_models.save_models`` (saved once: ~10 s)."""
    return save_models(tmp_path_factory.mktemp("mlflow-models"))


def test_render_of_a_registered_mlflow_model_runs_the_server_with_no_entry_script(
    mlflow_models: tuple[Path, Path], tmp_path: Path, mlctl_home: Path
) -> None:
    _, custom = mlflow_models
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
    assert command[command.index("--model-name") + 1] == NAME  # the OIP model name: /v2/models/aci-onnx


SK_NAME = "aci-sk"
SK_ROWS = {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5], [2.5, 1, 3]]}


def test_a_registered_mlflow_model_deploys_on_aci_and_answers_like_the_process_target(
    aci_env: AciWorld, mlflow_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """The sklearn model of ``mlflow_models`` (its environment: its own requirements.txt, as the docker
    and kubernetes tests build it, so the image's environment layer is shared), registered, deployed
    through the fake; /invocations answers ``{"predictions": ...}`` as the same model on the process
    target does, and `service test` with an OIP request gets the same predictions."""
    assert mlctl("model", "register", "--name", "sk-model", "--path", str(mlflow_models[0])).code == 0
    assert mlctl("target", "add", "aci-dev", "--kind", "aci", *aci_env.target_options()).code == 0
    spec = "apiVersion: mlctl/v1\nkind: Service\nname: aci-sk\nmodels: [sk-model:1]\ninference_config: {}\n"
    write(tmp_path / "aci.yaml", spec + "target: aci-dev\ndeployment_config: {cpu_cores: 1, memory_gb: 1}\n")
    local = spec.replace("{}", "{environment: current}") + f"deployment_config: {{port: {free_port()}}}\n"
    write(tmp_path / "process.yaml", local)
    body = json.dumps({"dataframe_split": SK_ROWS}).encode()
    expected = _invocations(tmp_path / "process.yaml", body)
    assert len(expected["predictions"]) == 2
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(tmp_path / "aci.yaml"), timeout=900)
    assert deployed.code == 0, deployed.err
    try:
        assert deployed.json()["target"] == "aci"
        score = deployed.json()["scoring_uri"]
        base = score.rsplit("/score", 1)[0]
        status, _, reply = post(base + "/invocations", body, {"Content-Type": "application/json"})
        assert status == 200 and json.loads(reply) == expected, reply
        status, _, reply = post(score, json.dumps({"input_data": SK_ROWS}).encode())
        assert status == 200 and json.loads(reply) == expected["predictions"], reply
        assert check_with_spec_schemas(base, SK_NAME)["platform"] == "mlflow"
        columns = zip(SK_ROWS["columns"], zip(*SK_ROWS["data"], strict=True), strict=True)
        tensors = [{"name": n, "shape": [2], "datatype": "FP64", "data": list(v)} for n, v in columns]
        status, answer = infer(base, SK_NAME, tensors)
        assert status == 200 and answer["outputs"][0]["data"] == pytest.approx(expected["predictions"]), answer
        write(tmp_path / "oip.json", json.dumps({"inputs": tensors}))
        tested = mlctl("-o", "json", "service", "test", SK_NAME, "--data", str(tmp_path / "oip.json"))
        assert tested.code == 0, tested.err
        assert tested.json()["scoring_uri"].endswith(f"/v2/models/{SK_NAME}/infer")
        assert tested.json()["prediction"] == pytest.approx(expected["predictions"])
    finally:
        assert mlctl("service", "delete", SK_NAME).code == 0


def _invocations(spec: Path, body: bytes) -> Any:
    """The answer of the spec's service on the process target to ``body`` on /invocations (then deleted)."""
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed.code == 0, deployed.err
    try:
        base = deployed.json()["scoring_uri"].rsplit("/score", 1)[0]
        status, _, reply = post(base + "/invocations", body, {"Content-Type": "application/json"})
        assert status == 200, reply
        return json.loads(reply)
    finally:
        assert mlctl("service", "delete", SK_NAME).code == 0
