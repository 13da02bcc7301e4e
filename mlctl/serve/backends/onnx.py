"""An ONNX model served as it is, through ONNX Runtime: no entry script.

* The model is a ``.onnx`` file, or a folder holding exactly one (searched recursively).
* The graph's inputs and outputs are the service's: their names, element types (as OIP
  datatypes) and shapes (``-1`` for a symbolic or unknown dimension).
* ``/score`` takes a JSON object: ``{"data": ...}`` for a graph with one input, else one key per
  input name. Values are cast to the input's element type; a rank or fixed dimension that does
  not fit is a 400 naming the input. The answer: the single output's value (nested lists, the
  output's own shape; a ``[N, 1]`` output, one value a row as converted regressors give, as a
  list of ``N``, like scikit-learn's ``predict``), or an object of outputs by name.
* OIP ``infer`` gets and returns the named tensors themselves.

ONNX Runtime and numpy are imported in ``init()``, so only ONNX services load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlctl.serve.answers import JSONText
from mlctl.serve.backends.entry_script import BadInput, EntryScriptError
from mlctl.serve.fastjson import dumps, loads
from mlctl.serve.request import Request
from mlctl.serve.tensors import DTYPES, TensorError, TensorSpec

_ELEMENT_TYPES = {  # ONNX Runtime's "tensor(...)" names -> OIP datatypes
    "float": "FP32",
    "double": "FP64",
    "float16": "FP16",
    "bool": "BOOL",
    "string": "BYTES",
    **{f"int{b}": f"INT{b}" for b in (8, 16, 32, 64)},
    **{f"uint{b}": f"UINT{b}" for b in (8, 16, 32, 64)},
}


def find_onnx(path: Path) -> Path:
    """The ``.onnx`` file at ``path`` (itself, or the only one in that folder).

    Raises:
        EntryScriptError: none or several.
    """
    if path.is_file():
        return path
    found = sorted(path.rglob("*.onnx")) if path.is_dir() else []
    if len(found) != 1:
        what = "no .onnx file" if not found else f"{len(found)} .onnx files ({', '.join(p.name for p in found)})"
        raise EntryScriptError(f"the ONNX model {path} must be a .onnx file or a folder with one; it has {what}")
    return found[0]


class OnnxModel:
    """An ONNX graph behind ``ModelBackend`` and ``TensorModel`` (see ``mlctl.serve.backends``).

    Args:
        path: the ``.onnx`` file or a folder holding one.
    """

    mode = "tensor"
    platform = "onnxruntime_onnx"
    fast = True

    def __init__(self, path: Path) -> None:
        self.path = find_onnx(path)
        self.session: Any = None
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._feeds: list[_Feed] = []

    def init(self) -> None:
        """Open the graph with ONNX Runtime (CPU) and read its inputs and outputs."""
        import numpy
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # no busy-waiting of the intra-op threads between runs: it burns CPU that the other workers and the
        # event loop need (process CPU time of run() on the diabetes graph, 2 rows: 7.1 -> 4.8 µs)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.inputs = [_spec(node) for node in self.session.get_inputs()]
        self.outputs = [_spec(node) for node in self.session.get_outputs()]
        self._output_names = [spec.name for spec in self.outputs]
        self._run = _session_run(self.session)
        # one RunOptions for every call: run() given None builds a default one each time (~1 µs a request)
        self._run_options = onnxruntime.RunOptions()
        self._np = numpy
        self._feeds = [_Feed(spec, numpy.dtype(DTYPES[spec.datatype])) for spec in self.inputs]
        self._single = self._feeds[0] if len(self._feeds) == 1 else None

    def call(self, request: Request) -> Any:
        """``/score`` for ``request`` (its JSON body; see the module docstring): the answer's value."""
        if request.method != "POST":
            raise BadInput('POST a JSON object: {"data": ...} or one key per input')
        return _answer(self._output_names, self._score(request.data))

    def call_body(self, body: bytes) -> Any:
        """``/score`` for a POST body: the answer as ``call`` gives it, already written as JSON
        (``JSONText``, the text ``json.dumps`` writes) when every output is numeric or boolean.

        Raises:
            BadInput: not JSON, or the inputs do not fit the graph (the message names the input).
        """
        results = self._score(body)
        value = _answer(self._output_names, results)
        if all(getattr(result, "dtype", _NO_DTYPE).kind in _JSON_KINDS for result in results):
            return JSONText(dumps(value).encode())
        return value

    def _score(self, body: bytes) -> list[Any]:
        """The graph's outputs for a ``/score`` body; raises ``BadInput`` as ``call_body``."""
        try:
            doc = loads(body)
        except ValueError as exc:
            raise BadInput(f"the body is not JSON: {exc}") from None
        single = self._single
        try:
            if single is not None and doc.__class__ is dict and "data" in doc and single.name not in doc:
                feed = {single.name: single.fit(self._np, doc["data"])}  # _named and _results for one input
                return self._run(self._output_names, feed, self._run_options)  # type: ignore[no-any-return]
            return self._results(self._named(doc))
        except TensorError as exc:
            raise BadInput(str(exc)) from None

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the graph on named arrays (cast to each input's element type); returns its outputs by name.

        Raises:
            TensorError: an input is missing, unknown, or its rank or a fixed dimension does not fit.
        """
        return dict(zip(self._output_names, self._results(inputs), strict=True))

    def _results(self, inputs: dict[str, Any]) -> list[Any]:
        """The graph's outputs (in ``self.outputs``' order) for named inputs; errors as ``infer``."""
        feed = {}
        np = self._np
        for wanted in self._feeds:
            value = inputs.get(wanted.name, _MISSING)
            if value is _MISSING:
                raise TensorError(f"input {wanted.name!r} is missing; the model's inputs: {self._names()}")
            feed[wanted.name] = wanted.fit(np, value)
        if len(inputs) > len(feed):
            unknown = sorted(set(inputs) - set(feed))
            raise TensorError(f"input {unknown[0]!r} is not an input of the model; its inputs: {self._names()}")
        return self._run(self._output_names, feed, self._run_options)  # type: ignore[no-any-return]

    def swagger_schemas(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """JSON schemas of ``/score``'s body (``data`` or the named inputs, nested arrays) and answer."""
        names = ["data"] if len(self.inputs) == 1 else [spec.name for spec in self.inputs]
        request = {"type": "object", "properties": {name: {"type": "array"} for name in names}, "required": names}
        return request, {"type": "array"} if len(self.outputs) == 1 else {"type": "object"}

    def _named(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise TensorError('the body must be a JSON object: {"data": ...} or one key per input')
        if len(self.inputs) == 1 and "data" in doc and self.inputs[0].name not in doc:
            return {self.inputs[0].name: doc["data"]}
        return dict(doc)

    def _names(self) -> str:
        return ", ".join(spec.name for spec in self.inputs)


def _session_run(session: Any) -> Any:
    """The session's own ``run`` (the compiled one), else ``InferenceSession.run``.

    ``InferenceSession.run`` checks that every required input is fed, that ``OrtValue`` inputs
    belong to the session and that no WebGPU graph capture is on, and retries on another execution
    provider after a failure of the first: none of it applies here (``_results`` and ``_score``
    feed every input, as numpy arrays, the session is CPU only), and it costs ~0.8 µs a call
    (onnxruntime 1.32: 3.2 vs 2.4 µs on the diabetes graph), 6 % of a 2-row ``/score`` in process.
    ``_sess`` is onnxruntime's attribute for the compiled session since 1.0; without it, ``run``.
    Errors of the run itself are the same (the compiled session raises them).
    """
    compiled = getattr(getattr(session, "_sess", None), "run", None)
    return compiled if callable(compiled) else session.run


def _answer(names: list[str], results: list[Any]) -> Any:
    """``/score``'s answer: the single output as lists (``[N, 1]`` as ``[N]``, one value a row, as
    converted regressors give, like scikit-learn's ``predict``), else the outputs by name. A
    sequence output (ONNX ``seq(...)``: a list, of maps for a ZipMap's class probabilities) is
    answered as it is: ``json`` writes the maps' keys as strings."""
    if len(results) == 1:
        value = results[0]
        if not hasattr(value, "ndim"):
            return value
        return (value[:, 0] if value.ndim == 2 and value.shape[1] == 1 else value).tolist()
    return {name: _listed(value) for name, value in zip(names, results, strict=True)}


def _listed(value: Any) -> Any:
    """An output as JSON-ready values: an array's ``tolist()``, a sequence output as it is."""
    return value.tolist() if hasattr(value, "tolist") else value


_JSON_KINDS = frozenset("biuf")  # numpy kinds whose tolist() holds only bools, ints and floats
_NO_DTYPE = type("_NoDtype", (), {"kind": "O"})()  # a sequence output's stand-in: not a JSON kind


def _spec(node: Any) -> TensorSpec:
    element = str(node.type).removeprefix("tensor(").removesuffix(")")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or []))
    if str(node.type).startswith("seq(") and not shape:
        shape = (-1,)  # a sequence (of maps, say): one element a row
    return TensorSpec(node.name, _ELEMENT_TYPES.get(element, "BYTES"), shape)


