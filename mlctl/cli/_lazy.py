"""Command groups imported only when used, so ``mlctl --help`` and one verb do not build all of them.

Building a group means importing its module and turning every command's signature into Click
parameters (type hints evaluated, options made): ~2-5 ms a group. ``LazyGroup`` is the root's
Click group (``typer.Typer(cls=...)``); it holds a placeholder for each group until Click resolves
that group's name (to run it, show its help or complete inside it). Listing the groups (the root's
help, completing a group name) reads only the placeholders: their name and help.

This follows Click's "lazily loading subcommands" pattern, on Typer's own group class so that help
formatting, completion and suggestions stay Typer's.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import typer
import typer.main
from typer.core import MarkupMode, TyperCommand, TyperGroup

if TYPE_CHECKING:  # Typer's own copy of Click (0.26 to 0.28)
    from typer._click import Command, Context, HelpFormatter
    from typer._click.shell_completion import CompletionItem


class LazyGroupInfo(NamedTuple):
    """Where a command group lives and its help (the one place it is written).

    ``module`` has a ``typer.Typer`` named ``app`` that sets no ``help`` of its own; ``help`` is what
    ``add_typer(app, help=...)`` would be given: its first sentence is the line in ``mlctl --help``.
    """

    module: str
    help: str


class LazyCommandInfo(NamedTuple):
    """Where a command of the app itself lives: ``function`` of ``module`` (its docstring is its help)."""

    module: str
    function: str


class _UnloadedGroup(TyperGroup):
    """Stands for a group until it is needed: enough to be listed (name, help), nothing to run."""

    def __init__(self, name: str, info: LazyGroupInfo) -> None:
        super().__init__(name=name, help=info.help)
        self.info = info

    def load(self, rich_markup_mode: MarkupMode) -> Command:
        """The real group, built exactly as ``add_typer(module.app, name=..., help=...)`` builds it."""
        holder = typer.Typer(rich_markup_mode=rich_markup_mode)
        holder.add_typer(importlib.import_module(self.info.module).app, name=self.name, help=self.info.help)
        return typer.main.get_group(holder).commands[str(self.name)]


class _UnloadedCommand(TyperCommand):
    """Stands for a command until it is run; listing it imports its module (for the docstring) only."""

    def __init__(self, name: str, info: LazyCommandInfo) -> None:
        super().__init__(name=name)
        self.info = info

    def function(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.info.module), self.info.function)  # type: ignore[no-any-return]

    def describe(self) -> None:
        """Take the help a real command would have (``help=None``: the docstring, as Typer does)."""
        if self.help is None:
            self.help = inspect.getdoc(self.function())

    def load(self, rich_markup_mode: MarkupMode) -> Command:
        """The real command, built exactly as ``app.command(name)(function)`` builds it."""
        holder = typer.Typer(rich_markup_mode=rich_markup_mode)
        holder.command(self.name)(self.function())
        return typer.main.get_group(holder).commands[str(self.name)]


class LazyGroup(TyperGroup):
    """A Typer group whose subcommands and subgroups (``lazy``: name -> LazyCommandInfo or
    LazyGroupInfo) are imported and built on first use.

    Subclass it with ``lazy`` set and pass the subclass as ``typer.Typer(cls=...)``. They come after
    the app's own commands (if any), in ``lazy``'s order.
    """

    lazy: ClassVar[Mapping[str, LazyGroupInfo | LazyCommandInfo]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, info in self.lazy.items():
            unloaded = _UnloadedGroup(name, info) if isinstance(info, LazyGroupInfo) else _UnloadedCommand(name, info)
            self.commands.setdefault(name, unloaded)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = self.commands.get(cmd_name)
        if isinstance(command, _UnloadedGroup | _UnloadedCommand) and not self._listing:
            command = self.commands[cmd_name] = command.load(self.rich_markup_mode)
        return command

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        with self._names_and_help_only():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        with self._names_and_help_only():
            return super().shell_complete(ctx, incomplete)

    @contextmanager
    def _names_and_help_only(self) -> Iterator[None]:
        """While listing subcommands, ``get_command`` gives placeholders instead of building them."""
        for command in self.commands.values():
            if isinstance(command, _UnloadedCommand):
                command.describe()
        self._listing = True
        try:
            yield
        finally:
            self._listing = False
