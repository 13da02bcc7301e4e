"""Log lines of every replica of a service, each prefixed with its pod (``pods/log``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from mlctl.targets.kubernetes.cluster import TIMEOUT, Cluster, service_pods, translate
from mlctl.targets.kubernetes.render import CONTAINER

_END = object()


def pod_logs(cluster: Cluster, name: str, *, follow: bool, tail: int | None) -> Iterator[str]:
    """``[POD] line`` for every pod of service ``name`` not being deleted (in name order; ``tail``: last N
    lines per pod). ``follow``: one stream per pod running now, lines as they come, until every
    stream ends (Ctrl-C stops it)."""
    pods = service_pods(cluster, name)
    # pods being deleted (a rolled-back or replaced ReplicaSet's) are not the service any more
    pods = sorted(
        (
            p
            for p in pods
            if p.status.phase in ("Running", "Succeeded", "Failed") and p.metadata.deletion_timestamp is None
        ),
        key=lambda p: p.metadata.name,
    )
    if follow:
        return _follow(cluster, [p.metadata.name for p in pods], tail)
    return _read_all(cluster, [p.metadata.name for p in pods], tail)


def _read_all(cluster: Cluster, pods: list[str], tail: int | None) -> Iterator[str]:
    for pod in pods:
        try:
            text = cluster.core().read_namespaced_pod_log(
                pod, cluster.namespace, container=CONTAINER, tail_lines=tail, _request_timeout=TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) in (400, 404):  # the pod stopped meanwhile: no log to read
                continue
            raise translate(exc, cluster, verb="get", resource="pods/log") from None
        for line in str(text or "").splitlines():
            yield f"[{pod}] {line}\n"


def _follow(cluster: Cluster, pods: list[str], tail: int | None) -> Iterator[str]:
    lines: queue.Queue[Any] = queue.Queue()
    for pod in pods:
        threading.Thread(target=_stream, args=(cluster, pod, tail, lines), daemon=True).start()
    open_streams = len(pods)
    while open_streams:
        item = lines.get()
        if item is _END:
            open_streams -= 1
            continue
        yield item


def _stream(cluster: Cluster, pod: str, tail: int | None, out: queue.Queue[Any]) -> None:
    try:
        response = cluster.core().read_namespaced_pod_log(
            pod, cluster.namespace, container=CONTAINER, tail_lines=tail, follow=True, _preload_content=False
        )
        buffer = b""
        for chunk in response.stream(4096):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                out.put(f"[{pod}] {line.decode(errors='replace')}\n")
        if buffer:
            out.put(f"[{pod}] {buffer.decode(errors='replace')}\n")
    except Exception as exc:  # noqa: BLE001 - the stream ended (pod gone, connection closed)
        out.put(f"[{pod}] (log stream ended: {type(exc).__name__})\n")
    finally:
        out.put(_END)
