"""Side effects of the ACI target: the image in the registry, the secrets, one PUT followed to
its end, readiness at the scoring URI, and putting a previous definition back.

Secrets never leave this module except inside the PUT body: the registry password is read from
the environment variable the target names, the ``auth_enabled`` keys from the local key store
(``MLCTL_HOME/services/NAME/secrets/keys.json``, as on the docker target) and the TLS files from
the spec; the service folder keeps the last body sent with every secret redacted
(``applied.json``) and, in ``secrets/``, the copies of the files its secret volume holds, so
a failed update (or a key rotation) can send that definition again.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlctl import keys, modeldata
from mlctl.builder import docker_client, push, service_image
from mlctl.errors import DeploymentError, TargetError, WaitTimeout
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec.records import InferenceConfig, ServiceSpec
from mlctl.targets import Deployment, uses_tls
from mlctl.targets.aci import arm
from mlctl.targets.aci.render import (
    REDACTED,
    TAG_SERVICE,
    Secrets,
    Settings,
    secret_names,
    secure_env_names,
    service_url,
)

LOG_LINES = 30


def service_dir(home: Path, name: str) -> Path:
    """``MLCTL_HOME/services/NAME``: the redacted last body and the secrets folder."""
    return home / "services" / name


def secrets_dir(home: Path, name: str) -> Path:
    """The service's local secret store (mode 0700; files 0600)."""
    return service_dir(home, name) / "secrets"


def prepare_image(deployment: Deployment, settings: Settings, registry: Registry, reporter: Reporter) -> str:
    """The image the group pulls, in the target's registry: the spec's built image (pushed there
    if it is not yet), or a new build of the spec's models and entry script, pushed.

    Raises:
        TargetError: no registry is configured, or the push failed.
        NotFoundError: the spec's image was never built.
        DeploymentError: the image build failed.
    """
    if not settings.registry:
        raise TargetError(
            "ACI pulls the service's image from a registry, and none is configured",
            hint="set MLCTL_REGISTRY (or `registry` in the configuration, "
            "or the target's --option registry_login_server=HOST[:PORT])",
        )
    spec = deployment.spec
    if spec.image is not None:  # pushed there already: nothing to do
        name, _, tag = spec.image.partition(":")
        wanted = f"{settings.registry}/{name}:{tag}"
        if registry.image(name, int(tag)).get("pushed") == wanted:
            return wanted
    name, version = service_image(deployment, registry, reporter)
    with reporter.step(f"pushing {name}:{version} to {settings.registry}") as progress:
        auth = {"username": settings.registry_username, "password": settings.registry_password}
        push(registry, name, version, settings.registry, progress, auth if settings.registry_password else None)
    return f"{settings.registry}/{name}:{version}"


def entry_name(spec: ServiceSpec, image: str) -> str:
    """The entry script's file name in the image (from the spec, or the image's AZUREML_ENTRY_SCRIPT);
    ``""`` for a model served with no code (the image's MLCTL_MODEL_KIND and MLCTL_MODEL_PATH say what)."""
    if spec.inference is not None:
        return spec_entry_name(spec.inference)
    env = docker_client().images.get(image).attrs["Config"].get("Env") or []
    if any(e.startswith("MLCTL_MODEL_KIND=") for e in env):
        return ""
    return next((e.split("=", 1)[1] for e in env if e.startswith("AZUREML_ENTRY_SCRIPT=")), "score.py")


def spec_entry_name(inference: InferenceConfig) -> str:
    """The entry script's file name; ``""`` for a no-code model (``mlctl.model_kinds``)."""
    return inference.entry_script.name if inference.entry_script is not None else ""


def check_image(image: str, settings: Settings) -> None:
    """Ask the registry for ``image`` with the credentials the group will get (before an update
    touches the running group).

    Raises:
        DeploymentError: the registry does not give it with those credentials.
    """
    from docker.errors import APIError

    auth = (
        {"username": settings.registry_username, "password": password(settings)} if settings.registry_username else None
    )
    try:
        docker_client().images.get_registry_data(image, auth_config=auth)
    except APIError as exc:
        raise DeploymentError(
            f"the registry does not give {image} with the group's credentials: {exc.explanation or exc}",
            phase="image pull",
            hint=f"the group would use {settings.credentials_text()}; the running group was not touched",
        ) from None


def password(settings: Settings) -> str:
    """The registry password: read from the registry resource, else from the environment variable
    the target names ('' without one)."""
    return settings.registry_password or os.environ.get(settings.registry_password_env, "")


