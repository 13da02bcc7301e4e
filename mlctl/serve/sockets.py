"""Listening, probe and control sockets of ``python -m mlctl.serve`` (see its module docstring).

The public port is bound once per worker with ``SO_REUSEPORT``; a zero-downtime update hands the
listening sockets from the old server to the new one over a Unix control socket (SCM_RIGHTS), as
gunicorn's binary upgrade does. The status file tells a deployer which private probe port is this
server's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path


def public_sockets(args: argparse.Namespace) -> list[socket.socket]:
    """The inherited listening sockets, plus new ones on the same port until there is one per worker.

    A fresh server first proves the port free with an exclusive bind: SO_REUSEPORT alone would let
    it share the port with another server of the same user."""
    fds = list(args.listen_fd or [])
    if args.inherit_from is not None and args.inherit_from.exists():
        fds += receive_listen_fds(args.inherit_from)  # from a server in another container, same kernel
    inherited = [socket.socket(fileno=fd) for fd in fds]
    if not inherited:
        bind(args.host, args.port, reuse_port=False).close()
    missing = max(0, args.workers - len(inherited))
    return inherited + [bind(args.host, args.port, reuse_port=True) for _ in range(missing)]


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when the host has a colon), inheritable by children.

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def short_unix_path(path: Path) -> Iterator[str]:
    """``path`` spelled short enough for AF_UNIX (108 bytes): through /proc/self/fd/N of its folder."""
    if len(str(path)) < 100:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def control_socket(path: Path) -> socket.socket:
    """A Unix socket at ``path`` (mode 0600, any old file replaced) that hands out the listening sockets."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with short_unix_path(path) as short:
        sock.bind(short)
    os.chmod(path, 0o600)  # only this user may take the listening socket
    sock.listen(4)
    return sock


def receive_listen_fds(path: Path, timeout_s: float = 5.0) -> list[int]:
    """Ask the server behind control socket ``path`` for its listening sockets; returns new fds.

    Raises:
        OSError: no server answers there.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        with short_unix_path(path) as short:
            sock.connect(short)
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 64, 64)
    if not fds:
        raise OSError(f"no socket received from {path}")
    return list(fds)


def write_status(path: Path, port: int, probe_port: int) -> None:
    """Atomically write ``{"pid", "port", "probe_port"}`` (JSON) to ``path`` for the deployer to read."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port, "probe_port": probe_port}))
    os.replace(tmp, path)
