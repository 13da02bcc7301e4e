"""Tensors of the Open Inference Protocol: datatypes, metadata, and JSON <-> numpy conversion.

Source: the open-inference-protocol REST specification (``open_inference_rest.yaml``, "Tensor
Data" and "Tensor Data Types" of ``inference_rest.md``). Tensor data is row-major, either nested
to the tensor's shape or flat; a ``BYTES`` element is a string. numpy is imported only when a
tensor is converted (never at the server's start-up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlctl.serve.fastjson import dumps

# OIP datatype -> numpy dtype name (BYTES: numpy object arrays of str / bytes)
DTYPES = {
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_DATATYPE_OF = {v: k for k, v in DTYPES.items() if k != "BYTES"}


class TensorError(Exception):
    """A request tensor does not fit the protocol or the model (answered 400, message says which)."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as OIP metadata describes it.

    Attributes:
        name: the tensor's name.
        datatype: an OIP datatype (``FP32``, ``BYTES``, ...).
        shape: dimensions; ``-1`` for a variable one.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        """The ``metadata_tensor`` JSON object."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


_BY_DTYPE: dict[Any, str] = {}  # numpy dtype -> OIP datatype, filled as met (str(dtype) is slow)


def datatype_of(dtype: Any) -> str:
    """The OIP datatype of numpy dtype ``dtype`` (strings and objects: ``BYTES``)."""
    found = _BY_DTYPE.get(dtype)
    if found is None:
        found = _BY_DTYPE[dtype] = _DATATYPE_OF.get(str(dtype), "BYTES")
    return found


def decode(tensor: Any) -> Any:
    """The numpy array of one ``request_input`` JSON object (shape and datatype applied).

    Raises:
        TensorError: a key is missing, the datatype is unknown, or the data does not fill ``shape``.
    """
    try:
        name, datatype, shape, data = tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]
    except (KeyError, TypeError):
        if not isinstance(tensor, dict):
            raise TensorError("each of inputs must be an object with name, shape, datatype and data") from None
        missing = next(k for k in ("name", "shape", "datatype", "data") if k not in tensor)
        raise TensorError(f"input {tensor.get('name', '?')!r} has no {missing!r}") from None
    if name.__class__ is not str:
        raise TensorError(f"input name {name!r} is not a string")
    dtype = (_NUMPY_DTYPES.get(datatype) if isinstance(datatype, str) else None) or _numpy_dtype(name, datatype)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise TensorError(f"input {name!r}: shape must be a list of non-negative integers")
    try:
        array = _np.array(data, dtype=dtype)
        if datatype == "BYTES" and array.ndim == 0:
            array = array.reshape(1)
        if array.shape == tuple(shape):  # nested data: already in shape, and an owning array (no view)
            return array
        return array.reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise TensorError(f"input {name!r}: data does not fit shape {shape} of {datatype}: {exc}") from None


_NUMPY_DTYPES: dict[str, Any] = {}  # OIP datatype -> numpy dtype object (a dtype name is parsed each call)
_np: Any = None  # numpy, once a tensor is met


def _numpy_dtype(name: str, datatype: Any) -> Any:
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise TensorError(f"input {name!r}: unknown datatype {datatype!r}; one of {', '.join(DTYPES)}")
    found = _NUMPY_DTYPES[datatype] = _numpy().dtype(DTYPES[datatype])
    return found


def _numpy() -> Any:
    """numpy, imported on first use (and kept in ``_np``)."""
    global _np
    import numpy

    _np = numpy
    return numpy


def encode(name: str, value: Any) -> dict[str, Any]:
    """The ``response_output`` JSON object of ``value`` (an array or anything numpy can hold), flat data."""
    import numpy as np

    array = np.asarray(value)
    datatype = datatype_of(array.dtype)
    if datatype == "BYTES":
        data = [_element_text(v) for v in array.ravel().tolist()]
    else:
        data = array.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def _element_text(value: Any) -> str:
    """A ``BYTES`` element: bytes as UTF-8, a map or a list (an ONNX ``seq(map(...))`` output, as
    scikit-learn classifiers converted with a ZipMap give their probabilities) as JSON text, so a
    client can read it back; anything else as ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


_HEADS: dict[tuple[str, str], str] = {}  # (output name, datatype) -> the JSON text up to the shape's numbers


def encode_json(name: str, value: Any) -> str:
    """``json.dumps(encode(name, value))``, built without the dict (the same text).

    The head (up to the shape's numbers) is cached per output name and datatype; the flat data
    is written by ``json``'s C encoder (``mlctl.serve.fastjson.dumps``); ``BYTES`` data goes
    through ``encode`` (its elements are decoded first).
    """
    np = _np or _numpy()
    array = value if type(value) is np.ndarray else np.asarray(value)
    datatype = datatype_of(array.dtype)
    if datatype == "BYTES":
        return json.dumps(encode(name, array))
    head = _HEADS.get((name, datatype))
    if head is None:
        head = json.dumps({"name": name, "datatype": datatype, "shape": []})[:-2]
        if len(_HEADS) < 1024:
            _HEADS[name, datatype] = head
    shape = array.shape
    dims = str(shape[0]) if len(shape) == 1 else ", ".join(map(str, shape))
    return f'{head}{dims}], "data": {dumps(array.ravel().tolist())}}}'


def specs_from_schema(schema: dict[str, Any]) -> list[TensorSpec]:
    """Tensor metadata of an ``inference-schema`` input/output schema (a JSON schema of an object).

    Each property is a tensor: its nesting depth of ``array`` gives the rank (every dimension
    variable), its leaf type the datatype (number: FP64, integer: INT64, boolean: BOOL, else BYTES).
    """
    leaf_types = {"number": "FP64", "integer": "INT64", "boolean": "BOOL"}
    specs = []
    for name, prop in (schema.get("properties") or {}).items():
        rank = 0
        while isinstance(prop, dict) and prop.get("type") == "array":
            rank, prop = rank + 1, prop.get("items", {})
        leaf = prop.get("type") if isinstance(prop, dict) else None
        specs.append(TensorSpec(name, leaf_types.get(str(leaf), "BYTES"), (-1,) * max(rank, 1)))
    return specs
