"""The ``mlctl`` command line: one Typer app, one module per command group, one error handler.

Commands raise ``mlctl.errors.MlctlError`` subclasses; ``run`` turns them into a message on
stderr (JSON under ``--output json``) and the class's exit code. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import sys

import typer

from mlctl import __version__
from mlctl.cli import _state
from mlctl.cli._lazy import LazyCommandInfo, LazyGroup, LazyGroupInfo
from mlctl.errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE, MlctlError

# The commands of `mlctl` itself, then its command groups, in `mlctl --help` order, built only when
# used (run, their help shown, completed inside). A command's help is its function's docstring; a
# group's module is not imported to list it, so a group's help is written here, and only here.
COMMANDS = {
    "apply": LazyCommandInfo("mlctl.cli.apply", "apply"),
    "diff": LazyCommandInfo("mlctl.cli.apply", "diff"),
}
GROUPS = {
    "model": LazyGroupInfo("mlctl.cli.model", "Register and manage models (versioned 1, 2, 3... per name)."),
    "image": LazyGroupInfo(
        "mlctl.cli.image", "Build container images of web services (versioned NAME:1, NAME:2, ...)."
    ),
    "service": LazyGroupInfo(
        "mlctl.cli.service", "Deploy a model as a web service, test it, update it, read its logs, delete it."
    ),
    "spec": LazyGroupInfo("mlctl.cli.spec", "Validate spec files; print the JSON Schema of a kind."),
    "target": LazyGroupInfo("mlctl.cli.target", "Name compute targets with their options; choose the default."),
    "import": LazyGroupInfo("mlctl.cli.import_", "Write mlctl specs from other tools' configuration files."),
    "edge": LazyGroupInfo(
        "mlctl.cli.edge", "Register IoT Edge devices and push models to them (or to a fleet) as IoT Edge modules."
    ),
}


class _Root(LazyGroup):
    lazy = {**COMMANDS, **GROUPS}


app = typer.Typer(
    cls=_Root,
    rich_markup_mode=None,
    name="mlctl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Take a trained model to a tested web service, driven by declarative YAML specs.",
    epilog="Exit codes: 0 ok, 1 unexpected, 2 usage, 3 spec, 4 not found, 5 conflict, 6 target, "
    "7 deployment failed, 8 test failed, 9 timeout, 10 integrity, 130 interrupted.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mlctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    output: _state.OutputFormat = typer.Option(
        _state.OutputFormat.table,
        "--output",
        "-o",
        case_sensitive=False,
        envvar="MLCTL_OUTPUT",
        help="table (for people), json or yaml: only the result document on stdout; progress on stderr.",
    ),
    debug: bool = typer.Option(False, "--debug", envvar="MLCTL_DEBUG", help="Show tracebacks of errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="MLCTL_QUIET", help="No progress or info on stderr."),
    version: bool | None = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state.configure(output, debug=debug, quiet=quiet)


def run(argv: list[str]) -> int:
    """Run the CLI with ``argv`` (without the program name); returns the exit code."""
    try:
        result = app(args=hoist_global_options(argv), prog_name="mlctl", standalone_mode=False)
    except MlctlError as error:
        return _report(error)
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except Exception as error:  # noqa: BLE001 - the one place unexpected errors are reported
        code = _unexpected_or_usage(error)
        # `mlctl diff` exits 1 only for "changes" (diff's convention): a bug there is 2, "trouble"
        return EXIT_USAGE if code == EXIT_UNEXPECTED and "diff" in argv else code
    if result == EXIT_INTERRUPTED:
        return _interrupted()
    return result if isinstance(result, int) else 0


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move ``-o/--output VALUE``, ``--debug`` and ``-q/--quiet`` to the front, so they work after the verb too
    (``mlctl service show x -o json``), as in ``az`` and ``kubectl``. Stops at ``--``. ``-o csv`` stays
    where it is: only ``mlctl service data`` has that output, as its own option."""
    front: list[str] = []
    rest: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg == "--":
            rest.extend([arg, *items])
            break
        if arg in ("-o", "--output"):
            value = next(items, "")
            (rest if value == "csv" else front).extend([arg, value])
        elif arg == "--output=csv":
            rest.append(arg)
        elif arg.startswith("--output=") or arg in ("--debug", "--quiet", "-q"):
            front.append(arg)
        else:
            rest.append(arg)
    return [*front, *rest] if front else argv


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))


def _report(error: MlctlError) -> int:
    reporter = _state.reporter()
    reporter.error(error.to_dict())
    if reporter.debug:
        reporter.traceback()
    return error.exit_code


def _interrupted() -> int:
    _state.reporter().error(
        {"error": "interrupted", "message": "interrupted; nothing was left half-done", "exit_code": EXIT_INTERRUPTED}
    )
    return EXIT_INTERRUPTED


def _unexpected_or_usage(error: Exception) -> int:
    show, code = getattr(error, "show", None), getattr(error, "exit_code", None)
    if callable(show) and isinstance(code, int):  # Typer's usage errors: it prints them itself
        show()
        return code
    reporter = _state.reporter()
    reporter.error(
        {
            "error": "unexpected",
            "exit_code": EXIT_UNEXPECTED,
            "message": f"unexpected {type(error).__name__}: {error}",
            "hint": "this is a bug in mlctl: rerun with --debug and report the traceback",
        }
    )
    if reporter.debug:
        reporter.traceback()
    return EXIT_UNEXPECTED
