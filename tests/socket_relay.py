"""A test-only way from the test cluster's pods to a server on the host, whose loopback-only pod
network routes nothing off a pod (scripts/k8s/README.md): a relay inside the pod (``POD_RELAY``, run
by a sidecar container) takes TCP connections on the pod's 127.0.0.1 and forwards each to a Unix
socket on a ``hostPath`` volume; on the host, ``unix_to_tcp`` forwards each connection on that
socket to the server's TCP port on 127.0.0.1. Nothing but loopback and a file is involved."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# python -c POD_RELAY LISTEN_PORT SOCKET_PATH (inside the pod, with the service image's Python)
POD_RELAY = """
import socket, sys, threading

def pipe(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for end in (sink, source):
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    client, _ = listener.accept()
    upstream = socket.socket(socket.AF_UNIX)
    try:
        upstream.connect(sys.argv[2])
    except OSError:
        client.close()
        continue
    for ends in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=ends, daemon=True).start()
"""


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for end in (sink, source):
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@contextmanager
def unix_to_tcp(path: Path, port: int) -> Iterator[None]:
    """While the block runs, accept connections on Unix socket ``path`` (anyone may connect: the
    pod's user is not ours) and forward each to 127.0.0.1:``port``."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    os.chmod(path, 0o666)
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()
    opened: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                client.close()
                continue
            opened.extend((client, upstream))
            for ends in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=ends, daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for end in opened:
            end.close()
        path.unlink(missing_ok=True)
