"""Autoscaling seen to scale on the real test cluster (tests/k8s_cluster.py) with its metrics APIs
(tests/metrics_api.py): the real HPA controller adds a replica under bounded load and removes it
after, for ``autoscale_metric: cpu`` (metrics.k8s.io) and ``concurrency`` (the pods'
``mlctl_requests_in_flight`` through custom.metrics.k8s.io). Each test takes 1-3 minutes: the
HPA controller re-evaluates every 15 s, a new pod starts in a few seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import mlctl
from k8s_autoscale import NAME, hpa_state, load, short_windows, wait_replicas, write_service
from k8s_cluster import KUBECONFIG, Cluster, k8s_fixture  # noqa: F401 - k8s_fixture: the k8s fixture


@pytest.fixture(scope="module")
def metrics_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The test cluster's metrics APIs, served and registered for this module only (elsewhere the
    HPAs of other tests' services keep their replica counts, as those tests expect)."""
    from k8s_cluster import _why_not

    reason = _why_not()
    if reason:
        pytest.skip(reason)
    from kubernetes import config
    from metrics_api import running

    yield from running(config.new_client_from_config(str(KUBECONFIG)), tmp_path_factory.mktemp("metrics-api"))


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["cpu", "concurrency"])
def test_the_hpa_scales_up_under_load_and_back_down_after(
    k8s: Cluster, metrics_api: None, tmp_path: Path, metric: str
) -> None:
    spec = write_service(tmp_path / "svc", "k8s-test", metric)
    deployed = mlctl("service", "deploy", "-f", str(spec), "--timeout", "180")
    assert deployed.code == 0, deployed.err
    short_windows(k8s.api, k8s.namespace)
    with load(k8s.api, k8s.namespace, metric, limit_s=200) as seen:
        up = wait_replicas(k8s.apps, k8s.namespace, 2, 180)
        assert up is not None, hpa_state(k8s.api, k8s.namespace)
        scaler = _autoscaler_once(lambda s: s["current_replicas"] == 2, 40)  # its status follows a sync later
    assert scaler["current_replicas"] == 2 and scaler["desired_replicas"] == 2, scaler
    assert scaler["metric"] == ("cpu" if metric == "cpu" else "mlctl_requests_in_flight")
    assert "New size: 2" in scaler["last_scaling"]["message"], scaler
    assert scaler["problem"] is None, scaler
    assert seen["ok"] > 0 and seen["failed"] == 0, seen
    down = wait_replicas(k8s.apps, k8s.namespace, 1, 150)
    assert down is not None, hpa_state(k8s.api, k8s.namespace)
    _autoscaler_once(lambda s: "New size: 1" in str(s["last_scaling"]), 40)
    table = mlctl("service", "show", NAME)
    assert table.code == 0 and "New size: 1" in " ".join(table.out.split()), table.out  # however it wraps
    assert mlctl("service", "delete", NAME).code == 0


def _autoscaler_once(condition: Any, timeout_s: float) -> dict[str, Any]:
    """``service show``'s autoscaler once ``condition`` holds for it (else the last seen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = mlctl("-o", "json", "service", "show", NAME)
        assert shown.code == 0, shown.err
        scaler: dict[str, Any] = shown.json()["autoscaler"]
        if condition(scaler) or time.monotonic() > deadline:
            return scaler
        time.sleep(2)
