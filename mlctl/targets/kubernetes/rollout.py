"""Waiting for a Deployment's rollout, and telling why it fails (apps/v1 semantics).

A rollout is complete when the controller has observed the latest generation and every desired
replica is updated, available and ready (as ``kubectl rollout status``). It has failed when a pod
of the new template cannot pull its image (ErrImagePull/ImagePullBackOff/InvalidImageName),
crashes (``init()`` raised: CrashLoopBackOff, or a non-zero exit), cannot be created
(CreateContainerConfigError), or is not ready within the timeout.
"""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlctl.errors import DeploymentError
from mlctl.output import Reporter
from mlctl.targets.kubernetes import tls
from mlctl.targets.kubernetes.cluster import TIMEOUT, Cluster, service_pods, translate
from mlctl.targets.kubernetes.forward import forwarded
from mlctl.targets.kubernetes.render import CONTAINER, FINGERPRINT, LABEL, MODELS

_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
_CONFIG = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
LOG_LINES = 30
ROLLBACK_TIMEOUT_S = 180.0
_REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Failure:
    """Why a rollout failed: ``phase`` (image pull, init, readiness), the pod, its reason, log lines."""

    phase: str
    pod: str
    reason: str
    lines: tuple[str, ...] = ()

    def error(self, service: str, *, rolled_back: bool) -> DeploymentError:
        """The DeploymentError (exit 7) reporting this failure."""
        after = "; rolled back to the previous version, which kept serving" if rolled_back else ""
        hints = {
            "image pull": "check the image name and that the cluster can pull from the registry "
            "(imagePullSecrets: MLCTL_REGISTRY_USERNAME/PASSWORD)",
            "init": "fix the entry script's init(); the lines above are its last output",
            "readiness": "init() may be slow: raise --timeout or initial_delay_seconds",
        }
        return DeploymentError(
            f"service {service!r}: {self.phase} failed: pod {self.pod}: {self.reason}{after}",
            phase=self.phase,
            details=list(self.lines),
            hint=hints.get(self.phase),
        )


def wait(cluster: Cluster, name: str, *, timeout_s: float, progress: Callable[[str], None]) -> Failure | None:
    """Wait for the rollout of Deployment ``name``; returns None when complete, else the Failure."""
    apps = cluster.apps()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            dep = apps.read_namespaced_deployment(name, cluster.namespace, _request_timeout=TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, cluster, verb="get", resource="deployments.apps") from None
        if complete(dep):
            return None
        failure = diagnose(cluster, name, dep)
        if failure is not None:
            return failure
        st = dep.status
        progress(f"{st.updated_replicas or 0} updated, {st.ready_replicas or 0} ready of {dep.spec.replicas}")
        if time.monotonic() > deadline:
            pod = _new_pods(cluster, name, dep)
            return Failure(
                "readiness",
                pod[0].metadata.name if pod else name,
                f"not ready within {timeout_s:.0f}s",
                tuple(_log_tail(cluster, pod[0]) if pod else ()),
            )
        time.sleep(0.5)


def complete(dep: Any) -> bool:
    """Whether Deployment ``dep`` (a V1Deployment) has fully rolled out."""
    st, want = dep.status, dep.spec.replicas or 0
    return bool(
        (st.observed_generation or 0) >= (dep.metadata.generation or 0)
        and (st.updated_replicas or 0) == want
        and (st.replicas or 0) == want
        and (st.available_replicas or 0) == want
        and (st.ready_replicas or 0) == want
    )


def diagnose(cluster: Cluster, name: str, dep: Any) -> Failure | None:
    """The failure of a pod of the Deployment's newest template, if one has failed."""
    for pod in _new_pods(cluster, name, dep):
        for status in pod.status.container_statuses or []:
            if status.name != CONTAINER:
                continue
            waiting = status.state.waiting if status.state else None
            reason = waiting.reason if waiting else None
            message = (waiting.message or "") if waiting else ""
            if reason in _PULL:
                return Failure("image pull", pod.metadata.name, f"{reason}: {message}".strip(": "))
            if reason in _CONFIG:
                return Failure("init", pod.metadata.name, f"{reason}: {message}".strip(": "))
            last = status.last_state.terminated if status.last_state else None
            if reason == "CrashLoopBackOff" or (status.restart_count and last is not None and last.exit_code):
                code = f" (exit code {last.exit_code})" if last is not None else ""
                why = "CrashLoopBackOff" if reason == "CrashLoopBackOff" else "container exited"
                return Failure(
                    "init",
                    pod.metadata.name,
                    f"{why}{code}: the entry script failed to load or init() raised",
                    tuple(_log_tail(cluster, pod, previous=True)),
                )
    return None


