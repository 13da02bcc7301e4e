"""A local TCP port relayed to a pod's port through the API server (as ``kubectl port-forward``).

Each connection accepted on ``127.0.0.1:<free port>`` opens its own port-forward stream
(``kubernetes.stream.portforward``, the API server's ``pods/portforward`` subresource) and
copies bytes both ways until either side closes, so any HTTP client (urllib in
``mlctl.services.run_test``) can talk to the pod without exposing the service.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlctl.targets.kubernetes.cluster import Cluster


@contextmanager
def forwarded(cluster: Cluster, pod: str, port: int) -> Iterator[int]:
    """Relay a free local port to ``pod``'s ``port`` while the block runs; yields the local port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    thread = threading.Thread(target=_accept, args=(listener, stop, cluster, pod, port), daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        listener.close()
        thread.join(2)


def _accept(listener: socket.socket, stop: threading.Event, cluster: Cluster, pod: str, port: int) -> None:
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_relay, args=(conn, cluster, pod, port), daemon=True).start()


def _relay(conn: socket.socket, cluster: Cluster, pod: str, port: int) -> None:
    from kubernetes.stream import portforward

    try:
        pf = portforward(cluster.core().connect_get_namespaced_pod_portforward, pod, cluster.namespace, ports=str(port))
        remote = pf.socket(port)
    except Exception:  # noqa: BLE001 - the client sees the connection close
        conn.close()
        return
    try:
        _copy(conn, remote)
    finally:
        conn.close()
        remote.close()
        _close(pf)


def _copy(a: socket.socket, b: Any) -> None:
    b.setblocking(True)
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 60)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


def _close(pf: Any) -> None:
    try:
        pf.close()
    except Exception:  # noqa: BLE001,S110 - closing an already closed stream
        pass
