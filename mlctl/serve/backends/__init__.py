"""Model back-ends of the scoring server: what answers a scoring call, behind one Protocol.

A back-end loads one kind of model and calls it; the protocol front-ends
(``mlctl.serve.frontends``) turn requests into those calls. Today: ``entry_script`` (Azure ML's
``init()``/``run(raw_data)`` contract). A new model kind (an MLflow model folder, an ONNX file)
is one module here, chosen by ``load_backend``; front-ends that need more than ``call`` (tensor
protocols) look for the optional members documented on ``ModelBackend``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlctl.serve.request import Request


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
        """The model's answer to a ``POST`` body (only when ``fast``)."""


def load_backend(entry_script: Path) -> ModelBackend:
    """The back-end that serves ``entry_script`` (imported, ``init()`` not yet called).

    Raises:
        mlctl.serve.backends.entry_script.EntryScriptError: the script cannot be loaded.
        Exception: whatever importing the script raises.
    """
    from mlctl.serve.backends.entry_script import EntryScript

    return EntryScript(entry_script)
