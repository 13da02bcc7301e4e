"""A service's state as the cluster reports it: its Deployment, Service and HPA (labels and
annotations are the truth; nothing is read from the local record)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlctl.targets import ServiceState
from mlctl.targets.kubernetes.cluster import TIMEOUT, Cluster
from mlctl.targets.kubernetes.render import FINGERPRINT, MODELS
from mlctl.targets.kubernetes.tls import local_cert, scheme


def service_state(
    cluster: Cluster, dep: Any, *, keys_file: str | None, home: Path | None = None, fetch: bool = True
) -> ServiceState:
    """The ServiceState of Deployment ``dep`` (a V1Deployment): ``running`` when a replica is
    ready, else ``unhealthy``; details give replicas, the HPA, the image and the endpoints, and
    with TLS (https scoring URI) a local copy of the certificate under ``home`` (fetched from its
    Secret when missing and ``fetch``)."""
    name, namespace = dep.metadata.name, dep.metadata.namespace
    annotations = dep.metadata.annotations or {}
    container = dep.spec.template.spec.containers[0]
    port = int(container.ports[0].container_port)
    st = dep.status
    ready = st.ready_replicas or 0
    lb, service = _service(cluster, name, namespace)
    host = lb or f"{name}.{namespace}.svc.cluster.local"
    web = scheme(dep.spec.template.spec)
    created = dep.metadata.creation_timestamp
    conditions = {c.type: c for c in st.conditions or []}
    progressing = conditions.get("Progressing")
    updated = progressing.last_update_time if progressing is not None else created
    return ServiceState(
        name=name,
        target="kubernetes",
        state="running" if ready > 0 else "unhealthy",
        scoring_uri=f"{web}://{host}:{port}/score",
        swagger_uri=f"{web}://{host}:{port}/swagger.json",
        models=tuple(filter(None, annotations.get(MODELS, "").split(","))),
        environment=container.image,
        created_at=created.isoformat() if created else "",
        updated_at=updated.isoformat() if updated else "",
        details={
            "namespace": namespace,
            "cluster": cluster.where,
            "image": container.image,
            "port": port,
            "ready_replicas": ready,
            "desired_replicas": dep.spec.replicas,
            "updated_replicas": st.updated_replicas or 0,
            "autoscaler": _hpa(cluster, name, namespace),
            "service_type": service,
            "load_balancer": lb,
            "auth_enabled": keys_file is not None,
            "keys_file": keys_file,
            "tls_cert": local_cert(cluster, home, dep, fetch=fetch) if home is not None else None,
        },
        fingerprint=json.loads(annotations.get(FINGERPRINT, "{}")),
    )


def _service(cluster: Cluster, name: str, namespace: str) -> tuple[str | None, str | None]:
    """(load balancer address or None, Service type or None)."""
    try:
        svc = cluster.core().read_namespaced_service(name, namespace, _request_timeout=TIMEOUT)
    except Exception:  # noqa: BLE001 - no Service: the state says so
        return None, None
    ingress = (svc.status.load_balancer.ingress or []) if svc.status and svc.status.load_balancer else []
    address = next((i.ip or i.hostname for i in ingress if i.ip or i.hostname), None)
    return address, svc.spec.type


def _hpa(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    """The HPA (read through autoscaling/v1, which every cluster serves; the v2 fields come in its
    annotations): min/max/current/desired replicas, the metric (``cpu``, or a Pods metric's name),
    ``last_scale_time``, ``last_scaling`` (the newest SuccessfulRescale event: ``{time, message}``),
    and ``problem`` (why it cannot scale now, e.g. no metrics API), or None without an HPA."""
    from kubernetes import client

    try:
        hpa: Any = client.AutoscalingV1Api(cluster.api).read_namespaced_horizontal_pod_autoscaler(
            name, namespace, _request_timeout=TIMEOUT
        )
    except Exception:  # noqa: BLE001 - no autoscaler
        return None
    annotations = hpa.metadata.annotations or {}
    status = hpa.status
    return {
        "min_replicas": hpa.spec.min_replicas,
        "max_replicas": hpa.spec.max_replicas,
        "current_replicas": status.current_replicas if status else None,
        "desired_replicas": status.desired_replicas if status else None,
        "metric": _metric(hpa.spec.target_cpu_utilization_percentage, annotations),
        "target_cpu_utilization": hpa.spec.target_cpu_utilization_percentage,
        "last_scale_time": status.last_scale_time.isoformat() if status and status.last_scale_time else None,
        "last_scaling": _last_rescale(cluster, name, namespace),
        "problem": _problem(annotations),
    }


def _metric(cpu_target: int | None, annotations: dict[str, str]) -> str | None:
    if cpu_target is not None:
        return "cpu"
    for metric in json.loads(annotations.get("autoscaling.alpha.kubernetes.io/metrics", "[]")):
        if metric.get("type") == "Pods":
            return str(metric["pods"].get("metricName") or metric["pods"].get("metric", {}).get("name"))
    return None


def _problem(annotations: dict[str, str]) -> str | None:
    """The message of a False condition (AbleToScale, ScalingActive), e.g. FailedGetPodsMetric."""
    for condition in json.loads(annotations.get("autoscaling.alpha.kubernetes.io/conditions", "[]")):
        if condition.get("type") in ("AbleToScale", "ScalingActive") and condition.get("status") == "False":
            return f"{condition.get('reason')}: {condition.get('message')}"
    return None


def _last_rescale(cluster: Cluster, name: str, namespace: str) -> dict[str, str] | None:
    """The newest ``SuccessfulRescale`` event of the HPA (events last about an hour), or None."""
    selector = f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={name}"
    try:
        events = cluster.core().list_namespaced_event(namespace, field_selector=selector, _request_timeout=TIMEOUT)
    except Exception:  # noqa: BLE001 - events are optional information
        return None
    found = [
        (e.last_timestamp or e.event_time or e.first_timestamp, e.message)
        for e in events.items
        if e.reason == "SuccessfulRescale"
    ]
    if not found:
        return None
    when, message = max(found, key=lambda pair: str(pair[0]))
    return {"time": when.isoformat() if when else "", "message": str(message)}
