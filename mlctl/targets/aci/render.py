"""The ACI target's pure half: settings from options and environment, and the ContainerGroup
request body (``PUT .../containerGroups/{name}``, api-version 2023-05-01, in the REST shape the
SDK serializes; see ``shared/reference/azure-wire.md`` A.3).

Nothing here imports the Azure SDK or touches the network, the registry or the disk: ``render``
and ``--dry-run`` use it, and so does ``apply``'s fingerprint, which is why the body of a spec
built from model files names the image ``<registry>/NAME:<next version>`` (a freshly built
version must not count as a change) and why secrets appear only as ``Secrets`` filled in at
apply time (``redacted`` otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlctl import images, modeldata
from mlctl.spec.records import ServiceSpec
from mlctl.targets import Deployment, server_options, uses_tls

API_VERSION = "2023-05-01"
ARM = "https://management.azure.com"
SECRETS_MOUNT = "/mnt/mlctl-secrets"
SECRETS_VOLUME = "mlctl-secrets"
REDACTED = "<redacted>"
TAG_SERVICE = "mlctl-service"
TAG_PREFIX = "mlctl-"
DEFAULT_CPU_CORES = 0.1  # Azure ML v1 AciWebservice.deploy_configuration defaults
DEFAULT_MEMORY_GB = 0.5

# option -> (environment variable that overrides it, as `az` reads it; description)
OPTION_ENV: dict[str, tuple[str | None, str]] = {
    "subscription_id": ("AZURE_SUBSCRIPTION_ID", "Azure subscription id (AZURE_SUBSCRIPTION_ID overrides)"),
    "resource_group": ("AZURE_DEFAULTS_GROUP", "resource group, which must exist (AZURE_DEFAULTS_GROUP overrides)"),
    "location": ("AZURE_DEFAULTS_LOCATION", "Azure region, e.g. westeurope (AZURE_DEFAULTS_LOCATION overrides)"),
    "base_url": (None, f"Azure Resource Manager endpoint (default {ARM}; a sovereign cloud's, or a test fake's)"),
    "ca_bundle": (None, "PEM file of CAs to trust for the ARM endpoint (default: the system's; or REQUESTS_CA_BUNDLE)"),
    "registry_login_server": (None, "login server of the registry the group pulls from (default MLCTL_REGISTRY)"),
    "registry_username": (None, "registry user name (default MLCTL_REGISTRY_USERNAME)"),
    "registry_password_env": (None, "environment variable holding the registry password (MLCTL_REGISTRY_PASSWORD)"),
    "registry_resource": (
        None,
        "an Azure Container Registry (NAME in the resource group, or RESOURCE_GROUP/NAME): its login server "
        "and admin credentials (listCredentials) are used instead",
    ),
    "polling_interval": (None, "seconds between polls of long-running operations (default 2; the SDK's is 30)"),
    "gpu_sku": (None, "GPU SKU for gpu_cores (default V100)"),
}


@dataclass(frozen=True)
class Settings:
    """Where the container groups go, resolved from the target's options and the environment
    (environment first, as ``az`` does). Empty strings mean "not configured"."""

    subscription_id: str = ""
    resource_group: str = ""
    location: str = ""
    base_url: str = ARM
    ca_bundle: str = ""
    registry: str = ""
    registry_username: str = ""
    registry_password_env: str = "MLCTL_REGISTRY_PASSWORD"
    polling_interval: float = 2.0
    gpu_sku: str = "V100"
    registry_resource: str = ""
    registry_password: str = field(default="", repr=False)  # read from registry_resource; never stored
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(cls, options: Mapping[str, str], environ: Mapping[str, str], default_registry: str | None) -> Settings:
        """Settings from ``options`` (the target's), ``environ`` (wins) and the configured registry."""
        values = {
            name: environ.get(env) or options.get(name, "") if env else options.get(name, "")
            for name, (env, _) in OPTION_ENV.items()
        }
        return cls(
            subscription_id=values["subscription_id"],
            resource_group=values["resource_group"],
            location=values["location"],
            base_url=(values["base_url"] or ARM).rstrip("/"),
            ca_bundle=values["ca_bundle"],
            registry=values["registry_login_server"] or default_registry or "",
            registry_username=values["registry_username"] or environ.get("MLCTL_REGISTRY_USERNAME", ""),
            registry_password_env=values["registry_password_env"] or "MLCTL_REGISTRY_PASSWORD",
            polling_interval=float(values["polling_interval"] or 2.0),
            gpu_sku=values["gpu_sku"] or "V100",
            registry_resource=values["registry_resource"],
            options=dict(options),
        )

    @property
    def configured(self) -> bool:
        """Whether a subscription and resource group are known (otherwise nothing can be reached)."""
        return bool(self.subscription_id and self.resource_group)

    def credentials_text(self) -> str:
        """Which registry credentials a group gets, for messages (never the password)."""
        if not self.registry_username:
            return f"no credentials for {self.registry or '<no registry>'}"
        if self.registry_resource:
            return (
                f"server {self.registry}, username {self.registry_username}, the admin password of "
                f"registry {self.registry_resource}"
            )
        return f"server {self.registry}, username {self.registry_username}, password from ${self.registry_password_env}"


@dataclass(frozen=True)
class Secrets:
    """The values that reach the group only as secrets: the registry password, the files of the
    secret volume (``keys.json``, ``tls-cert.pem``, ``tls-key.pem``: name -> bytes) and secure
    environment values (``AML_MODEL_DC_STORAGE``, the model data connection string: name -> value)."""

    registry_password: str = REDACTED
    files: Mapping[str, bytes] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)