def secrets_for(spec: ServiceSpec, settings: Settings, home: Path) -> tuple[Secrets, bool]:
    """The secrets of a new definition of ``spec``, and whether its keys were created now (the
    key store is kept across updates).

    Raises:
        SpecError: a TLS file cannot be read.
    """
    from mlctl.errors import SpecError

    files: dict[str, bytes] = {}
    created = False
    if spec.deployment.auth_enabled:
        folder = secrets_dir(home, spec.name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = keys.ensure(folder / "keys.json")
        files["keys.json"] = (folder / "keys.json").read_bytes()
    d = spec.deployment
    for name, source in (("tls-cert.pem", d.ssl_cert_pem_file), ("tls-key.pem", d.ssl_key_pem_file)):
        if name in secret_names(spec) and source is not None:
            try:
                files[name] = source.read_bytes()
            except OSError as exc:
                raise SpecError(f"cannot read {source}: {exc.strerror}", hint="check the path") from None
    environment = {}
    if secure_env_names(spec):
        from mlctl import modeldata

        environment["AML_MODEL_DC_STORAGE"] = modeldata.connection_string(d.model_data_storage) or ""
    return Secrets(registry_password=password(settings), files=files, environment=environment), created


def stored_secrets(settings: Settings, home: Path, name: str, names: list[str]) -> Secrets:
    """The secrets of the definition last applied (from the local store)."""
    folder = secrets_dir(home, name)
    environment = {p.name[len(_ENV_PREFIX) :]: p.read_text() for p in folder.glob(_ENV_PREFIX + "*")}
    files = {n: (folder / n).read_bytes() for n in names}
    return Secrets(registry_password=password(settings), files=files, environment=environment)


_ENV_PREFIX = "secure-env-"  # a stored secure environment value: file secure-env-NAME


def fill(redacted: dict[str, Any], secrets: Secrets) -> dict[str, Any]:
    """A stored (redacted) body with its secrets put back."""
    doc = json.loads(json.dumps(redacted))
    props = doc["properties"]
    for credential in props.get("imageRegistryCredentials", []):
        credential["password"] = secrets.registry_password
    for volume in props.get("volumes", []):
        if "secret" in volume:
            volume["secret"] = {k: base64.b64encode(secrets.files[k]).decode() for k in volume["secret"]}
    for container in props.get("containers", []):
        for variable in container["properties"].get("environmentVariables", []):
            if "secureValue" in variable:
                variable["secureValue"] = secrets.environment[variable["name"]]
    return doc  # type: ignore[no-any-return]


def save_applied(home: Path, spec_name: str, redacted: dict[str, Any], secrets: Secrets) -> None:
    """Keep the redacted body sent and the secret volume's files (0600) for a later re-send."""
    folder = secrets_dir(home, spec_name)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stored = {**secrets.files, **{_ENV_PREFIX + k: v.encode() for k, v in secrets.environment.items()}}
    for name, data in stored.items():
        if name == "keys.json":
            continue  # the key store itself
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, folder / name)
    (service_dir(home, spec_name) / "applied.json").write_text(json.dumps(redacted, indent=1))


def load_applied(home: Path, name: str) -> dict[str, Any] | None:
    """The redacted body last applied from this machine, or None."""
    path = service_dir(home, name) / "applied.json"
    return json.loads(path.read_text()) if path.exists() else None


def secret_files_of(redacted: dict[str, Any]) -> list[str]:
    """The file names of a body's secret volume."""
    return [k for v in redacted["properties"].get("volumes", []) if "secret" in v for k in v["secret"]]


def put(client: Any, settings: Settings, name: str, doc: dict[str, Any], reporter: Reporter) -> Any:
    """PUT the group and follow the operation to its end, one progress line per container event.

    Raises:
        the mlctl errors of ``arm.arm_errors`` (InaccessibleImage: DeploymentError).
    """
    from azure.mgmt.containerinstance.models import ContainerGroup

    assert REDACTED not in json.dumps(doc), "a redacted body must not be sent"
    group = ContainerGroup.from_dict(doc)
    with reporter.step(f"creating container group {name} in {settings.resource_group}") as progress:
        with arm.arm_errors(settings, name):
            poller = client.container_groups.begin_create_or_update(settings.resource_group, name, group)
            watch = arm.EventWatch(
                lambda: client.container_groups.get(settings.resource_group, name), progress, reporter.info
            )
            return arm.follow(poller, watch, settings.polling_interval)


def address(group: Any) -> str:
    """The group's FQDN as ACI assigned it, else its IP."""
    ip = getattr(group, "ip_address", None)
    return str(getattr(ip, "fqdn", None) or getattr(ip, "ip", None) or "")


def wait_ready(client: Any, settings: Settings, spec: ServiceSpec, timeout_s: float, reporter: Reporter) -> Any:
    """Wait until ``/readyz`` answers at the scoring URI of ``spec``'s group; returns the group
    (see ``wait_ready_at``)."""
    return wait_ready_at(client, settings, spec.name, (spec.deployment.port, uses_tls(spec)), timeout_s, reporter)


