"""Azurite, Microsoft's Azure Storage emulator (npm ``azurite`` 3.35.0), for the model data tests.

Installed into ``.cache/azurite`` by ``scripts/azurite-install.sh`` (``make azurite``, part of
``make test``; the fixture runs it too when missing). Runs the blob service only, on a free port
of 127.0.0.1, in memory (``--inMemoryPersistence``) unless given a folder (the outage test restarts
it and needs what was written before). The client pins API version ``API_VERSION``, the newest
Azurite 3.35 serves (the client's default is newer); Azurite's version check stays on.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
BIN = REPO / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
API_VERSION = "2025-11-05"
ACCOUNT = "devstoreaccount1"
# Azurite's documented development account key (public; not a secret)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    """One Azurite blob service; ``start``/``stop`` may be repeated (same port)."""

    def __init__(self, folder: Path, port: int, *, location: Path | None = None) -> None:
        self.folder = folder
        self.port = port
        self.location = location
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """The account's connection string (endpoint on 127.0.0.1)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def start(self) -> None:
        """Start it and wait until it accepts connections (30 s at most)."""
        if not BIN.exists():
            subprocess.run(["bash", str(REPO / "scripts" / "azurite-install.sh")], check=True)
        persistence = ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        command = [str(BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), *persistence, "--silent"]
        with (self.folder / f"azurite-{self.port}.log").open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"azurite exited with {self.proc.returncode}; see {self.folder}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail("azurite did not start within 30 s")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_texts(self) -> dict[str, str]:
        """Every blob of container ``modeldata``: name -> text (empty when there is no container)."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string, api_version=API_VERSION)
        container = service.get_container_client("modeldata")
        try:
            return {b.name: container.download_blob(b.name).readall().decode() for b in container.list_blobs()}
        except ResourceNotFoundError:
            return {}