def _new_pods(cluster: Cluster, name: str, dep: Any) -> list[Any]:
    """Pods of the ReplicaSet of the Deployment's current revision."""
    revision = (dep.metadata.annotations or {}).get(_REVISION)
    try:
        sets = (
            cluster.apps()
            .list_namespaced_replica_set(cluster.namespace, label_selector=f"{LABEL}={name}", _request_timeout=TIMEOUT)
            .items
        )
        current = [rs for rs in sets if (rs.metadata.annotations or {}).get(_REVISION) == revision]
        if not current:
            return []
        template_hash = current[0].metadata.labels.get("pod-template-hash")
        pods = (
            cluster.core()
            .list_namespaced_pod(
                cluster.namespace,
                label_selector=f"{LABEL}={name},pod-template-hash={template_hash}",
                _request_timeout=TIMEOUT,
            )
            .items
        )
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="list", resource="pods") from None
    return sorted(pods, key=lambda p: p.metadata.name)


def _log_tail(cluster: Cluster, pod: Any, *, previous: bool = False) -> list[str]:
    """The last lines a pod's container wrote, or []. ``previous``: the crashed run's (its log can
    take a moment to be readable: tried for a few seconds), the current run's only if it never is."""
    tries = [True] * 6 + [False] if previous else [False]
    for attempt, prev in enumerate(tries):
        try:
            text = cluster.core().read_namespaced_pod_log(
                pod.metadata.name, cluster.namespace, container=CONTAINER, tail_lines=LOG_LINES,
                previous=prev, _request_timeout=TIMEOUT,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - no log (yet)
            text = ""
        # the kubelet answers 200 with this line while a restarting container's log is unreadable
        if text and str(text).strip() and not str(text).startswith("unable to retrieve container logs"):
            return str(text).splitlines()[-LOG_LINES:]
        if attempt < len(tries) - 1:
            time.sleep(0.5 * (attempt + 1))
    return []


def ready_pods(cluster: Cluster, name: str) -> list[Any]:
    """Running, ready pods of service ``name`` that are not terminating, newest first."""
    pods = service_pods(cluster, name)
    ready = [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return sorted(ready, key=lambda p: p.metadata.creation_timestamp, reverse=True)


def check_readyz(cluster: Cluster, name: str) -> None:
    """GET /readyz of a ready pod of ``name`` through a port-forward. Raises DeploymentError."""
    pods = ready_pods(cluster, name)
    port = int(pods[0].spec.containers[0].ports[0].container_port) if pods else 0
    if not pods:
        raise DeploymentError(f"service {name!r}: no ready pod after the rollout", phase="readiness")
    web = tls.scheme(pods[0].spec)
    # this very pod, reached through the API server: its certificate need not name 127.0.0.1
    context = ssl._create_unverified_context() if web == "https" else None  # noqa: S323
    with forwarded(cluster, pods[0].metadata.name, port) as local:
        try:
            with urllib.request.urlopen(f"{web}://127.0.0.1:{local}/readyz", timeout=10, context=context) as answer:
                if answer.status == 200:
                    return
        except OSError as exc:
            raise DeploymentError(
                f"service {name!r}: /readyz did not answer through a port-forward: {exc}",
                phase="readiness",
                hint="is pods/portforward allowed for you?",
            ) from None


def roll_back(cluster: Cluster, previous: dict[str, Any], reporter: Reporter) -> None:
    """Restore the previous revision as ``kubectl rollout undo`` does: the Deployment's pod
    template becomes that revision's ReplicaSet's template (so the controller scales that very
    ReplicaSet, whose pods kept serving, instead of starting new ones), with its annotations."""
    meta = previous["metadata"]
    name = meta["name"]
    template = _revision_template(cluster, name, previous) or previous["spec"]["template"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in (FINGERPRINT, MODELS)}
    patch = [{"op": "replace", "path": "/spec/template", "value": template}]
    patch += [{"op": "add", "path": f"/metadata/annotations/{k.replace('/', '~1')}", "value": v}
              for k, v in annotations.items()]  # fmt: skip
    with reporter.step("rolling back to the previous version") as progress:
        try:
            cluster.apps().patch_namespaced_deployment(
                name,
                cluster.namespace,
                patch,
                field_manager="mlctl",
                _content_type="application/json-patch+json",
                _request_timeout=TIMEOUT,
            )
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, cluster, verb="patch", resource="deployments.apps") from None
        wait(cluster, name, timeout_s=ROLLBACK_TIMEOUT_S, progress=progress)
        tls.prune(cluster, name)  # the failed update's TLS Secret, if it had one


def _revision_template(cluster: Cluster, name: str, previous: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of the ReplicaSet of ``previous``'s revision, without its hash label."""
    revision = (previous["metadata"].get("annotations") or {}).get(_REVISION)
    try:
        sets = (
            cluster.apps()
            .list_namespaced_replica_set(cluster.namespace, label_selector=f"{LABEL}={name}", _request_timeout=TIMEOUT)
            .items
        )
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="list", resource="replicasets.apps") from None
    for rs in sets:
        if revision is not None and (rs.metadata.annotations or {}).get(_REVISION) == revision:
            template: dict[str, Any] = cluster.api.sanitize_for_serialization(rs.spec.template)
            template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
            return template
    return None
