"""The kubernetes target on the real test cluster (tests/k8s_cluster.py): the issue's "done when"
run on the diabetes example, key rotation, and apply idempotence."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import mlctl, post
from k8s_cluster import Cluster, k8s_fixture, wait_until  # noqa: F401 - k8s_fixture: the k8s fixture

SETS = ["--set", "target=k8s-test", "--set", "deployment_config.autoscale_min_replicas=2",
        "--set", "deployment_config.period_seconds=1"]  # fmt: skip


@pytest.fixture
def diabetes(tmp_path: Path, trained_examples: Path) -> Path:
    """A copy of the diabetes example (its trained model included), to change its model and script."""
    folder = tmp_path / "diabetes"
    shutil.copytree(trained_examples / "diabetes", folder)
    return folder / "service.yaml"


def _retrain(folder: Path, alpha: float) -> None:
    code = (
        "import joblib; from sklearn.datasets import load_diabetes; from sklearn.linear_model import Ridge; "
        f"x, y = load_diabetes(return_X_y=True); joblib.dump(Ridge(alpha={alpha}).fit(x, y), "
        f"{str(folder / 'sklearn_regression_model.pkl')!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _endpoints(k8s: Cluster, service: str) -> list[str]:
    """Ready endpoints of the Service from its EndpointSlices (as kube-proxy routes): POD_IP:PORT."""
    slices = k8s.dynamic().resources.get(api_version="discovery.k8s.io/v1beta1", kind="EndpointSlice")
    found = []
    for item in slices.get(namespace=k8s.namespace, label_selector=f"kubernetes.io/service-name={service}").items:
        port = item.ports[0].port
        for endpoint in item.endpoints or []:
            if endpoint.conditions is None or endpoint.conditions.ready is not False:
                found += [f"{address}:{port}" for address in endpoint.addresses]
    return sorted(found)


@contextmanager
def traffic(k8s: Cluster, service: str, key: str, body: bytes) -> Iterator[dict[str, Any]]:
    """Requests to the Service's ready endpoints (refreshed continually) while the block runs,
    and the Deployment's ready replicas sampled; yields the counters."""
    seen: dict[str, Any] = {"ok": 0, "failures": [], "answers": set(), "min_ready": 99}
    stop = threading.Event()

    def client() -> None:
        turn = 0
        while not stop.is_set():
            ready = _endpoints(k8s, service)
            if not ready:
                seen["failures"].append("no ready endpoint")
                time.sleep(0.1)
                continue
            turn += 1
            address = ready[turn % len(ready)]
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            try:
                status, _, answer = post(f"http://{address}/score", body, headers, timeout=10)
            except OSError as error:
                seen["failures"].append(f"{address}: {error!r}")
                continue
            if status != 200:
                seen["failures"].append(f"{address}: HTTP {status}")
            else:
                seen["ok"] += 1
                seen["answers"].add(json.dumps(json.loads(answer)))

    def watch() -> None:
        while not stop.is_set():
            dep = k8s.apps.read_namespaced_deployment(service, k8s.namespace)
            seen["min_ready"] = min(seen["min_ready"], dep.status.ready_replicas or 0)
            time.sleep(0.2)

    threads = [threading.Thread(target=client) for _ in range(2)] + [threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join()


def test_diabetes_deploys_updates_rolls_back_logs_and_deletes(k8s: Cluster, diabetes: Path) -> None:
    # --dry-run prints manifests the v1.20 API server accepts (kubectl's server-side dry run)
    dry = mlctl("service", "deploy", "-f", str(diabetes), "--dry-run", *SETS, "--set",
                f"deployment_config.namespace={k8s.namespace}")  # fmt: skip
    assert dry.code == 0, dry.err
    assert [d["kind"] for d in _yaml_docs(dry.out)][:3] == ["Secret", "Service", "Deployment"]

    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(diabetes), *SETS, "--timeout", "240")
    assert deployed.code == 0, deployed.err
    state = deployed.json()
    assert state["state"] == "running" and state["ready_replicas"] == 2 and state["namespace"] == k8s.namespace
    assert state["autoscaler"]["min_replicas"] == 2 and state["auth_enabled"] is True
    test = mlctl("-o", "json", "service", "test", "diabetes")
    assert test.code == 0, test.err
    assert test.json()["passed"] is True
    again = mlctl("apply", "-f", str(diabetes), *SETS)
    assert again.code == 0 and "no changes" in again.err + again.out, again.err

    key = json.loads(Path(state["keys_file"]).read_text())["primary"]
    body = json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}).encode()
    _retrain(diabetes.parent, alpha=0.1)
    with traffic(k8s, "diabetes", key, body) as seen:
        updated = mlctl("-o", "json", "service", "update", "-f", str(diabetes), *SETS, "--timeout", "240")
    assert updated.code == 0, updated.err
    assert updated.json()["models"] == ["sklearn_regression_model:2"]
    assert seen["failures"] == [] and seen["ok"] > 20, seen["failures"][:5]
    assert len(seen["answers"]) == 2  # the old model's answer, then the new one's
    assert seen["min_ready"] >= 2
    serving = sorted(p.metadata.name for p in k8s.pods("diabetes"))

    # a broken update (init() raises): rolled back, the same pods serving throughout
    (diabetes.parent / "score.py").write_text("def init():\n    raise RuntimeError('canary-init-broke')\n"
                                              "def run(raw):\n    return raw\n")  # fmt: skip
    with traffic(k8s, "diabetes", key, body) as seen:
        broken = mlctl("service", "update", "-f", str(diabetes), *SETS, "--timeout", "120")
    assert broken.code == 7, broken.err
    assert "init failed" in broken.err and ("CrashLoopBackOff" in broken.err or "exit code" in broken.err)
    assert "canary-init-broke" in broken.err and "rolled back" in broken.err, broken.err
    assert seen["failures"] == [] and seen["min_ready"] >= 2
    assert wait_until(lambda: sorted(p.metadata.name for p in k8s.pods("diabetes")) == serving, 60)
    show = mlctl("-o", "json", "service", "show", "diabetes").json()
    assert show["models"] == ["sklearn_regression_model:2"] and show["ready_replicas"] == 2

    logs = mlctl("service", "logs", "diabetes", "--tail", "5")
    assert logs.code == 0
    assert set(serving) <= {line.split("]")[0][1:] for line in logs.out.splitlines()}  # both replicas
    _keys_rotate_without_restart(k8s, serving, body)

    deleted = mlctl("service", "delete", "diabetes")
    assert deleted.code == 0, deleted.err
    assert k8s.objects("diabetes") == []
    assert mlctl("service", "delete", "diabetes").code == 0  # idempotent


