"""Autoscaling on the test cluster, shared by tests/test_kubernetes_autoscale.py and
bench/kubernetes.py: a small service whose ``run()`` burns CPU or sleeps as asked, bounded load
on its ready endpoints (the pods' IPs from the Service's EndpointSlices, as kube-proxy routes),
short HPA ``behavior`` windows, and waits on the Deployment's ready replicas."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NAME = "k8s-scale"
SCRIPT = """
import json, time

def init():
    pass

def run(raw):
    asked = json.loads(raw)
    end = time.process_time() + asked.get("burn", 0)
    while time.process_time() < end:
        pass
    time.sleep(asked.get("sleep", 0))
    return {"ok": True}
"""
# cpu: request 100m, target 50 % of it; concurrency: target 50 % of 2 requests per replica (1 in flight)
METRIC_SETS = {
    "cpu": {"autoscale_metric": "cpu", "autoscale_target_utilization": 50},
    "concurrency": {"autoscale_metric": "concurrency", "autoscale_target_utilization": 50,
                    "replica_max_concurrent_requests": 2},
}  # fmt: skip
# the load each metric scales on: ~0.2 core in all (4x the CPU target), or ~3 requests in flight (3x)
LOADS = {"cpu": ({"burn": 0.02}, 1, 0.08), "concurrency": ({"sleep": 2.0}, 3, 0.0)}  # body, clients, pause (s)


def write_service(folder: Path, target: str, metric: str) -> Path:
    """The service's folder (score.py, model, requirements) and its spec; returns the spec file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(SCRIPT)
    (folder / "model.txt").write_text("v1")
    (folder / "requirements.txt").write_text("")
    config = {"port": 8890, "workers": 1, "auth_enabled": False, "period_seconds": 1, "cpu_cores": 0.1,
              "autoscale_min_replicas": 1, "autoscale_max_replicas": 2, "autoscale_refresh_seconds": 1,
              "max_request_wait_time": 0, **METRIC_SETS[metric]}  # fmt: skip
    spec = {"apiVersion": "mlctl/v1", "kind": "Service", "name": NAME, "target": target,
            "model_files": ["model.txt"],
            "inference_config": {"entry_script": "score.py", "requirements": "requirements.txt"},
            "deployment_config": config}  # fmt: skip
    path = folder / "service.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def short_windows(api: Any, namespace: str, name: str = NAME) -> None:
    """Zero stabilization windows on the HPA (Kubernetes' scale-down default is 300 s), keeping
    mlctl's policies (100 % per ``autoscale_refresh_seconds``)."""
    from kubernetes import dynamic

    hpas = dynamic.DynamicClient(api).resources.get(api_version="autoscaling/v2beta2", kind="HorizontalPodAutoscaler")
    patch = {"spec": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                                   "scaleDown": {"stabilizationWindowSeconds": 0}}}}  # fmt: skip
    hpas.patch(body=patch, name=name, namespace=namespace, content_type="application/merge-patch+json")


def endpoints(api: Any, namespace: str, service: str = NAME) -> list[str]:
    """Ready endpoints of the Service from its EndpointSlices: ``POD_IP:PORT``."""
    from kubernetes import dynamic

    slices = dynamic.DynamicClient(api).resources.get(api_version="discovery.k8s.io/v1beta1", kind="EndpointSlice")
    found = []
    for item in slices.get(namespace=namespace, label_selector=f"kubernetes.io/service-name={service}").items:
        port = item.ports[0].port
        for endpoint in item.endpoints or []:
            if endpoint.conditions is None or endpoint.conditions.ready is not False:
                found += [f"{address}:{port}" for address in endpoint.addresses]
    return sorted(found)


@contextmanager
def load(api: Any, namespace: str, metric: str, *, limit_s: float) -> Iterator[dict[str, int]]:
    """``LOADS[metric]`` on the service's ready endpoints while the block runs, for at most
    ``limit_s`` seconds (then the clients stop on their own); yields the counters ``ok``/``failed``."""
    body, clients, pause = LOADS[metric]
    data = json.dumps(body).encode()
    seen = {"ok": 0, "failed": 0}
    stop = threading.Event()
    deadline = time.monotonic() + limit_s

    def client() -> None:
        turn = 0
        while not stop.is_set() and time.monotonic() < deadline:
            ready = endpoints(api, namespace)
            turn += 1
            if not ready:
                time.sleep(0.2)
                continue
            request = urllib.request.Request(f"http://{ready[turn % len(ready)]}/score", data=data,
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    seen["ok" if answer.status == 200 else "failed"] += 1
            except OSError:
                seen["failed"] += 1
            stop.wait(pause)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)


def wait_replicas(apps: Any, namespace: str, count: int, timeout_s: float, name: str = NAME) -> float | None:
    """Seconds until the Deployment wants ``count`` replicas and has exactly that many ready (None: timed out)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        dep = apps.read_namespaced_deployment(name, namespace)
        if dep.spec.replicas == count and (dep.status.ready_replicas or 0) == count:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def hpa_state(api: Any, namespace: str, name: str = NAME) -> dict[str, Any]:
    """The HPA's status and conditions (autoscaling/v2beta2), for failure messages."""
    from kubernetes import dynamic

    hpas = dynamic.DynamicClient(api).resources.get(api_version="autoscaling/v2beta2", kind="HorizontalPodAutoscaler")
    status: dict[str, Any] = hpas.get(name=name, namespace=namespace).to_dict().get("status", {})
    return status
