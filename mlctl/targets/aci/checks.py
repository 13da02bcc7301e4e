"""What the ACI target checks in a spec before it sends anything: the keys of
``AciWebservice.deploy_configuration`` it cannot honour are refused by name (never ignored)."""

from __future__ import annotations

from mlctl.errors import TargetError
from mlctl.output import Reporter
from mlctl.spec.records import ServiceSpec
from mlctl.targets import uses_tls
from mlctl.targets.aci.render import Settings, location

_REFUSED = {
    "cmk_vault_base_url": "customer-managed keys (cmk_*) need a Key Vault set-up mlctl does not make",
    "cmk_key_name": "customer-managed keys (cmk_*) need a Key Vault set-up mlctl does not make",
    "cmk_key_version": "customer-managed keys (cmk_*) need a Key Vault set-up mlctl does not make",
    "vnet_name": "VNet groups (vnet_name, subnet_name) get a private IP only: mlctl deploys public groups",
    "subnet_name": "VNet groups (vnet_name, subnet_name) get a private IP only: mlctl deploys public groups",
}


def check_spec(spec: ServiceSpec, settings: Settings, reporter: Reporter) -> None:
    """Refuse what this target cannot honour, warn about what it does differently.

    Raises:
        TargetError: a refused key (cmk_*, vnet_name/subnet_name, enable_app_insights true,
            collect_model_data without model_data_storage), ssl_enabled without certificate files, or no location.
    """
    d = spec.deployment
    for key in sorted(d.given & set(_REFUSED)):
        raise TargetError(
            f"service {spec.name!r}: deployment_config.{key} cannot be honoured on the aci target: {_REFUSED[key]}",
            hint=f"remove deployment_config.{key}",
        )
    if d.enable_app_insights:
        raise TargetError(
            f"service {spec.name!r}: deployment_config.enable_app_insights needs an Azure ML workspace, "
            "which mlctl does not use",
            hint=f"remove it or set it to false; `mlctl service logs {spec.name}` shows the server's output",
        )
    if d.collect_model_data and d.model_data_storage is None:
        raise TargetError(
            f"service {spec.name!r}: collect_model_data on the aci target needs deployment_config.model_data_storage "
            "(a container group has no local store to read back)",
            hint="name the storage account: connection_string_env, connection_string_file or account_url",
        )
    if d.ssl_enabled and not uses_tls(spec):
        raise TargetError(
            f"service {spec.name!r}: ssl_enabled needs ssl_cert_pem_file and ssl_key_pem_file",
            hint="give both files (PEM), or drop ssl_enabled",
        )
    if d.ssl_enabled is False and uses_tls(spec):
        raise TargetError(
            f"service {spec.name!r}: ssl_enabled is false but certificate files are given",
            hint="drop ssl_enabled: false, or the certificate files",
        )
    if d.ssl_cname and not uses_tls(spec):
        reporter.warn(f"ssl_cname {d.ssl_cname} is used only with TLS (ssl_enabled and the certificate files)")
    if not location(spec, settings):
        raise TargetError(
            f"service {spec.name!r}: no Azure location",
            hint="--option location=westeurope on the target, AZURE_DEFAULTS_LOCATION, or deployment_config.location",
        )