def dns_label(spec: ServiceSpec, settings: Settings) -> str:
    """``dns_name_label``, or one generated from the service name, stable per subscription,
    resource group and name (labels are unique per region)."""
    if spec.deployment.dns_name_label:
        return spec.deployment.dns_name_label
    digest = hashlib.sha256(f"{settings.subscription_id}/{settings.resource_group}/{spec.name}".encode()).hexdigest()
    return f"{re.sub(r'[^a-z0-9-]', '-', spec.name.lower())[:50].strip('-')}-{digest[:8]}"


def location(spec: ServiceSpec, settings: Settings) -> str:
    """The group's region: ``deployment_config.location``, else the target's."""
    return spec.deployment.location or settings.location


def scoring_uri(host: str, spec: ServiceSpec, path: str = "/score") -> str:
    """``http(s)://HOST:PORT/score``; with ``ssl_cname`` the name the certificate is for."""
    d = spec.deployment
    tls = uses_tls(spec)
    return service_url("https" if tls else "http", d.ssl_cname if tls and d.ssl_cname else host, d.port, path)


def service_url(scheme: str, host: str, port: int, path: str) -> str:
    """``scheme://host:port/path``, the port left out when it is the scheme's own (80, 443), as
    Azure ML wrote an ACI service's URI (``http://FQDN/score``)."""
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"


def predicted_fqdn(spec: ServiceSpec, settings: Settings) -> str:
    """The FQDN ACI gives a public DNS label: ``LABEL.REGION.azurecontainer.io``."""
    return f"{dns_label(spec, settings)}.{location(spec, settings) or '<location>'}.azurecontainer.io"


def image_of(deployment: Deployment, settings: Settings) -> str:
    """The image reference the group pulls; a spec built at deploy time gets a placeholder version."""
    spec = deployment.spec
    registry = settings.registry or "<registry>"
    return f"{registry}/{spec.image}" if spec.image else f"{registry}/{spec.name}:<next version>"


