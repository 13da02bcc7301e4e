"""deploymentconfig.json -> the Service's ``target`` and ``deployment_config`` (pure).

The key table follows azureml-core's ``deploy_config_dict_to_obj`` (``_model_management/_util.py``),
which read, per ``computeType`` (case-insensitive): ``local`` -> ``LocalWebservice`` (``port``),
``ACI`` -> ``AciWebservice.deploy_configuration``, ``AKS`` -> ``AksWebservice`` and ``AKSENDPOINT``
-> ``AksEndpoint``. Where the file is silent, the v1 defaults that differ between ACI and AKS
(key authentication: off on ACI, on on AKS) and v1's container size (0.1 cores, 0.5 GB) are
written explicitly; v1's other defaults are mlctl's too (the Service schema's defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlctl.azureml import report
from mlctl.azureml.report import Entry, entry, expect
from mlctl.azureml.source import Source
from mlctl.errors import TargetError
from mlctl.target_kinds import refuse_retired


@dataclass(frozen=True)
class Rule:
    """How one v1 key maps: to ``dest`` (a ``deployment_config`` key; ``keys.primary`` and
    ``keys.secondary`` for the secrets), or nowhere when ``dest`` is None (``why`` says why)."""

    dest: str | None
    kind: str  # number, integer, boolean, string, path, object, secret
    why: str = ""


APP_INSIGHTS = (
    "Azure Application Insights is not available: mlctl serves Prometheus metrics at /metrics and the "
    "request log with access_log: true"
)
DATA_COLLECTION = (
    "model data collection wrote to Azure Blob storage through Azure ML: not available in mlctl; log inputs "
    "from run() and read them with `mlctl service logs`"
)
CMK = "customer-managed encryption keys (Key Vault) are Azure-only: not available in mlctl"
VNET = "mlctl creates no virtual network: run the aci target in a network you manage"
_CPU = {
    "containerResourceRequirements": Rule(None, "object"),
    "containerResourceRequirements.cpu": Rule("cpu_cores", "number"),
    "containerResourceRequirements.memoryInGB": Rule("memory_gb", "number"),
}
_KEYS = {
    "keys": Rule(None, "object"),
    "keys.primaryKey": Rule("keys.primary", "secret"),
    "keys.secondaryKey": Rule("keys.secondary", "secret"),
}
ACI: dict[str, Rule] = {
    **_CPU,
    "location": Rule("location", "string"),
    "authEnabled": Rule("auth_enabled", "boolean"),
    "sslEnabled": Rule("ssl_enabled", "boolean"),
    "appInsightsEnabled": Rule(None, "boolean", APP_INSIGHTS),
    "sslCertificate": Rule("ssl_cert_pem_file", "path"),
    "sslKey": Rule("ssl_key_pem_file", "path"),
    "cname": Rule("ssl_cname", "string"),
    "dnsNameLabel": Rule("dns_name_label", "string"),
    "vaultBaseUrl": Rule(None, "string", CMK),
    "keyName": Rule(None, "string", CMK),
    "keyVersion": Rule(None, "string", CMK),
    "vnetName": Rule(None, "string", VNET),
    "subnetName": Rule(None, "string", VNET),
    **_KEYS,
}
AKS: dict[str, Rule] = {
    "autoScaler": Rule(None, "object"),
    "autoScaler.autoscaleEnabled": Rule("autoscale_enabled", "boolean"),
    "autoScaler.minReplicas": Rule("autoscale_min_replicas", "integer"),
    "autoScaler.maxReplicas": Rule("autoscale_max_replicas", "integer"),
    "autoScaler.refreshPeriodInSeconds": Rule("autoscale_refresh_seconds", "integer"),
    "autoScaler.targetUtilization": Rule("autoscale_target_utilization", "integer"),
    "dataCollection": Rule(None, "object"),
    "dataCollection.storageEnabled": Rule(None, "boolean", DATA_COLLECTION),
    "authEnabled": Rule("auth_enabled", "boolean"),
    **_CPU,
    "containerResourceRequirements.cpuLimit": Rule("cpu_cores_limit", "number"),
    "containerResourceRequirements.memoryInGBLimit": Rule("memory_gb_limit", "number"),
    "appInsightsEnabled": Rule(None, "boolean", APP_INSIGHTS),
    "scoringTimeoutMs": Rule("scoring_timeout_ms", "integer"),
    "maxConcurrentRequestsPerContainer": Rule("replica_max_concurrent_requests", "integer"),
    "maxQueueWaitMs": Rule("max_request_wait_time", "integer"),
    "numReplicas": Rule("num_replicas", "integer"),
    **_KEYS,
    "gpuCores": Rule("gpu_cores", "integer"),
    "livenessProbeRequirements": Rule(None, "object"),
    "livenessProbeRequirements.periodSeconds": Rule("period_seconds", "integer"),
    "livenessProbeRequirements.initialDelaySeconds": Rule("initial_delay_seconds", "integer"),
    "livenessProbeRequirements.timeoutSeconds": Rule("timeout_seconds", "integer"),
    "livenessProbeRequirements.successThreshold": Rule("success_threshold", "integer"),
    "livenessProbeRequirements.failureThreshold": Rule("failure_threshold", "integer"),
    "namespace": Rule("namespace", "string"),
    "tokenAuthEnabled": Rule(
        None, "boolean", "Azure ML token authentication (Azure AD) is not available: key authentication is used"
    ),
    "computeTargetName": Rule(
        None,
        "string",
        "the cluster is an mlctl target: `mlctl target add NAME --kind kubernetes ...`, then target: NAME",
    ),
}
AKS_ENDPOINT: dict[str, Rule] = {
    **{k: v for k, v in AKS.items() if k != "computeTargetName"},
    "versionName": Rule(None, "string", "AKS endpoint versions (A/B traffic split) are not available"),
    "trafficPercentile": Rule(None, "number", "AKS endpoint versions (A/B traffic split) are not available"),
}
LOCAL: dict[str, Rule] = {"port": Rule("port", "integer")}
TYPES: dict[str, tuple[str, dict[str, Rule]]] = {  # computeType (lowercase) -> (mlctl target, rules)
    "local": ("local", LOCAL),
    "aci": ("aci", ACI),
    "aks": ("kubernetes", AKS),
    "aksendpoint": ("kubernetes", AKS_ENDPOINT),
}
# v1 defaults written explicitly where the file is silent (per target)
DEFAULTS: dict[str, dict[str, Any]] = {
    "aci": {"cpu_cores": 0.1, "memory_gb": 0.5, "auth_enabled": False},
    "kubernetes": {"cpu_cores": 0.1, "memory_gb": 0.5, "auth_enabled": True},
}
_SOURCE_OF = {"cpu_cores": "containerResourceRequirements.cpu", "memory_gb": "containerResourceRequirements.memoryInGB"}


@dataclass
class DeploymentResult:
    """What the deployment config gives: the target kind, ``deployment_config`` (paths absolute),
    the secrets (``primary``/``secondary``; never written to a spec) and the report entries."""

    target: str
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)


def translate_deployment(src: Source, *, local_target: str, target: str | None = None) -> DeploymentResult:
    """Translate a deploymentconfig file; ``local_target``: ``docker`` or ``process`` for ``local``;
    ``target``: deploy elsewhere than the computeType says (v1's defaults are then that target's).

    Raises:
        SpecError: missing or unknown computeType, a value of the wrong type, a missing file.
        TargetError: computeType FPGA/Brainwave (retired; exit 6).
    """
    compute = _compute_type(src)
    mapped, rules = TYPES[compute]
    result = DeploymentResult(target or (local_target if mapped == "local" else mapped))
    result.entries.append(entry(src, ("computeType",), report.MAPPED, destination="target", value=result.target))
    elsewhere = _elsewhere(compute)
    _walk(src, (), {k: v for k, v in src.data.items() if k != "computeType"}, rules, elsewhere, result)
    _defaults(src, result)
    return result


def _compute_type(src: Source) -> str:
    value = src.data.get("computeType")
    if value is None:
        raise src.error(
            (), "computeType is missing", hint="add computeType: local, ACI or AKS (as az ml model deploy needed)"
        )
    if not isinstance(value, str):
        raise src.error(("computeType",), f"computeType must be a string, not {value!r}")
    try:
        refuse_retired(value)
    except TargetError as error:
        error.message = f"{src.document.where(['computeType'])}: {error.message}"
        error.args = (error.message,)
        raise
    if value.lower() not in TYPES:
        raise src.error(
            ("computeType",),
            f"unknown computeType {value!r}",
            hint="v1's computeTypes: local, ACI, AKS, AKSENDPOINT (IoT Edge deployments are not imported)",
        )
    return value.lower()


def _elsewhere(compute: str) -> dict[str, str]:
    """Top-level keys other compute types read (``gpuCores`` in an ACI file: an AKS key)."""
    found: dict[str, str] = {}
    for name, (_, rules) in TYPES.items():
        if name != compute:
            for key in rules:
                found.setdefault(key.split(".")[0], name.upper() if name != "local" else "local")
    return {k: v for k, v in found.items() if k not in TYPES[compute][1]}


def _walk(
    src: Source,
    prefix: tuple[str, ...],
    data: Mapping[str, Any],
    rules: dict[str, Rule],
    elsewhere: dict[str, str],
    result: DeploymentResult,
) -> None:
    for key, value in data.items():
        path = (*prefix, key)
        rule = rules.get(".".join(path))
        if rule is None:
            parent = ".".join(prefix) + "." if prefix else ""
            known = [k[len(parent) :] for k in rules if k.startswith(parent) and "." not in k[len(parent) :]]
            result.entries.append(report.unknown(src, path, known, elsewhere if not prefix else {}))
        elif value is None:
            result.entries.append(entry(src, path, report.EMPTY, note="null: v1's default, as in mlctl"))
        elif rule.kind == "object":
            _walk(src, path, expect(src, path, value, "object"), rules, {}, result)
        else:
            result.entries.append(_one(src, path, value, rule, result))


def _one(src: Source, path: tuple[str, ...], value: Any, rule: Rule, result: DeploymentResult) -> Entry:
    if rule.kind == "secret":
        result.secrets[str(rule.dest).split(".")[1]] = str(value)
        return entry(src, path, report.STORED, destination="the service's key store", value=report.SECRET)
    expect(src, path, value, "string" if rule.kind == "path" else rule.kind)
    if rule.dest is None:
        if value is False:
            return entry(src, path, report.NOT_CARRIED, value=value, note=f"false, as in mlctl ({rule.why})")
        return entry(src, path, report.NOT_CARRIED, value=value, note=rule.why, warn=True)
    if rule.kind == "path":
        resolved = (src.folder / value).resolve()
        if not resolved.is_file():
            raise src.error(
                path, f"{'.'.join(path)}: file not found: {resolved}", hint="paths are relative to the file"
            )
        result.config[rule.dest] = resolved
        return entry(src, path, report.MAPPED, destination=f"deployment_config.{rule.dest}", value=value)
    result.config[rule.dest] = value
    return entry(src, path, report.MAPPED, destination=f"deployment_config.{rule.dest}", value=value)


def _defaults(src: Source, result: DeploymentResult) -> None:
    for key, value in DEFAULTS.get(result.target, {}).items():
        if key not in result.config:
            result.config[key] = value
            source = _SOURCE_OF.get(key, "authEnabled")
            result.entries.append(
                report.Entry(
                    src.shown,
                    source,
                    0,
                    report.DEFAULT,
                    destination=f"deployment_config.{key}",
                    value=value,
                    note=f"not in the file: v1's default for {result.target}, written explicitly",
                )
            )
