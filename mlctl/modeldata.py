"""Model data collection, CLI side: what a target gives the scoring server, and reading rows back.

A service with ``deployment_config.collect_model_data: true`` gets the switches of
azureml-monitoring (``AML_MODEL_DC_STORAGE_ENABLED``, ``SERVICE_NAME``) and mlctl's
(``mlctl.serve.collect.settings``). Its rows go to Azure Blob Storage when ``model_data_storage``
names an account (container ``modeldata``), else to the local store ``MLCTL_HOME/modeldata``, which
has the container's layout. A connection string only ever reaches a server as a secret file
(``MLCTL_DC_STORAGE_FILE``), never in an environment variable, a record or a rendering.

``rows`` and ``joined`` read them back for ``mlctl service data``. ``flush`` asks a running server
to write the rows it buffers (a target that stops servers without a SIGTERM calls it first).
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlctl.errors import TargetError
from mlctl.spec.records import ModelDataStorage, ServiceSpec

CONTAINER = "modeldata"
SECRET_NAME = "modeldata-connection-string"  # file name of the mounted secret, in every target
CORRELATION = "$aml_dc_correlation_id"
TIMESTAMP = "$aml_dc_scoring_timestamp"
META = (
    CORRELATION,
    TIMESTAMP,
    "$aml_dc_boundary",
    "$aml_workspace",
    "$aml_service_name",
    "$aml_model_name",
    "$aml_model_version",
    "$aml_request_id",
)
BLOB_REQUIREMENTS = ("azure-storage-blob>=12.19",)
# writes collected numpy arrays as CSV without a Python object per cell (mlctl.serve.collect.numeric)
FORMAT_REQUIREMENTS = ("orjson>=3.10",)
FLUSH_PATH = "/-/mlctl/model-data/flush"  # mlctl.serve.frontends.internal
FLUSH_WAIT_S = 10.0  # the server's own limit; the request's is a few seconds more


def enabled(spec: ServiceSpec) -> bool:
    """Whether ``spec`` turns collection on."""
    return bool(spec.deployment.collect_model_data)


def local_root(home: Path) -> Path:
    """The local store of every service of ``home`` (the ``modeldata`` container's layout)."""
    return home / CONTAINER


def requirements(spec: ServiceSpec) -> tuple[str, ...]:
    """Packages the service's environment needs for collection (orjson; the blob client, only with an account)."""
    storage = spec.deployment.model_data_storage
    if not enabled(spec):
        return ()
    if storage is None:
        return FORMAT_REQUIREMENTS
    blob = (*BLOB_REQUIREMENTS, "azure-identity>=1.15") if storage.account_url else BLOB_REQUIREMENTS
    return (*FORMAT_REQUIREMENTS, *blob)


def server_env(
    spec: ServiceSpec, models: Sequence[tuple[str, int]], *, local: str | None, secret_file: str | None
) -> dict[str, str]:
    """Environment variables (no secret among them) for a server of ``spec``; {} when collection is off.

    ``models``: (name, version) deployed; ``local``: the local store's path as the server sees it
    (None: not offered on this target); ``secret_file``: where the connection string is mounted.
    """
    if not enabled(spec):
        return {}
    env = {
        "AML_MODEL_DC_STORAGE_ENABLED": "true",
        "SERVICE_NAME": spec.name,
        "MLCTL_DC_MODELS": ",".join(f"{name}:{version}" for name, version in models),
    }
    storage = spec.deployment.model_data_storage
    if storage is None:
        if local is not None:
            env["MLCTL_DC_LOCAL"] = local
        return env
    if storage.account_url:
        env["MLCTL_DC_ACCOUNT_URL"] = storage.account_url
    elif secret_file is not None:
        env["MLCTL_DC_STORAGE_FILE"] = secret_file
    if storage.api_version:
        env["MLCTL_DC_API_VERSION"] = storage.api_version
    return env


def connection_string(storage: ModelDataStorage | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The connection string ``storage`` refers to (None for an account URL or no storage).

    Raises:
        TargetError: the environment variable is unset or the file cannot be read.
    """
    env = os.environ if environ is None else environ
    if storage is None or storage.account_url:
        return None
    if storage.connection_string_env:
        value = env.get(storage.connection_string_env, "").strip()
        if not value:
            raise TargetError(
                f"environment variable {storage.connection_string_env} (model_data_storage) is not set",
                hint=f"export {storage.connection_string_env} with the storage account's connection string",
            )
        return value
    assert storage.connection_string_file is not None
    try:
        return storage.connection_string_file.read_text().strip()
    except OSError as exc:
        raise TargetError(f"cannot read {storage.connection_string_file}: {exc.strerror or exc}") from None


def reference(spec: ServiceSpec, home: Path) -> dict[str, Any] | None:
    """What a service record keeps to read the rows back (a reference, never the secret)."""
    if not enabled(spec):
        return None
    storage = spec.deployment.model_data_storage
    if storage is None:
        return {"store": "local", "root": str(local_root(home))}
    return {
        "store": "blob",
        "connection_string_env": storage.connection_string_env,
        "connection_string_file": str(storage.connection_string_file) if storage.connection_string_file else None,
        "account_url": storage.account_url,
        "api_version": storage.api_version,
    }


# -- reading back ------------------------------------------------------------------------------
def rows(ref: Mapping[str, Any], service: str, designation: str) -> list[dict[str, str]]:
    """Every row of ``designation`` collected by ``service``, oldest first, from the store ``ref``
    (``reference``'s dict). Raises TargetError when the account cannot be reached."""
    texts = (
        _blob_files(ref, service, designation) if ref["store"] == "blob" else _local_files(ref, service, designation)
    )
    found = [row for text in texts for row in csv.DictReader(io.StringIO(text))]
    return sorted(found, key=lambda r: r.get(TIMESTAMP, ""))


def _local_files(ref: Mapping[str, Any], service: str, designation: str) -> Iterator[str]:
    root = Path(ref["root"])
    for file in sorted(root.glob(f"*/*/*/{service}/*/*/{designation}/**/*.csv")):
        yield file.read_text()


def _blob_files(ref: Mapping[str, Any], service: str, designation: str) -> Iterator[str]:
    from azure.core.exceptions import AzureError
    from azure.storage.blob import BlobServiceClient

    storage = ModelDataStorage(
        connection_string_env=ref.get("connection_string_env"),
        connection_string_file=Path(ref["connection_string_file"]) if ref.get("connection_string_file") else None,
        account_url=ref.get("account_url"),
    )
    options = {"api_version": ref["api_version"]} if ref.get("api_version") else {}
    secret = connection_string(storage)
    if secret:
        client = BlobServiceClient.from_connection_string(secret, **options)
    else:
        from azure.identity import DefaultAzureCredential

        client = BlobServiceClient(str(storage.account_url), credential=DefaultAzureCredential(), **options)
    container = client.get_container_client(CONTAINER)
    try:
        for blob in container.list_blobs():
            parts = blob.name.split("/")
            if len(parts) > 7 and parts[3] == service and parts[6] == designation and blob.name.endswith(".csv"):
                yield container.download_blob(blob.name).readall().decode()
    except AzureError as exc:
        raise TargetError(f"cannot read the model data of {service!r}: {type(exc).__name__}") from None


def within(found: list[dict[str, str]], since: str | None, until: str | None) -> list[dict[str, str]]:
    """Rows whose scoring timestamp (ISO 8601, UTC) is in [since, until]."""
    return [r for r in found if (not since or r[TIMESTAMP] >= since) and (not until or r[TIMESTAMP] <= until)]


def joined(inputs: list[dict[str, str]], predictions: list[dict[str, str]]) -> list[dict[str, str]]:
    """Inputs with the predictions of the same correlation id: row by row when both have as many
    rows, else every prediction row beside every input row; ``prediction:NAME`` columns. Inputs
    without predictions are kept (empty prediction columns)."""
    by_id: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in predictions:
        by_id[row.get(CORRELATION, "")].append(row)
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in inputs:
        groups[row.get(CORRELATION, "")].append(row)
    out = []
    for key, group in groups.items():
        matches = by_id.get(key, [])
        if len(matches) == len(group):
            pairs = list(zip(group, matches, strict=True))
        else:
            pairs = [(i, p) for i in group for p in matches] or [(i, {}) for i in group]
        out += [{**i, **{f"prediction:{k}": v for k, v in p.items() if k not in META}} for i, p in pairs]
    return out


def columns(found: list[dict[str, str]]) -> list[str]:
    """Every column of ``found`` in first-seen order."""
    seen: dict[str, None] = {}
    for row in found:
        seen.update(dict.fromkeys(row))
    return list(seen)


def flush(
    base_url: str, keys: Sequence[str] = (), *, tls_cert: Path | None = None, timeout_s: float = FLUSH_WAIT_S
) -> str | None:
    """Ask the scoring server at ``base_url`` (``scheme://host:port``) to write every model data row
    its workers buffer (``POST /-/mlctl/model-data/flush``), waiting up to ``timeout_s`` seconds
    (plus 5 for the answer). ``keys``: the service keys to try in turn while the server answers
    401 (a rotation leaves one valid); none without ``auth_enabled``. ``tls_cert``: the service's
    own certificate, trusted besides the system's (as ``service test`` does).

    Returns None once the server answered that every row is written, else a sentence saying why
    not (no answer, no such route, keys refused, rows left). Never raises; never holds a key."""
    url = f"{base_url}{FLUSH_PATH}?timeout={timeout_s:g}"
    status, doc = 0, dict[str, Any]()
    for key in [*keys] or [""]:
        try:
            status, doc = _post_flush(url, key, tls_cert, timeout_s + 5)
        except (OSError, ValueError) as exc:
            return f"the service did not answer at {base_url}: {getattr(exc, 'reason', None) or exc}"
        if status != 401:
            break
    return _flush_problem(status, doc, timeout_s)


def _post_flush(url: str, key: str, tls_cert: Path | None, timeout_s: float) -> tuple[int, dict[str, Any]]:
    """POST ``url`` (with ``key`` as the Bearer key unless empty): (status, JSON answer or {}).

    Raises:
        OSError: no answer (refused, unreachable, timed out, TLS failed)."""
    import json
    import ssl
    import urllib.error
    import urllib.request

    context = None
    if tls_cert is not None:
        context = ssl.create_default_context()
        context.load_verify_locations(tls_cert)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, raw = exc.code, exc.read()
    try:
        answer = json.loads(raw) if status in (200, 504) else {}
    except ValueError:
        answer = {}
    return status, answer if isinstance(answer, dict) else {}


def _flush_problem(status: int, doc: Mapping[str, Any], timeout_s: float) -> str | None:
    """Why a flush answered ``status`` (with JSON ``doc``) did not write every row; None when it did."""
    if status == 200 and doc.get("written") is True:
        return None
    if status == 504:
        answered, workers = doc.get("workers_answered", "?"), doc.get("workers", "?")
        return (
            f"{doc.get('rows_left', '?')} row(s) were still not written after {timeout_s:g}s "
            f"({answered} of {workers} worker(s) answered): is the storage reachable?"
        )
    if status == 404:
        return "its server has no flush route (an image built before mlctl offered it)"
    if status == 401:
        return "it refused the service keys kept on this machine"
    return f"it answered HTTP {status}"
