"""The real test cluster for the kubernetes target's tests (scripts/k8s-up.sh: a single-node
Kubernetes v1.20.2 on 127.0.0.1 and its registry on 127.0.0.1:5000).

``k8s`` skips, saying why, only when no cluster can be started; it starts one (through
scripts/k8s-up.sh, when its binaries are built and we are root) when none answers. Each test
gets its own namespace ``k8s-XXXXXX`` and a named target ``k8s-test`` pointing at it.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_IMAGE, REPO, mlctl

ROOT = Path("/tmp/k8s")
KUBECONFIG = ROOT / "kubeconfig"
RESTRICTED = ROOT / "restricted.kubeconfig"
REGISTRY = "127.0.0.1:5000"
_checked: dict[str, str | None] = {}


def _answers() -> bool:
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(str(KUBECONFIG))
        client.VersionApi(api).get_code(_request_timeout=3)
        # an API server without a Ready kubelet accepts objects but never runs a pod
        node = client.CoreV1Api(api).read_node("127.0.0.1", _request_timeout=3)
        if not any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
            return False
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure: not (yet) there
        return False


def _why_not() -> str | None:
    """None when the cluster answers (started now if needed), else why the tests skip."""
    if "reason" in _checked:
        return _checked["reason"]
    reason: str | None = None
    if not _answers():
        if os.geteuid() != 0 or not (ROOT / "bin" / "kube-apiserver").exists():
            reason = "no test cluster: run `make k8s-up` as root (first run builds Kubernetes, ~10-15 min)"
        else:
            run = subprocess.run(["bash", str(REPO / "scripts" / "k8s-up.sh")], capture_output=True, text=True)
            if run.returncode != 0 or not _answers():
                reason = f"scripts/k8s-up.sh could not start the test cluster: {run.stderr.strip()[-300:]}"
    if reason and os.environ.get("CI") and os.geteuid() == 0:
        # CI (root, `make test` ran k8s-up) must run these tests: a cluster that did not come up
        # is a failure there, not a skip that would hide it
        pytest.fail(reason, pytrace=False)
    _checked["reason"] = reason
    return reason


@dataclass
class Cluster:
    """A namespace of the test cluster, with typed API clients on the admin kubeconfig."""

    namespace: str
    core: Any
    apps: Any
    api: Any

    def dynamic(self) -> Any:
        """A dynamic client (for API groups the typed client no longer has, e.g. discovery.k8s.io/v1beta1)."""
        if "_dynamic" not in self.__dict__:
            from kubernetes import dynamic

            self.__dict__["_dynamic"] = dynamic.DynamicClient(self.api)
        return self.__dict__["_dynamic"]

    def pods(self, service: str) -> list[Any]:
        """The service's pods that are not terminating."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"mlctl.service={service}").items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def objects(self, service: str) -> list[str]:
        """``KIND/NAME`` of every object labelled for ``service`` in the namespace (incl. pods)."""
        from kubernetes import client

        selector = f"mlctl.service={service}"
        ns = self.namespace
        found = [
            f"Deployment/{d.metadata.name}"
            for d in self.apps.list_namespaced_deployment(ns, label_selector=selector).items
        ]
        found += [
            f"Service/{s.metadata.name}" for s in self.core.list_namespaced_service(ns, label_selector=selector).items
        ]
        found += [
            f"Secret/{s.metadata.name}" for s in self.core.list_namespaced_secret(ns, label_selector=selector).items
        ]
        found += [f"Pod/{p.metadata.name}" for p in self.core.list_namespaced_pod(ns, label_selector=selector).items]
        hpas = client.AutoscalingV1Api(self.api).list_namespaced_horizontal_pod_autoscaler(ns, label_selector=selector)
        found += [f"HorizontalPodAutoscaler/{h.metadata.name}" for h in hpas.items]
        return found


@pytest.fixture(name="k8s")
def k8s_fixture(mlctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A fresh namespace on the test cluster; KUBECONFIG, MLCTL_REGISTRY and the base image set;
    a named target ``k8s-test`` (kind kubernetes) for it. Skips, saying why, without a cluster."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    docker = pytest.importorskip("docker")
    try:
        docker.from_env().images.get(BASE_IMAGE)
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"no Docker engine with {BASE_IMAGE} (run `make docker-up` as root): {error}")
    from kubernetes import client, config

    api = config.new_client_from_config(str(KUBECONFIG))
    core = client.CoreV1Api(api)
    namespace = f"k8s-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    for _ in range(60):  # pods need the namespace's default ServiceAccount
        if core.list_namespaced_service_account(namespace).items:
            break
        time.sleep(0.5)
    for name, value in (
        ("KUBECONFIG", str(KUBECONFIG)),
        ("MLCTL_REGISTRY", REGISTRY),
        ("MLCTL_BASE_IMAGE", BASE_IMAGE),
    ):
        monkeypatch.setenv(name, value)
    added = mlctl(
        "target",
        "add",
        "k8s-test",
        "--kind",
        "kubernetes",
        "--option",
        f"namespace={namespace}",
        "--option",
        "api_versions=autoscaling/v2beta2,policy/v1beta1",
    )  # what v1.20 serves
    assert added.code == 0, added.err
    try:
        yield Cluster(namespace, core, client.AppsV1Api(api), api)
    finally:
        core.delete_namespace(namespace, body={"propagationPolicy": "Background", "gracePeriodSeconds": 0})


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