def body(
    deployment: Deployment, settings: Settings, *, image: str, secrets: Secrets, entry: str, tags: Mapping[str, str]
) -> dict[str, Any]:
    """The ContainerGroup PUT body (REST JSON) for ``deployment``: one container named after the
    service running ``image``'s scoring server on the service's port (resource requests from
    ``cpu_cores``/``memory_gb``, v1 defaults 0.1 and 0.5), a public IP with the DNS label, restart
    policy Always, the registry credentials and a secret volume for keys and TLS. Pure."""
    spec, d = deployment.spec, deployment.spec.deployment
    container: dict[str, Any] = {
        "image": image,
        "command": _command(spec, entry),
        "ports": [{"port": d.port, "protocol": "TCP"}],
        "environmentVariables": _environment(deployment, secrets),
        "resources": {"requests": _requests(spec, settings)},
    }
    properties: dict[str, Any] = {
        "containers": [{"name": spec.name, "properties": container}],
        "restartPolicy": "Always",
        "osType": "Linux",
        "ipAddress": {
            "type": "Public",
            "ports": [{"port": d.port, "protocol": "TCP"}],
            "dnsNameLabel": dns_label(spec, settings),
        },
    }
    if settings.registry_username:
        properties["imageRegistryCredentials"] = [
            {"server": settings.registry, "username": settings.registry_username, "password": secrets.registry_password}
        ]
    if secrets.files:
        properties["volumes"] = [
            {"name": SECRETS_VOLUME, "secret": {n: _b64(v) for n, v in sorted(secrets.files.items())}}
        ]
        container["volumeMounts"] = [{"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT, "readOnly": True}]
    return {"location": location(spec, settings) or "<location>", "tags": dict(tags), "properties": properties}


def _environment(deployment: Deployment, secrets: Secrets) -> list[dict[str, str]]:
    """Plain values (the spec's, model data collection's switches), then the secure ones."""
    spec = deployment.spec
    models = [(m.name, m.version) for m in deployment.models]
    plain = {
        **spec.deployment.environment_variables,
        **modeldata.server_env(spec, models, local=None, secret_file=None),
    }
    return [{"name": k, "value": v} for k, v in sorted(plain.items())] + [
        {"name": k, "secureValue": v} for k, v in sorted(secrets.environment.items())
    ]


def secure_env_names(spec: ServiceSpec) -> tuple[str, ...]:
    """The secure environment values the group gets for ``spec``: the model data connection string."""
    storage = spec.deployment.model_data_storage
    collecting = modeldata.enabled(spec) and storage is not None and not storage.account_url
    return ("AML_MODEL_DC_STORAGE",) if collecting else ()


def secret_names(spec: ServiceSpec) -> tuple[str, ...]:
    """The files the secret volume holds for ``spec`` (none: no volume)."""
    return (("keys.json",) if spec.deployment.auth_enabled else ()) + (
        ("tls-cert.pem", "tls-key.pem") if uses_tls(spec) else ()
    )


def group_tags(deployment: Deployment, image: str, created: str) -> dict[str, str]:
    """Tags that make the group describe itself (``list``/``show`` read them; the cloud is the
    truth): the user's tags, the description, models, image, and the fingerprint per component."""
    spec = deployment.spec
    tags = {k: v[:256] for k, v in spec.tags.items()}
    if spec.description:
        tags["description"] = spec.description[:256]
    tags.update(
        {
            TAG_SERVICE: spec.name,
            "mlctl-models": ",".join(m.ref for m in deployment.models)[:256],
            "mlctl-image": image[:256],
            "mlctl-port": str(spec.deployment.port),
            "mlctl-auth": "true" if spec.deployment.auth_enabled else "false",
            "mlctl-tls": "true" if uses_tls(spec) else "false",
            "mlctl-created": created,
        }
    )
    tags.update({f"mlctl-fp-{k}": v for k, v in deployment.fingerprint.items()})
    return tags


def redact(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a body with every secret (registry passwords, secret volume files, secure
    environment values) replaced by ``<redacted>``."""
    out: dict[str, Any] = {**doc, "properties": dict(doc["properties"])}
    props = out["properties"]
    props["imageRegistryCredentials"] = [
        {**c, "password": REDACTED} for c in props.get("imageRegistryCredentials", [])
    ] or None
    props["volumes"] = [
        {**v, "secret": {k: REDACTED for k in v["secret"]}} if "secret" in v else v for v in props.get("volumes", [])
    ] or None
    props["containers"] = [_redact_container(c) for c in props["containers"]]
    return {**out, "properties": {k: v for k, v in props.items() if v is not None}}


def _redact_container(container: dict[str, Any]) -> dict[str, Any]:
    inner = dict(container["properties"])
    inner["environmentVariables"] = [
        {**e, "secureValue": REDACTED} if "secureValue" in e else e for e in inner.get("environmentVariables", [])
    ]
    return {**container, "properties": inner}


def _command(spec: ServiceSpec, entry: str) -> list[str]:
    d = spec.deployment
    tls = (f"{SECRETS_MOUNT}/tls-cert.pem", f"{SECRETS_MOUNT}/tls-key.pem") if uses_tls(spec) else None
    options = server_options(
        d,
        host="0.0.0.0",  # the group's own network namespace: its public IP reaches this
        status_file="/tmp/mlctl-status.json",
        control_socket="/tmp/mlctl-control.sock",
        keys_file=f"{SECRETS_MOUNT}/keys.json" if d.auth_enabled else None,
        tls=tls,
    )
    script = ["--entry-script", f"{images.APP_ROOT}/{entry}"] if entry else []  # "": the image's model kind
    # the Open Inference Protocol's model name is the service's (/v2/models/NAME), as on the other targets
    return [images.PYTHON, "-m", "mlctl.serve", *script, "--model-name", spec.name, *options]


def _requests(spec: ServiceSpec, settings: Settings) -> dict[str, Any]:
    d = spec.deployment
    requests: dict[str, Any] = {
        "cpu": float(d.cpu_cores if d.cpu_cores is not None else DEFAULT_CPU_CORES),
        "memoryInGB": float(d.memory_gb if d.memory_gb is not None else DEFAULT_MEMORY_GB),
    }
    if d.gpu_cores:
        requests["gpu"] = {"count": d.gpu_cores, "sku": settings.gpu_sku}
    return requests


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def environ() -> Mapping[str, str]:
    """The process environment (one place, so the pure functions above take it as an argument)."""
    return os.environ
