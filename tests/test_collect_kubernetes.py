"""Model data collection on the real test cluster (tests/k8s_cluster.py). Its pods have no route off
themselves: the first test proves the wiring with no storage in reach (the Secret reaches the
server, which collects with the blob sink and, the account unreachable, keeps the rows buffered:
collected, none written, on /metrics); the second reaches Azurite on the host through a test-only
relay (tests/socket_relay.py: a sidecar in the pod, a Unix socket on a hostPath volume) and reads
the rows in the blobs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from azurite import API_VERSION, KEY, Azurite
from conftest import free_port, get, mlctl, post
from k8s_cluster import Cluster, k8s_fixture, wait_until  # noqa: F401 - k8s_fixture: the k8s fixture
from socket_relay import POD_RELAY, unix_to_tcp
from test_collect import HERE, blob_rows, collection_metrics
from test_kubernetes_target import _endpoints

UNREACHABLE = (  # Azurite's development account on a port nothing listens on inside the pod
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10999/devstoreaccount1;"
)


def test_sample_script_collects_in_a_pod_with_the_connection_string_from_a_secret(k8s: Cluster, tmp_path: Path) -> None:
    spec = dc_spec(tmp_path, "k8s-dc")
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


def dc_spec(folder: Path, name: str) -> Path:
    """A service of the AKS sample's shape (tests/collect/score_dc.py) collecting to the account
    named by environment variable ``DC_CONN``, in ``folder``."""
    (folder / "score_dc.py").write_text((HERE / "score_dc.py").read_text())
    (folder / "weights.txt").write_text("2")
    (folder / "requirements.txt").write_text("numpy\n")
    spec = folder / "service.yaml"
    spec.write_text(
        f"apiVersion: mlctl/v1\nkind: Service\nname: {name}\ntarget: k8s-test\nmodel_files: [weights.txt]\n"
        "inference_config:\n  entry_script: score_dc.py\n  requirements: requirements.txt\n"
        "deployment_config:\n  port: 8890\n  num_replicas: 1\n  auth_enabled: false\n  collect_model_data: true\n"
        f"  model_data_storage:\n    connection_string_env: DC_CONN\n    api_version: '{API_VERSION}'\n"
    )
    return spec


def test_rows_collected_in_a_pod_land_in_azurite_through_a_relay(k8s: Cluster, tmp_path: Path) -> None:
    relay_port = 10998  # where the blob endpoint is inside the pod: the relay sidecar
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{relay_port}/devstoreaccount1;"
    )
    storage = Azurite(tmp_path, free_port())
    storage.start()
    sockets = tmp_path / "relay"
    sockets.mkdir()
    try:
        with unix_to_tcp(sockets / "blob.sock", storage.port):
            spec = dc_spec(tmp_path, "k8s-dc-blob")
            deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), "--timeout", "240", DC_CONN=connection)
            assert deployed.code == 0, deployed.err
            # the test-only part: a sidecar running the relay with the service image's Python, and
            # the host folder holding the socket (the rollout replaces the pod)
            deployment = k8s.apps.read_namespaced_deployment("k8s-dc-blob", k8s.namespace)
            server = deployment.spec.template.spec.containers[0]
            sidecar = {
                "name": "relay",
                "image": server.image,
                "command": [server.command[0] if server.command else "python3", "-c", POD_RELAY],
                "args": [str(relay_port), "/relay/blob.sock"],
                "volumeMounts": [{"name": "relay", "mountPath": "/relay"}],
            }
            if server.command and server.command[0] == "/bin/sh":
                sidecar["command"][0] = "/opt/mlctl/env/bin/python"
            patch = {
                "spec": {
                    "template": {
                        "spec": {
                            "volumes": [{"name": "relay", "hostPath": {"path": str(sockets), "type": "Directory"}}],
                            "containers": [sidecar],
                        }
                    }
                }
            }
            k8s.apps.patch_namespaced_deployment("k8s-dc-blob", k8s.namespace, patch)

            def relayed_pod_ready() -> bool:
                pods = k8s.pods("k8s-dc-blob")
                return (
                    len(pods) == 1
                    and len(pods[0].spec.containers) == 2
                    and all(c.ready for c in pods[0].status.container_statuses or [])
                    and len(_endpoints(k8s, "k8s-dc-blob")) == 1
                )

            assert wait_until(relayed_pod_ready, 180), [p.status for p in k8s.pods("k8s-dc-blob")]
            [address] = _endpoints(k8s, "k8s-dc-blob")
            for n in range(3):
                body = json.dumps({"data": [[n, 1, 1], [n, 2, 2]]}).encode()
                status, _, answer = post(f"http://{address}/score", body, {"x-request-id": f"pod-{n}"})
                assert status == 200, answer
            assert wait_until(lambda: len(blob_rows(storage, "predictions")) == 3, 30), storage.blob_texts()
            inputs = blob_rows(storage, "inputs")
            assert sorted(r["$aml_request_id"] for r in inputs) == sorted(
                f"pod-{n}" for n in range(3) for _ in range(2)
            )
            assert {r["$aml_service_name"] for r in inputs} == {"k8s-dc-blob"}
            names = list(storage.blob_texts())
            assert all(n.startswith("default/default/default/k8s-dc-blob/weights.txt/") for n in names), names
            assert all(n.endswith("/data.csv") for n in names), names
            metrics = collection_metrics(f"http://{address}")
            assert metrics["written"] == metrics["collected"] == 9 and metrics["dropped"] == 0
            assert mlctl("service", "delete", "k8s-dc-blob").code == 0
    finally:
        storage.stop()
