"""The ``aci`` compute target: the web service as an Azure Container Instances container group
(Azure ML's ``AciWebservice``), through ``azure-mgmt-containerinstance`` (api-version
2023-05-01) and ``DefaultAzureCredential``.

One group per service, named after it: one container running the service's image (built and
pushed to the target's registry first for model files or registered models), ``cpu_cores`` and
``memory_gb`` as resource requests (v1 defaults 0.1 and 0.5), a public IP with a DNS label, the
scoring port, restart policy Always, the registry credentials (password by reference) and a
secret volume holding the ``auth_enabled`` keys and the TLS files. The group's tags carry the
service's name, models, image and fingerprint: ``status`` and ``list`` read the cloud.

``update`` changes the group in place, which restarts its container (a brief outage: ACI has no
side-by-side update); if the new container does not become ready, the previous definition is
put back and the update fails with exit 7. ACI stops containers without a SIGTERM, so before an
update, a delete or a key rotation replaces or removes a container that collects model data, the
driver asks its server to write the rows it buffers (``lifecycle.flush_model_data``). Modules:
``render`` (pure), ``arm`` (SDK, errors, LRO), ``lifecycle`` (image, secrets, PUT, readiness).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlctl import config, modeldata
from mlctl.errors import ConflictError, NotFoundError, TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec.document import display_path
from mlctl.spec.records import ServiceSpec
from mlctl.targets import COMMON_KEYS, Deployment, ServiceState, test_record
from mlctl.targets.aci import arm
from mlctl.targets.aci import lifecycle as life
from mlctl.targets.aci import render as r

OPTIONS = {name: text for name, (_, text) in r.OPTION_ENV.items()}
ACI_KEYS = {
    "location",
    "dns_name_label",
    "ssl_enabled",
    "ssl_cname",
    "cmk_vault_base_url",
    "cmk_key_name",
    "cmk_key_version",
    "vnet_name",
    "subnet_name",
    "enable_app_insights",
    "collect_model_data",
    "model_data_storage",
    "gpu_cores",
}
DEPLOYMENT_KEYS = COMMON_KEYS | ACI_KEYS
FOLLOW_POLL_S = 2.0


class Driver:
    """The aci target driver (options: see ``OPTIONS``; the environment overrides them as ``az``'s does).

    Constructing it touches nothing; the first SDK call needs a credential and the ARM endpoint.
    """

    kind = "aci"

    def __init__(self, registry: Registry, home: Path, **options: str) -> None:
        self.registry = registry
        self.home = home
        self.options = options
        self.settings = r.Settings.resolve(options, r.environ(), config.image_registry())
        self._client: Any = None

    # -- the contract ---------------------------------------------------------------------------
    def render(self, deployment: Deployment) -> dict[str, Any]:
        """The ContainerGroup PUT that ``deploy`` would send, secrets redacted (pure)."""
        spec, s = deployment.spec, self.settings
        image = r.image_of(deployment, s)
        secrets = r.Secrets(
            files={n: b"" for n in r.secret_names(spec)},
            environment=dict.fromkeys(r.secure_env_names(spec), r.REDACTED),
        )
        entry = life.spec_entry_name(spec.inference) if spec.inference else "<entry script of the image>"
        doc = r.body(deployment, s, image=image, secrets=secrets, entry=entry, tags=r.group_tags(deployment, image, ""))
        return {
            "target": self.kind,
            "name": spec.name,
            "models": [m.ref for m in deployment.models],
            "resource": f"/subscriptions/{s.subscription_id or '<subscription_id>'}/resourceGroups/"
            f"{s.resource_group or '<resource_group>'}/providers/Microsoft.ContainerInstance/"
            f"containerGroups/{spec.name}",
            "api_version": r.API_VERSION,
            "body": r.redact(doc),
            "scoring_uri": r.scoring_uri(r.predicted_fqdn(spec, s), spec),
        }

    def deploy(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Create the group and wait for the service; a failure deletes the group again."""
        spec = deployment.spec
        self._preflight(spec, reporter)
        if self._group(spec.name) is not None:
            raise ConflictError(
                f"service {spec.name!r} already exists on ACI",
                hint=f"update it with `mlctl service update -f {display_path(spec.spec_file)}`",
            )
        image = life.prepare_image(deployment, self.settings, self.registry, reporter)
        secrets, created_keys = life.secrets_for(spec, self.settings, self.home)
        doc = self._body(deployment, image, secrets)
        try:
            life.put(self.client, self.settings, spec.name, doc, reporter)
            if wait:
                life.wait_ready(self.client, self.settings, spec, timeout_s, reporter)
        except BaseException:
            try:
                with reporter.step(f"removing the failed container group {spec.name}"):
                    life.delete_group(self.client, self.settings, spec.name)
            except Exception as exc:  # noqa: BLE001 - the deploy's own error is the one to report
                reporter.warn(f"the failed container group {spec.name} could not be removed: {exc}")
            if created_keys:
                (life.secrets_dir(self.home, spec.name) / "keys.json").unlink(missing_ok=True)
            raise
        self._save(deployment, doc, secrets)
        return self.status(spec.name)

    def update(
        self, deployment: Deployment, reporter: Reporter, *, wait: bool = True, timeout_s: float = 300.0
    ) -> ServiceState:
        """Change the group in place (its container restarts); put the previous definition back
        when the new container does not become ready."""
        spec = deployment.spec
        if not wait:
            raise TargetError(
                "the aci target cannot update without waiting: a failed update is rolled back once seen",
                hint="drop --no-wait",
            )
        self._preflight(spec, reporter)
        current = self._group(spec.name)
        if current is None:
            raise NotFoundError(
                f"service {spec.name!r} does not exist on ACI",
                hint=f"create it with `mlctl service deploy -f {display_path(spec.spec_file)}`",
            )
        previous = life.load_applied(self.home, spec.name)
        image = life.prepare_image(deployment, self.settings, self.registry, reporter)
        life.check_image(image, self.settings)
        secrets, _ = life.secrets_for(spec, self.settings, self.home)
        doc = self._body(deployment, image, secrets)
        life.flush_model_data(current, self.home, reporter)  # ACI stops it with no SIGTERM
        reporter.info(f"ACI restarts the container of {spec.name} in place: it is briefly unavailable")
        try:
            life.put(self.client, self.settings, spec.name, doc, reporter)
            life.wait_ready(self.client, self.settings, spec, timeout_s, reporter)
        except BaseException:
            self._roll_back(spec, previous, reporter, timeout_s)
            raise
        self._save(deployment, doc, secrets)
        return self.status(spec.name)

    def status(self, name: str) -> ServiceState:
        """The service's state from its group (tags, instance view) and a readiness probe.

        Raises:
            NotFoundError: no mlctl group of that name (or no ACI target is configured).
        """
        group = self._group(name) if self.settings.configured else None
        if group is None or r.TAG_SERVICE not in (group.tags or {}):
            raise NotFoundError(f"service {name!r} does not exist on ACI", hint="`mlctl service list` shows services")
        return self._state(group)

    def list(self) -> Sequence[ServiceState]:
        """Every mlctl group in the target's resource group; unconfigured: those of every
        configured aci target ([] at once, with no network, when there is none)."""
        if not self.settings.configured:
            return self._list_configured()
        with self._errors():
            groups = builtins.list(self.client.container_groups.list_by_resource_group(self.settings.resource_group))
        ours = [self._group(g.name) for g in groups if r.TAG_SERVICE in (g.tags or {})]
        return [self._state(g) for g in ours if g is not None]  # with instance views (a list has none)

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The container's log (``containers.list_logs``; ``follow``: polled every 2 s until the
        group is gone). Raises NotFoundError."""
        self.status(name)
        if not follow:
            yield from (line + "\n" for line in life.log_lines(self.client, self.settings, name, tail))
            return
        seen = life.log_lines(self.client, self.settings, name, None)  # the whole log, to know what is new
        yield from (line + "\n" for line in (seen[-tail:] if tail else seen))
        while True:
            import time

            time.sleep(FOLLOW_POLL_S)
            if self._group(name) is None:
                return
            current = life.log_lines(self.client, self.settings, name, None)
            start = _overlap(seen, current)
            yield from (line + "\n" for line in current[start:])
            seen = current

    def delete(self, name: str, reporter: Reporter, *, wait: bool = True, timeout_s: float = 30.0) -> bool:
        """Delete the group (ACI's 204 for a missing one is success) and the local files."""
        import shutil

        deleted = False
        if self.settings.configured:
            life.flush_model_data(self._group(name), self.home, reporter)  # ACI stops it with no SIGTERM
            with reporter.step(f"deleting container group {name}"):
                deleted = life.delete_group(self.client, self.settings, name)
        shutil.rmtree(life.service_dir(self.home, name), ignore_errors=True)
        self.registry.forget_service(name)
        return deleted

    def keys_changed(self, name: str, reporter: Reporter, timeout_s: float = 300.0) -> None:
        """Send the last definition again with the rotated keys (the container restarts)."""
        previous = life.load_applied(self.home, name)
        if previous is None:
            raise TargetError(f"no definition of {name!r} was applied from here", hint="update the service")
        self._registry_resource(reporter)
        files = life.secret_files_of(previous)
        doc = life.fill(previous, life.stored_secrets(self.settings, self.home, name, files))
        group = self._group(name)
        if group is None:
            raise NotFoundError(f"service {name!r} does not exist on ACI", hint="`mlctl service list` shows services")
        tags = group.tags or {}
        port_tls = (int(tags.get("mlctl-port", "0")), tags.get("mlctl-tls") == "true")
        life.flush_model_data(group, self.home, reporter)  # with the key still valid there (the other one)
        reporter.info(f"ACI restarts the container of {name} with the new keys: it is briefly unavailable")
        life.put(self.client, self.settings, name, doc, reporter)
        life.wait_ready_at(self.client, self.settings, name, port_tls, timeout_s, reporter)

    # -- internals ------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The SDK client (created on first use)."""
        if self._client is None:
            self._client = arm.client(self.settings)
        return self._client

    def _errors(self, name: str = "") -> Any:
        return arm.arm_errors(self.settings, name)

    def _group(self, name: str) -> Any:
        """The group called ``name``, or None."""
        try:
            with self._errors(name):
                return self.client.container_groups.get(self.settings.resource_group, name)
        except NotFoundError:
            return None

    def _preflight(self, spec: ServiceSpec, reporter: Reporter) -> None:
        from mlctl.targets.aci.checks import check_spec

        check_spec(spec, self.settings, reporter)
        with self._errors(spec.name), reporter.step(f"checking resource group {self.settings.resource_group}"):
            builtins.list(self.client.container_groups.list_by_resource_group(self.settings.resource_group))
        self._registry_resource(reporter)

    def _registry_resource(self, reporter: Reporter) -> None:
        if self.settings.registry_resource and not self.settings.registry_password:
            with reporter.step(f"reading the credentials of registry {self.settings.registry_resource}"):
                self.settings = arm.with_registry_resource(self.settings)

    def _body(self, deployment: Deployment, image: str, secrets: r.Secrets) -> dict[str, Any]:
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry = life.entry_name(deployment.spec, image)  # the spec's, else the image's (a spec with an image)
        tags = r.group_tags(deployment, image, created)
        return r.body(deployment, self.settings, image=image, secrets=secrets, entry=entry, tags=tags)

    def _roll_back(
        self, spec: ServiceSpec, previous: dict[str, Any] | None, reporter: Reporter, timeout_s: float
    ) -> None:
        if previous is None:
            reporter.warn(f"no previous definition of {spec.name} was applied from here: it cannot be put back")
            return
        files = life.secret_files_of(previous)
        doc = life.fill(previous, life.stored_secrets(self.settings, self.home, spec.name, files))
        reporter.warn(f"the update failed: putting the previous definition of {spec.name} back")
        try:
            life.put(self.client, self.settings, spec.name, doc, reporter)
            life.wait_ready(self.client, self.settings, spec, timeout_s, reporter)
        except Exception as exc:  # noqa: BLE001 - the update's own error is the one to report
            reporter.warn(f"putting the previous definition back failed too: {exc}")

    def _save(self, deployment: Deployment, doc: dict[str, Any], secrets: r.Secrets) -> None:
        spec = deployment.spec
        life.save_applied(self.home, spec.name, r.redact(doc), secrets)
        # The cloud is the truth; this record lets `mlctl service ...` find the target of a name.
        self.registry.save_service(
            spec.name,
            self.kind,
            {
                "name": spec.name,
                "target": self.kind,
                "target_options": self.options,
                "test": test_record(spec),
                "model_data": modeldata.reference(spec, self.home),
            },
            builtins.list(deployment.models),
        )

    def _state(self, group: Any) -> ServiceState:
        from mlctl.targets.aci.status import state_of

        return state_of(group, self, self.kind)

    def _list_configured(self) -> builtins.list[ServiceState]:
        seen: dict[str, ServiceState] = {}
        for target in config.load().targets.values():
            if target.kind == self.kind:
                for state in Driver(self.registry, self.home, **dict(target.options)).list():
                    seen.setdefault(state.name, state)
        return [seen[n] for n in sorted(seen)]


def _overlap(seen: builtins.list[str], current: builtins.list[str]) -> int:
    """Where the new lines of ``current`` start, given the lines already shown (``seen``)."""
    if current[: len(seen)] == seen:
        return len(seen)
    return 0  # the log restarted (a new container): show it all
