"""The kubernetes target inside a pod: the in-cluster configuration (service-account token and CA,
``KUBERNETES_SERVICE_HOST``/``PORT``), used when there is no kubeconfig, on the real test cluster.

No pod here can reach the API server (tests/k8s_cluster.py), so mlctl runs as a subprocess on the
host with what a pod would have: the two environment variables, no KUBECONFIG, no ~/.kube/config
(HOME is a temporary folder), and a ServiceAccount's token, CA and namespace in
/var/run/secrets/kubernetes.io/serviceaccount/. The kubernetes client reads them from that fixed
path only (``kubernetes.config.incluster_config``: no option or variable moves it), so the test
creates that folder when it does not exist and removes it afterwards; it skips when it exists
(a real pod, or someone else's files: never overwritten).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mlctl, write
from k8s_cluster import Cluster, k8s_fixture  # noqa: F401 - the k8s fixture

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@pytest.fixture
def service_account_files() -> Iterator[Path]:
    """SA_DIR, created for the test (and removed after, from its first new parent folder)."""
    if SA_DIR.exists():
        pytest.skip(f"{SA_DIR} exists (a pod, or files not ours): the test does not overwrite it")
    if os.geteuid() != 0:
        pytest.skip(f"creating {SA_DIR} needs root")
    top = SA_DIR
    while not top.parent.exists():
        top = top.parent
    SA_DIR.mkdir(parents=True)
    try:
        yield SA_DIR
    finally:
        shutil.rmtree(top)


def _service_account_token(k8s: Cluster) -> tuple[bytes, bytes]:
    """(token, CA) of a new ServiceAccount ``mlctl-reader`` that may read the namespace's
    Deployments, Services and HPAs (Role + RoleBinding), from its token Secret (v1.20)."""
    from kubernetes import client

    ns = k8s.namespace
    k8s.core.create_namespaced_service_account(ns, {"metadata": {"name": "mlctl-reader"}})
    rbac = client.RbacAuthorizationV1Api(k8s.api)
    rules = [{"apiGroups": ["", "apps", "autoscaling"], "resources": ["deployments", "services",
              "horizontalpodautoscalers", "pods"], "verbs": ["get", "list"]}]  # fmt: skip
    rbac.create_namespaced_role(ns, {"metadata": {"name": "mlctl-reader"}, "rules": rules})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "mlctl-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mlctl-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "mlctl-reader", "namespace": ns}],
    })  # fmt: skip
    for _ in range(60):  # the token controller writes the Secret
        sa = k8s.core.read_namespaced_service_account("mlctl-reader", ns)
        if sa.secrets:
            data = k8s.core.read_namespaced_secret(sa.secrets[0].name, ns).data
            return base64.b64decode(data["token"]), base64.b64decode(data["ca.crt"])
        time.sleep(0.5)
    raise AssertionError("no token Secret for the ServiceAccount")


def _managed_deployment(k8s: Cluster, name: str) -> None:
    """A Deployment labelled as an mlctl service (0 replicas: nothing needs to run)."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "mlctl", "mlctl.service": name}
    container = {"name": "scoring", "image": "local/busybox:1", "ports": [{"containerPort": 8890}]}
    k8s.apps.create_namespaced_deployment(k8s.namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"mlctl.service": name}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
    })  # fmt: skip


def test_without_a_kubeconfig_mlctl_uses_the_in_cluster_service_account(
    k8s: Cluster, service_account_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, ca = _service_account_token(k8s)
    (service_account_files / "token").write_bytes(token)
    (service_account_files / "ca.crt").write_bytes(ca)
    (service_account_files / "namespace").write_text(k8s.namespace)
    _managed_deployment(k8s, "incluster-svc")
    monkeypatch.delenv("KUBECONFIG")
    pod_env = {"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}

    listed = mlctl("-o", "json", "service", "list", **pod_env)
    assert listed.code == 0, listed.err
    (found,) = listed.json()  # the cluster-wide list is forbidden to the ServiceAccount: its namespace's
    assert found["name"] == "incluster-svc" and found["namespace"] == k8s.namespace
    assert found["cluster"] == "the in-cluster configuration"

    # a token the API server does not know: refused, and mlctl says which configuration it used
    (service_account_files / "token").write_text("not-a-token")
    write(tmp_path / "model.txt", "v1")
    write(tmp_path / "score.py", "def init(): pass\ndef run(raw): return raw\n")
    spec = write(tmp_path / "service.yaml", """
        apiVersion: mlctl/v1
        kind: Service
        name: incluster-new
        target: kubernetes
        model_files: [model.txt]
        inference_config: {entry_script: score.py}
        """)  # fmt: skip
    refused = mlctl("service", "deploy", "-f", str(spec), **pod_env)
    assert refused.code == 6, refused.err
    assert "refused the credentials of the in-cluster configuration" in refused.err, refused.err
