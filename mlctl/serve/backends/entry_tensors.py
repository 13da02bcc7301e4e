"""An entry script seen as a tensor model, for the Open Inference Protocol.

* A script that defines ``infer(inputs)`` takes OIP requests itself: it gets a dict of numpy
  arrays by input name and returns a dict of outputs (arrays, or values numpy can hold).
* A script whose ``run()`` carries ``inference-schema`` decorators gets each of its named
  parameters from the input of that name (as the JSON value ``/score`` would carry, so the
  decorator converts it as usual); its answer is the output ``output`` (or one output per key
  when it returns a dict). Metadata comes from the decorators' schemas.
* Any other script cannot take tensors: inference answers 400 saying what the script needs.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from mlctl.serve.tensors import TensorError, TensorSpec, specs_from_schema

_NEEDS = (
    "this entry script's run() takes the raw request body, so it cannot take Open Inference Protocol "
    "tensors: define infer(inputs) in the script (a dict of numpy arrays by input name, returning a dict "
    "of outputs), or decorate run() with inference-schema's @input_schema; or POST /score instead"
)


class EntryScriptTensors:
    """The ``TensorModel`` of a loaded ``EntryScript`` (``mlctl.serve.backends.entry_script``)."""

    platform = "mlctl_entry_script"

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        self._infer = getattr(entry.module, "infer", None)
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        if not callable(self._infer) and entry.mode == "schema" and "inference_schema" in sys.modules:
            from inference_schema.schema_util import get_input_schema, get_output_schema

            self.inputs = specs_from_schema(get_input_schema(entry.run) or {})
            output = get_output_schema(entry.run) or {}
            if output:
                self.outputs = specs_from_schema({"properties": {"output": output}})

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``infer(inputs)`` of the script, or its schema-decorated ``run()`` on the named inputs.

        Raises:
            TensorError: the script takes neither, or an input names no parameter of ``run()``.
        """
        if callable(self._infer):
            result = self._infer(inputs)
            if not isinstance(result, dict):
                raise TypeError(f"infer() must return a dict of outputs, not {type(result).__name__}")
            return result
        if self.entry.mode != "schema":
            raise TensorError(_NEEDS)
        result = self.entry.run(**self._arguments(inputs))
        return result if isinstance(result, dict) else {"output": result}

    def _arguments(self, inputs: dict[str, Any]) -> dict[str, Any]:
        params = {p.name: p for p in self.entry.params}
        unknown = sorted(set(inputs) - set(params))
        if unknown:
            raise TensorError(f"input {unknown[0]!r} is not a parameter of run(); its inputs: {', '.join(params)}")
        args: dict[str, Any] = {}
        for name, param in params.items():
            if name in inputs:
                args[name] = inputs[name].tolist()
            elif param.default is inspect.Parameter.empty:
                raise TensorError(f"input {name!r} is missing (a parameter of run())")
            else:  # passed explicitly, as /score does: inference-schema's wrapper needs every parameter
                args[name] = param.default
        if self.entry.wants_headers:
            args["request_headers"] = {}
        return args