_MISSING = object()


class _Feed:
    """How one graph input is fed: its numpy dtype and the dimensions the graph fixes, read once in ``init()``."""

    __slots__ = ("name", "spec", "dtype", "rank", "fixed")

    def __init__(self, spec: TensorSpec, dtype: Any) -> None:
        self.name, self.spec, self.dtype, self.rank = spec.name, spec, dtype, len(spec.shape)
        self.fixed = [(axis, want) for axis, want in enumerate(spec.shape) if want >= 0]

    def fit(self, np: Any, value: Any) -> Any:
        """``value`` as an array of the input's element type (no copy when it is one already), its shape checked.

        Raises:
            TensorError: the value cannot be cast, or its rank or a fixed dimension does not fit.
        """
        spec = self.spec
        try:
            array = np.asarray(value, dtype=self.dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise TensorError(f"input {spec.name!r} cannot be read as {spec.datatype}: {exc}") from None
        shape = array.shape
        if len(shape) != self.rank:
            raise TensorError(
                f"input {spec.name!r} has rank {array.ndim}; the model wants shape {list(spec.shape)} (-1: any size)"
            )
        for axis, want in self.fixed:
            if shape[axis] != want:
                raise TensorError(
                    f"input {spec.name!r} has {shape[axis]} at dimension {axis}; the model wants shape "
                    f"{list(spec.shape)}"
                )
        return array
