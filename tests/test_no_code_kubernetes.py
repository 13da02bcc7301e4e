"""No-code models on the kubernetes target (the v1.20 test cluster): the ONNX example deploys with no
entry script and answers /score and, through `mlctl service test`, the Open Inference Protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES, mlctl
from k8s_cluster import Cluster, k8s_fixture  # noqa: F401 - k8s_fixture: the k8s fixture


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
