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
import itertools
import os
import time
import uuid
import warnings
from datetime import datetime, timezone

from mlctl.serve import collect
from mlctl.serve.collect import deferred, numeric, rows
from mlctl.serve.collect.deferred import Correlation, Deferred
from mlctl.serve.collect.writer import Batch
from mlctl.serve.context import NO_REQUEST, current_request_id

DESIGNATIONS = ("inputs", "predictions", "labels", "signals", "general")
_DISABLED = (
    "Data collection is not enabled. Set environment variable AML_MODEL_DC_STORAGE_ENABLED to 'true' "
    "to enable (http://aka.ms/amlmodeldatacollection)."
)
# the inputs correlation of the request being scored (a ``deferred.Correlation``)
_request_correlation = contextvars.ContextVar("mlctl_dc_correlation", default=None)
_ARRAY_TYPES = set()  # numpy array types seen by ``collect`` (numpy is not imported here)


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
        self._fast = False  # numeric numpy arrays written by orjson (installed), not the csv module
        self._debug = settings.debug
        self._feature_names = list(feature_names) if feature_names is not None else None
        self._added = contextvars.ContextVar(f"mlctl_dc_added_{id(self)}", default=None)
        self._headers = {}  # (feature names, width) -> CSV header line
        self._paths = {}  # scoring hour (timestamp[:13]) -> file of the layout
        self._array_targets = {}  # (row width, scoring hour) -> (file, header) of numpy arrays
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
        self._inputs = designation == "inputs"
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
        self._constants = {  # the correlation columns in order; id, time and request id vary per row
            self.AML_DC_CORRELATION_HEADER: "",
            self.AML_DC_SCORING_TIMESTAMP_HEADER: "",
            self.AML_DC_BOUNDARY_HEADER: 60 if self.aml_dc_hour_boundary else 60 * 24,
            self.AML_WORKSPACE_HEADER: self.workspace,
            self.AML_SERVICE_NAME_HEADER: self.service_name,
            self.AML_MODEL_NAME_HEADER: self.model_name,
            self.AML_MODEL_VERSION_HEADER: self.model_version,
            self.AML_REQUEST_ID_HEADER: "",
        }
        constant = [str(v) for v in list(self._constants.values())[2:7]]
        # their CSV text, when none needs quotes (else every prefix goes through the csv module)
        self._constants_text = None if deferred.NEEDS_QUOTES.search("".join(constant)) else ",".join(constant) + ","
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
            self._fast = not self._debug and numeric.available()
        self._active = True

    def collect(self, input_data, user_correlation_id=""):
        """Collect ``input_data``; returns the correlation dict for ``inputs``, else None."""
        if not self._active:
            return None
        if (
            type(input_data) in _ARRAY_TYPES
            and self._fast
            and input_data.size
            and input_data.dtype.kind in "iuf"
            and self._added.get() is None
        ):
            return self._collect_array(input_data, user_correlation_id)
        kind = rows.kind_of(input_data)
        if kind is None:
            warnings.warn(
                "collect failed: input data must be list, numpy array, pandas dataframe, or spark "
                "dataframe. Corresponding modules must be installed first.",
                stacklevel=2,
            )
            return None
        if kind == "numpy":
            _ARRAY_TYPES.add(type(input_data))
            if self._fast and self._added.get() is None and numeric.accepts(input_data):
                return self._collect_array(input_data, user_correlation_id)
        entry = self._correlation(user_correlation_id)
        correlation, prefix = entry.values, entry.prefix().decode()
        columns, table = rows.table(input_data, kind)
        columns, table = self._strip_added(columns, table, correlation)
        self._write(correlation, prefix, columns or self._feature_names, table)
        return dict(correlation) if self._designation == "inputs" else None

    def _collect_array(self, data, user_correlation_id):
        """``collect`` of a numeric numpy array with at least one cell, the common case: the
        correlation and a copy of the array go to the writer, which writes the text of many
        requests' arrays at once (``mlctl.serve.collect.deferred``); one function, as calls are
        what costs here."""
        request_id = current_request_id()
        entry = None if self._inputs else _request_correlation.get()
        if entry is None or entry.request_id != request_id or request_id == NO_REQUEST:
            entry = self._new_correlation(request_id, user_correlation_id)
        table = numeric.table_of(data)
        height, width = table.shape
        key = (width, entry.hour)
        target = self._array_targets.get(key)
        if target is None:
            if len(self._array_targets) > 48:
                self._array_targets.clear()
            path = self._path(entry.values[self.AML_DC_SCORING_TIMESTAMP_HEADER])
            target = self._array_targets[key] = (path, self._header(self._feature_names, width))
        self._writer.put(Batch(target[0], target[1], Deferred(entry, table.copy()), height))
        return dict(entry.values) if self._inputs else None

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
        """The ``deferred.Correlation`` of the row being collected: the values ``add_correlations``
        gave, the ``inputs`` row's of this request, or new ones."""
        request_id = current_request_id()
        added = self._added.get()
        if added is not None:
            return Correlation(request_id, added, str(added[self.AML_DC_SCORING_TIMESTAMP_HEADER])[:13], None)
        if self._designation != "inputs":
            earlier = _request_correlation.get()
            if earlier is not None and earlier.request_id == request_id and request_id != NO_REQUEST:
                return earlier
        return self._new_correlation(request_id, user_correlation_id)

    def _new_correlation(self, request_id, user_correlation_id):
        """A new correlation (as ``_correlation`` returns it); an ``inputs`` one becomes the request's."""
        generated = _uuid4()
        correlation_id = f"{user_correlation_id}-{generated}" if user_correlation_id else generated
        timestamp = _timestamp()
        correlation = self._constants.copy()
        correlation[self.AML_DC_CORRELATION_HEADER] = correlation_id
        correlation[self.AML_DC_SCORING_TIMESTAMP_HEADER] = timestamp
        correlation[self.AML_REQUEST_ID_HEADER] = request_id
        entry = Correlation(request_id, correlation, timestamp[:13], self._constants_text)
        if self._inputs:
            _request_correlation.set(entry)
        return entry

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

    def _write(self, correlation, prefix, features, table):
        """Format the rows (each after ``prefix``) and hand them to the writer; headers and paths are cached."""
        if not table:
            return
        header = self._header(features, max(map(len, table)))
        body = rows.prefixed(prefix, table)
        if self._debug:
            print(header + body, end="")
        if self._writer is not None:
            path = self._path(correlation[self.AML_DC_SCORING_TIMESTAMP_HEADER])
            self._writer.put(Batch(path, header, body.encode(), len(table)))

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


