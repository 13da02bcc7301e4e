"""Compute targets: one module per target kind, behind one Protocol, listed in one registry.

Adding a target = one module here, one line in ``TARGETS`` (``mlctl/target_kinds.py``), one test file, one example spec;
the Service schema's ``target`` enum must equal ``TARGETS``' keys (a test checks it).

Driver contract (tested once for all drivers in ``tests/test_target_contract.py``):

* ``render`` is pure: it returns what ``deploy`` would run or send, and touches nothing.
* ``deploy`` blocks until the web service answers ``/readyz`` (unless ``wait`` is false), and on
  any failure (or Ctrl-C) leaves nothing running and no record behind.
* ``update`` keeps the old service serving until the new one is ready; a failed update leaves
  the old one untouched.
* ``status`` of an unknown service raises ``NotFoundError``; ``delete`` is idempotent and returns
  whether something was deleted.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlctl.spec.records import DeploymentConfig, ServiceSpec
from mlctl.target_kinds import TARGETS, refuse_retired

if TYPE_CHECKING:  # the registry (sqlite3) is not needed to resolve a target's name
    from mlctl.output import Reporter
    from mlctl.registry import ModelVersion, Registry


@dataclass(frozen=True)
class Deployment:
    """Everything a driver needs: the validated spec and the resolved model versions.

    ``fingerprint`` (component -> SHA-256, see ``mlctl.services.fingerprint``) is stored with the
    service, so ``apply``/``diff`` can tell an unchanged spec from a changed one.
    """

    spec: ServiceSpec
    models: tuple[ModelVersion, ...]
    fingerprint: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceState:
    """What a target reports about one web service (``to_dict`` is the ``--output json`` form).

    ``state``: ``running`` (process alive and ready), ``unhealthy`` (alive, not ready),
    ``failed`` (no longer running).
    """

    name: str
    target: str
    state: str
    scoring_uri: str
    swagger_uri: str
    models: tuple[str, ...]
    environment: str
    created_at: str
    updated_at: str
    details: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "target": self.target,
            "state": self.state,
            "scoring_uri": self.scoring_uri,
            "swagger_uri": self.swagger_uri,
            "models": list(self.models),
            "environment": self.environment,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **self.details,
        }


class TargetDriver(Protocol):
    """One compute target kind (see the module docstring for the contract)."""

    kind: str

    def render(self, deployment: Deployment) -> dict[str, Any]:
        """What ``deploy`` would run or send, as a JSON-ready dict. Pure."""
        ...

    def deploy(self, deployment: Deployment, reporter: Reporter, *, wait: bool, timeout_s: float) -> ServiceState:
        """Create the web service. Raises TargetError, DeploymentError, WaitTimeout."""
        ...

    def update(self, deployment: Deployment, reporter: Reporter, *, wait: bool, timeout_s: float) -> ServiceState:
        """Replace the running service with ``deployment`` without downtime."""
        ...

    def status(self, name: str) -> ServiceState:
        """The service's current state. Raises NotFoundError."""
        ...

    def list(self) -> Sequence[ServiceState]:
        """Every service this target runs."""
        ...

    def logs(self, name: str, *, follow: bool, tail: int | None) -> Iterator[str]:
        """The service's log lines (``follow``: keep yielding new ones). Raises NotFoundError."""
        ...

    def delete(self, name: str, reporter: Reporter, *, wait: bool = True, timeout_s: float = 30.0) -> bool:
        """Stop and remove the service; False when there was nothing to delete. ``timeout_s``: the
        grace period for in-flight requests before it is killed; ``wait``: block until it is gone."""
        ...


