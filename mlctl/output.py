"""All terminal output: the only module that imports rich.

Results go to stdout (one document under ``--output json`` or ``yaml``); progress, logs, warnings
and errors go to stderr, so a pipeline can parse stdout whatever else happens. No colour and no
spinner when stdout is not a terminal or ``NO_COLOR`` is set; ``--quiet`` keeps only results and
errors. rich is imported lazily, on first use, and only for a terminal or a table: a pipeline's
plain lines go through ``_PlainConsole``, which costs no import (rich's is a third of a short
command's start-up).
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

OutputMode = Literal["table", "json", "yaml"]
_PIPE_WIDTH = 1000


class Reporter:
    """Progress and result sink handed to every command, driver and builder.

    Args:
        mode: ``table`` (text for people), ``json`` or ``yaml`` (only the result document on stdout).
        debug: show tracebacks for unexpected errors.
        quiet: no progress, info or warnings on stderr (results and errors only).
    """

    def __init__(self, mode: OutputMode = "table", *, debug: bool = False, quiet: bool = False) -> None:
        self.mode = mode
        self.debug = debug
        self.quiet = quiet
        self.machine = mode != "table"
        self._err_console: Any = None
        self._out_console: Any = None

    # -- consoles ---------------------------------------------------------------------------
    @property
    def err(self) -> Any:
        """The console on stderr (created on first use): rich's with colour, else plain lines."""
        if self._err_console is None:
            if _plain():
                self._err_console = _PlainConsole(stderr=True)
            else:
                from rich.console import Console

                self._err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        return self._err_console

    @property
    def out(self) -> Any:
        """The console on stdout (created on first use): rich's with colour, else plain lines."""
        if self._out_console is None:
            if _plain():
                self._out_console = _PlainConsole(stderr=False)
            else:
                from rich.console import Console

                self._out_console = Console(highlight=False, soft_wrap=True, emoji=False)
        return self._out_console

    # -- progress ---------------------------------------------------------------------------
    @contextmanager
    def step(self, text: str) -> Iterator[Callable[[str], None]]:
        """Show ``text`` as a running phase; yields a function that updates its detail line.

        On a terminal this is a spinner; elsewhere one line when it starts and one when it ends.
        """
        started = time.monotonic()
        if self.quiet:
            yield lambda detail: None
            return
        if self.err.is_terminal and not _plain():
            with self.err.status(text) as status:
                yield lambda detail: status.update(f"{text} [dim]{_escape(detail)}[/]")
        else:
            self.err.print(f"- {text} ...")
            yield lambda detail: None
        self.err.print(f"[green]✓[/] {text} [dim]({time.monotonic() - started:.1f}s)[/]")

    def info(self, text: str) -> None:
        """A line of progress on stderr."""
        if not self.quiet:
            self.err.print(_escape(text))

    def log_lines(self, lines: Sequence[str], *, title: str) -> None:
        """Lines copied from a service or tool log, shown dimmed under ``title``."""
        self.err.print(f"[bold]{_escape(title)}[/]")
        for line in lines:
            self.err.print(f"  [dim]{_escape(line)}[/]")

    def ok(self, text: str) -> None:
        """A success line on stdout (human results)."""
        self.out.print(f"[green]✓[/] {_escape(text)}")

    def warn(self, text: str) -> None:
        """A warning on stderr."""
        if not self.quiet:
            self.err.print(f"[yellow]warning:[/] {_escape(text)}")

    def raw(self, text: str) -> None:
        """Text written as-is to stdout (log streaming), flushed at once."""
        sys.stdout.write(text)
        sys.stdout.flush()

    # -- results ----------------------------------------------------------------------------
    def result(self, doc: Any, human: Callable[[Any], None] | None = None) -> None:
        """Print a command's result: ``doc`` as JSON or YAML, or through ``human`` for people."""
        if self.machine:
            sys.stdout.write(_serialise(doc, self.mode, indent=2))
        elif human is not None:
            human(doc)
        else:
            import json

            self.out.print(_escape(json.dumps(doc, indent=2, default=str)))

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[str], *, empty: str) -> None:
        """Render ``rows`` (dicts) as a table with the given column keys, or ``empty``."""
        if not rows:
            self.err.print(f"[dim]{_escape(empty)}[/]")
            return
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column.upper().replace("_", " "))
        for row in rows:
            table.add_row(*(_escape(_cell(row.get(c))) for c in columns))
        self.out.print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """Render ``key: value`` lines, for ``show`` verbs."""
        width = max(len(k) for k, _ in pairs)
        for key, value in pairs:
            first, *more = _cell(value).split("\n") or [""]
            self.out.print(f"[bold]{key.ljust(width)}[/]  {_escape(first)}")
            for line in more:  # a multi-line value stays in its column
                self.out.print(f"{' ' * width}  {_escape(line)}")

    def error(self, doc: dict[str, Any]) -> None:
        """Report an error document (see ``MlctlError.to_dict``) on stderr, in the output mode."""
        if self.machine:
            sys.stderr.write(_serialise(doc, self.mode))
            return
        self.err.print(f"[bold red]error:[/] {_escape(str(doc['message']))}")
        for line in doc.get("details", []):
            self.err.print(f"  {_escape(str(line))}")
        if doc.get("hint"):
            self.err.print(f"[cyan]hint:[/] {_escape(str(doc['hint']))}")

    def traceback(self) -> None:
        """Print the current exception's traceback (only under ``--debug``)."""
        self.err.print_exception()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