_ids = None  # (first 24 characters of a random version-4 UUID, counter): drawn again in each forked worker


def _forget_ids():
    global _ids
    _ids = None


os.register_at_fork(after_in_child=_forget_ids)  # cheaper than comparing os.getpid() (a system call) per row


def _uuid4():
    """A unique id in version-4 UUID form: 74 random bits drawn once per process, then a 48-bit
    counter (as the server's request ids, ``mlctl.serve.app``). Correlation ids must be unique, not
    unpredictable; ``uuid.uuid4()`` reads ``os.urandom`` on every call (a system call that costs
    tens of microseconds in sandboxed containers) and ``str(uuid.UUID)`` a few more."""
    global _ids
    if _ids is None:
        _ids = (str(uuid.UUID(bytes=os.urandom(16), version=4))[:24], itertools.count())
    return f"{_ids[0]}{next(_ids[1]) & 0xFFFFFFFFFFFF:012x}"


_second = (-1, "")  # (whole second, its ISO 8601 text): the date part is formatted once a second


def _timestamp():
    """Now in UTC as ``datetime.isoformat()`` writes it without the offset (``2026-12-05T19:00:00.123456``,
    no fraction on a whole second), as azureml-monitoring 0.1.0a21 wrote ``$aml_dc_scoring_timestamp``."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, datetime.fromtimestamp(whole, timezone.utc).isoformat()[:-6])
    micro = int((now - whole) * 1e6)
    return f"{_second[1]}.{micro:06d}" if micro else _second[1]


def _version(models, name):
    """The deployed version of model ``name``; v1 scripts often name the registered file
    (``model.pkl`` for model ``model``), which ``Model.get_model_path`` also accepts."""
    return models.get(name) or models.get(name.rsplit(".", 1)[0]) or "default"


def _part(text):
    """One folder name of the layout: no separators, never empty, ``.`` or ``..``."""
    cleaned = str(text).replace("/", "_").replace("\\", "_")
    return cleaned if cleaned not in ("", ".", "..") else "default"
