"""``azureml.monitoring.ModelDataCollector``: azureml-monitoring 0.1.0a21's API, written by mlctl.

Contract (azureml-monitoring 0.1.0a21, the last release, whose native writer no longer loads on a
current Linux):

* ``ModelDataCollector(model_name, designation="default", feature_names=None,
  workspace="default/default/default", webservice_name="default", model_version="default",
  collection_name="default")``; scripts written before 0.1.0a15 pass ``identifier=`` for
  ``designation``. Designations: ``inputs``, ``predictions``, ``labels``, ``signals``, ``general``
  (``default`` is ``general``); another prints a message and the collector does nothing.
* ``collect(input_data, user_correlation_id="")`` takes a list (one row), a numpy array or a pandas
  DataFrame; returns the correlation dict for ``inputs``, else None. Nothing happens (and nothing
  is raised) unless ``AML_MODEL_DC_STORAGE_ENABLED=true`` or ``AML_MODEL_DC_DEBUG=true`` (rows
  printed to stdout instead): outside a deployment a script runs as it did under Azure ML.
* ``add_correlations(input_data, correlations)`` returns the data with the correlation values
  appended, as v1 did.

mlctl's rows: the eight ``$aml_*`` correlation columns first, then the features, on every row of
every designation. A ``predictions`` (``labels``, ``signals``) row carries the correlation of the
``inputs`` row collected in the same request (or the one given through ``add_correlations``), so
inputs and predictions join on ``$aml_dc_correlation_id``; ``$aml_request_id`` is the scoring
request's ``x-request-id`` (``mlctl.serve.context``). Rows are buffered and written in the
background (``mlctl.serve.collect``); ``collect`` never blocks and never raises for storage.
"""

import contextvars
import os
import random
import re
import warnings
from datetime import datetime, timezone

from mlctl.serve import collect
from mlctl.serve.collect import columnar, rows
from mlctl.serve.collect.writer import Batch
from mlctl.serve.context import NO_REQUEST, current_request_id

DESIGNATIONS = ("inputs", "predictions", "labels", "signals", "general")
_DISABLED = (
    "Data collection is not enabled. Set environment variable AML_MODEL_DC_STORAGE_ENABLED to 'true' "
    "to enable (http://aka.ms/amlmodeldatacollection)."
)
# the inputs correlation of the request being scored: (request id, correlation dict)
_request_correlation = contextvars.ContextVar("mlctl_dc_correlation", default=None)


