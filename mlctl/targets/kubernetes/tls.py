"""TLS on the kubernetes target (v1's ``ssl_enabled``, ``ssl_cert_pem_file``, ``ssl_key_pem_file``).

The certificate and key become a ``kubernetes.io/tls`` Secret (``tls.crt``, ``tls.key``) mounted
read-only at ``/run/mlctl-tls``; the scoring server serves https with them (its own TLS, as on the
docker and process targets), and the probes use ``scheme: HTTPS``. The Secret is named after its
content (``NAME-tls-<sha256 prefix>``), so an update with other files writes a new Secret and the
pods still serving keep theirs: a bad pair fails only the new pods (the server exits 3, the rollout
fails, the previous template, with its Secret, comes back). TLS Secrets no template refers to any
more are deleted after a rollout or rollback (``prune``) and with the service (``delete_all``).

``service test`` trusts the service's certificate (a local copy of the Secret's public
``tls.crt``, see ``local_cert``) besides the system's trust store (``SSL_CERT_FILE`` for your CA).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from mlctl.errors import SpecError
from mlctl.spec.records import ServiceSpec
from mlctl.targets.kubernetes.cluster import TIMEOUT, Cluster, translate
from mlctl.targets.kubernetes.render import LABEL, TLS_ROLE

VOLUME = "tls"


def inputs(spec: ServiceSpec, *, with_key: bool) -> dict[str, Any]:
    """The ``Inputs`` fields of the spec's TLS files: ``tls_secret`` (content-named), ``tls_cert``
    and, when ``with_key`` (apply, never render), ``tls_key``; {} without TLS.

    Raises:
        SpecError: a file cannot be read.
    """
    d = spec.deployment
    if not (d.ssl_cert_pem_file and d.ssl_key_pem_file):
        return {}
    cert, key = _read(d.ssl_cert_pem_file), _read(d.ssl_key_pem_file)
    digest = hashlib.sha256(cert + b"\0" + key).hexdigest()[:10]
    found: dict[str, Any] = {"tls_secret": f"{spec.name}-tls-{digest}", "tls_cert": cert}
    if with_key:
        found["tls_key"] = key
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}", hint="check the path and its permissions") from None


def secret_of(pod_spec: Any) -> str | None:
    """The TLS Secret a pod spec (a ``V1PodSpec``) mounts, or None: it serves http."""
    for volume in pod_spec.volumes or []:
        if volume.name == VOLUME and volume.secret is not None:
            return str(volume.secret.secret_name)
    return None


def scheme(pod_spec: Any) -> str:
    """``https`` when the pod spec mounts a TLS Secret, else ``http``."""
    return "https" if secret_of(pod_spec) else "http"


def _secrets(cluster: Cluster, name: str) -> list[Any]:
    try:
        return list(
            cluster.core()
            .list_namespaced_secret(
                cluster.namespace, label_selector=f"{LABEL}={name},{TLS_ROLE}=tls", _request_timeout=TIMEOUT
            )
            .items
        )
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="list", resource="secrets") from None


def prune(cluster: Cluster, name: str) -> None:
    """Delete the service's TLS Secrets that its live Deployment's template does not mount."""
    try:
        dep = cluster.apps().read_namespaced_deployment(name, cluster.namespace, _request_timeout=TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="get", resource="deployments.apps") from None
    keep = secret_of(dep.spec.template.spec)
    for secret in _secrets(cluster, name):
        if secret.metadata.name != keep:
            _delete(cluster, secret.metadata.name)


def delete_all(cluster: Cluster, name: str) -> bool:
    """Delete every TLS Secret of service ``name``; whether there was one."""
    found = _secrets(cluster, name)
    for secret in found:
        _delete(cluster, secret.metadata.name)
    return bool(found)


def _delete(cluster: Cluster, secret: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.core().delete_namespaced_secret(secret, cluster.namespace, _request_timeout=TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise translate(exc, cluster, verb="delete", resource="secrets") from None


def local_cert(cluster: Cluster, home: Path, dep: Any, *, fetch: bool) -> str | None:
    """A local copy of the certificate the service serves (public; for ``service test`` to trust),
    fetched from its TLS Secret when missing and ``fetch``; None without TLS (or not fetched)."""
    secret = secret_of(dep.spec.template.spec)
    if secret is None:
        return None
    path = home / "services" / dep.metadata.name / "tls" / f"{secret}.crt"
    if not path.exists():
        if not fetch:
            return None
        try:
            found = cluster.core().read_namespaced_secret(secret, cluster.namespace, _request_timeout=TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, cluster, verb="get", resource="secrets") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(found.data["tls.crt"]))
    return str(path)


def check_owned(cluster: Cluster, spec: ServiceSpec) -> None:
    """Raise ConflictError when the spec's TLS Secret name is taken by an object mlctl does not
    manage for this service (never overwritten)."""
    from mlctl.targets.kubernetes.cluster import check_owned as owned

    secret = inputs(spec, with_key=False).get("tls_secret")
    if secret:
        owned(
            cluster,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": cluster.namespace}},
            spec.name,
        )
