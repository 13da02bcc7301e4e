"""An AKS cluster attached by name (Azure ML's ``AksCompute.attach_configuration(resource_group,
cluster_name)``): its kubeconfig fetched through Azure Resource Manager and kept under
``MLCTL_HOME``, so the kubernetes target then works exactly as with a kubeconfig of the user's.

ARM: ``POST .../Microsoft.ContainerService/managedClusters/{name}/listClusterUserCredential``
(``listClusterAdminCredential`` with ``aks_admin=true``) through ``azure-mgmt-containerservice``'s
``managed_clusters.list_cluster_user_credentials`` / ``list_cluster_admin_credentials``, with
``DefaultAzureCredential``, the subscription, ``base_url`` and ``ca_bundle`` resolved as for the
aci target (``mlctl.targets.aci.render.Settings``). The answer is ``{"kubeconfigs": [{"name",
"value": base64 kubeconfig}]}``; the first kubeconfig is written 0600 to
``MLCTL_HOME/aks/SUBSCRIPTION/GROUP/NAME[-admin].kubeconfig`` and fetched again when it stops
working (``refresh``). The SDK is imported lazily, inside the functions that call ARM.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.errors import MlctlError, NotFoundError, TargetError

OPTIONS = {
    "aks_cluster": "an AKS cluster attached by name: RESOURCE_GROUP/NAME or its resource id; its kubeconfig "
    "is fetched through ARM (listClusterUserCredential) into MLCTL_HOME (subscription as for aci)",
    "aks_admin": "true: fetch the cluster's admin credentials (listClusterAdminCredential) instead of the user's",
    "subscription_id": "Azure subscription id for aks_cluster and registry_resource (AZURE_SUBSCRIPTION_ID overrides)",
    "base_url": "Azure Resource Manager endpoint (default https://management.azure.com)",
    "ca_bundle": "PEM file of CAs to trust for the ARM endpoint (default: the system's)",
    "registry_resource": "an Azure Container Registry (GROUP/NAME, or NAME in aks_cluster's group): images are "
    "pushed there and pulled with its admin credentials (listCredentials), as on the aci target",
}
_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft.ContainerService/"
    r"managedClusters/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)
USER_ROLE = "Azure Kubernetes Service Cluster User Role"
ADMIN_ROLE = "Azure Kubernetes Service Cluster Admin Role"


@dataclass(frozen=True)
class AksCluster:
    """Which cluster, and how to reach ARM (``settings``: an aci ``Settings``, for its
    subscription, base_url and ca_bundle)."""

    resource_group: str
    name: str
    admin: bool
    settings: Any

    @property
    def label(self) -> str:
        """``GROUP/NAME`` for messages."""
        return f"{self.resource_group}/{self.name}"


def parse(options: Mapping[str, str], environ: Mapping[str, str]) -> AksCluster | None:
    """The ``aks_cluster`` option resolved (None without it).

    Raises:
        TargetError: not ``GROUP/NAME`` nor a managedClusters resource id, or no subscription known.
    """
    from mlctl import config
    from mlctl.targets.aci.render import Settings

    ref = options.get("aks_cluster", "")
    if not ref:
        return None
    match = _RESOURCE_ID.match(ref)
    extra: dict[str, str] = {}
    if match is not None:
        group, name, extra = match["rg"], match["name"], {"subscription_id": match["sub"]}
    elif ref.count("/") == 1 and all(ref.split("/")):
        group, name = ref.split("/")
    else:
        raise TargetError(
            f"aks_cluster {ref!r} is neither RESOURCE_GROUP/NAME nor a managedClusters resource id",
            hint="e.g. --option aks_cluster=ml-rg/prod-aks",
        )
    azure = {k: v for k, v in options.items() if k in ("subscription_id", "base_url", "ca_bundle")}
    settings = Settings.resolve({**azure, **extra, "resource_group": group}, environ, config.image_registry())
    if not settings.subscription_id:
        raise TargetError(
            f"aks_cluster {ref}: no Azure subscription is known",
            hint="--option subscription_id=..., AZURE_SUBSCRIPTION_ID, or give the cluster's resource id",
        )
    admin = options.get("aks_admin", "").lower() in ("1", "true", "yes")
    return AksCluster(group, name, admin, settings)


def kubeconfig_file(home: Path, cluster: AksCluster) -> Path:
    """Where the cluster's kubeconfig is kept (0600; its folder 0700)."""
    suffix = "-admin" if cluster.admin else ""
    folder: Path = home / "aks" / cluster.settings.subscription_id / cluster.resource_group
    return folder / f"{cluster.name}{suffix}.kubeconfig"