def server_options(
    d: DeploymentConfig,
    *,
    host: str,
    status_file: str,
    control_socket: str,
    keys_file: str | None = None,
    tls: tuple[str, str] | None = None,
) -> list[str]:
    """The ``python -m mlctl.serve`` options every target derives from the deployment
    configuration (one place, so no target forgets one); targets add their own after.

    ``keys_file`` (with ``auth_enabled``) and ``tls`` (certificate, key) are paths as the server
    sees them: a target may put them elsewhere (the docker target mounts them)."""
    options = [
        "--host",
        host,
        "--port",
        str(d.port),
        "--workers",
        str(d.workers),
        "--max-request-bytes",
        str(d.max_request_bytes),
        "--concurrency",
        str(d.concurrency_per_worker),
        "--queue",
        str(d.max_queue_per_worker),
        "--timeout-ms",
        str(d.scoring_timeout_ms),
        "--status-file",
        status_file,
        "--control-socket",
        control_socket,
    ]
    if d.max_request_wait_time:
        options += ["--max-wait-ms", str(d.max_request_wait_time)]
    if d.access_log:
        options.append("--access-log")
    if d.batch_size:
        options += ["--batch-size", str(d.batch_size), "--batch-wait-ms", str(d.batch_wait_ms)]
    if keys_file is not None:
        options += ["--keys-file", keys_file]
    if tls is not None:
        options += ["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]]
    return options


def test_record(spec: ServiceSpec) -> dict[str, Any] | None:
    """The spec's ``test`` block as stored with a service record (``mlctl service test NAME`` reads it)."""
    import base64

    test = spec.test
    if test is None:
        return None
    return {
        "body": base64.b64encode(test.body).decode(),
        "expected": test.expected,
        "has_expected": test.has_expected,
        "tolerance": test.tolerance,
    }


def driver_for(target: str | None, *, registry: Registry, home: Path) -> TargetDriver:
    """The driver of compute target ``target``: a configured name, a kind, or None (the default).

    Raises:
        TargetError: unknown target, or options its kind does not take.
    """
    from mlctl import config

    resolved = config.load().resolve(target)
    return driver_of_kind(resolved.kind, registry=registry, home=home, options=resolved.options)


def driver_of_kind(
    kind: str, *, registry: Registry, home: Path, options: Mapping[str, str] | None = None
) -> TargetDriver:
    """The driver of target kind ``kind`` with ``options`` (see ``options_of``).

    Raises:
        TargetError: unknown kind or option.
    """
    from mlctl.errors import TargetError

    refuse_retired(kind)
    if kind not in TARGETS:
        raise TargetError(f"unknown compute target kind {kind!r}", hint=f"kinds: {', '.join(TARGETS)}")
    unknown = sorted(set(options or {}) - set(options_of(kind)))
    if unknown:
        raise TargetError(
            f"target kind {kind!r} has no option {unknown[0]!r}",
            hint=f"options: {', '.join(options_of(kind)) or 'none'}",
        )
    module = importlib.import_module(TARGETS[kind])
    return module.Driver(registry, home, **dict(options or {}))  # type: ignore[no-any-return]


# deployment_config keys every web-service target honours; a driver module's ``DEPLOYMENT_KEYS``
# names the keys it honours (usually COMMON_KEYS plus its own).
COMMON_KEYS = frozenset(
    {
        "port",
        "workers",
        "concurrency_per_worker",
        "max_queue_per_worker",
        "scoring_timeout_ms",
        "access_log",
        "batching",
        "ssl_cert_pem_file",
        "ssl_key_pem_file",
        "cpu_cores",
        "memory_gb",
        "auth_enabled",
        "max_request_bytes",
        "environment_variables",
        "max_request_wait_time",
    }
)


def deployment_keys(kind: str) -> frozenset[str]:
    """The ``deployment_config`` keys target kind ``kind`` honours (its module's ``DEPLOYMENT_KEYS``)."""
    return frozenset(importlib.import_module(TARGETS[kind]).DEPLOYMENT_KEYS)


def check_supported(kind: str, spec: ServiceSpec) -> None:
    """Refuse deployment configuration keys that target kind ``kind`` cannot honour (never ignore
    them silently, as Azure ML v1 did), and image options (``inference_config.docker_file``, ...)
    on a target whose module sets ``BUILDS_IMAGES = False``.

    Raises:
        TargetError: the spec gives a key the target does not have; the hint names the targets that do.
    """
    from mlctl.errors import TargetError

    image_keys = sorted(spec.inference.image.given) if spec.inference else []
    if image_keys and not getattr(importlib.import_module(TARGETS[kind]), "BUILDS_IMAGES", True):
        raise TargetError(
            f"service {spec.name!r}: target kind {kind!r} builds no image, so it cannot honour "
            "inference_config." + ", inference_config.".join(image_keys),
            hint="deploy to a container target (docker), or remove them",
        )
    unsupported = sorted(spec.deployment.given - deployment_keys(kind))
    if not unsupported:
        return
    key = unsupported[0]
    elsewhere = [k for k in TARGETS if k != kind and key in deployment_keys(k)]
    raise TargetError(
        f"service {spec.name!r}: target kind {kind!r} does not support deployment_config."
        + ", deployment_config.".join(unsupported),
        hint=f"remove it, or deploy to a target that has it ({', '.join(elsewhere)})"
        if elsewhere
        else "remove it: no compute target of this mlctl has it",
    )


def options_of(kind: str) -> dict[str, str]:
    """The options target kind ``kind`` takes: name -> description (its module's ``OPTIONS``)."""
    return dict(importlib.import_module(TARGETS[kind]).OPTIONS)


TLS_FILES = ("tls-cert.pem", "tls-key.pem")  # each server's own copies, in its deploy folder


def uses_tls(spec: ServiceSpec) -> bool:
    """Whether the spec gives a TLS certificate and key (``ssl_cert_pem_file``, ``ssl_key_pem_file``)."""
    return bool(spec.deployment.ssl_cert_pem_file and spec.deployment.ssl_key_pem_file)


def tls_paths(spec: ServiceSpec, folder: Path | str) -> tuple[str, str] | None:
    """(certificate, key) of a server's TLS copies in its deploy ``folder``, as the server sees that
    folder (a target may mount it elsewhere); None without TLS."""
    return (f"{folder}/{TLS_FILES[0]}", f"{folder}/{TLS_FILES[1]}") if uses_tls(spec) else None


def copy_tls(spec: ServiceSpec, deploy_dir: Path, owner: tuple[int, int] | None = None) -> None:
    """Give one server its own 0600 copies of the spec's TLS certificate and key (owned by
    ``owner`` when given, as root), so a later failed update with new files cannot reach a server
    still running (it would read them again when it restarts). Nothing without TLS.

    Raises:
        SpecError: a file cannot be read.
    """
    d = spec.deployment
    if d.ssl_cert_pem_file and d.ssl_key_pem_file:
        for source, name in zip((d.ssl_cert_pem_file, d.ssl_key_pem_file), TLS_FILES, strict=True):
            _copy_private(source, deploy_dir / name, owner)


def _copy_private(source: Path, dest: Path, owner: tuple[int, int] | None) -> None:
    """Copy ``source`` to ``dest`` atomically, mode 0600, owned by ``owner`` when given (root).

    Raises:
        SpecError: ``source`` cannot be read.
    """
    from mlctl.errors import SpecError

    try:
        data = source.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {source}: {exc.strerror}", hint="check the path and its permissions") from None
    tmp = dest.with_name(f".{dest.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, dest)
