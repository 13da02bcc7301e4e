"""Load an entry script and call ``init()`` / ``run()`` exactly as Azure ML does.

Contract (Azure ML SDK v1 entry scripts; azureml-inference-server-http ``server/user_script.py``
and ``server/input_parsers.py``):

* the script is imported as module ``entry_module``; it must define ``init()`` and ``run()``;
* ``init()`` is called once per worker before any request;
* ``run()`` gets, by the name of its first parameter:
  - undecorated: the request body decoded as UTF-8 (``GET``: the query parameters as a JSON string);
  - ``@rawhttp``: the request object, flask's (werkzeug's) ``Request`` (``mlctl.serve.rawhttp``,
    imported only for such scripts); OPTIONS requests reach it too;
  - ``@input_schema`` (package ``inference-schema``): the JSON body must be an object; each of
    ``run()``'s parameters is taken from the key of that name (its default when absent);
* a parameter named ``request_headers`` receives the headers as a dict;
* ``run()`` may not take ``*args``, ``**kwargs`` or positional-only parameters;
* ``print()`` in the script starts each line with the request id and a comma (zeros in ``init()``).
"""

from __future__ import annotations

import builtins
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlctl.serve.context import current_request_id
from mlctl.serve.request import Request

_COMPAT = str(Path(__file__).parent.parent / "_compat")
# Where ``@rawhttp`` records itself: the SDK v1 path and the reference server's (ours or installed).
_RAWHTTP_MODULES = ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request")


class EntryScriptError(Exception):
    """The entry script cannot be used (missing, no ``init``/``run``, bad signature, import failed)."""


class BadInput(Exception):
    """The request cannot be turned into ``run()`` arguments; ``status`` is 400 or 415."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class EntryScript:
    """An imported entry script, ready to be called.

    Args:
        path: the ``.py`` file.

    Raises:
        EntryScriptError: on load, as described above.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        module = _import(path)
        for name in ("init", "run"):
            if not callable(getattr(module, name, None)):
                raise EntryScriptError(f"entry script {path} does not define {name}()")
        self.module = module
        self.run: Callable[..., Any] = module.run
        self.mode, self.params, self.wants_headers = _analyse(self.run)
        self._raw_request: Callable[[Request], Any] | None = None
        if self.mode == "raw":
            from mlctl.serve.rawhttp import aml_request

            self._raw_request = aml_request

    def init(self) -> None:
        """Call the script's ``init()``; its exceptions propagate."""
        self.module.init()

    def call(self, request: Request) -> Any:
        """Call ``run()`` for ``request``; returns what ``run()`` returns.

        Raises:
            BadInput: the request does not fit the script's input mode.
            Exception: whatever ``run()`` raises.
        """
        kwargs = self._arguments(request)
        if self.wants_headers:
            kwargs["request_headers"] = dict(request.headers)
        return self.run(**kwargs)

    def call_body(self, body: bytes) -> Any:
        """Fast path for an undecorated ``run()`` without ``request_headers``: ``run(body_text)``.

        Raises:
            BadInput: ``body`` is not UTF-8.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"Input cannot be decoded as UTF-8: {exc}") from None
        return self.run(text)

    @property
    def fast(self) -> bool:
        """True when ``call_body`` may be used for POST requests."""
        return self.mode == "string" and not self.wants_headers

    def _arguments(self, request: Request) -> dict[str, Any]:
        first = self.params[0].name
        if self._raw_request is not None:
            return {first: self._raw_request(request)}
        if self.mode == "schema":
            return _schema_arguments(request, self.params)
        if request.method == "GET":
            return {first: json.dumps(_query_values(request))}
        try:
            return {first: request.data.decode("utf-8")}
        except UnicodeDecodeError as exc:
            raise BadInput(f"Input cannot be decoded as UTF-8: {exc}") from None


def prefixed_print(
    *objects: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    """``print`` for entry scripts: each line to stdout or stderr starts with ``<request id>,``.

    As the reference server's print hook documents it: the id of the request being scored
    (``mlctl.serve.context``), all zeros during ``init()``; prints to other files are unchanged.
    """
    stream = sys.stdout if file is None else file
    if stream is not sys.stdout and stream is not sys.stderr:
        _print(*objects, sep=sep, end=end, file=file, flush=flush)
        return
    prefix = current_request_id() + ","
    text = (" " if sep is None else sep).join(map(str, objects))
    _print(prefix + text.replace("\n", "\n" + prefix), end=end, file=stream, flush=flush)


_print = builtins.print


def _import(path: Path) -> Any:
    builtins.print = prefixed_print  # before the script runs: module-level prints are prefixed too
    if not path.is_file():
        raise EntryScriptError(f"entry script not found: {path}")
    app_root = os.environ.get("AML_APP_ROOT")
    if app_root and app_root not in sys.path:
        sys.path.append(app_root)  # as the reference: modules beside the app, after the script's folder
    if _COMPAT not in sys.path:
        sys.path.append(_COMPAT)  # after site-packages: a real azureml package wins
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the script's own helper modules, as Azure ML's app root
    spec = importlib.util.spec_from_file_location("entry_module", path)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"cannot import entry script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["entry_module"] = module
    spec.loader.exec_module(module)
    return module


def _analyse(run: Callable[..., Any]) -> tuple[str, list[inspect.Parameter], bool]:
    params = list(inspect.signature(run).parameters.values())
    allowed = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if any(p.kind not in allowed for p in params):
        raise EntryScriptError("run() cannot accept positional-only arguments, *args, or **kwargs")
    wants_headers = any(p.name == "request_headers" for p in params)
    params = [p for p in params if p.name != "request_headers"]
    if not params:
        raise EntryScriptError("run() needs a parameter for the input data")
    raw, schema = _is_rawhttp(run), _is_schema_decorated(run)
    if raw and schema:
        raise EntryScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
    return ("raw" if raw else "schema" if schema else "string"), params, wants_headers


def _is_rawhttp(run: Callable[..., Any]) -> bool:
    if getattr(run, "__mlctl_rawhttp__", False):
        return True
    return any(getattr(sys.modules.get(name), "_rawHttpRequested", False) for name in _RAWHTTP_MODULES)


def _is_schema_decorated(run: Callable[..., Any]) -> bool:
    if "inference_schema" not in sys.modules:  # the script did not import it: not decorated
        return False
    from inference_schema.schema_util import is_schema_decorated

    return bool(is_schema_decorated(run))


def _schema_arguments(request: Request, params: list[inspect.Parameter]) -> dict[str, Any]:
    if request.method == "GET":
        body: Any = _query_values(request)
    else:
        if not request.is_json:
            raise BadInput("Expects Content-Type to be application/json", status=415)
        try:
            body = json.loads(request.data)
        except ValueError as exc:
            if not request.data:
                raise BadInput("POST body is empty. Expecting a JSON dictionary.") from None
            raise BadInput(f"POST body could not be decoded as JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadInput("POST body should be a JSON dictionary.")
    args = {}
    for param in params:
        value = body.get(param.name, param.default)
        if value is inspect.Parameter.empty:
            raise BadInput(f"A value is not provided for the {param.name!r} parameter.")
        args[param.name] = value
    return args


def _query_values(request: Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in request.args:
        parsed = [_maybe_json(v) for v in request.args.getlist(key)]
        values[key] = parsed[0] if len(parsed) == 1 else parsed
    return values


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
