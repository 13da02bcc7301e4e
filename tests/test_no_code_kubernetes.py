"""No-code models on the kubernetes target (the v1.20 test cluster): the ONNX example, an MLflow
sklearn folder, a custom pyfunc folder and a registered MLflow model (its environment from its own
requirements) deploy with no entry script and answer /score and, through `mlctl service test`, the
Open Inference Protocol."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES, mlctl
from k8s_cluster import Cluster, k8s_fixture  # noqa: F401 - k8s_fixture: the k8s fixture
from mlflow_models import pyfunc_predict, save_models


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sklearn and custom pyfunc models of ``mlflow_models.save_models`` (saved once: ~10 s)."""
    return save_models(tmp_path_factory.mktemp("mlflow-models"))


def test_the_onnx_example_deploys_on_kubernetes_and_answers_oip(
    k8s: Cluster, trained_examples: Path, tmp_path: Path
) -> None:
    spec = str(EXAMPLES / "onnx" / "service.yaml")
    # 8890: a port the test cluster relays into pods (its probes reach no other; tests/k8s_cluster.py)
    sets = ["--set", "target=k8s-test", "--set", "deployment_config.port=8890"]
    deployed = mlctl("-o", "json", "service", "deploy", "-f", spec, *sets, "--timeout", "300", timeout=900)
    assert deployed.code == 0, deployed.err
    tested = mlctl("-o", "json", "service", "test", "diabetes-onnx")
    assert tested.code == 0 and tested.json()["passed"] is True, tested.out
    rows = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]
    request = {"id": "k8s", "inputs": [{"name": "input", "shape": [2, 10], "datatype": "FP32", "data": rows}]}
    data = tmp_path / "oip.json"
    data.write_text(json.dumps(request))
    oip = mlctl("-o", "json", "service", "test", "diabetes-onnx", "--data", str(data))
    assert oip.code == 0, oip.err
    assert oip.json()["scoring_uri"].endswith("/v2/models/diabetes-onnx/infer")
    assert oip.json()["prediction"] == pytest.approx(tested.json()["prediction"], abs=1e-3)
    assert mlctl("service", "delete", "diabetes-onnx").code == 0


def test_an_mlflow_sklearn_folder_deploys_on_kubernetes_and_answers_mlflow_formats(
    k8s: Cluster, mlflow_models: tuple[Path, Path], tmp_path: Path
) -> None:
    sklearn_model, _ = mlflow_models
    shutil.copytree(sklearn_model, tmp_path / "project" / "sk-model")
    spec = tmp_path / "project" / "service.yaml"
    split = {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5], [2.5, 1, 3]]}
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: sk-k8s
        model_files: [sk-model]
        inference_config: {{}}
        deployment_config: {{port: 8890}}
        test:
          input: {json.dumps({"input_data": split})}
        """)
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--set", "target=k8s-test", timeout=900)
    assert deployed.code == 0, deployed.err
    tested = mlctl("-o", "json", "service", "test", "sk-k8s")
    assert tested.code == 0, tested.err
    data = tmp_path / "oip.json"
    tensors = [{"name": n, "shape": [2], "datatype": "FP64", "data": [r[i] for r in split["data"]]} for i, n in
               enumerate(split["columns"])]  # fmt: skip
    data.write_text(json.dumps({"inputs": tensors}))
    oip = mlctl("-o", "json", "service", "test", "sk-k8s", "--data", str(data))
    assert oip.code == 0, oip.err
    assert oip.json()["prediction"] == pytest.approx(tested.json()["prediction"], rel=1e-9)
    assert mlctl("service", "delete", "sk-k8s").code == 0


def test_a_custom_pyfunc_folder_deploys_on_kubernetes_and_takes_params(
    k8s: Cluster, mlflow_models: tuple[Path, Path], tmp_path: Path
) -> None:
    _, custom = mlflow_models
    shutil.copytree(custom, tmp_path / "project" / "custom")
    spec = tmp_path / "project" / "service.yaml"
    body = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}, "params": {"scale": 3}}
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: custom-k8s
        model_files: [custom]
        inference_config: {{}}
        deployment_config: {{port: 8890}}
        test:
          input: {json.dumps(body)}
          expected: [9.0]
        """)
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--set", "target=k8s-test", timeout=900)
    assert deployed.code == 0, deployed.err
    tested = mlctl("-o", "json", "service", "test", "custom-k8s")
    assert tested.code == 0 and tested.json()["passed"] is True, tested.out
    data = tmp_path / "oip.json"
    tensors = [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in (("a", 1.0), ("b", 2.0))]
    data.write_text(json.dumps({"inputs": tensors}))
    oip = mlctl("-o", "json", "service", "test", "custom-k8s", "--data", str(data))
    assert oip.code == 0 and oip.json()["prediction"] == [3.0], oip.out
    assert mlctl("service", "delete", "custom-k8s").code == 0


def test_a_registered_mlflow_model_deploys_on_kubernetes_with_its_own_requirements(
    k8s: Cluster, mlflow_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """The sklearn model registered (``models:``), no environment in the spec: the image's comes from
    the model's stored python_env.yaml and requirements.txt (mlctl/mlflow_env.py). The server brings
    no scikit-learn, so the model loads only if they were read; its answer is MLflow's own (the model
    loaded by ``mlflow.pyfunc`` here). Same requirements as the folder above: the image's environment
    layer is a cache hit."""
    sklearn_model, _ = mlflow_models
    assert mlctl("model", "register", "--name", "sk-registered", "--path", str(sklearn_model)).code == 0
    split = {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5], [2.5, 1, 3]]}
    expected = pyfunc_predict(sklearn_model, split)
    spec = tmp_path / "service.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: sk-registered-k8s
        models: [sk-registered:1]
        inference_config: {{}}
        deployment_config: {{port: 8890}}
        test:
          input: {json.dumps({"dataframe_split": split})}
          expected: {json.dumps(expected)}
          tolerance: 1.0e-9
        """)
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--set", "target=k8s-test", timeout=900)
    assert deployed.code == 0, deployed.err
    tested = mlctl("-o", "json", "service", "test", "sk-registered-k8s")
    assert tested.code == 0 and tested.json()["passed"] is True, tested.out + tested.err
    assert mlctl("service", "delete", "sk-registered-k8s").code == 0
