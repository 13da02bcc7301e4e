"""CLI-wide behaviour: exit codes, JSON output, error reporting, lazy imports."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, mlctl
from typer.models import DefaultPlaceholder

from mlctl import __version__, errors
from mlctl.cli import GROUPS


def test_version() -> None:
    result = mlctl("--version")
    assert result.code == 0 and result.out.strip() == f"mlctl {__version__}"


def test_output_option_works_after_the_verb_too(tmp_path: Path) -> None:
    assert mlctl("model", "list", "-o", "json").json() == []
    assert mlctl("model", "list", "--output=json").json() == []


def test_errors_under_json_are_one_json_document_on_stderr_and_nothing_on_stdout() -> None:
    result = mlctl("-o", "json", "model", "show", "ghost:1")
    assert result.code == 4 and result.out == ""
    doc = json.loads(result.err)
    assert doc == {
        "error": "not_found",
        "message": "model 'ghost' is not registered",
        "exit_code": 4,
        "hint": "`mlctl model list` shows registered models",
    }


def test_unexpected_error_exits_1_without_traceback_unless_debug(mlctl_home: Path) -> None:
    mlctl_home.mkdir(parents=True)
    (mlctl_home / "registry.db").write_bytes(b"this is not an sqlite database" * 100)
    result = mlctl("model", "list")
    assert result.code == 1
    assert "unexpected DatabaseError" in result.err and "rerun with --debug" in result.err
    assert "Traceback" not in result.err
    debug = mlctl("--debug", "model", "list")
    assert debug.code == 1 and "Traceback" in debug.err
    (mlctl_home / "registry.db").unlink()


def test_usage_errors_exit_2() -> None:
    assert mlctl("service", "deploy").code == 2
    assert mlctl("nonsense").code == 2
    assert mlctl("-o", "xml", "model", "list").code == 2


def test_readme_exit_code_table_matches_the_error_classes() -> None:
    readme = (REPO / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) +\| `?(\w+)`? ", readme, flags=re.MULTILINE))
    classes = {
        str(c.exit_code): c.__name__
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.MlctlError) and c is not errors.MlctlError
    }
    assert {code: table.get(code) for code in classes} == classes
    assert {"0", "1", "2", "130"} <= set(table)


SDKS = ("docker", "kubernetes", "azure", "msrest", "uamqp", "requests", "urllib3", "pydantic", "uvicorn", "werkzeug")


def _modules_loaded_by(*argv: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running ``mlctl ARGV`` (piped output)."""
    return {m.split(".")[0] for m in _imports_of(*argv)[0]}