# rich's markup tags, with the backslashes before them (rich.markup's own pattern)
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def _escape(text: str) -> str:
    """``text`` as rich markup that prints it literally (what ``rich.markup.escape`` returns)."""
    text = _TAG.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def _strip_markup(markup: str) -> str:
    """What rich prints for ``markup``, without the styles: tags dropped, escaped tags literal,
    ``\\[`` outside tags an escaped bracket (rich's rules; no emoji codes)."""
    parts, position = [], 0
    for match in _TAG.finditer(markup):
        parts.append(markup[position : match.start()].replace("\\[", "["))
        backslashes, escaped = divmod(len(match[1]), 2)
        parts.append("\\" * backslashes + (match[2] if escaped else ""))
        position = match.end()
    parts.append(markup[position:].replace("\\[", "["))
    return "".join(parts)


class _PlainConsole:
    """The part of rich's ``Console`` that mlctl uses, for output without colour or animation:
    markup is stripped, lines are never wrapped or cut, and only tables load rich."""

    is_terminal = False

    def __init__(self, *, stderr: bool) -> None:
        self.stderr = stderr
        self._rich: Any = None

    @property
    def file(self) -> Any:
        """The stream, looked up on each write (tests and pipelines may replace it)."""
        return sys.stderr if self.stderr else sys.stdout

    def print(self, item: Any = "", *, markup: bool = True) -> None:
        """Write ``item`` (markup text, or a rich renderable such as a table) and a newline."""
        if not isinstance(item, str):  # a table: no padding after a row's last cell when piped
            console = self._rich_console()
            with console.capture() as captured:
                console.print(item)
            self.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
            self.file.flush()
            return
        self.file.write(strip_ansi(_strip_markup(item) if markup else item) + "\n")
        self.file.flush()

    def print_exception(self) -> None:
        """The current exception's traceback."""
        traceback.print_exc(file=self.file)

    def _rich_console(self) -> Any:
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(
                stderr=self.stderr, highlight=False, no_color=True, soft_wrap=True, width=_PIPE_WIDTH, emoji=False
            )
        return self._rich


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves, titles), e.g. from a build's
    or a container's output, which is shown as data, never as terminal control."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def _plain() -> bool:
    """No colour, no animation: NO_COLOR is set (https://no-color.org) or stdout is not a terminal."""
    return "NO_COLOR" in os.environ or not sys.stdout.isatty()


def _serialise(doc: Any, mode: OutputMode, indent: int | None = None) -> str:
    import json  # only for machine output: `mlctl --help` and table output need no json

    text = json.dumps(doc, indent=indent, default=str)
    if mode == "json":
        return text + "\n"
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(json.loads(text), out)  # through JSON: plain types only, same content as json
    return out.getvalue()