class ModelDataCollector:
    """Collects model data (inputs, predictions, ...) of a deployed model; see the module docstring."""

    AML_DC_CORRELATION_HEADER = "$aml_dc_correlation_id"
    AML_DC_SCORING_TIMESTAMP_HEADER = "$aml_dc_scoring_timestamp"
    AML_DC_BOUNDARY_HEADER = "$aml_dc_boundary"
    AML_WORKSPACE_HEADER = "$aml_workspace"
    AML_SERVICE_NAME_HEADER = "$aml_service_name"
    AML_MODEL_NAME_HEADER = "$aml_model_name"
    AML_MODEL_VERSION_HEADER = "$aml_model_version"
    AML_REQUEST_ID_HEADER = "$aml_request_id"

    def __init__(
        self,
        model_name,
        designation="default",
        feature_names=None,
        workspace="default/default/default",
        webservice_name="default",
        model_version="default",
        collection_name="default",
        identifier=None,
    ):
        if identifier is not None and designation == "default":
            designation = identifier  # the pre-0.1.0a15 keyword
        settings = collect.settings()
        self._active = False
        self._writer = None
        self._columnar = False  # numpy arrays formatted by the writer thread (pyarrow installed)
        self._debug = settings.debug
        self._feature_names = list(feature_names) if feature_names is not None else None
        self._added = contextvars.ContextVar(f"mlctl_dc_added_{id(self)}", default=None)
        self._headers = {}  # (feature names, width) -> CSV header line
        self._paths = {}  # scoring hour (timestamp[:13]) -> file of the layout
        if self._debug:
            print(
                "Data collection is in debug mode. Set environment variable AML_MODEL_DC_STORAGE_ENABLED to 'true' "
                "to send data to the cloud (http://aka.ms/amlmodeldatacollection)."
            )
        elif not settings.enabled:
            print(_DISABLED)
            return
        designation = "general" if designation == "default" else designation
        if designation not in DESIGNATIONS:
            print(
                "Incorrect designation value. Supported values: 'default', 'inputs', 'predictions', 'labels', "
                "'signals', 'general'"
            )
            return
        self._designation = designation
        self.model_name = str(model_name)
        self.workspace = settings.workspace if workspace == "default/default/default" else workspace.lower()
        self.service_name = settings.service if webservice_name == "default" else webservice_name
        self.model_version = str(
            _version(settings.models, self.model_name) if model_version == "default" else model_version
        )
        self.aml_dc_hour_boundary = settings.hourly
        self._file = (
            "data.csv"
            if collection_name == "default" or designation in DESIGNATIONS[:3]
            else (f"{_part(collection_name)}.csv")
        )
        if settings.enabled and not settings.sink_configured:
            warnings.warn(
                "initialize failed: environment variable AML_MODEL_DC_STORAGE must be set to an Azure "
                "storage connection string (http://aka.ms/amlmodeldatacollection).",
                stacklevel=2,
            )
            if not self._debug:
                return
        elif settings.enabled:
            self._writer = collect.writer(settings)
            self._columnar = not self._debug and columnar.available()
        self._active = True

    def collect(self, input_data, user_correlation_id=""):
        """Collect ``input_data``; returns the correlation dict for ``inputs``, else None."""
        if not self._active:
            return None
        kind = rows.kind_of(input_data)
        if kind is None:
            warnings.warn(
                "collect failed: input data must be list, numpy array, pandas dataframe, or spark "
                "dataframe. Corresponding modules must be installed first.",
                stacklevel=2,
            )
            return None
        correlation = self._correlation(user_correlation_id)
        if self._columnar and kind == "numpy" and self._added.get() is None and columnar.accepts(input_data):
            self._put_array(correlation, columnar.rows_of(input_data))
            return dict(correlation) if self._designation == "inputs" else None
        columns, table = rows.table(input_data, kind)
        columns, table = self._strip_added(columns, table, correlation)
        self._write(correlation, columns or self._feature_names, table)
        return dict(correlation) if self._designation == "inputs" else None

    def add_correlations(self, input_data, correlations):
        """``input_data`` with the correlation values of ``correlations`` appended (as columns of a
        DataFrame, cells of a list or of every numpy row); ``collect`` of that data writes them once."""
        if correlations is None:
            return input_data
        self._added.set(dict(correlations))
        values = [correlations[name] for name in rows.CORRELATION_COLUMNS]
        kind = rows.kind_of(input_data)
        if kind == "list":
            return list(input_data) + values
        if kind == "numpy":
            import numpy as np

            data = np.array([input_data]) if input_data.ndim == 1 else input_data
            extra = np.repeat(np.array([values], dtype=object), data.shape[0], axis=0)
            return np.append(data, extra, axis=1)
        if kind == "pandas":
            frame = input_data.copy(deep=False)
            for offset, name in enumerate(rows.CORRELATION_COLUMNS):
                frame.insert(len(input_data.columns) + offset, name, correlations[name])
            return frame
        warnings.warn(
            "collect failed: input data must be list, numpy array, pandas dataframe, or spark dataframe. "
            "Corresponding modules must be installed first.",
            stacklevel=2,
        )
        return input_data

    # -- internals ------------------------------------------------------------------------------
    def _correlation(self, user_correlation_id):
        request_id = current_request_id()
        added = self._added.get()
        if added is not None:
            return added
        if self._designation != "inputs":
            earlier = _request_correlation.get()
            if earlier is not None and earlier[0] == request_id and request_id != NO_REQUEST:
                return earlier[1]
        generated = _uuid4()
        correlation = {
            self.AML_DC_CORRELATION_HEADER: f"{user_correlation_id}-{generated}" if user_correlation_id else generated,
            self.AML_DC_SCORING_TIMESTAMP_HEADER: datetime.now(timezone.utc).isoformat()[:-6],  # no "+00:00"
            self.AML_DC_BOUNDARY_HEADER: 60 if self.aml_dc_hour_boundary else 60 * 24,
            self.AML_WORKSPACE_HEADER: self.workspace,
            self.AML_SERVICE_NAME_HEADER: self.service_name,
            self.AML_MODEL_NAME_HEADER: self.model_name,
            self.AML_MODEL_VERSION_HEADER: self.model_version,
            self.AML_REQUEST_ID_HEADER: request_id,
        }
        if self._designation == "inputs":
            _request_correlation.set((request_id, correlation))
        return correlation

    def _strip_added(self, columns, table, correlation):
        """Remove the correlation values ``add_correlations`` appended (they are written as the
        leading ``$aml_*`` columns instead)."""
        if self._added.get() is None:
            return columns, table
        self._added.set(None)
        width = len(rows.CORRELATION_COLUMNS)
        if columns is not None and list(columns[-width:]) == list(rows.CORRELATION_COLUMNS):
            return columns[:-width], [r[:-width] for r in table]
        values = [str(correlation[name]) for name in rows.CORRELATION_COLUMNS]
        if table and len(table[0]) >= width and [str(v) for v in table[0][-width:]] == values:
            return columns, [r[:-width] for r in table]
        return columns, table

    def _write(self, correlation, features, table):
        """Format the rows and hand them to the writer; headers, paths and prefixes are cached."""
        if not table:
            return
        header = self._header(features, max(map(len, table)))
        prefix = _prefix(correlation)
        body = rows.prefixed(prefix, table)
        if self._debug:
            print(header + body, end="")
        if self._writer is not None:
            path = self._path(correlation[self.AML_DC_SCORING_TIMESTAMP_HEADER])
            self._writer.put(Batch(path, header, body, len(table)))

    def _put_array(self, correlation, array):
        """Hand a 2-D numpy array to the writer, which formats it (``mlctl.serve.collect.columnar``)."""
        header = self._header(self._feature_names, array.shape[1])
        path = self._path(correlation[self.AML_DC_SCORING_TIMESTAMP_HEADER])
        self._writer.put(Batch(path, header, "", len(array), _prefix(correlation), array))

    def _header(self, features, width):
        key = (tuple(features) if features else None, width)
        header = self._headers.get(key)
        if header is None:
            header = self._headers[key] = rows.csv_text([rows.header(features, width)])
        return header

    def _path(self, timestamp):
        """The file of the layout for a row scored at ``timestamp`` (cached per hour)."""
        path = self._paths.get(timestamp[:13])
        if path is None:
            if len(self._paths) > 48:
                self._paths.clear()
            when = datetime.fromisoformat(timestamp)
            parts = (self.workspace.split("/") + ["default"] * 3)[:3]
            folder = [*parts, self.service_name, self.model_name, self.model_version, self._designation]
            folder += [f"{when:%Y}", f"{when:%m}", f"{when:%d}"]
            folder += [f"{when:%H}"] if self.aml_dc_hour_boundary else []
            path = self._paths[timestamp[:13]] = "/".join(_part(p) for p in folder) + "/" + self._file
        return path


