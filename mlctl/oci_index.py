"""Compose a multi-platform image in a registry: an image index over per-platform manifests.

The classic Docker builder (and the engine's image store) hold one platform per image, so each
platform's variant is pushed on its own (``REPO:N-arm64``, ...) and the index ``REPO:N`` is then
written through the registry's HTTP API (OCI Distribution Spec v1.0 / Docker Registry HTTP API V2):
``GET /v2/REPO/manifests/TAG`` for each variant's manifest (its digest, size and media type), then
``PUT /v2/REPO/manifests/N`` with a Docker manifest list (``application/vnd.docker.distribution.
manifest.list.v2+json``; an OCI image index, ``application/vnd.oci.image.index.v1+json``, when the
variants are OCI manifests). Engines and edgeAgent pulling ``REPO:N`` get their platform's variant.

Authentication: HTTP Basic with the push's credentials, or the Bearer token flow the registry's
``WWW-Authenticate`` challenge asks for (Docker token authentication). Loopback registries are
spoken to over plain HTTP (as the engine does), others over HTTPS. Credentials are never printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from mlctl import platforms
from mlctl.errors import TargetError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_TIMEOUT = 30


def compose(host: str, repository: str, tag: str, variants: Mapping[str, str], auth: Mapping[str, str] | None) -> str:
    """Write the index ``host/repository:tag`` over ``variants`` (platform -> tag already pushed
    to the same repository); returns the index digest (``sha256:...``).

    Raises:
        TargetError: a variant's manifest is missing, or the registry refused the index (e.g. it
            does not accept manifest lists: the variants stay pushed under their own tags).
    """
    client = _Client(host, repository, auth)
    entries = []
    for platform, variant in variants.items():
        body, media_type = client.manifest(variant)
        entries.append(
            {
                "mediaType": media_type,
                "size": len(body),
                "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                "platform": platforms.oci(platform),
            }
        )
    index_type = OCI_INDEX if all(e["mediaType"] == OCI_MANIFEST for e in entries) else DOCKER_LIST
    body = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}, indent=3).encode()
    digest = client.put_manifest(tag, body, index_type)
    return digest or "sha256:" + hashlib.sha256(body).hexdigest()


def index(host: str, repository: str, tag: str, auth: Mapping[str, str] | None) -> dict[str, Any]:
    """The manifest (or index) document ``host/repository:tag`` as stored. Raises TargetError."""
    body, _ = _Client(host, repository, auth).manifest(tag, accept=(DOCKER_LIST, OCI_INDEX))
    return dict(json.loads(body))


class _Client:
    def __init__(self, host: str, repository: str, auth: Mapping[str, str] | None) -> None:
        loopback = re.match(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$", host) is not None
        self.base = f"{'http' if loopback else 'https'}://{host}/v2/{repository}"
        self.host, self.repository, self.auth = host, repository, auth
        self.authorization = _basic(auth)

    def manifest(self, tag: str, accept: tuple[str, ...] = (DOCKER_MANIFEST, OCI_MANIFEST)) -> tuple[bytes, str]:
        status, headers, body = self._send("GET", f"/manifests/{tag}", None, {"Accept": ", ".join(accept)})
        if status != 200:
            raise TargetError(
                f"{self.host}/{self.repository}:{tag}: the registry answered {status} to a manifest request",
                hint="was it pushed? `mlctl image push NAME:VERSION`",
            )
        return body, headers.get("Content-Type", "").split(";")[0] or DOCKER_MANIFEST

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> str | None:
        status, headers, answer = self._send("PUT", f"/manifests/{tag}", body, {"Content-Type": media_type})
        if status not in (200, 201):
            raise TargetError(
                f"{self.host} refused the image index {self.repository}:{tag} ({status}: "
                f"{answer.decode(errors='replace')[:200]})",
                hint="this registry may not accept multi-platform images: each platform's variant is "
                "pushed as NAME:VERSION-<arch>; or build one platform per version",
            )
        return headers.get("Docker-Content-Digest")

    def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in range(2):
            request = urllib.request.Request(self.base + path, data=body, method=method, headers=dict(headers))
            if self.authorization:
                request.add_header("Authorization", self.authorization)
            try:
                with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                challenge = error.headers.get("WWW-Authenticate", "")
                if error.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                    self.authorization = "Bearer " + self._token(challenge)
                    continue
                return error.code, dict(error.headers), error.read()
            except OSError as error:
                raise TargetError(
                    f"the registry {self.host} is unreachable: {error}", hint="is it running, and is the address right?"
                ) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _token(self, challenge: str) -> str:
        """Docker token authentication: GET realm?service=...&scope=... with Basic credentials."""
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {k: fields[k] for k in ("service", "scope") if k in fields}
        query.setdefault("scope", f"repository:{self.repository}:pull,push")
        request = urllib.request.Request(f"{fields.get('realm', '')}?{urllib.parse.urlencode(query)}")
        basic = _basic(self.auth)
        if basic:
            request.add_header("Authorization", basic)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                doc = json.loads(response.read())
        except (OSError, ValueError) as error:
            raise TargetError(f"getting a token from {self.host}'s authorization server failed: {error}") from None
        return str(doc.get("token") or doc.get("access_token") or "")


def _basic(auth: Mapping[str, str] | None) -> str | None:
    """The HTTP Basic ``Authorization`` value of the push's credentials, or None without a username."""
    if not auth or not auth.get("username"):
        return None
    pair = f"{auth['username']}:{auth.get('password', '')}".encode()
    return "Basic " + base64.b64encode(pair).decode()
