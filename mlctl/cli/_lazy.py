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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import typer
import typer.main
from typer.core import MarkupMode, TyperGroup

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


class _Unloaded(TyperGroup):
    """Stands for a group until it is needed: enough to be listed (name, help), nothing to run."""

    def __init__(self, name: str, info: LazyGroupInfo) -> None:
        super().__init__(name=name, help=info.help)
        self.info = info

    def load(self, rich_markup_mode: MarkupMode) -> TyperGroup:
        """The real group, built exactly as ``add_typer(module.app, name=..., help=...)`` builds it."""
        module = importlib.import_module(self.info.module)
        holder = typer.Typer(rich_markup_mode=rich_markup_mode)
        holder.add_typer(module.app, name=self.name, help=self.info.help)
        group = typer.main.get_group(holder).commands[str(self.name)]
        assert isinstance(group, TyperGroup)
        return group


class LazyGroup(TyperGroup):
    """A Typer group whose subgroups (``lazy``: name -> LazyGroupInfo) are imported on first use.

    Subclass it with ``lazy`` set and pass the subclass as ``typer.Typer(cls=...)``. The lazy groups
    come after the app's own commands, in ``lazy``'s order (as ``add_typer`` after ``command``).
    """

    lazy: ClassVar[Mapping[str, LazyGroupInfo]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, info in self.lazy.items():
            self.commands.setdefault(name, _Unloaded(name, info))

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Unloaded) and not self._listing:
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
        """While listing subcommands, ``get_command`` gives placeholders instead of importing."""
        self._listing = True
        try:
            yield
        finally:
            self._listing = False
