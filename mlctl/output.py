"""All terminal output: the only module that imports rich.

Results go to stdout (one document under ``--output json`` or ``yaml``); progress, logs, warnings
and errors go to stderr, so a pipeline can parse stdout whatever else happens. No colour and no
spinner when stdout is not a terminal or ``NO_COLOR`` is set; ``--quiet`` keeps only results and
errors. rich is imported lazily, on first use, to keep ``mlctl --help`` fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
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
        """The rich console on stderr (created on first use)."""
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(stderr=True, highlight=False, no_color=_plain(), soft_wrap=True)
        return self._err_console

    @property
    def out(self) -> Any:
        """The rich console on stdout (created on first use)."""
        if self._out_console is None:
            from rich.console import Console

            console = Console(highlight=False, no_color=_plain(), soft_wrap=True)
            if not console.is_terminal:  # a pipe or file: never truncate table cells
                console = Console(highlight=False, no_color=True, soft_wrap=True, width=_PIPE_WIDTH)
            self._out_console = console
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


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _plain() -> bool:
    """No colour, no animation: NO_COLOR is set (https://no-color.org) or stdout is not a terminal."""
    return "NO_COLOR" in os.environ or not sys.stdout.isatty()


def _serialise(doc: Any, mode: OutputMode, indent: int | None = None) -> str:
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
