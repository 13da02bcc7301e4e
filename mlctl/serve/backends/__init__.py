"""Model back-ends of the scoring server: what answers a scoring call, behind one Protocol.

A back-end loads one kind of model and calls it; the protocol front-ends
(``mlctl.serve.frontends``) turn requests into those calls. Today: ``entry_script`` (Azure ML's
``init()``/``run(raw_data)`` contract). A new model kind (an MLflow model folder, an ONNX file)
is one module here, chosen by ``load_backend``; front-ends that need more than ``call`` (tensor
protocols) look for the optional members documented on ``TensorModel``.

Tensor protocols (the Open Inference Protocol, ``mlctl.serve.frontends.oip``) reach a model
through ``tensor_model(backend)``: a back-end that has ``infer`` (ONNX, MLflow) is its own tensor
model; an entry script gets the adapter of ``entry_tensors`` (its ``infer(inputs)``, or its
schema-decorated ``run()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlctl.serve.request import Request
    from mlctl.serve.tensors import TensorSpec


class ModelBackend(Protocol):
    """A loaded model, ready to be initialised and called from any worker thread.

    Attributes:
        mode: how ``call`` wants its input: ``"string"`` (the body as text), ``"raw"`` (the
            whole HTTP request), ``"schema"`` (named parameters from a JSON object).
        fast: ``call_body`` may be used for ``POST`` bodies (no headers or request needed).
    """

    mode: str

    @property
    def fast(self) -> bool:
        """True when ``call_body`` answers a ``POST`` from its body alone."""

    def init(self) -> None:
        """Load the model's state (once per worker, before any request); raises what loading raises."""

    def call(self, request: Request) -> Any:
        """The model's answer to ``request`` (any JSON-serialisable value, or a response object).

        Raises:
            mlctl.serve.backends.entry_script.BadInput: the request does not fit (400/415).
        """

    def call_body(self, body: bytes) -> Any:
        """The model's answer to a ``POST`` body (only when ``fast``): as ``call``'s, or already
        written as JSON (``mlctl.serve.answers.JSONText``, sent as it is)."""


class TensorModel(Protocol):
    """The optional tensor members of a back-end (what the Open Inference Protocol needs).

    Attributes:
        platform: the OIP ``platform`` string (``onnxruntime_onnx``, ``mlflow``, ``mlctl_entry_script``).
        inputs: the model's input tensors (names, OIP datatypes, shapes with ``-1`` for variable
            dimensions); empty when the model does not say.
        outputs: its output tensors, likewise.
    """

    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the model on named numpy arrays; returns named outputs (arrays, or values numpy can hold).

        Called on a runner thread, after ``init()``.

        Raises:
            mlctl.serve.tensors.TensorError: the inputs do not fit the model (400 naming the tensor).
            Exception: whatever the model raises (500).
        """


def tensor_model(backend: Any) -> TensorModel:
    """``backend`` as a ``TensorModel``: itself when it has ``infer``, else the entry-script adapter."""
    if callable(getattr(backend, "infer", None)):
        return backend  # type: ignore[no-any-return]
    from mlctl.serve.backends.entry_tensors import EntryScriptTensors

    return EntryScriptTensors(backend)


MODEL_KINDS = ("entry_script", "onnx", "mlflow")


def load_backend(
    entry_script: Path | None, *, kind: str = "entry_script", model_path: Path | None = None
) -> ModelBackend:
    """The back-end of model ``kind`` (imported or located, ``init()`` not yet called).

    Args:
        entry_script: the entry script (kind ``entry_script``).
        kind: one of ``MODEL_KINDS``: ``onnx`` (a ``.onnx`` file or a folder holding one),
            ``mlflow`` (an MLflow model folder, with its ``MLmodel`` file).
        model_path: the model of ``onnx``/``mlflow`` kinds.

    Raises:
        mlctl.serve.backends.entry_script.EntryScriptError: the script or model cannot be used.
        Exception: whatever importing the script raises.
    """
    from mlctl.serve.backends.entry_script import EntryScript, EntryScriptError

    if kind == "entry_script":
        if entry_script is None:
            raise EntryScriptError("--entry-script is needed for models of kind entry_script")
        return EntryScript(entry_script)
    if model_path is None:
        raise EntryScriptError(f"--model-path (or --model-dir) is needed for models of kind {kind}")
    if kind == "onnx":
        from mlctl.serve.backends.onnx import OnnxModel

        return OnnxModel(model_path)
    if kind == "mlflow":
        from mlctl.serve.backends.mlflow import MlflowModel

        return MlflowModel(model_path)
    raise EntryScriptError(f"unknown model kind {kind!r}; one of {', '.join(MODEL_KINDS)}")
