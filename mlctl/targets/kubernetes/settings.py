"""A spec's deployment configuration for the kubernetes target: Azure ML v1's
``AksWebservice.deploy_configuration`` defaults and validation rules, applied purely."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mlctl.errors import SpecError
from mlctl.spec.records import ServiceSpec

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # v1's namespace rule
_DNS_1035 = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")  # Service names


@dataclass(frozen=True)
class Settings:
    """A spec's deployment configuration with v1's AKS defaults applied and validated.

    Units: cores, GB, seconds (probes), percent (``target_utilization``). ``replicas`` is the
    fixed count (``num_replicas``) or, with autoscaling, the minimum."""

    namespace: str
    autoscale: bool
    replicas: int
    max_replicas: int
    refresh_s: int
    target_utilization: int
    metric: str  # "concurrency" (v1's: in-flight requests per replica) or "cpu"
    max_concurrent: int  # replica_max_concurrent_requests (v1 default 1): 100 % of the concurrency target
    cpu: float
    memory_gb: float
    cpu_limit: float | None
    memory_gb_limit: float | None
    gpu: int
    auth: bool
    service_type: str
    period_s: int
    initial_delay_s: int
    timeout_s: int
    success_threshold: int
    failure_threshold: int
    concurrency_per_worker: int
    max_wait_ms: int
    tls: bool = False


def settings(spec: ServiceSpec, default_namespace: str = "default") -> Settings:
    """v1 ``AksWebservice.deploy_configuration`` defaults and rules for ``spec``.

    Defaults: autoscaling on unless ``num_replicas`` is given (min 1, max 10, refresh 1 s,
    target 70 % of ``replica_max_concurrent_requests`` (1) in flight per replica, as v1's
    router scaled; ``autoscale_metric: cpu``: 70 % of the CPU request), ``cpu_cores`` 0.1,
    ``memory_gb`` 0.5, ``auth_enabled`` on, probes every 10 s
    with a 2 s timeout, 1 success, 3 failures, ``initial_delay_seconds`` 310 (the startup
    probe's budget here), ``max_request_wait_time`` 500 ms (0: no limit), ``namespace`` the
    target's, ``service_type`` ClusterIP.

    Raises:
        SpecError: a v1 rule is broken (``num_replicas`` with autoscaling, limits below
            requests, min above max, a namespace that is not a DNS label, a name that is not a
            DNS-1035 label, ``ssl_enabled`` without both PEM files or false with them) or a key
            is given that this target refuses (``token_auth_enabled``,
            ``enable_app_insights``, ``collect_model_data`` without ``model_data_storage``).
    """
    d = spec.deployment
    _refuse(spec)
    _check_name(spec)
    tls = _tls(spec)
    autoscale = d.autoscale_enabled if d.autoscale_enabled is not None else d.num_replicas is None
    if autoscale and d.num_replicas is not None:
        raise _error(
            spec,
            "num_replicas and autoscale_enabled cannot both be given (v1's rule)",
            "remove num_replicas, or set autoscale_enabled: false",
        )
    low, high = d.autoscale_min_replicas or 1, d.autoscale_max_replicas or 10
    if autoscale and low > high:
        raise _error(
            spec,
            f"autoscale_min_replicas ({low}) is above autoscale_max_replicas ({high})",
            "lower the minimum or raise the maximum",
        )
    cpu, memory = d.cpu_cores or 0.1, d.memory_gb or 0.5
    for limit, request, key in ((d.cpu_cores_limit, cpu, "cpu_cores"), (d.memory_gb_limit, memory, "memory_gb")):
        if limit is not None and limit < request:
            raise _error(
                spec,
                f"{key}_limit ({limit:g}) is below {key} ({request:g}): a limit must be >= its request",
                f"raise {key}_limit or lower {key}",
            )
    namespace = d.namespace or default_namespace
    if not _DNS_LABEL.match(namespace):
        raise _error(
            spec,
            f"namespace {namespace!r} is not a DNS label (lower-case letters, digits, '-', <= 63)",
            "choose a name like ml-prod",
        )
    workers = max(1, d.workers)
    per_worker = d.concurrency_per_worker
    if d.replica_max_concurrent_requests is not None:  # v1's per-replica limit, shared by the workers
        per_worker = max(1, math.ceil(d.replica_max_concurrent_requests / workers))
    return Settings(
        namespace=namespace,
        autoscale=autoscale,
        replicas=low if autoscale else (d.num_replicas or 1),
        max_replicas=high,
        refresh_s=d.autoscale_refresh_seconds or 1,
        target_utilization=d.autoscale_target_utilization or 70,
        metric=d.autoscale_metric or "concurrency",
        max_concurrent=d.replica_max_concurrent_requests or 1,
        cpu=cpu,
        memory_gb=memory,
        cpu_limit=d.cpu_cores_limit,
        memory_gb_limit=d.memory_gb_limit,
        gpu=d.gpu_cores or 0,
        auth=d.auth_enabled if "auth_enabled" in d.given else True,
        service_type=d.service_type or "ClusterIP",
        period_s=d.period_seconds or 10,
        initial_delay_s=d.initial_delay_seconds if d.initial_delay_seconds is not None else 310,
        timeout_s=d.timeout_seconds or 2,
        success_threshold=d.success_threshold or 1,
        failure_threshold=d.failure_threshold or 3,
        concurrency_per_worker=per_worker,
        max_wait_ms=d.max_request_wait_time if d.max_request_wait_time is not None else 500,
        tls=tls,
    )


_REFUSED = {
    "token_auth_enabled": "token authentication needs Azure ML's token service; use auth_enabled (keys)",
    "enable_app_insights": "Application Insights is an Azure service this target does not reach; "
    "read the logs with `mlctl service logs` or scrape /metrics",
}


def _refuse(spec: ServiceSpec) -> None:
    d = spec.deployment
    if d.collect_model_data and d.model_data_storage is None:
        raise _error(
            spec,
            "collect_model_data on the kubernetes target needs deployment_config.model_data_storage "
            "(pods have no local store mlctl can read back)",
            "name the storage account: connection_string_env, connection_string_file or account_url",
        )
    for key, why in _REFUSED.items():
        if getattr(d, key):  # False/None: nothing asked for, nothing to refuse
            raise _error(
                spec, f"deployment_config.{key} is not supported by the kubernetes target: {why}", f"remove {key}"
            )


def _tls(spec: ServiceSpec) -> bool:
    """Whether the service serves https (v1: ``ssl_enabled`` with ``ssl_cert_pem_file`` and
    ``ssl_key_pem_file``; the files alone suffice, as on the other targets)."""
    d = spec.deployment
    files = bool(d.ssl_cert_pem_file and d.ssl_key_pem_file)
    if d.ssl_enabled and not files:
        raise _error(
            spec,
            "ssl_enabled needs ssl_cert_pem_file and ssl_key_pem_file",
            "give both files (PEM), or drop ssl_enabled",
        )
    if d.ssl_enabled is False and files:
        raise _error(
            spec,
            "ssl_enabled is false but certificate files are given",
            "drop ssl_enabled: false, or the certificate files",
        )
    return files


def _check_name(spec: ServiceSpec) -> None:
    if not _DNS_1035.match(spec.name):
        raise _error(
            spec,
            f"service name {spec.name!r} is not a Kubernetes object name "
            "(DNS-1035 label: lower-case letters, digits and '-', starting with a letter, <= 63)",
            "rename the service",
        )


def _error(spec: ServiceSpec, message: str, hint: str) -> SpecError:
    return SpecError(f"{spec.spec_file}: service {spec.name!r}: {message}", hint=hint)