_random = None  # (pid, random.Random): reseeded in each forked worker, so ids never repeat across workers


_VERSION_4 = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant bits and version 4 (as ``uuid.UUID(version=4)`` sets them)
_NOT_VERSION = ~((0xC000 << 48) | (0xF000 << 64))


def _uuid4():
    """A random (version 4) UUID as text, from a seeded PRNG: ``uuid.uuid4`` reads ``os.urandom``
    on every call, a system call that costs tens of microseconds in sandboxed containers; the text
    is formatted directly (``str(uuid.UUID(...))`` costs a few microseconds per request)."""
    global _random
    if _random is None or _random[0] != os.getpid():
        _random = (os.getpid(), random.Random(os.urandom(32)))
    h = "%032x" % (_random[1].getrandbits(128) & _NOT_VERSION | _VERSION_4)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NEEDS_QUOTES = re.compile('[,"\r\n]')  # what makes the csv module quote a value (QUOTE_MINIMAL)
_prefixes = {}  # correlation id -> the CSV text of its values and a comma (inputs and predictions share it)


def _prefix(correlation):
    key = correlation[ModelDataCollector.AML_DC_CORRELATION_HEADER]
    prefix = _prefixes.get(key)
    if prefix is None:
        if len(_prefixes) > 256:
            _prefixes.clear()
        texts = [str(correlation[name]) for name in rows.CORRELATION_COLUMNS]
        plain = not _NEEDS_QUOTES.search("".join(texts))
        prefix = _prefixes[key] = ",".join(texts) + "," if plain else rows.csv_text([texts])[:-2] + ","
    return prefix


def _version(models, name):
    """The deployed version of model ``name``; v1 scripts often name the registered file
    (``model.pkl`` for model ``model``), which ``Model.get_model_path`` also accepts."""
    return models.get(name) or models.get(name.rsplit(".", 1)[0]) or "default"


def _part(text):
    """One folder name of the layout: no separators, never empty, ``.`` or ``..``."""
    cleaned = str(text).replace("/", "_").replace("\\", "_")
    return cleaned if cleaned not in ("", ".", "..") else "default"
