"""No-code deployment on the process target: MLflow model folders and ONNX files with no entry script,
through the CLI (a real subprocess), with `mlctl service test` sending OIP requests."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, mlctl, post
from mlflow_models import save_models
from oip_checks import check_with_spec_schemas, triton_infer


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sklearn and custom pyfunc models of ``mlflow_models.save_models``."""
    return save_models(tmp_path_factory.mktemp("mlflow-models"))


def spec(folder: Path, name: str, model: str, environment: str = "", test: str = "") -> Path:
    """A Service spec with no entry script for ``model`` (relative to ``folder``)."""
    path = folder / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: {name}
        model_files: [{model}]
        inference_config: {{{environment}}}
        deployment_config:
          port: {free_port()}
          workers: 1
        """)
        + test
    )
    return path


def test_an_mlflow_sklearn_folder_deploys_with_its_own_environment_and_answers(
    mlflow_models: tuple[Path, Path], tmp_path: Path
) -> None:
    shutil.copytree(mlflow_models[0], tmp_path / "sk-model")
    oip = {
        "inputs": [{"name": f"x{i}", "shape": [1], "datatype": "FP64", "data": [v]} for i, v in enumerate([1, 0, 5])]
    }
    test = f"test:\n  input: {json.dumps(oip)}\n"
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec(tmp_path, "sk-svc", "sk-model", test=test)))
    assert deployed.code == 0, deployed.err
    state = deployed.json()
    assert state["environment"] != "current"  # built from the model's requirements.txt
    score = state["scoring_uri"]
    base = score.rsplit("/score", 1)[0]
    body = b'{"dataframe_split": {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5]]}}'
    status, _, invocations = post(base + "/invocations", body, {"Content-Type": "application/json"})
    assert status == 200
    expected = json.loads(invocations)["predictions"]
    status, _, scored = post(score, b'{"input_data": {"columns": ["x0", "x1", "x2"], "data": [[1, 0, 5]]}}')
    assert status == 200 and json.loads(scored) == expected
    tested = mlctl("-o", "json", "service", "test", "sk-svc")
    assert tested.code == 0, tested.err
    assert np.allclose(tested.json()["prediction"], expected)
    metadata = check_with_spec_schemas(base, "sk-svc")
    assert metadata["platform"] == "mlflow" and metadata["versions"] == ["1"]
    assert mlctl("service", "delete", "sk-svc").code == 0


def test_a_custom_pyfunc_deploys_on_the_current_interpreter_and_answers_triton(
    mlflow_models: tuple[Path, Path], tmp_path: Path
) -> None:
    shutil.copytree(mlflow_models[1], tmp_path / "custom")
    path = spec(tmp_path, "custom", "custom", environment="environment: current")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(path))
    assert deployed.code == 0, deployed.err
    base = deployed.json()["scoring_uri"].rsplit("/score", 1)[0]
    out = triton_infer(base, "custom", {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}, ["predictions"])
    assert out["predictions"].tolist() == [4.0, 6.0]
    assert mlctl("service", "delete", "custom").code == 0


def test_a_model_that_needs_an_entry_script_is_refused_at_the_spec(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"not a model")
    refused = mlctl("service", "deploy", "-f", str(spec(tmp_path, "plain", "model.pkl")))
    assert refused.code != 0
    assert "inference_config has no entry_script" in refused.err and "MLflow model folder" in refused.err