def _imports_of(*argv: str, **env: str) -> tuple[set[str], str]:
    """Every module (full names) a fresh interpreter has loaded after running ``mlctl ARGV`` with
    ``env`` added (piped output), and what it printed on stdout."""
    code = (
        "import sys, mlctl.cli\n"
        "try:\n    mlctl.cli.run(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(' '.join(sorted(sys.modules)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return set(proc.stderr.split()), proc.stdout


def test_help_loads_no_sdk_validator_yaml_or_rich() -> None:
    loaded = _modules_loaded_by("--help")
    assert loaded & {*SDKS, "jsonschema", "ruamel", "rich", "sqlite3"} == set()


def test_spec_validate_loads_only_the_libraries_it_needs() -> None:
    loaded = _modules_loaded_by("spec", "validate", str(REPO / "specs/examples/diabetes/service.yaml"))
    assert {"jsonschema", "ruamel"} <= loaded
    assert loaded & {*SDKS, "rich", "sqlite3"} == set()  # piped output is plain: no rich


GROUP_MODULES = {info.module for info in GROUPS.values()}


def _in_package(loaded: set[str], *packages: str) -> set[str]:
    return {m for m in loaded for p in packages if m == p or m.startswith(f"{p}.")}


def test_help_lists_every_group_without_importing_one() -> None:
    loaded, out = _imports_of("--help")
    for name, info in GROUPS.items():
        assert re.search(rf"^  {name} +{re.escape(info.help[:30])}", out, re.MULTILINE), name
    assert loaded & GROUP_MODULES == set()
    assert _in_package(loaded, "mlctl.edge", "mlctl.azureml", "mlctl.targets", "mlctl.spec", "mlctl.registry") == set()
    assert {m.split(".")[0] for m in loaded} & {"docker", "kubernetes", "azure", "json"} == set()


def test_a_verb_imports_its_own_group_and_no_other() -> None:
    loaded, _ = _imports_of("spec", "validate", str(REPO / "specs/examples/diabetes/service.yaml"))
    assert "mlctl.cli.spec" in loaded
    assert loaded & {*GROUP_MODULES, "mlctl.cli.apply"} == {"mlctl.cli.spec"}  # nor apply's, nor diff's
    assert _in_package(loaded, "mlctl.edge", "mlctl.azureml", "mlctl.registry") == set()  # a Service spec


def test_validate_warns_of_a_target_it_cannot_deploy_to_and_reads_the_configuration_only_for_those(
    tmp_path: Path, mlctl_home: Path
) -> None:
    spec = (REPO / "specs/examples/digits/service.yaml").read_text()
    files = {}
    for target in ("process", "fpga", "nosuch", "mine"):
        files[target] = tmp_path / f"{target}.yaml"
        files[target].write_text(spec.replace("target: process", f"target: {target}"))
    (tmp_path / "score.py").write_text((REPO / "specs/examples/digits/score.py").read_text())
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "sample.json").write_text("[]")
    assert mlctl("target", "add", "mine", "--kind", "docker").code == 0
    result = mlctl("spec", "validate", *map(str, files.values()))
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "a deploy is refused" in line]
    assert len(warnings) == 2, result.err
    assert "retired" in warnings[0] and "unknown compute target 'nosuch'" in warnings[1]
    loaded, _ = _imports_of("spec", "validate", str(files["process"]), MLCTL_HOME=str(mlctl_home))
    assert _in_package(loaded, "mlctl.config", "platformdirs") == set()  # a target kind: nothing to read


def test_completing_group_names_imports_no_group_and_inside_a_group_completes_its_commands() -> None:
    loaded, out = _imports_of(_MLCTL_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="mlctl ")
    for name, info in GROUPS.items():
        assert f'"{name}":"{info.help[:20].replace(chr(39), chr(39) * 2)}' in out, name
    assert loaded & GROUP_MODULES == set()
    loaded, out = _imports_of(_MLCTL_COMPLETE="complete_bash", COMP_WORDS="mlctl edge d", COMP_CWORD="2")
    assert out.split() == ["device", "deployment"]
    assert loaded & GROUP_MODULES == {"mlctl.cli.edge"}


def test_a_group_shows_its_help_from_the_groups_table_and_a_misspelt_one_gets_a_suggestion() -> None:
    for name, info in GROUPS.items():
        result = mlctl(name, "--help")
        assert result.code == 0, result.err
        assert " ".join(info.help.split()) in " ".join(result.out.split()), name
    result = mlctl("modl", "list")
    assert result.code == 2
    assert "No such command 'modl'. Did you mean 'model'?" in result.err


def test_group_modules_leave_their_help_to_the_groups_table() -> None:
    """One place for a group's help: a module's own would be ignored, or listed differently."""
    for info in GROUPS.values():
        app = importlib.import_module(info.module).app
        assert isinstance(app.info.help, DefaultPlaceholder), f"{info.module}: move its help to GROUPS"


def test_committed_shell_completions_are_current() -> None:
    for shell in ("bash", "zsh", "fish"):
        proc = subprocess.run(
            [sys.executable, "-m", "mlctl"],
            capture_output=True,
            text=True,
            env={**os.environ, "_MLCTL_COMPLETE": f"source_{shell}"},
        )
        committed = (REPO / "completions" / f"mlctl.{shell}").read_text()
        assert proc.stdout == committed, f"run `make completions` ({shell} is stale)"


def test_committed_command_reference_is_current(tmp_path: Path) -> None:
    typer_cli = Path(sys.executable).parent / "typer"
    out = tmp_path / "cli.md"
    subprocess.run(
        [
            str(typer_cli),
            "mlctl.cli",
            "utils",
            "docs",
            "--name",
            "mlctl",
            "--title",
            "mlctl command reference",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == (REPO / "docs" / "cli.md").read_text(), "run `make docs`"
