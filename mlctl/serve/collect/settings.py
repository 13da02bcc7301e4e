"""Model data collection settings, read from the environment of the scoring server.

The switches azureml-monitoring 0.1.0a21 reads (``AML_MODEL_DC_STORAGE_ENABLED``,
``AML_MODEL_DC_STORAGE``, ``AML_MODEL_DC_DEBUG``, ``AML_MODEL_DC_BOUNDARY``, ``SERVICE_NAME``) and
mlctl's own, which the targets set when ``collect_model_data`` is on:

* ``MLCTL_DC_LOCAL``: folder of the local store (the blob container's layout on disk);
* ``MLCTL_DC_STORAGE_FILE``: file holding the connection string (a mounted secret);
* ``MLCTL_DC_ACCOUNT_URL``: blob account URL, authenticated with ``DefaultAzureCredential``;
* ``MLCTL_DC_API_VERSION``: the Blob REST API version to speak (e.g. one Azurite serves);
* ``MLCTL_DC_BUFFER_ROWS``: rows kept in memory per worker before new rows are dropped (10000);
* ``MLCTL_DC_INTERVAL_S``: longest time in seconds a row waits in memory before it is written,
  unless the buffer passes half full first (0.5);
* ``MLCTL_DC_FLUSH_TIMEOUT_S``: how long a stopping worker waits for its buffered rows to be
  written before it counts the rest as dropped and logs them lost (20; within the 30 s every
  target gives a stopping server before SIGKILL);
* ``MLCTL_DC_MODELS``: ``name:version,...`` of the deployed models (for ``model_version="default"``);
* ``MLCTL_DC_WORKSPACE``: ``subscription/resource group/workspace`` (default ``default/default/default``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BUFFER_ROWS = 10000
DEFAULT_INTERVAL_S = 0.5  # mlctl.serve.collect.writer.INTERVAL_S
DEFAULT_FLUSH_TIMEOUT_S = 20.0
DEFAULT_WORKSPACE = "default/default/default"


@dataclass(frozen=True)
class Settings:
    """Where and how rows are written; ``sink_configured`` false means collection cannot write."""

    enabled: bool = False
    debug: bool = False
    hourly: bool = False
    local_root: Path | None = None
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    api_version: str | None = None
    buffer_rows: int = DEFAULT_BUFFER_ROWS
    interval_s: float = DEFAULT_INTERVAL_S
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S
    service: str = "default"
    workspace: str = DEFAULT_WORKSPACE
    models: Mapping[str, str] = field(default_factory=dict)

    @property
    def sink_configured(self) -> bool:
        """True when rows have somewhere to go (blob account or local folder)."""
        return bool(self.connection_string or self.account_url or self.local_root)


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ`` (default ``os.environ``); a missing secret file reads as no connection string."""
    env = os.environ if environ is None else environ
    connection = env.get("AML_MODEL_DC_STORAGE") or _read_secret(env.get("MLCTL_DC_STORAGE_FILE"))
    local = env.get("MLCTL_DC_LOCAL")
    return Settings(
        enabled=_true(env.get("AML_MODEL_DC_STORAGE_ENABLED")),
        debug=_true(env.get("AML_MODEL_DC_DEBUG")),
        hourly=env.get("AML_MODEL_DC_BOUNDARY") == "hour",
        local_root=Path(local) if local else None,
        connection_string=connection or None,
        account_url=env.get("MLCTL_DC_ACCOUNT_URL") or None,
        api_version=env.get("MLCTL_DC_API_VERSION") or None,
        buffer_rows=max(1, int(env.get("MLCTL_DC_BUFFER_ROWS") or DEFAULT_BUFFER_ROWS)),
        interval_s=max(0.01, float(env.get("MLCTL_DC_INTERVAL_S") or DEFAULT_INTERVAL_S)),
        flush_timeout_s=max(0.0, float(env.get("MLCTL_DC_FLUSH_TIMEOUT_S") or DEFAULT_FLUSH_TIMEOUT_S)),
        service=env.get("SERVICE_NAME") or "default",
        workspace=(env.get("MLCTL_DC_WORKSPACE") or DEFAULT_WORKSPACE).lower(),
        models=_models(env.get("MLCTL_DC_MODELS", "")),
    )


def _read_secret(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _models(text: str) -> dict[str, str]:
    pairs = (item.rpartition(":") for item in text.split(",") if ":" in item)
    return {name: version for name, _, version in pairs if name}
