"""No-code models on the docker target (a real Docker engine): the ONNX example and an MLflow model
folder deploy with no entry script, answer /score, MLflow's /invocations and the Open Inference
Protocol (tritonclient) as on the process target."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES, free_port, mlctl, post
from mlflow_models import save_models
from oip_checks import check_with_spec_schemas, triton_infer


@pytest.fixture(autouse=True)
def _remove_our_images(engine: Any) -> Any:
    """The images of this module's services are removed after each test (only theirs: the engine is
    shared), not their layers: the kubernetes tests' builds of the same environments are cache hits."""
    yield
    for name in ("diabetes-onnx", "custom-docker", "sk-docker"):
        for image in engine.images.list(name=name):
            for tag in image.tags:
                engine.images.remove(tag, force=True, noprune=True)


def test_the_onnx_example_deploys_on_docker_with_no_entry_script(trained_examples: Path) -> None:
    spec = str(EXAMPLES / "onnx" / "service.yaml")
    port = free_port()
    deployed = mlctl(
        "-o",
        "json",
        "service",
        "deploy",
        "-f",
        spec,
        "--set",
        "target=docker",
        "--set",
        f"deployment_config.port={port}",
        timeout=900,
    )
    assert deployed.code == 0, deployed.err
    try:
        tested = mlctl("-o", "json", "service", "test", "diabetes-onnx")
        assert tested.code == 0 and tested.json()["passed"] is True, tested.out
        base = deployed.json()["scoring_uri"].rsplit("/score", 1)[0]
        metadata = check_with_spec_schemas(base, "diabetes-onnx")
        assert metadata["platform"] == "onnxruntime_onnx" and metadata["inputs"][0]["shape"] == [-1, 10]
        rows = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], dtype=np.float32)
        (output,) = [o["name"] for o in metadata["outputs"]]
        out = triton_infer(base, "diabetes-onnx", {metadata["inputs"][0]["name"]: rows}, [output])
        assert abs(out[output].ravel()[0] - tested.json()["prediction"][0]) < 1e-3
    finally:
        assert mlctl("service", "delete", "diabetes-onnx").code == 0


def test_an_mlflow_folder_deploys_on_docker_with_its_own_requirements(tmp_path: Path) -> None:
    _, custom = save_models(tmp_path / "models")
    shutil.copytree(custom, tmp_path / "project" / "custom")
    spec = tmp_path / "project" / "service.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: custom-docker
        target: docker
        model_files: [custom]
        inference_config: {{}}
        deployment_config: {{port: {free_port()}, workers: 1}}
        """)
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), timeout=900)
    assert deployed.code == 0, deployed.err
    try:
        score = deployed.json()["scoring_uri"]
        base = score.rsplit("/score", 1)[0]
        body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}, "params": {"scale": 3}}'
        status, _, reply = post(base + "/invocations", body, {"Content-Type": "application/json"})
        assert status == 200 and json.loads(reply) == {"predictions": [9.0]}
        assert post(score, b'{"input_data": {"columns": ["a", "b"], "data": [[1, 2]]}}')[2] == b"[3.0]"
        out = triton_infer(base, "custom-docker", {"a": np.array([1.0]), "b": np.array([2.0])}, ["predictions"])
        assert out["predictions"].tolist() == [3.0]
    finally:
        assert mlctl("service", "delete", "custom-docker").code == 0


def test_an_mlflow_sklearn_folder_deploys_on_docker_and_answers_like_on_the_process_target(tmp_path: Path) -> None:
    sklearn_model, _ = save_models(tmp_path / "models")
    shutil.copytree(sklearn_model, tmp_path / "project" / "sk-model")
    spec = tmp_path / "project" / "service.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: mlctl/v1
        kind: Service
        name: sk-docker
        model_files: [sk-model]
        inference_config: {{}}
        deployment_config: {{port: {free_port()}, workers: 1}}
        """)
    )
    body = b'{"dataframe_records": [{"x0": 1, "x1": 0, "x2": 5}, {"x0": 2.5, "x1": 1, "x2": 3}]}'
    answers = []
    for target in ("process", "docker"):
        deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--set", f"target={target}", timeout=900)
        assert deployed.code == 0, deployed.err
        try:
            base = deployed.json()["scoring_uri"].rsplit("/score", 1)[0]
            status, _, reply = post(base + "/invocations", body, {"Content-Type": "application/json"})
            assert status == 200, reply
            answers.append(json.loads(reply))
            assert check_with_spec_schemas(base, "sk-docker")["platform"] == "mlflow"
        finally:
            assert mlctl("service", "delete", "sk-docker").code == 0
    assert answers[0] == answers[1]