def kubeconfig(home: Path, cluster: AksCluster, *, refresh: bool = False) -> Path:
    """The cluster's kubeconfig file, fetched through ARM when missing or ``refresh``.

    Raises:
        NotFoundError: the cluster does not exist (ARM ResourceNotFound).
        TargetError: no permission (with the role to ask for), sign-in failed, the resource group
            does not exist, or the kubeconfig needs ``kubelogin`` and it is not installed.
    """
    path = kubeconfig_file(home, cluster)
    if refresh or not path.is_file():
        data = fetch(cluster)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(data)
        temporary.replace(path)
    check_exec(path, cluster)
    return path


def fetch(cluster: AksCluster) -> bytes:
    """The first kubeconfig ARM lists for the cluster (user or admin credentials), decoded.

    Raises: what ``kubeconfig`` raises, except the kubelogin check."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.containerservice import ContainerServiceClient

    s = cluster.settings
    client = ContainerServiceClient(
        DefaultAzureCredential(), s.subscription_id, base_url=s.base_url, connection_verify=s.ca_bundle or True
    )
    clusters = client.managed_clusters
    if cluster.admin:
        list_credentials = clusters.list_cluster_admin_credentials
    else:
        list_credentials = clusters.list_cluster_user_credentials
    with arm_errors(cluster):
        result = list_credentials(cluster.resource_group, cluster.name)
    found = [k.value for k in result.kubeconfigs or [] if k.value]
    if not found:
        raise TargetError(f"AKS cluster {cluster.label} listed no kubeconfig", hint="see `az aks get-credentials`")
    value = found[0]
    return bytes(value) if isinstance(value, (bytes, bytearray)) else base64.b64decode(value)


def check_exec(path: Path, cluster: AksCluster) -> None:
    """Refuse, plainly, a kubeconfig whose user runs ``kubelogin`` (Azure AD clusters) when it is not
    installed. Raises TargetError."""
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(path.read_text()) or {}
    for user in doc.get("users") or []:
        command = ((user.get("user") or {}).get("exec") or {}).get("command")
        if command and shutil.which(command) is None:
            raise TargetError(
                f"the kubeconfig of AKS cluster {cluster.label} authenticates through Azure AD with the "
                f"exec plugin {command!r}, which is not installed",
                hint="install kubelogin (`az aks install-cli`) and sign in (`az login`); or, when the cluster "
                f"allows local accounts, --option aks_admin=true (kubeconfig: {path})",
            )


def connect(home: Path, cluster: AksCluster, *, context: str | None, namespace: str | None) -> Any:
    """A ``kube.Cluster`` through the cluster's kept kubeconfig; when that no longer works
    (credentials rotated, cluster re-created), fetched again once. Raises what ``kubeconfig``
    and ``kube.connect`` raise."""
    from mlctl.targets.kubernetes import cluster as kube

    path = kubeconfig(home, cluster)
    try:
        return kube.connect(context=context, kubeconfig=str(path), namespace=namespace)
    except TargetError:
        fresh = kubeconfig(home, cluster, refresh=True)
        return kube.connect(context=context, kubeconfig=str(fresh), namespace=namespace)


@contextmanager
def arm_errors(cluster: AksCluster) -> Iterator[None]:
    """Azure SDK errors inside the block as mlctl errors, by ARM code (see ``kubeconfig``)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    from mlctl.targets.aci.arm import LOGIN_HINT, _code

    try:
        yield
    except MlctlError:
        raise
    except ClientAuthenticationError as exc:
        raise TargetError(f"Azure authentication failed: {_code(exc)[1]}", hint=LOGIN_HINT) from None
    except ResourceNotFoundError as exc:
        code, message = _code(exc)
        if code == "ResourceGroupNotFound":
            raise TargetError(f"({code}) {message}", hint="check the resource group of aks_cluster") from None
        raise NotFoundError(
            f"AKS cluster {cluster.label} does not exist in subscription {cluster.settings.subscription_id} ({code})",
            hint="`az aks list -o table` lists the clusters you can see; check aks_cluster and subscription_id",
        ) from None
    except HttpResponseError as exc:
        code, message = _code(exc)
        if exc.status_code == 403 or code in ("AuthorizationFailed", "LinkedAuthorizationFailed"):
            role = ADMIN_ROLE if cluster.admin else USER_ROLE
            action = "listClusterAdminCredential" if cluster.admin else "listClusterUserCredential"
            raise TargetError(
                f"no permission to read the credentials of AKS cluster {cluster.label} ({code}): {message}",
                hint=f"ask for the role {role!r} ({action}) on the cluster: `az role assignment create "
                f"--assignee YOUR_ID --role {role!r} --scope $(az aks show -g {cluster.resource_group} "
                f"-n {cluster.name} --query id -o tsv)`",
            ) from None
        raise TargetError(f"Azure refused the request ({code}): {message}", hint="see the message above") from None
