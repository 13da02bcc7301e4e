"""The cluster connection: kubeconfig or in-cluster configuration, API version discovery, and
applying, reading and deleting a service's objects (``kubernetes`` client, imported lazily).

Objects are written with server-side apply (field manager ``mlctl``), so a re-apply of the same
manifests changes nothing. API errors become mlctl errors here: unreachable API server or
unknown context -> TargetError naming both; 403 -> TargetError naming the verb and resource;
an object of the same name that mlctl does not manage -> ConflictError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.errors import ConflictError, MlctlError, NotFoundError, TargetError
from mlctl.targets.kubernetes.render import LABEL, MANAGED_BY, ApiVersions, names

FIELD_MANAGER = "mlctl"
TIMEOUT = (3.05, 30)  # connect, read seconds of every API request


@dataclass
class Cluster:
    """A connected cluster: the API client, the dynamic client, and where the config came from.

    ``where`` (``context NAME of KUBECONFIG``) names the context and kubeconfig in errors."""

    api: Any
    dynamic: Any
    where: str
    namespace: str

    def core(self) -> Any:
        """``CoreV1Api`` on this connection."""
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def apps(self) -> Any:
        """``AppsV1Api`` on this connection."""
        from kubernetes import client

        return client.AppsV1Api(self.api)


def kubeconfig_path(kubeconfig: str | None) -> str:
    """The kubeconfig file used: the option, else ``KUBECONFIG`` (its first file), else ``~/.kube/config``."""
    if kubeconfig:
        return kubeconfig
    env = os.environ.get("KUBECONFIG", "")
    return env.split(os.pathsep)[0] if env else str(Path("~/.kube/config").expanduser())


def configured(kubeconfig: str | None) -> bool:
    """Whether any cluster configuration exists (a kubeconfig file, or running inside a pod)."""
    return Path(kubeconfig_path(kubeconfig)).is_file() or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def connect(*, context: str | None, kubeconfig: str | None, namespace: str | None, probe: bool = True) -> Cluster:
    """Connect as ``kubectl`` would: the kubeconfig's ``context`` (default: its current one), or
    the in-cluster configuration when there is no kubeconfig and mlctl runs in a pod.
    ``probe``: check that the API server answers (``/version``).

    Raises:
        TargetError: no configuration, unknown context, or the API server does not answer.
    """
    from kubernetes import config as kconfig
    from kubernetes import dynamic

    path = kubeconfig_path(kubeconfig)
    where = f"context {context or '(current)'} of kubeconfig {path}"
    try:
        if not Path(path).is_file() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kconfig.load_incluster_config()  # type: ignore[no-untyped-call]
            from kubernetes import client

            api, where, default_ns = client.ApiClient(), "the in-cluster configuration", _incluster_namespace()
        else:
            api = kconfig.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call]
            contexts, current = kconfig.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
            chosen = next((c for c in contexts if c["name"] == (context or current["name"])), current)
            where = f"context {chosen['name']} of kubeconfig {path}"
            default_ns = chosen.get("context", {}).get("namespace") or "default"
    except (kconfig.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise TargetError(f"cannot use {where}: {exc}", hint=_config_hint(path)) from None
    api.configuration.retries = 1
    cluster = Cluster(api, None, where, namespace or default_ns)
    if probe:
        try:
            from kubernetes import client

            client.VersionApi(api).get_code(_request_timeout=TIMEOUT)
            cluster.dynamic = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - any transport error means: unreachable
            raise translate(exc, cluster, verb="get", resource="version") from None
    return cluster


def _config_hint(path: str) -> str:
    return f"check `kubectl --kubeconfig {path} config get-contexts`; set the target's context/kubeconfig options"


def _incluster_namespace() -> str:
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return "default"


def translate(exc: BaseException, cluster: Cluster, *, verb: str, resource: str) -> MlctlError:
    """An mlctl error for an API or transport failure while doing ``verb`` on ``resource``."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, MlctlError):
        return exc
    if isinstance(exc, ApiException) and exc.status:
        message = _status_message(exc)
        if exc.status == 403:
            return TargetError(
                f"forbidden: cannot {verb} {resource} in namespace {cluster.namespace} ({cluster.where}): {message}",
                hint="ask for an RBAC Role granting it, or use another namespace/context "
                f"(`kubectl auth can-i {verb} {resource} -n {cluster.namespace}`)",
            )
        if exc.status == 401:
            return TargetError(
                f"the API server refused the credentials of {cluster.where}: {message}",
                hint="refresh your credentials (e.g. `az aks get-credentials`)",
            )
        if exc.status == 404:
            return NotFoundError(
                f"{resource} not found in namespace {cluster.namespace}: {message}",
                hint=f"does namespace {cluster.namespace} exist? `kubectl get namespace`",
            )
        return TargetError(
            f"the API server refused to {verb} {resource}: {message}",
            hint="see the message; `mlctl service render` shows what was sent",
        )
    return TargetError(
        f"the Kubernetes API server of {cluster.where} does not answer: {type(exc).__name__}: {str(exc)[:200]}",
        hint="is the cluster running and reachable? try `kubectl cluster-info`",
    )


