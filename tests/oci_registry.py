"""A real OCI registry for tests: Debian's ``docker-registry`` on a free port of 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port


@contextmanager
def run_registry(folder: Path, htpasswd: Path | None = None) -> Iterator[str]:
    """Run docker-registry on a free port of 127.0.0.1 (with ``htpasswd``: basic authentication)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no docker-registry (run `make docker-up` as root)")
    port = free_port()
    auth = f"auth:\n  htpasswd:\n    realm: mlctl-tests\n    path: {htpasswd}\n" if htpasswd else ""
    config = folder / f"registry-{port}.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / f'registry-{port}'}\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    with (folder / f"registry-{port}.log").open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except urllib.error.HTTPError:  # 401: up, and asking for credentials
                break
            except OSError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
