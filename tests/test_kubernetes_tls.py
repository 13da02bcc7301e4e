"""TLS and ``service_type: LoadBalancer`` on the kubernetes target, on the real test cluster
(tests/k8s_cluster.py): https through the port-forward trusting the service's certificate, a bad
certificate/key pair rolled back with the old pod serving, the private key never printed, and a
load balancer address (written into the Service's status through the API, as a cloud controller
would: the test cluster has none) used as the scoring URI."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mlctl, remove_images, self_signed_certificate, write
from k8s_cluster import KUBECONFIG, ROOT, Cluster, k8s_fixture, wait_until  # noqa: F401 - the k8s fixture

SPEC = """
    apiVersion: mlctl/v1
    kind: Service
    name: k8sq-tls
    target: k8s-test
    model_files: [model.txt]
    inference_config:
      entry_script: score.py
      requirements: requirements.txt
    deployment_config:
      port: 8890
      workers: 1
      num_replicas: 1
      auth_enabled: false
      period_seconds: 1
      service_type: LoadBalancer
"""
TLS = """
      ssl_enabled: true
      ssl_cert_pem_file: cert.pem
      ssl_key_pem_file: key.pem
"""
ECHO = """
def init():
    pass

def run(raw):
    return raw
"""
CANARY = "canary-tls-private-key-8b2f"
KUBECTL = str(ROOT / "bin" / "kubectl")


@pytest.fixture
def own_images() -> Iterator[None]:
    """Remove the images this test builds (``k8sq-tls:N`` and their registry tags) afterwards."""
    yield
    import docker

    remove_images(docker.from_env(), lambda tag: tag.rpartition(":")[0].rpartition("/")[2] == "k8sq-tls")


def _tls_secrets(k8s: Cluster) -> list[str]:
    found = k8s.core.list_namespaced_secret(k8s.namespace, label_selector="mlctl.service=k8sq-tls,mlctl.io/role=tls")
    return [s.metadata.name for s in found.items]


def _one_pod(k8s: Cluster) -> str:
    assert wait_until(lambda: len(k8s.pods("k8sq-tls")) == 1, 90), k8s.pods("k8sq-tls")
    return str(k8s.pods("k8sq-tls")[0].metadata.name)


def test_tls_service_tests_over_https_survives_a_bad_pair_and_uses_the_load_balancer(
    k8s: Cluster, tmp_path: Path, own_images: None
) -> None:
    write(tmp_path / "model.txt", "v1")
    write(tmp_path / "score.py", ECHO)
    write(tmp_path / "requirements.txt", "")
    spec = write(tmp_path / "service.yaml", SPEC + TLS + '    test:\n      input: {"x": 1}\n')
    self_signed_certificate(tmp_path)
    key = tmp_path / "key.pem"
    key.write_text(key.read_text() + f"# {CANARY}\n")  # after the PEM block: still a valid key
    printed = ""

    # --dry-run prints a TLS Secret (key redacted) and Deployment that the v1.20 API server accepts
    namespace = f"deployment_config.namespace={k8s.namespace}"
    dry = mlctl("service", "deploy", "-f", str(spec), "--dry-run", "--set", namespace)
    printed += dry.out + dry.err
    assert dry.code == 0, dry.err
    kubectl = subprocess.run(
        [KUBECTL, "--kubeconfig", str(KUBECONFIG), "apply", "--dry-run=server", "-f", "-"],
        input=dry.out, capture_output=True, text=True,
    )  # fmt: skip
    assert kubectl.returncode == 0 and "secret/k8sq-tls-tls-" in kubectl.stdout, kubectl.stderr

    deployed = mlctl("service", "deploy", "-f", str(spec), "--timeout", "180")
    printed += deployed.out + deployed.err
    assert deployed.code == 0, deployed.err
    shown = mlctl("-o", "json", "service", "show", "k8sq-tls").json()
    assert shown["scoring_uri"] == f"https://k8sq-tls.{k8s.namespace}.svc.cluster.local:8890/score"
    assert shown["load_balancer"] is None and shown["service_type"] == "LoadBalancer"
    (secret,) = _tls_secrets(k8s)
    assert k8s.core.read_namespaced_secret(secret, k8s.namespace).type == "kubernetes.io/tls"
    old_pod = _one_pod(k8s)
    mounts = k8s.pods("k8sq-tls")[0].spec.containers[0].volume_mounts
    assert any(m.mount_path == "/run/mlctl-tls" and m.read_only for m in mounts)
    tested = mlctl("-o", "json", "service", "test", "k8sq-tls")  # https, trusting the service's certificate
    assert tested.code == 0, tested.err
    assert tested.json()["scoring_uri"].startswith("https://127.0.0.1:")

    # a certificate with another certificate's key: the new pod's server refuses it, the update rolls back
    other = tmp_path / "other"
    other.mkdir()
    self_signed_certificate(other)
    shutil.copy(other / "key.pem", key)
    failed = mlctl("service", "update", "-f", str(spec), "--timeout", "120")
    printed += failed.out + failed.err
    assert failed.code == 7, failed.err
    assert "init failed" in failed.err and "rolled back" in failed.err
    assert "cannot use the TLS certificate and key" in failed.err  # the pod's last log lines
    assert _one_pod(k8s) == old_pod and _tls_secrets(k8s) == [secret]  # the failed update's Secret is gone
    assert mlctl("service", "test", "k8sq-tls").code == 0

    # without TLS, and with a load balancer address as a cloud controller would write it (the pod's
    # IP, whose port 8890 the test cluster relays into the pod: see scripts/k8s/README.md)
    plain = write(tmp_path / "plain.yaml", SPEC + '    test:\n      input: {"x": 1}\n')
    updated = mlctl("service", "update", "-f", str(plain), "--timeout", "180")
    assert updated.code == 0, updated.err
    assert _tls_secrets(k8s) == []
    assert wait_until(lambda: _one_pod(k8s) != old_pod and k8s.pods("k8sq-tls")[0].status.pod_ip, 90)
    pod_ip = k8s.pods("k8sq-tls")[0].status.pod_ip
    k8s.core.patch_namespaced_service_status(
        "k8sq-tls", k8s.namespace, {"status": {"loadBalancer": {"ingress": [{"ip": pod_ip}]}}}
    )
    shown = mlctl("-o", "json", "service", "show", "k8sq-tls").json()
    assert shown["load_balancer"] == pod_ip and shown["scoring_uri"] == f"http://{pod_ip}:8890/score"
    tested = mlctl("-o", "json", "service", "test", "k8sq-tls")
    assert tested.code == 0, tested.err
    assert tested.json()["scoring_uri"] == f"http://{pod_ip}:8890/score"  # through the "load balancer"
    assert tested.json()["prediction"] == '{"x": 1}'  # run() echoes the body

    assert mlctl("service", "delete", "k8sq-tls").code == 0
    assert wait_until(lambda: k8s.objects("k8sq-tls") == [], 90), k8s.objects("k8sq-tls")
    assert CANARY not in printed