def _status_message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message", exc.reason))
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def versions(cluster: Cluster) -> ApiVersions:
    """The newest served ``autoscaling`` (v2, v2beta2) and ``policy`` (v1, v1beta1) versions."""
    from kubernetes import client

    try:
        groups = {
            g.name: {v.group_version for v in g.versions}
            for g in client.ApisApi(cluster.api).get_api_versions(_request_timeout=TIMEOUT).groups
        }
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="list", resource="apigroups") from None
    autoscaling = next(
        (v for v in ("autoscaling/v2", "autoscaling/v2beta2") if v in groups.get("autoscaling", ())), "autoscaling/v2"
    )
    policy = next((v for v in ("policy/v1", "policy/v1beta1") if v in groups.get("policy", ())), "policy/v1")
    return ApiVersions(autoscaling=autoscaling, policy=policy)


def resource(cluster: Cluster, manifest: dict[str, Any]) -> Any:
    """The dynamic-client resource of ``manifest``'s apiVersion and kind."""
    return cluster.dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])


def read(cluster: Cluster, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The live object of ``manifest`` (same kind, name, namespace) as a dict, or None."""
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    try:
        found = resource(cluster, manifest).get(
            name=meta["name"], namespace=meta["namespace"], _request_timeout=TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise translate(exc, cluster, verb="get", resource=_plural(manifest)) from None
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="get", resource=_plural(manifest)) from None
    return found.to_dict()  # type: ignore[no-any-return]


def check_owned(cluster: Cluster, manifest: dict[str, Any], service: str) -> dict[str, Any] | None:
    """The live object of ``manifest`` when it belongs to ``service``; None when there is none.

    Raises:
        ConflictError: an object of that name exists and mlctl does not manage it for ``service``.
    """
    live = read(cluster, manifest)
    if live is None:
        return None
    found = live.get("metadata", {}).get("labels") or {}
    if found.get(MANAGED_BY) != "mlctl" or found.get(LABEL) != service:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        raise ConflictError(
            f"{kind} {name} in namespace {cluster.namespace} exists and is not managed by mlctl "
            f"for service {service!r}: mlctl does not overwrite it",
            hint="rename the service, choose another namespace, or remove that object yourself",
        )
    return live


def apply(cluster: Cluster, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Server-side apply ``manifest`` (field manager mlctl, forced); ``dry_run``: ``dryRun=All``."""
    options: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True, "_request_timeout": TIMEOUT}
    if dry_run:
        options["dry_run"] = "All"
    try:
        applied = resource(cluster, manifest).server_side_apply(
            body=manifest, namespace=manifest["metadata"]["namespace"], **options
        )
        return dict(applied.to_dict())
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="patch", resource=_plural(manifest)) from None