def _keys_rotate_without_restart(k8s: Cluster, serving: list[str], body: bytes) -> None:
    rotated = mlctl("-o", "json", "service", "keys", "diabetes", "--regenerate", "primary", "--reveal")
    assert rotated.code == 0, rotated.err
    new_key = rotated.json()["primary_key"]
    address = _endpoints(k8s, "diabetes")[0]
    headers = {"Authorization": f"Bearer {new_key}", "Content-Type": "application/json"}
    assert wait_until(lambda: post(f"http://{address}/score", body, headers)[0] == 200, 90, 1)
    assert sorted(p.metadata.name for p in k8s.pods("diabetes")) == serving
    assert all(not c.restart_count for p in k8s.pods("diabetes") for c in p.status.container_statuses)
    command = [sys.executable, "-m", "mlctl", "service", "logs", "diabetes", "--follow", "--tail", "1"]
    followed = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert followed.stdout is not None
        prefixes = {followed.stdout.readline().split("]")[0][1:] for _ in range(2)}
        assert prefixes == set(serving)
    finally:
        followed.kill()
        followed.communicate()


def _yaml_docs(text: str) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    docs = [d for d in YAML(typ="safe").load_all(text) if d]
    kubectl = subprocess.run(
        ["/tmp/k8s/bin/kubectl", "--kubeconfig", "/tmp/k8s/kubeconfig", "apply", "--dry-run=server", "-f", "-"],
        input=text,
        capture_output=True, text=True,
    )  # fmt: skip
    assert kubectl.returncode == 0, kubectl.stderr
    return docs
