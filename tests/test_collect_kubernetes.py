"""Model data collection on the real test cluster (tests/k8s_cluster.py). Its pods have no route off
themselves, so no storage is reachable from them: the test proves the wiring end to end instead
(the Secret reaches the server, which collects with the blob sink and, the account unreachable,
keeps the rows buffered: collected, none written, on /metrics)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from conftest import get, mlctl, post
from k8s_cluster import Cluster, k8s_fixture, wait_until  # noqa: F401 - k8s_fixture: the k8s fixture
from test_collect import HERE, collection_metrics
from test_kubernetes_target import _endpoints

UNREACHABLE = (  # Azurite's development account on a port nothing listens on inside the pod
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10999/devstoreaccount1;"
)


def test_sample_script_collects_in_a_pod_with_the_connection_string_from_a_secret(k8s: Cluster, tmp_path: Path) -> None:
    (tmp_path / "score_dc.py").write_text((HERE / "score_dc.py").read_text())
    (tmp_path / "weights.txt").write_text("2")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "apiVersion: mlctl/v1\nkind: Service\nname: k8s-dc\ntarget: k8s-test\nmodel_files: [weights.txt]\n"
        "inference_config:\n  entry_script: score_dc.py\n  requirements: requirements.txt\n"
        "deployment_config:\n  port: 8890\n  num_replicas: 1\n  auth_enabled: false\n  collect_model_data: true\n"
        "  model_data_storage:\n    connection_string_env: DC_CONN\n    api_version: '2025-11-05'\n"
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--timeout", "240", DC_CONN=UNREACHABLE)
    assert deployed.code == 0, deployed.err
    secret = k8s.core.read_namespaced_secret("k8s-dc-modeldata", k8s.namespace)
    assert base64.b64decode(secret.data["modeldata-connection-string"]).decode() == UNREACHABLE
    pod = k8s.pods("k8s-dc")[0]
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["MLCTL_DC_STORAGE_FILE"] == "/run/mlctl-modeldata/modeldata-connection-string"
    assert UNREACHABLE not in json.dumps(env)
    [address] = _endpoints(k8s, "k8s-dc")
    body = json.dumps({"data": [[1, 2, 3]]}).encode()
    status, headers, answer = post(f"http://{address}/score", body, {"x-request-id": "in-a-pod"})
    assert status == 200 and json.loads(answer) == json.dumps({"result": [12.0]}), answer
    base = f"http://{address}"
    assert get(base + "/metrics")[0] == 200
    # the rows are in the pod's buffer, waiting for a storage the pod cannot reach
    assert wait_until(lambda: collection_metrics(base)["collected"] == 2, 10), get(base + "/metrics")[1].decode()
    assert collection_metrics(base)["written"] == 0 and collection_metrics(base)["dropped"] == 0
    assert mlctl("service", "delete", "k8s-dc").code == 0
