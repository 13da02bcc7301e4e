"""The ``kubernetes`` compute target: the web service as a Deployment on any conformant cluster
(Azure ML's ``AksWebservice``; AKS, kubeadm, k3s), through the official ``kubernetes`` client and
the user's kubeconfig, as ``kubectl`` reaches it.

A spec becomes (``render``, pure, in ``render.py``) a Deployment, a Service, a keys Secret
(``auth_enabled``, on by default as on AKS), a registry Secret (registry credentials), a
HorizontalPodAutoscaler (autoscaling) and a PodDisruptionBudget (more than one replica); they
are written with server-side apply. The objects' labels (``app.kubernetes.io/managed-by: mlctl``,
``mlctl.service: NAME``) are the source of truth for ``status``/``list``/``logs``; the local
record only lets ``mlctl service ...`` find a service's target and namespace.

Images: a service from model files or registered models is built (``mlctl.builder``) and pushed
to the configured registry (``MLCTL_REGISTRY``), which the cluster must be able to pull from.

Keys: ``MLCTL_HOME/services/NAME/secrets/keys.json`` (0600) is the local copy of the keys
Secret; ``mlctl service keys --regenerate`` rewrites it and ``keys_changed`` updates the Secret,
which the kubelet refreshes in the pods' read-only mount; the scoring server re-reads it, so no
pod restarts.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlctl import keys, modeldata
from mlctl.errors import ConflictError, DeploymentError, NotFoundError, TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec.document import display_path
from mlctl.targets import COMMON_KEYS, Deployment, ServiceState, test_record
from mlctl.targets.kubernetes import aks, rollout, tls
from mlctl.targets.kubernetes import cluster as kube
from mlctl.targets.kubernetes.forward import forwarded
from mlctl.targets.kubernetes.images import image_for, placeholder_image, registry_auth
from mlctl.targets.kubernetes.render import (
    KEYS_FILE,
    LABEL,
    MANAGED_BY,
    ApiVersions,
    Inputs,
    manifests,
    names,
    versions_option,
)
from mlctl.targets.kubernetes.settings import Settings, settings
from mlctl.targets.kubernetes.state import service_state

OPTIONS = {
    "context": "kubeconfig context (default: its current context)",
    "namespace": "namespace of the services (default: the context's, else default)",
    "kubeconfig": "kubeconfig file (default: KUBECONFIG, else ~/.kube/config; in a pod: in-cluster)",
    "api_versions": "what render writes for HPA and PDB (default autoscaling/v2,policy/v1; e.g. "
    "autoscaling/v2beta2,policy/v1beta1 for clusters before 1.23); deploy asks the cluster",
    **aks.OPTIONS,
}
DEPLOYMENT_KEYS = COMMON_KEYS | {"ssl_enabled"} | {
    "gpu_cores", "cpu_cores_limit", "memory_gb_limit", "num_replicas", "autoscale_enabled",
    "autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds",
    "autoscale_target_utilization", "autoscale_metric", "token_auth_enabled",
    "replica_max_concurrent_requests",
    "max_request_wait_time", "period_seconds", "initial_delay_seconds", "timeout_seconds",
    "success_threshold", "failure_threshold", "namespace", "service_type", "collect_model_data",
    "enable_app_insights", "model_data_storage",
}  # fmt: skip


class Driver:
    """The kubernetes target driver.

    Args:
        registry: the model registry (records images and, for look-ups, services).
        home: ``MLCTL_HOME``.
        context, namespace, kubeconfig, api_versions, azure: the target's options (see ``OPTIONS``;
            ``azure``: ``aks_cluster`` and the Azure options, ``mlctl.targets.kubernetes.aks``).

    Raises:
        TargetError: a malformed ``aks_cluster``, or no subscription for it.
    """

    kind = "kubernetes"

    def __init__(
        self, registry: Registry, home: Path, context: str | None = None, namespace: str | None = None,
        kubeconfig: str | None = None,
        api_versions: str | None = None, **azure: str,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.home = home
        self.context = context
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.api_versions = api_versions
        self.azure = azure
        self.aks = aks.parse(azure, os.environ)
        self._acr_auth: tuple[str, str, str] | None = None  # in memory only

    # -- pure -----------------------------------------------------------------------------------
    def render(self, deployment: Deployment) -> dict[str, Any]:
        """The manifests ``deploy`` would apply, secrets redacted (current API versions; the
        driver writes the cluster's). Pure: names the image, builds nothing, reads no cluster."""
        spec = deployment.spec
        s = settings(spec, self.namespace or "default")
        inputs = Inputs(
            image=placeholder_image(spec, self.registry),
            versions=versions_option(self.api_versions),
            fingerprint=json.dumps(deployment.fingerprint, sort_keys=True),
            models=",".join(m.ref for m in deployment.models),
            pull_secret=registry_auth() is not None or "registry_resource" in self.azure,
            **tls.inputs(spec, with_key=False),
        )
        return {
            "target": self.kind,
            "name": spec.name,
            "namespace": s.namespace,
            "models": [m.ref for m in deployment.models],
            "image": inputs.image,
            "scoring_uri": _cluster_uri(spec.name, s.namespace, spec.deployment.port, https=s.tls),
            "manifests": manifests(spec, s, inputs),
        }

    # -- lifecycle ------------------------------------------------------------------------------
    def deploy(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Create the service's objects and wait until the Deployment is available and /readyz
        answers through a port-forward; on failure or Ctrl-C, delete what was created.

        Raises:
            TargetError: cluster unreachable, forbidden, no registry configured.
            ConflictError: the service exists, or an object of its names is not mlctl's.
            DeploymentError: image pull, init() or readiness failed (phase named; nothing left).
        """
        spec = deployment.spec
        cluster, s, versions = self._prepare(deployment)
        if self._owned(cluster, deployment, s, versions) is not None:
            raise ConflictError(
                f"service {spec.name!r} already exists in namespace {s.namespace}",
                hint=f"update it with `mlctl service update -f {display_path(spec.spec_file)}`",
            )
        image = image_for(deployment, self.registry, reporter, auth=self._acr(reporter))
        created_keys = self._ensure_keys(spec.name, s)
        objects = self._objects(deployment, s, versions, image, replicas=None)
        try:
            with reporter.step(f"applying {len(objects)} objects in namespace {s.namespace}"):
                for manifest in objects:
                    kube.apply(cluster, manifest)
            if wait:
                self._wait(cluster, spec.name, s, timeout_s, reporter, rolled_back=False)
        except BaseException:
            with reporter.step("removing the objects of the failed deploy"):
                for manifest in reversed(objects):
                    _quietly(kube.delete, cluster, manifest)
            if created_keys:
                shutil.rmtree(self._secrets_dir(spec.name), ignore_errors=True)
            raise
        self._save(deployment, cluster)
        return self.status(spec.name)

    def update(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Roll the Deployment to the new spec (max unavailable 0); a rollout that fails (or is
        interrupted) is rolled back to the previous pod template, the old pods serving throughout.

        Raises:
            NotFoundError: the service does not exist.
            DeploymentError: the rollout failed (rolled back; phase and pod reason named).
        """
        spec = deployment.spec
        cluster, s, versions = self._prepare(deployment)
        previous = self._owned(cluster, deployment, s, versions)
        if previous is None:
            raise NotFoundError(
                f"service {spec.name!r} does not exist in namespace {s.namespace}",
                hint=f"create it with `mlctl service deploy -f {display_path(spec.spec_file)}`",
            )
        image = image_for(deployment, self.registry, reporter, auth=self._acr(reporter))
        self._ensure_keys(spec.name, s)
        replicas = previous["spec"].get("replicas") if s.autoscale else None  # the HPA's count stays
        objects = self._objects(deployment, s, versions, image, replicas=replicas)
        try:
            with reporter.step(f"applying {len(objects)} objects in namespace {s.namespace}"):
                for manifest in objects:
                    kube.apply(cluster, manifest)
            if wait:
                self._wait(cluster, spec.name, s, timeout_s, reporter, rolled_back=True, previous=previous)
        except DeploymentError:
            raise  # already rolled back
        except BaseException:
            rollout.roll_back(cluster, previous, reporter)
            raise
        self._save(deployment, cluster)
        return self.status(spec.name)

    def status(self, name: str) -> ServiceState:
        """The service's state from its objects. Raises NotFoundError, TargetError."""
        cluster = self._connect()
        dep = self._deployment(cluster, name)
        return service_state(cluster, dep, keys_file=self._keys_file(cluster, name, dep), home=self.home)

    def list(self) -> Sequence[ServiceState]:
        """Every mlctl service on the cluster (all namespaces, else the target's); [] at once
        when no cluster is configured or it does not answer (``mlctl service list`` asks every target)."""
        kept = aks.kubeconfig_file(self.home, self.aks) if self.aks is not None else None
        if not (kept.is_file() if kept is not None else kube.configured(self.kubeconfig)):
            return []
        try:
            cluster = self._connect()
            found = kube.managed_deployments(cluster)
        except (TargetError, NotFoundError):
            return []
        return [
            service_state(
                cluster,
                d,
                keys_file=self._keys_file(cluster, d.metadata.name, d, fetch=False),
                home=self.home,
                fetch=False,
            )
            for d in sorted(found, key=lambda d: (d.metadata.namespace, d.metadata.name))
        ]

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Every replica's log lines, each prefixed with ``[POD]`` (``follow``: streamed, from the
        pods running when it starts). Raises NotFoundError."""
        from mlctl.targets.kubernetes.logs import pod_logs

        cluster = self._connect()
        self._deployment(cluster, name)
        return pod_logs(cluster, name, follow=follow, tail=tail)

    def delete(self, name: str, reporter: Reporter, *, wait: bool = True, timeout_s: float = 30.0) -> bool:
        """Delete every object of the service (only those mlctl manages) and wait for its pods
        to go (``timeout_s`` plus their grace period); False when there was nothing."""
        cluster = self._connect()
        versions = kube.versions(cluster)
        deleted = False
        with reporter.step(f"deleting {name} in namespace {cluster.namespace}"):
            for manifest in kube.skeletons(name, cluster.namespace, versions):
                try:
                    live = kube.check_owned(cluster, manifest, name)
                except ConflictError:
                    continue  # not ours: never delete it
                if live is not None:
                    deleted = kube.delete(cluster, manifest) or deleted
            deleted = tls.delete_all(cluster, name) or deleted
            if wait and deleted:
                kube.wait_gone(cluster, name, timeout_s + 60)
        shutil.rmtree(self.home / "services" / name, ignore_errors=True)
        self.registry.forget_service(name)
        return deleted

    # -- hooks used by the CLI ------------------------------------------------------------------
    @contextmanager
    def endpoint(self, name: str) -> Iterator[str]:
        """A scoring URI reachable from here while the block runs: the load balancer's, else a
        port-forward to a ready pod through the API server. Raises NotFoundError, DeploymentError."""
        state = self.status(name)
        if state.details.get("load_balancer"):
            yield state.scoring_uri
            return
        cluster = self._connect()
        pods = rollout.ready_pods(cluster, name)
        if not pods:
            raise DeploymentError(
                f"service {name!r} has no ready pod",
                phase="readiness",
                hint=f"see `mlctl service show {name}` and `mlctl service logs {name}`",
            )
        with forwarded(cluster, pods[0].metadata.name, int(state.details["port"])) as port:
            yield f"{tls.scheme(pods[0].spec)}://127.0.0.1:{port}/score"

    def keys_changed(self, name: str, reporter: Reporter) -> None:
        """Copy the local keys file into the service's keys Secret (after ``keys --regenerate``);
        the pods' mounted file follows within the kubelet's sync period, without a restart."""
        cluster = self._connect()
        data = base64.b64encode(self._secrets_dir(name).joinpath(KEYS_FILE).read_bytes()).decode()
        try:
            cluster.core().patch_namespaced_secret(
                names(name)["Secret"], cluster.namespace, {"data": {KEYS_FILE: data}}, _request_timeout=kube.TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001
            raise kube.translate(exc, cluster, verb="patch", resource="secrets") from None

    def attach(self) -> None:
        """``target add``: fetch an attached AKS cluster's kubeconfig now (nothing otherwise).
        Raises what ``aks.kubeconfig`` raises."""
        if self.aks is not None:
            aks.kubeconfig(self.home, self.aks, refresh=True)

    # -- internals ------------------------------------------------------------------------------
    def _acr(self, reporter: Reporter) -> tuple[str, str, str] | None:
        """The registry_resource's (login server, user, password), read once through ARM; None without one."""
        resource = self.azure.get("registry_resource")
        if resource and self._acr_auth is None:
            with reporter.step(f"reading the credentials of registry {resource}"):
                group = self.aks.resource_group if self.aks is not None else ""
                from mlctl.targets.aci.arm import acr_credentials

                self._acr_auth = acr_credentials(self.azure, group)
        return self._acr_auth

    def _connect(self, namespace: str | None = None) -> kube.Cluster:
        if self.aks is not None:
            return aks.connect(self.home, self.aks, context=self.context, namespace=namespace or self.namespace)  # type: ignore[no-any-return]
        return kube.connect(context=self.context, kubeconfig=self.kubeconfig, namespace=namespace or self.namespace)

    def _prepare(self, deployment: Deployment) -> tuple[kube.Cluster, Settings, ApiVersions]:
        spec = deployment.spec
        settings(spec)  # bad input first: before any cluster or build work
        from mlctl.targets.kubernetes.images import target_registry

        if "registry_resource" not in self.azure:
            target_registry()  # no registry configured: say so before connecting
        cluster = self._connect(spec.deployment.namespace)
        s = settings(spec, cluster.namespace)
        return cluster, s, kube.versions(cluster)

    def _owned(
        self, cluster: kube.Cluster, deployment: Deployment, s: Settings, versions: ApiVersions
    ) -> dict[str, Any] | None:
        """The live Deployment of the service (None: absent), after checking that every object of
        its names is mlctl's (ConflictError otherwise: never overwrite someone else's object)."""
        name = deployment.spec.name
        tls.check_owned(cluster, deployment.spec)
        found = {
            m["kind"]: kube.check_owned(cluster, m, name) for m in kube.skeletons(name, cluster.namespace, versions)
        }
        return found["Deployment"]

    def _objects(
        self, deployment: Deployment, s: Settings, versions: ApiVersions, image: str, *, replicas: int | None
    ) -> builtins.list[dict[str, Any]]:
        spec = deployment.spec
        key_bytes = self._secrets_dir(spec.name).joinpath(KEYS_FILE).read_bytes() if s.auth else None
        inputs = Inputs(
            image=image,
            versions=versions,
            fingerprint=json.dumps(deployment.fingerprint, sort_keys=True),
            models=",".join(m.ref for m in deployment.models),
            keys=key_bytes,
            registry_auth=self._acr_auth or registry_auth(),
            replicas=replicas,
            modeldata_connection=modeldata.connection_string(spec.deployment.model_data_storage)
            if modeldata.enabled(spec)
            else None,
            **tls.inputs(spec, with_key=True),
        )
        return manifests(spec, s, inputs)

    def _wait(
        self,
        cluster: kube.Cluster,
        name: str,
        s: Settings,
        timeout_s: float,
        reporter: Reporter,
        *,
        rolled_back: bool,
        previous: dict[str, Any] | None = None,
    ) -> None:
        with reporter.step("waiting for the rollout (pods available and ready)") as progress:
            failure = rollout.wait(cluster, name, timeout_s=timeout_s, progress=progress)
        if failure is not None:
            if previous is not None:
                rollout.roll_back(cluster, previous, reporter)
            raise failure.error(name, rolled_back=rolled_back)
        with reporter.step("checking /readyz through a port-forward"):
            rollout.check_readyz(cluster, name)
        tls.prune(cluster, name)  # TLS Secrets of templates no longer running

    def _deployment(self, cluster: kube.Cluster, name: str) -> Any:
        try:
            dep = cluster.apps().read_namespaced_deployment(name, cluster.namespace, _request_timeout=kube.TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            error = kube.translate(exc, cluster, verb="get", resource="deployments.apps")
            if isinstance(error, NotFoundError):
                raise NotFoundError(
                    f"service {name!r} does not exist in namespace {cluster.namespace}",
                    hint="`mlctl service list` shows services",
                ) from None
            raise error from None
        found = dep.metadata.labels or {}
        if found.get(MANAGED_BY) != "mlctl" or found.get(LABEL) != name:
            raise NotFoundError(
                f"service {name!r} does not exist in namespace {cluster.namespace} "
                "(a Deployment of that name is not mlctl's)"
            )
        return dep

    def _secrets_dir(self, name: str) -> Path:
        return self.home / "services" / name / "secrets"

    def _ensure_keys(self, name: str, s: Settings) -> bool:
        if not s.auth:
            return False
        folder = self._secrets_dir(name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return keys.ensure(folder / KEYS_FILE)

    def _keys_file(self, cluster: kube.Cluster, name: str, dep: Any, *, fetch: bool = True) -> str | None:
        """The local copy of the keys (fetched from the Secret when missing here), or None without auth."""
        volumes = dep.spec.template.spec.volumes or []
        if not any(v.secret is not None and v.secret.secret_name == names(name)["Secret"] for v in volumes):
            return None
        path = self._secrets_dir(name) / KEYS_FILE
        if not path.exists() and fetch:
            secret = cluster.core().read_namespaced_secret(
                names(name)["Secret"], cluster.namespace, _request_timeout=kube.TIMEOUT
            )
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            keys._write(path, json.loads(base64.b64decode(secret.data[KEYS_FILE])))
        return str(path)

    def _save(self, deployment: Deployment, cluster: kube.Cluster) -> None:
        options = {
            "namespace": cluster.namespace,
            **({"context": self.context} if self.context else {}),
            **({"kubeconfig": self.kubeconfig} if self.kubeconfig else {}),
            **self.azure,
        }
        self.registry.save_service(
            deployment.spec.name, self.kind,
            {"name": deployment.spec.name, "target": self.kind, "target_options": options,
             "test": test_record(deployment.spec), "model_data": modeldata.reference(deployment.spec, self.home)},
            list(deployment.models),
        )  # fmt: skip


def _cluster_uri(name: str, namespace: str, port: int, *, https: bool) -> str:
    return f"{'https' if https else 'http'}://{name}.{namespace}.svc.cluster.local:{port}/score"


def _quietly(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except Exception:  # noqa: BLE001,S110 - best effort while cleaning up after another error
        pass
