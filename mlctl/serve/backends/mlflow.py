"""An MLflow model folder served with no entry script ("no-code deployment").

Loading goes through MLflow's own loader, ``mlflow.pyfunc.load_model``, so every pyfunc flavor
works (custom ``python_model`` classes included); ``mlflow-skinny`` in the service's environment
is enough, the flavor's libraries come from the model's own requirements. The model's signature
is enforced by MLflow's ``predict`` (a request that does not fit: 400 with MLflow's message,
which names the column or tensor).

Request formats, as MLflow's scoring server documents them (``mlflow/pyfunc/scoring_server``) and
Azure ML v2 wraps them:

* ``application/json``: an object with exactly one of ``dataframe_split`` (pandas split
  orientation), ``dataframe_records`` (a list of records), ``instances`` (rows: a list of values,
  or of records turned into named columns), ``inputs`` (a tensor, or named tensors), plus
  optional ``params`` (passed to ``predict(params=...)``). Azure ML v2's ``{"input_data": X}``:
  an ``X`` with ``columns``/``data`` is a split data frame, anything else is ``inputs``.
* ``text/csv``: a data frame with a header row.

Answers: ``/invocations`` ``{"predictions": P}`` as MLflow; ``/score`` ``P`` itself as Azure ML v2.
``P`` is a data frame's records, an array's nested lists, or the value as it is. numpy, pandas
and mlflow are imported in ``init()``, so only MLflow services load them.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from mlctl.serve.backends.entry_script import BadInput, EntryScriptError
from mlctl.serve.request import Request
from mlctl.serve.tensors import TensorError, TensorSpec, datatype_of

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_COLUMN_TYPES = {  # MLflow DataType -> (numpy dtype for casting, OIP datatype)
    "double": ("float64", "FP64"),
    "float": ("float32", "FP32"),
    "long": ("int64", "INT64"),
    "integer": ("int32", "INT32"),
    "boolean": ("bool", "BOOL"),
    "string": (None, "BYTES"),
    "binary": (None, "BYTES"),
    "datetime": (None, "BYTES"),
}
_BAD_FORMAT = (
    "the JSON body must be an object with exactly one of dataframe_split, dataframe_records, "
    "instances, inputs (and optionally params); Azure ML's input_data wrapper is accepted too"
)


class MlflowModel:
    """An MLflow model folder behind ``ModelBackend`` and ``TensorModel`` (see ``mlctl.serve.backends``).

    Args:
        path: the folder holding ``MLmodel``.

    Raises:
        EntryScriptError: ``path`` has no ``MLmodel`` file.
    """

    mode = "mlflow"
    platform = "mlflow"
    fast = False

    def __init__(self, path: Path) -> None:
        if not (path / "MLmodel").is_file():
            raise EntryScriptError(f"{path} is not an MLflow model folder: it has no MLmodel file")
        self.path = path
        self.model: Any = None
        self.schema: Any = None
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._takes_params = False

    def init(self) -> None:
        """Load the model with ``mlflow.pyfunc.load_model`` and read its signature."""
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(str(self.path))
        self.schema = self.model.metadata.get_input_schema()
        self._takes_params = "params" in inspect.signature(self.model.predict).parameters
        self.inputs = _tensor_specs(self.schema)
        self.outputs = _tensor_specs(self.model.metadata.get_output_schema())
        if len(self.outputs) != 1 or self.outputs[0].name != "predictions":
            self.outputs = [TensorSpec("predictions", s.datatype, s.shape) for s in self.outputs[:1]]

    def call(self, request: Request) -> Any:
        """``/score``: the predictions for ``request`` (JSON-serialisable).

        Raises:
            BadInput: the body is not one of the formats, or does not fit the signature (400).
        """
        mimetype = "text/csv" if request.mimetype == "text/csv" else "application/json"  # Azure ML: JSON unless CSV
        return self.predictions(mimetype, request.data)

    def call_body(self, body: bytes) -> Any:
        """``/score`` for a JSON body."""
        return self.predictions("application/json", body)

    def predictions(self, mimetype: str, body: bytes) -> Any:
        """The model's predictions (JSON-ready) for a body of content type ``mimetype``.

        Raises:
            BadInput: 400 a body that does not parse or fit; 415 a content type other than JSON or CSV.
        """
        data, params = self._parse(mimetype, body)
        return jsonable(self._predict(data, params))

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """OIP inference: named arrays as the signature's columns or tensors; the output ``predictions``.

        Raises:
            TensorError: the inputs do not fit the signature (MLflow's message).
        """
        data: Any = inputs
        if self.schema is not None and not self.schema.is_tensor_spec():
            import pandas as pd

            data = pd.DataFrame({name: _column(value) for name, value in inputs.items()})
        elif len(inputs) == 1 and (self.schema is None or not self.schema.has_input_names()):
            data = next(iter(inputs.values()))
        try:
            result = self._predict(data, None)
        except BadInput as exc:
            raise TensorError(str(exc)) from None
        return _outputs(result)

    def swagger_schemas(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """JSON schemas of ``/score``'s body and answer, from the signature (columns named and typed)."""
        columns = {spec.name: _json_type(spec.datatype) for spec in self.inputs}
        split = {
            "type": "object",
            "properties": {"columns": {"type": "array", "items": {"enum": list(columns)}}, "data": {"type": "array"}},
            "required": ["data"],
        }
        records = {"type": "array", "items": {"type": "object", "properties": columns}}
        formats = {"input_data": split, "dataframe_split": split, "dataframe_records": records}
        formats.update({key: {} for key in ("instances", "inputs")})
        request = {"type": "object", "properties": {**formats, "params": {"type": "object"}}}
        return request, {"type": "array"}

    def _parse(self, mimetype: str, body: bytes) -> tuple[Any, dict[str, Any] | None]:
        if mimetype == "text/csv":
            import io

            import pandas as pd

            try:
                return self._cast(pd.read_csv(io.StringIO(body.decode("utf-8")))), None
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadInput(f"the CSV body cannot be read: {exc}") from None
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            raise BadInput(f"content type {mimetype!r} is not served; send application/json or text/csv", 415)
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise BadInput(f"the body is not JSON: {exc}") from None
        if isinstance(doc, dict) and "input_data" in doc:
            doc = _from_azureml(doc)
        if not isinstance(doc, dict):
            raise BadInput(_BAD_FORMAT)
        given = [key for key in FORMATS if key in doc]
        if len(given) != 1 or set(doc) - {*FORMATS, "params"}:
            raise BadInput(f"{_BAD_FORMAT}; got keys {sorted(doc)}")
        params = doc.get("params")
        if params is not None and not isinstance(params, dict):
            raise BadInput("params must be a JSON object")
        return self._data(given[0], doc[given[0]]), params

    def _data(self, key: str, value: Any) -> Any:
        import numpy as np
        import pandas as pd

        try:
            if key == "dataframe_split":
                if not isinstance(value, dict) or "data" not in value or set(value) - {"columns", "data", "index"}:
                    raise BadInput("dataframe_split must be an object with data (and columns, index)")
                return self._cast(pd.DataFrame(**value))
            if key == "dataframe_records":
                if not isinstance(value, list):
                    raise BadInput("dataframe_records must be a list of records")
                return self._cast(pd.DataFrame(value))
            if key == "instances" and isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                value = {name: [row.get(name) for row in value] for name in value[0]}
            if isinstance(value, dict):
                return {name: self._typed(np, name, v) for name, v in value.items()}
            return np.array(value)
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{key} is not a valid data frame or tensor: {exc}") from None

    def _typed(self, np: Any, name: str, value: Any) -> Any:
        """A named tensor as an array of its signature column's type, when it has one and that works."""
        dtype = self._column_dtypes().get(name)
        try:
            return np.array(value, dtype=dtype)
        except (ValueError, TypeError):
            return np.array(value)  # left as sent: predict() names the column that does not fit

    def _column_dtypes(self) -> dict[str, str]:
        if self.schema is None or self.schema.is_tensor_spec():
            return {}
        types = {spec.name: _COLUMN_TYPES.get(_type_name(spec.type), (None, ""))[0] for spec in self.schema.inputs}
        return {name: dtype for name, dtype in types.items() if dtype is not None}

    def _cast(self, frame: Any) -> Any:
        """Columns cast to the signature's types where that works (MLflow's enforcement says the rest)."""
        for name, dtype in self._column_dtypes().items():
            if name in frame.columns:
                try:
                    frame[name] = frame[name].astype(dtype)
                except (ValueError, TypeError):
                    pass  # left as sent: predict() names the column that does not fit
        return frame

    def _predict(self, data: Any, params: dict[str, Any] | None) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            if self._takes_params:
                return self.model.predict(data, params=params)
            return self.model.predict(data)
        except MlflowException as exc:
            raise BadInput(exc.message) from None


def jsonable(value: Any) -> Any:
    """Predictions as JSON values: a data frame's records, an array's or series' lists, else as is."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return value.to_dict(orient="records")
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _outputs(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    if hasattr(result, "columns"):
        return {str(name): result[name].to_numpy() for name in result.columns}
    return {"predictions": result}


def _from_azureml(doc: dict[str, Any]) -> dict[str, Any]:
    """Azure ML v2's ``{"input_data": X, "params": ...}`` as MLflow's own format."""
    data = doc["input_data"]
    out: dict[str, Any] = {k: v for k, v in doc.items() if k != "input_data"}
    if isinstance(data, dict) and "data" in data and set(data) <= {"columns", "data", "index"}:
        out["dataframe_split"] = data
    else:
        out["inputs"] = data
    return out


def _tensor_specs(schema: Any) -> list[TensorSpec]:
    """OIP metadata of an MLflow schema: a column is a ``[-1]`` tensor; a tensor spec keeps its shape."""
    if schema is None:
        return []
    specs = []
    for i, spec in enumerate(schema.inputs):
        name = spec.name or f"input-{i}"
        if schema.is_tensor_spec():
            specs.append(TensorSpec(name, datatype_of(spec.type), tuple(spec.shape)))
        else:
            specs.append(TensorSpec(name, _COLUMN_TYPES.get(_type_name(spec.type), (None, "BYTES"))[1], (-1,)))
    return specs


def _json_type(datatype: str) -> dict[str, Any]:
    kinds = {"BOOL": "boolean", "BYTES": "string"}
    return {"type": kinds.get(datatype, "integer" if "INT" in datatype else "number")}


def _type_name(data_type: Any) -> str:
    return str(getattr(data_type, "name", data_type))


def _column(value: Any) -> Any:
    """An OIP tensor as a data frame column: ``[N]`` as it is, ``[N, 1]`` flattened."""
    if value.ndim == 2 and value.shape[1] == 1:
        return value[:, 0]
    if value.ndim != 1:
        raise TensorError(f"a column tensor must have shape [N] or [N, 1], not {list(value.shape)}")
    return value