def delete(cluster: Cluster, manifest: dict[str, Any]) -> bool:
    """Delete the object of ``manifest`` (foreground: its pods go first); False when there was none."""
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    try:
        resource(cluster, manifest).delete(
            name=meta["name"],
            namespace=meta["namespace"],
            body={"propagationPolicy": "Foreground"},
            _request_timeout=TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise translate(exc, cluster, verb="delete", resource=_plural(manifest)) from None
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster, verb="delete", resource=_plural(manifest)) from None
    return True


def _plural(manifest: dict[str, Any]) -> str:
    kind = manifest["kind"].lower()
    group = manifest["apiVersion"].rpartition("/")[0]
    plural = kind + ("es" if kind.endswith("s") else "s")
    return f"{plural}.{group}" if group else plural


def skeletons(name: str, namespace: str, versions: ApiVersions) -> list[dict[str, Any]]:
    """Name-only manifests of every object a service may have (for reads and deletes)."""
    kinds = [
        ("apps/v1", "Deployment", names(name)["Deployment"]),
        ("v1", "Service", name),
        (versions.autoscaling, "HorizontalPodAutoscaler", name),
        (versions.policy, "PodDisruptionBudget", name),
        ("v1", "Secret", names(name)["Secret"]),
        ("v1", "Secret", names(name)["Secret/registry"]),
        ("v1", "Secret", names(name)["Secret/modeldata"]),
    ]
    return [{"apiVersion": v, "kind": k, "metadata": {"name": n, "namespace": namespace}} for v, k, n in kinds]


def managed_deployments(cluster: Cluster) -> list[Any]:
    """mlctl's Deployments in every namespace (else, without that permission, the cluster's)."""
    selector = f"{MANAGED_BY}=mlctl,{LABEL}"
    apps = cluster.apps()
    try:
        return list(apps.list_deployment_for_all_namespaces(label_selector=selector, _request_timeout=TIMEOUT).items)
    except Exception:  # noqa: BLE001 - no cluster-wide list allowed: the target's namespace
        try:
            return list(
                apps.list_namespaced_deployment(
                    cluster.namespace, label_selector=selector, _request_timeout=TIMEOUT
                ).items
            )
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, cluster, verb="list", resource="deployments.apps") from None


def service_pods(cluster: Cluster, name: str) -> list[Any]:
    """Every pod of service ``name`` (by its ``mlctl.service`` label). Raises TargetError (as
    ``translate``: unreachable, forbidden)."""
    try:
        pods = cluster.core().list_namespaced_pod(
            cluster.namespace, label_selector=f"{LABEL}={name}", _request_timeout=TIMEOUT
        )
    except Exception as exc:  # noqa: BLE001 - every API failure is translated
        raise translate(exc, cluster, verb="list", resource="pods") from None
    return list(pods.items)


def wait_gone(cluster: Cluster, name: str, timeout_s: float) -> None:
    """Wait until service ``name`` has no pods and no Deployment (foreground deletion removes it
    after its pods). Raises WaitTimeout."""
    import time

    deadline = time.monotonic() + timeout_s
    selector = f"{LABEL}={name}"
    while time.monotonic() < deadline:
        pods = cluster.core().list_namespaced_pod(cluster.namespace, label_selector=selector, _request_timeout=TIMEOUT)
        deployments = cluster.apps().list_namespaced_deployment(
            cluster.namespace, label_selector=selector, _request_timeout=TIMEOUT
        )
        if not pods.items and not deployments.items:
            return
        time.sleep(0.5)
    from mlctl.errors import WaitTimeout

    raise WaitTimeout(
        f"the pods of service {name!r} were still there after {timeout_s:.0f}s",
        hint=f"`kubectl -n {cluster.namespace} get pods -l {LABEL}={name}`",
    )
