"""Pure rendering of a web service into Kubernetes manifests (plain JSON-ready dicts).

Nothing here talks to a cluster: ``settings`` applies Azure ML v1's ``AksWebservice``
defaults and validation rules to a spec's deployment configuration, ``manifests`` turns a spec
into the objects ``deploy`` applies, in apply order: the keys ``Secret`` (``auth_enabled``), the
TLS ``Secret`` (``kubernetes.io/tls``, named after its content so a failed update cannot reach the
pods still serving), the registry ``Secret`` (``kubernetes.io/dockerconfigjson``, with registry credentials), the
``Service``, the ``Deployment``, the ``HorizontalPodAutoscaler`` (autoscaling) and the
``PodDisruptionBudget`` (more than one replica). Secret values are passed in by the caller;
``render`` for people and GitOps gets placeholders that a scoring server refuses to start with.

API versions are parameters (``ApiVersions``): the driver discovers what the cluster serves
(``autoscaling/v2`` else ``v2beta2``, ``policy/v1`` else ``v1beta1``); both pairs share the
fields used here.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from mlctl import images, modeldata
from mlctl.spec.records import DeploymentConfig, ServiceSpec
from mlctl.targets import server_options
from mlctl.targets.kubernetes.settings import Settings

MANAGED_BY = "app.kubernetes.io/managed-by"
NAME_LABEL = "app.kubernetes.io/name"
LABEL = "mlctl.service"
FINGERPRINT = "mlctl.io/fingerprint"
MODELS = "mlctl.io/models"
CONTAINER = "scoring"
RUN_MOUNT = "/run/mlctl"
SECRETS_MOUNT = "/run/mlctl-secrets"
KEYS_FILE = "keys.json"
TLS_MOUNT = "/run/mlctl-tls"
TLS_ROLE = "mlctl.io/role"  # label value "tls" on the TLS Secrets
REDACTED_TLS = "redacted: mlctl writes the private key when it deploys; a server refuses to start with this"
PRE_STOP_S = 3  # endpoints controllers and proxies drop the pod before its server stops accepting
IN_FLIGHT = "mlctl_requests_in_flight"  # the scoring server's gauge (mlctl.serve.metrics)
REDACTED_KEYS = "redacted: mlctl writes the keys when it deploys; a server refuses to start with this"
REDACTED_CONNECTION = "redacted: mlctl writes the connection string when it deploys"
MODELDATA_MOUNT = "/run/mlctl-modeldata"  # the model data Secret (its connection string), read-only
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class ApiVersions:
    """The API group versions manifests are written for (the driver discovers the cluster's)."""

    autoscaling: str = "autoscaling/v2"
    policy: str = "policy/v1"


@dataclass(frozen=True)
class Inputs:
    """What ``manifests`` needs beyond the spec: the image to run, the cluster's API versions,
    the stored fingerprint and model refs (annotations), the keys file's content (None: the
    redacted placeholder), the registry credentials (``registry`` -> (user, password); None:
    no pull secret, or (with ``pull_secret``) a placeholder), and the replica count to keep
    (autoscaling: the HPA's current count, so an update does not reset it)."""

    image: str
    versions: ApiVersions = ApiVersions()
    fingerprint: str = "{}"
    models: str = ""
    keys: bytes | None = None
    registry_auth: tuple[str, str, str] | None = None  # (registry, user, password)
    pull_secret: bool = False
    replicas: int | None = None
    tls_secret: str | None = None  # the TLS Secret's name (with TLS)
    tls_cert: bytes = b""
    tls_key: bytes | None = None  # None: the redacted placeholder
    modeldata_connection: str | None = None  # None: the redacted placeholder


def versions_option(text: str | None) -> ApiVersions:
    """The target's ``api_versions`` option (``GROUP/VERSION,...``) over the default versions.

    Raises:
        TargetError: an entry is not an autoscaling or policy group version."""
    from mlctl.errors import TargetError

    chosen: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        group = item.strip().partition("/")[0]
        if group not in ("autoscaling", "policy"):
            raise TargetError(
                f"api_versions: {item!r} is not an autoscaling/... or policy/... version",
                hint="e.g. autoscaling/v2beta2,policy/v1beta1",
            )
        chosen[group] = item.strip()
    return ApiVersions(**chosen)


def manifests(spec: ServiceSpec, s: Settings, inputs: Inputs) -> list[dict[str, Any]]:
    """The service's objects, in apply order (see the module docstring). Pure."""
    objects = []
    if s.auth:
        objects.append(_keys_secret(spec, s, inputs.keys))
    if s.tls:
        objects.append(_tls_secret(spec, s, inputs))
    if inputs.pull_secret or inputs.registry_auth:
        objects.append(_pull_secret(spec, s, inputs.registry_auth))
    if _collection_secret(spec):
        objects.append(_modeldata_secret(spec, s, inputs.modeldata_connection))
    objects += [_service(spec, s), _deployment(spec, s, inputs)]
    if s.autoscale:
        objects.append(_hpa(spec, s, inputs.versions.autoscaling))
    if s.replicas > 1 or (s.autoscale and s.max_replicas > 1):
        objects.append(_pdb(spec, s, inputs.versions.policy))
    return objects


def names(spec_name: str) -> dict[str, str]:
    """Object kind -> name of every object a service may have (for ownership checks and delete)."""
    return {
        "Secret": f"{spec_name}-keys",
        "Secret/registry": f"{spec_name}-registry",
        "Secret/modeldata": f"{spec_name}-modeldata",
        "Service": spec_name,
        "Deployment": spec_name,
        "HorizontalPodAutoscaler": spec_name,
        "PodDisruptionBudget": spec_name,
    }


def labels(spec: ServiceSpec) -> dict[str, str]:
    """The labels every object of the service carries (plus the spec's tags that are valid labels)."""
    tags = {k: v for k, v in spec.tags.items() if _valid_label(k, v)}
    return {**tags, NAME_LABEL: spec.name, MANAGED_BY: "mlctl", LABEL: spec.name}


def _meta(spec: ServiceSpec, s: Settings, name: str, **annotations: str) -> dict[str, Any]:
    other_tags = {f"mlctl.io/tag.{k}": v for k, v in spec.tags.items() if not _valid_label(k, v)}
    meta: dict[str, Any] = {"name": name, "namespace": s.namespace, "labels": labels(spec)}
    if annotations or other_tags:
        meta["annotations"] = {**other_tags, **annotations}
    return meta


def _valid_label(key: str, value: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (not _LABEL_PREFIX.match(prefix) or "kubernetes.io" in prefix or prefix.startswith("mlctl")):
        return False
    return bool(name) and bool(_LABEL_NAME.match(name)) and bool(_LABEL_NAME.match(value))


def _keys_secret(spec: ServiceSpec, s: Settings, keys: bytes | None) -> dict[str, Any]:
    body: dict[str, Any] = (
        {"data": {KEYS_FILE: base64.b64encode(keys).decode()}}
        if keys is not None
        else {"stringData": {KEYS_FILE: REDACTED_KEYS}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, s, names(spec.name)["Secret"]),
        "type": "Opaque",
        **body,
    }


def _tls_secret(spec: ServiceSpec, s: Settings, inputs: Inputs) -> dict[str, Any]:
    meta = _meta(spec, s, inputs.tls_secret or f"{spec.name}-tls")
    meta["labels"] = {**meta["labels"], TLS_ROLE: "tls"}
    body: dict[str, Any] = {"data": {"tls.crt": base64.b64encode(inputs.tls_cert).decode()}}
    if inputs.tls_key is None:
        body["stringData"] = {"tls.key": REDACTED_TLS}
    else:
        body["data"]["tls.key"] = base64.b64encode(inputs.tls_key).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls", **body}


def _pull_secret(spec: ServiceSpec, s: Settings, auth: tuple[str, str, str] | None) -> dict[str, Any]:
    meta = _meta(spec, s, names(spec.name)["Secret/registry"])
    if auth is None:
        body: dict[str, Any] = {"stringData": {".dockerconfigjson": '{"auths": {}}'}}
    else:
        registry, user, password = auth
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        config = {"auths": {registry: {"username": user, "password": password, "auth": token}}}
        body = {"data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/dockerconfigjson", **body}


def _collection_secret(spec: ServiceSpec) -> bool:
    """Whether model data collection needs the connection string Secret (an account URL does not)."""
    storage = spec.deployment.model_data_storage
    return modeldata.enabled(spec) and storage is not None and not storage.account_url


def _modeldata_secret(spec: ServiceSpec, s: Settings, connection: str | None) -> dict[str, Any]:
    body: dict[str, Any] = (
        {"data": {modeldata.SECRET_NAME: base64.b64encode(connection.encode()).decode()}}
        if connection is not None
        else {"stringData": {modeldata.SECRET_NAME: REDACTED_CONNECTION}}
    )
    meta = _meta(spec, s, names(spec.name)["Secret/modeldata"])
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", **body}


def _service(spec: ServiceSpec, s: Settings) -> dict[str, Any]:
    port = spec.deployment.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, s, spec.name),
        "spec": {
            "type": s.service_type,
            "selector": {LABEL: spec.name},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _deployment(spec: ServiceSpec, s: Settings, inputs: Inputs) -> dict[str, Any]:
    pod_labels = {NAME_LABEL: spec.name, MANAGED_BY: "mlctl", LABEL: spec.name}
    pod: dict[str, Any] = {
        # the server drains on SIGTERM (in-flight requests finish) within scoring_timeout_ms
        "terminationGracePeriodSeconds": PRE_STOP_S + math.ceil(spec.deployment.scoring_timeout_ms / 1000) + 5,
        "containers": [_container(spec, s, inputs.image, inputs.models)],
        "volumes": [{"name": "run", "emptyDir": {}}],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
    }
    if s.auth:
        pod["volumes"].append(
            {"name": "keys", "secret": {"secretName": names(spec.name)["Secret"], "defaultMode": 0o440}}
        )
    if s.tls:
        secret = inputs.tls_secret or f"{spec.name}-tls"
        pod["volumes"].append({"name": "tls", "secret": {"secretName": secret, "defaultMode": 0o440}})
    if _collection_secret(spec):
        source = {"secretName": names(spec.name)["Secret/modeldata"], "defaultMode": 0o440}
        pod["volumes"].append({"name": "modeldata", "secret": source})
    if inputs.pull_secret or inputs.registry_auth:
        pod["imagePullSecrets"] = [{"name": names(spec.name)["Secret/registry"]}]
    annotations = {FINGERPRINT: inputs.fingerprint, MODELS: inputs.models}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, s, spec.name, **annotations),
        "spec": {
            "replicas": inputs.replicas or s.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {LABEL: spec.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    }


def _container(spec: ServiceSpec, s: Settings, image: str, models: str = "") -> dict[str, Any]:
    d = spec.deployment
    mounts: list[dict[str, Any]] = [{"name": "run", "mountPath": RUN_MOUNT}]
    if _collection_secret(spec):
        mounts.append({"name": "modeldata", "mountPath": MODELDATA_MOUNT, "readOnly": True})
    pairs = [(n, int(v)) for n, _, v in (ref.rpartition(":") for ref in models.split(",") if ":" in ref)]
    collection = modeldata.server_env(spec, pairs, local=None, secret_file=f"{MODELDATA_MOUNT}/{modeldata.SECRET_NAME}")
    if s.auth:
        mounts.append({"name": "keys", "mountPath": SECRETS_MOUNT, "readOnly": True})
    if s.tls:
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    scheme = "HTTPS" if s.tls else "HTTP"
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        **_command(spec, s),
        "ports": [{"name": "http", "containerPort": d.port, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in sorted({**d.environment_variables, **collection}.items())],
        "resources": _resources(s),
        "volumeMounts": mounts,
        "startupProbe": _probe(
            "/readyz", d.port, scheme, period=1, timeout=s.timeout_s, failures=max(1, s.initial_delay_s)
        ),
        "readinessProbe": _probe(
            "/readyz",
            d.port,
            scheme,
            period=s.period_s,
            timeout=s.timeout_s,
            failures=s.failure_threshold,
            successes=s.success_threshold,
        ),
        "livenessProbe": _probe(
            "/healthz", d.port, scheme, period=s.period_s, timeout=s.timeout_s, failures=s.failure_threshold
        ),
        "lifecycle": {
            "preStop": {"exec": {"command": [images.PYTHON, "-c", f"import time; time.sleep({PRE_STOP_S})"]}}
        },
    }


def _command(spec: ServiceSpec, s: Settings) -> dict[str, Any]:
    d = spec.deployment
    options = server_options(
        DeploymentConfig(
            **{
                **_config_fields(d),
                "concurrency_per_worker": s.concurrency_per_worker,
                "max_request_wait_time": s.max_wait_ms,
            }
        ),
        host="0.0.0.0",
        status_file=f"{RUN_MOUNT}/status.json",
        control_socket=f"{RUN_MOUNT}/control.sock",
        keys_file=f"{SECRETS_MOUNT}/{KEYS_FILE}" if s.auth else None,
        tls=(f"{TLS_MOUNT}/tls.crt", f"{TLS_MOUNT}/tls.key") if s.tls else None,
    )
    if spec.inference is not None:
        entry = spec.inference.entry_script  # None: a no-code model, its kind and path in the image's env
        model = ["--entry-script", f"{images.APP_ROOT}/{entry.name}"] if entry is not None else []
        return {"command": [images.PYTHON, "-m", "mlctl.serve", *model, "--model-name", spec.name, *options]}
    # a built image names its entry script in its environment (AZUREML_ENTRY_SCRIPT), or for a
    # no-code model its kind and path (MLCTL_MODEL_KIND, MLCTL_MODEL_PATH, read by the server itself)
    from_env = '${AZUREML_ENTRY_SCRIPT:+--entry-script "$AZUREML_ENTRY_SCRIPT"}'
    script = f'exec {images.PYTHON} -m mlctl.serve {from_env} "$@"'
    return {"command": ["/bin/sh", "-c", script, "mlctl.serve"], "args": [*options, "--model-name", spec.name]}


def _config_fields(d: DeploymentConfig) -> dict[str, Any]:
    return {f: getattr(d, f) for f in d.field_names()}


def _resources(s: Settings) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": _cpu(s.cpu), "memory": _memory(s.memory_gb)}
    limits: dict[str, Any] = {}
    if s.cpu_limit is not None:
        limits["cpu"] = _cpu(s.cpu_limit)
    if s.memory_gb_limit is not None:
        limits["memory"] = _memory(s.memory_gb_limit)
    if s.gpu:
        limits["nvidia.com/gpu"] = str(s.gpu)
    return {"requests": requests, **({"limits": limits} if limits else {})}


def _cpu(cores: float) -> str:
    return f"{round(cores * 1000)}m"


def _memory(gb: float) -> str:
    return f"{round(gb * 1024)}Mi"


def _probe(
    path: str, port: int, scheme: str, *, period: int, timeout: int, failures: int, successes: int = 1
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port, "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": successes,
    }


def _hpa(spec: ServiceSpec, s: Settings, version: str) -> dict[str, Any]:
    # the refresh interval is the scaling policies' period, v1's autoscale_refresh_seconds
    policy = {"type": "Percent", "value": 100, "periodSeconds": max(1, s.refresh_s)}
    return {
        "apiVersion": version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, s, spec.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": s.replicas,
            "maxReplicas": s.max_replicas,
            "metrics": [hpa_metric(s)],
            "behavior": {"scaleUp": {"policies": [policy]}, "scaleDown": {"policies": [policy]}},
        },
    }


def hpa_metric(s: Settings) -> dict[str, Any]:
    """The HPA's metric (autoscaling/v2 and v2beta2 shape). ``concurrency``: a Pods metric,
    ``IN_FLIGHT`` (the scoring server's gauge, served per pod by custom.metrics.k8s.io) averaging
    ``target_utilization`` % of ``max_concurrent`` (Azure ML's router: busy replicas), as a
    quantity in thousandths; ``cpu``: CPU utilisation in percent of the pod's CPU request."""
    if s.metric == "cpu":
        target = {"type": "Utilization", "averageUtilization": s.target_utilization}
        return {"type": "Resource", "resource": {"name": "cpu", "target": target}}
    average = f"{s.target_utilization * s.max_concurrent * 10}m"  # percent of requests -> milli-requests
    return {
        "type": "Pods",
        "pods": {"metric": {"name": IN_FLIGHT}, "target": {"type": "AverageValue", "averageValue": average}},
    }


def _pdb(spec: ServiceSpec, s: Settings, version: str) -> dict[str, Any]:
    return {
        "apiVersion": version,
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, s, spec.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {LABEL: spec.name}}},
    }
