"""The kubernetes target's bad input and faults on the real test cluster (tests/k8s_cluster.py):
unreachable API server, unknown context, RBAC 403, a name taken by an object mlctl does not
manage, an image the cluster cannot pull, a rollout that times out, Ctrl-C during deploy."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mlctl, write
from k8s_cluster import KUBECONFIG, RESTRICTED, Cluster, k8s_fixture, wait_until  # noqa: F401 - the k8s fixture
from oci_registry import run_registry

SPEC = """
    apiVersion: mlctl/v1
    kind: Service
    name: k8s-echo
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
    test:
      input: {"x": 1}
"""
ECHO = """
import os, time

def init():
    time.sleep(float(os.environ.get("INIT_SLEEP", "0")))

def run(raw):
    return raw
"""


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    write(tmp_path / "model.txt", "v1")
    write(tmp_path / "score.py", ECHO)
    write(tmp_path / "requirements.txt", "")
    return write(tmp_path / "service.yaml", SPEC)


def test_unreachable_api_server_and_unknown_context_name_context_and_kubeconfig(
    echo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCTL_REGISTRY", "127.0.0.1:5000")
    dead = write(tmp_path / "dead.kubeconfig", """
        apiVersion: v1
        kind: Config
        clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: dead-ctx, context: {cluster: dead, user: u}}]
        current-context: dead-ctx
        """)  # fmt: skip
    assert mlctl("target", "add", "k8s-test", "--kind", "kubernetes", "--option", f"kubeconfig={dead}").code == 0
    result = mlctl("service", "deploy", "-f", str(echo))
    assert result.code == 6, result.err
    assert "context dead-ctx" in result.err and str(dead) in result.err and "does not answer" in result.err
    named = mlctl("target", "add", "k8s-nope", "--kind", "kubernetes", "--option", f"kubeconfig={dead}",
                  "--option", "context=nope")  # fmt: skip
    assert named.code == 0, named.err
    nope = mlctl("service", "deploy", "-f", str(echo), "--set", "target=k8s-nope")
    assert nope.code == 6 and "context nope" in nope.err and str(dead) in nope.err, nope.err


def test_forbidden_namespace_names_the_verb_and_resource(k8s: Cluster, echo: Path) -> None:
    added = mlctl("target", "add", "k8s-restricted", "--kind", "kubernetes", "--option", f"kubeconfig={RESTRICTED}",
                  "--option", f"namespace={k8s.namespace}")  # fmt: skip
    assert added.code == 0, added.err
    result = mlctl("service", "deploy", "-f", str(echo), "--set", "target=k8s-restricted")
    assert result.code == 6, result.err
    assert f"forbidden: cannot get deployments.apps in namespace {k8s.namespace}" in result.err
    assert "kubectl auth can-i get deployments.apps" in result.err


def test_a_name_taken_by_an_object_mlctl_does_not_manage_is_not_overwritten(k8s: Cluster, echo: Path) -> None:
    theirs = {"metadata": {"name": "k8s-echo"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "theirs"}}}
    k8s.core.create_namespaced_service(k8s.namespace, theirs)
    result = mlctl("service", "deploy", "-f", str(echo))
    assert result.code == 5, result.err
    assert f"Service k8s-echo in namespace {k8s.namespace} exists and is not managed by mlctl" in result.err
    kept = k8s.core.read_namespaced_service("k8s-echo", k8s.namespace)
    assert kept.spec.selector == {"app": "theirs"} and not kept.metadata.labels
    assert [o for o in k8s.objects("k8s-echo")] == []
    assert mlctl("service", "delete", "k8s-echo").code == 0  # nothing of ours: theirs stays
    assert k8s.core.read_namespaced_service("k8s-echo", k8s.namespace).spec.selector == {"app": "theirs"}


def test_failed_updates_roll_back_with_the_old_pod_serving(k8s: Cluster, echo: Path, tmp_path: Path) -> None:
    canary = "canary-registry-password-41c9"
    deployed = mlctl("service", "deploy", "-f", str(echo), "--timeout", "180",
                     MLCTL_REGISTRY_USERNAME="bob", MLCTL_REGISTRY_PASSWORD=canary)  # fmt: skip
    assert deployed.code == 0, deployed.err
    assert canary not in deployed.out + deployed.err
    pull = k8s.core.read_namespaced_secret("k8s-echo-registry", k8s.namespace)
    assert pull.type == "kubernetes.io/dockerconfigjson"
    (old_pod,) = [p.metadata.name for p in k8s.pods("k8s-echo")]
    assert k8s.pods("k8s-echo")[0].spec.image_pull_secrets[0].name == "k8s-echo-registry"

    # an image the cluster cannot pull: pushed to a registry that is gone by the time the pods start
    with run_registry(tmp_path) as elsewhere:
        pushed = mlctl("image", "push", "k8s-echo:1", MLCTL_REGISTRY=elsewhere)
        assert pushed.code == 0, pushed.err
    image_spec = write(echo.parent / "image.yaml", """
        apiVersion: mlctl/v1
        kind: Service
        name: k8s-echo
        target: k8s-test
        image: k8s-echo:1
        deployment_config: {port: 8890, workers: 1, num_replicas: 1, auth_enabled: false, period_seconds: 1}
        """)  # fmt: skip
    failed = mlctl("service", "update", "-f", str(image_spec), "--timeout", "120", MLCTL_REGISTRY=elsewhere)
    assert failed.code == 7, failed.err
    assert "image pull failed" in failed.err and ("ErrImagePull" in failed.err or "ImagePullBackOff" in failed.err)
    assert "rolled back" in failed.err
    assert [p.metadata.name for p in k8s.pods("k8s-echo")] == [old_pod] or wait_until(
        lambda: [p.metadata.name for p in k8s.pods("k8s-echo")] == [old_pod], 60
    )
    assert mlctl("service", "test", "k8s-echo").code == 0

    # a rollout that times out: init() outlasts --timeout
    slow = mlctl("service", "update", "-f", str(echo), "--timeout", "12", "--set",
                 "deployment_config.environment_variables.INIT_SLEEP=300")  # fmt: skip
    assert slow.code == 7, slow.err
    assert "readiness failed" in slow.err and "not ready within 12s" in slow.err and "rolled back" in slow.err
    assert wait_until(lambda: [p.metadata.name for p in k8s.pods("k8s-echo")] == [old_pod], 60)
    shown = mlctl("-o", "json", "service", "show", "k8s-echo").json()
    assert shown["models"] == ["model:1"] and shown["state"] == "running"


def test_ctrl_c_during_deploy_leaves_no_objects(k8s: Cluster, echo: Path) -> None:
    command = [sys.executable, "-m", "mlctl", "service", "deploy", "-f", str(echo), "--set",
               "deployment_config.environment_variables.INIT_SLEEP=300"]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "waiting for the rollout" in line:
            break
    assert k8s.objects("k8s-echo"), "the objects exist while it waits"
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    assert wait_until(lambda: k8s.objects("k8s-echo") == [], 90), k8s.objects("k8s-echo")
    assert mlctl("-o", "json", "service", "list").json() == []