def wait_ready_at(
    client: Any, settings: Settings, name: str, port_tls: tuple[int, bool], timeout_s: float, reporter: Reporter
) -> Any:
    """Wait until ``/readyz`` answers on the group's address at (port, TLS); returns the group.

    Raises:
        DeploymentError: the container terminated or restarted (its state, events and last log lines).
        WaitTimeout: not ready in time.
    """
    rg = settings.resource_group
    port, tls = port_tls
    deadline = time.monotonic() + timeout_s
    with reporter.step("waiting for init() and /readyz") as progress:
        while True:
            with arm.arm_errors(settings, name):
                group = client.container_groups.get(rg, name)
            state = arm.container_state(group)
            if state["restart_count"] or state["state"] == "Terminated":
                raise DeploymentError(
                    f"the container of {name} did not start: the entry script failed to load or init() raised",
                    phase="init",
                    details=failure_details(client, settings, name, group),
                    hint=f"fix the entry script; `mlctl service logs {name}` shows its output",
                )
            if ready(f"{'https' if tls else 'http'}://{address(group)}:{port}/readyz"):
                return group
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"{name} was not ready after {timeout_s:.0f}s",
                    details=failure_details(client, settings, name, group),
                    hint="init() may be slow: raise --timeout",
                )
            progress(str(state["state"]))
            time.sleep(0.5)


def failure_details(client: Any, settings: Settings, name: str, group: Any) -> list[str]:
    """State, events and the last log lines of the group's container, for an error."""
    state = arm.container_state(group)
    lines = [
        f"state: {state['state']} (restarts {state['restart_count']}, exit code {state['exit_code']}, "
        f"{state['detail']})"
    ]
    lines += [f"event: {e['name']}: {e['message']}" for e in arm.events_of(group)]
    return lines + [f"log: {line}" for line in log_lines(client, settings, name, LOG_LINES)]


def log_lines(client: Any, settings: Settings, name: str, tail: int | None) -> list[str]:
    """The container's log lines (``containers.list_logs``); [] when there are none yet."""
    from azure.core.exceptions import HttpResponseError

    try:
        logs = client.containers.list_logs(settings.resource_group, name, name, tail=tail)
    except HttpResponseError:
        return []
    return (logs.content or "").splitlines()


def collects(group: Any) -> bool:
    """Whether the group's container runs with model data collection on (its environment)."""
    containers = getattr(group, "containers", None) or []
    variables = (getattr(containers[0], "environment_variables", None) or []) if containers else []
    return any(v.name == "AML_MODEL_DC_STORAGE_ENABLED" and v.value == "true" for v in variables)


def flush_model_data(group: Any, home: Path, reporter: Reporter) -> None:
    """Ask the service of ``group`` to write the model data rows its workers buffer, before ACI
    stops its container without a SIGTERM (update, delete, key rotation: Azure/azure-cli#16673), so
    the server's graceful-stop flush cannot run. Only for a running container that collects; with
    ``auth_enabled`` the keys of the local store are sent (never shown). A failure (no answer, an
    image without the route, rows left) is a warning: the caller goes on. Bounded: about 15 s."""
    if group is None or not collects(group) or arm.container_state(group)["state"] != "Running":
        return
    tags = group.tags or {}
    name = tags.get(TAG_SERVICE, group.name)
    tls = tags.get("mlctl-tls") == "true"
    base = service_url("https" if tls else "http", address(group), int(tags.get("mlctl-port", "0")), "")
    secrets = secrets_dir(home, name)
    with reporter.step(f"asking {name} to write the model data rows it buffers"):
        problem = modeldata.flush(
            base,
            keys.values(secrets / "keys.json") if tags.get("mlctl-auth") == "true" else [],
            tls_cert=secrets / "tls-cert.pem" if tls else None,
        )
    if problem is not None:
        reporter.warn(
            f"{name} did not confirm that its buffered model data rows are written ({problem}); "
            "rows collected in its last ~0.5 s may be lost"
        )


def delete_group(client: Any, settings: Settings, name: str) -> bool:
    """Delete the group; False when it did not exist (ACI's 204)."""
    with arm.arm_errors(settings, name):
        return client.container_groups.begin_delete(settings.resource_group, name).result() is not None


def ready(url: str) -> bool:
    """Whether GET ``url`` (a /readyz) answers 200 within 2 s (the certificate is not checked: our own server)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # our own server, probed for readiness
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200  # type: ignore[no-any-return]
    except (OSError, ValueError, urllib.error.URLError):
        return False
