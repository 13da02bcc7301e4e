"""A CLI that scripts can trust: output formats, apply/diff, dry runs, overlays, targets, migrate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ECHO_SCORE, free_port, mlctl, post, serve_processes, service_spec, write
from ruamel.yaml import YAML

from mlctl.registry import Registry
from mlctl.target_kinds import TARGETS


def _project(tmp_path: Path, *, with_model_doc: bool = False) -> Path:
    project = tmp_path / "project"
    write(project / "model.txt", "v1")
    write(project / "score.py", ECHO_SCORE)
    service_spec(project / "service.yaml", port=free_port())
    write(project / "environment.yml", "dependencies:\n  - pip\n")  # not a spec: apply skips it
    if with_model_doc:
        write(project / "model.yaml", "apiVersion: mlctl/v1\nkind: Model\nname: echo-model\npath: model.txt\n")
        text = (project / "service.yaml").read_text().replace("model_files: [model.txt]", "models: [echo-model@latest]")
        (project / "service.yaml").write_text(text)
    return project


def test_yaml_output_is_the_same_document_as_json(tmp_path: Path) -> None:
    write(tmp_path / "m.txt", "m")
    mlctl("model", "register", "--name", "m", "--path", str(tmp_path / "m.txt"), "--tag", "a=b")
    as_json = mlctl("-o", "json", "model", "list").json()
    as_yaml = YAML(typ="safe").load(mlctl("-o", "yaml", "model", "list").out)
    assert as_yaml == as_json and as_json[0]["tags"] == {"a": "b"}


def test_piped_output_has_no_colour_or_spinner_and_quiet_has_no_progress(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlctl", "service", "deploy", "-f", str(project / "service.yaml")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "\x1b[" not in proc.stdout + proc.stderr
    assert "- waiting for init() and /readyz ..." in proc.stderr  # plain progress lines instead
    quiet = mlctl("-q", "-o", "json", "service", "delete", "echo")
    assert quiet.code == 0 and quiet.err == "" and quiet.json()["deleted"] is True


def test_apply_is_idempotent_and_diff_follows_the_diff_exit_convention(tmp_path: Path) -> None:
    project = _project(tmp_path, with_model_doc=True)
    diff = mlctl("-o", "json", "diff", "-f", str(project))
    assert diff.code == 1
    assert [(c["kind"], c["action"]) for c in diff.json()["changes"]] == [("Model", "create"), ("Service", "create")]
    assert serve_processes() == [] and Registry(Path(os.environ["MLCTL_HOME"])).models() == []  # diff changed nothing

    first = mlctl("-o", "json", "apply", "-f", str(project))
    assert first.code == 0, first.err
    assert first.json()["changed"] is True
    second = mlctl("apply", "-f", str(project))
    assert second.code == 0 and "no changes" in second.out
    assert mlctl("diff", "-f", str(project)).code == 0

    (project / "model.txt").write_text("v2")
    changes = mlctl("-o", "json", "diff", "-f", str(project)).json()["changes"]
    assert [(c["kind"], c["action"], c["reasons"]) for c in changes] == [
        ("Model", "update", ["content"]),
        ("Service", "update", ["models"]),
    ]
    applied = mlctl("-o", "json", "apply", "-f", str(project))
    assert applied.code == 0, applied.err
    uri = mlctl("-o", "json", "service", "show", "echo").json()["scoring_uri"]
    assert json.loads(post(uri, b"{}")[2])["model"] == "v2"
    assert mlctl("diff", "-f", str(project / "nope.yaml")).code == 4  # an error is > 1


def test_dry_run_changes_nothing_on_every_mutating_verb(tmp_path: Path) -> None:
    project = _project(tmp_path)
    spec = str(project / "service.yaml")
    plan = mlctl("-o", "json", "service", "deploy", "-f", spec, "--dry-run").json()
    assert plan["dry_run"] and plan["changes"][0]["action"] == "create"
    assert plan["plan"]["command"][:3] == [sys.executable, "-m", "mlctl.serve"]
    assert (
        mlctl(
            "-o", "json", "model", "register", "--name", "x", "--path", str(project / "model.txt"), "--dry-run"
        ).json()["changes"][0]["action"]
        == "create"
    )
    assert mlctl("-o", "json", "apply", "-f", spec, "--dry-run").json()["changed"] is True
    home = Path(os.environ["MLCTL_HOME"])
    assert serve_processes() == [] and Registry(home).models() == [] and Registry(home).services() == []

    assert mlctl("service", "deploy", "-f", spec).code == 0
    assert (
        mlctl("-o", "json", "service", "update", "-f", spec, "--dry-run").json()["changes"][0]["action"] == "unchanged"
    )
    assert mlctl("-o", "json", "service", "delete", "echo", "--dry-run").json()["changes"][0]["action"] == "delete"
    assert mlctl("-o", "json", "model", "delete", "model:1", "--dry-run").code == 5  # still checks it is in use
    assert len(set(serve_processes())) == 1 and len(Registry(home).models()) == 1


def test_set_and_variables_overlay_a_spec_without_copying_it(tmp_path: Path) -> None:
    project = _project(tmp_path)
    text = (project / "service.yaml").read_text()
    text = re.sub(r"port: \d+", "port: ${ECHO_PORT}", text).replace("name: echo", "name: ${NAME:-echo}")
    (project / "service.yaml").write_text(text)
    unset = mlctl("service", "deploy", "-f", str(project / "service.yaml"))
    assert unset.code == 3 and "service.yaml:9:9: ${ECHO_PORT}: variable ECHO_PORT is not set" in unset.err

    port, other = free_port(), free_port()
    state = mlctl(
        "-o",
        "json",
        "service",
        "deploy",
        "-f",
        str(project / "service.yaml"),
        "--set",
        f"deployment_config.port={other}",
        ECHO_PORT=str(port),
    ).json()
    assert state["name"] == "echo" and state["port"] == other  # --set wins over the file
    assert (
        mlctl(
            "spec", "validate", str(project / "service.yaml"), "--set", "deployment_config.port=x", ECHO_PORT="1"
        ).code
        == 3
    )
    assert mlctl("spec", "validate", str(project / "service.yaml"), "--set", "oops", ECHO_PORT="1").code == 3


def test_wait_and_timeout_options(tmp_path: Path) -> None:
    project = _project(tmp_path)
    spec = str(project / "service.yaml")
    assert mlctl("service", "deploy", "-f", spec).code == 0
    refused = mlctl("service", "update", "-f", spec, "--no-wait")
    assert refused.code == 6 and "drop --no-wait" in refused.err
    gone = mlctl("-o", "json", "service", "delete", "echo", "--no-wait", "--timeout", "5")
    assert gone.json()["deleted"] is True


def test_named_targets_with_options_and_environment_override(tmp_path: Path) -> None:
    added = mlctl(
        "-o", "json", "target", "add", "loop2", "--kind", "process", "--option", "host=127.0.0.2", "--default"
    )
    assert added.code == 0 and added.json()["default"] is True
    assert mlctl("target", "add", "loop2", "--kind", "process").code == 5
    assert mlctl("target", "add", "bad", "--kind", "process", "--option", "colour=red").code == 6
    assert mlctl("target", "add", "bad", "--kind", "mainframe").code == 6
    rows = mlctl("-o", "json", "target", "list").json()
    assert {r["name"]: r["default"] for r in rows} == {"loop2": True, **{kind: False for kind in TARGETS}}

    project = _project(tmp_path)  # names no target: the default (loop2) applies
    state = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml")).json()
    assert state["scoring_uri"].startswith("http://127.0.0.2:")
    assert post(state["scoring_uri"], b"{}")[0] == 200
    assert mlctl("service", "delete", "echo").code == 0

    wrong = mlctl("service", "deploy", "-f", str(project / "service.yaml"), MLCTL_DEFAULT_TARGET="loop3")
    assert wrong.code == 6 and "did you mean 'loop2'?" in wrong.err
    assert mlctl("-o", "json", "target", "show", MLCTL_DEFAULT_TARGET="process").json()["name"] == "process"
    assert mlctl("-o", "json", "target", "remove", "loop2").json()["removed"] is True
    assert mlctl("-o", "json", "target", "show").json()["name"] == "process"


def test_an_image_document_that_cannot_be_built_stops_apply_before_anything_changes(tmp_path: Path) -> None:
    project = _project(tmp_path)
    write(
        project / "image.yaml", "apiVersion: mlctl/v1\nkind: Image\nname: img\nmodels: [m:1]\nentry_script: score.py\n"
    )
    result = mlctl("apply", "-f", str(project))
    assert result.code == 4 and "model 'm'" in result.err  # planned before anything is applied
    assert serve_processes() == []


def test_spec_migrate_rewrites_an_older_api_version_keeping_comments_and_order(tmp_path: Path) -> None:
    project = _project(tmp_path)
    old = write(
        project / "old.yaml",
        """
        # pre-release spec
        apiVersion: mlctl/v1alpha1
        kind: Service
        name: old-svc
        model_files: [model.txt]
        inference:              # how to run it
          entry_script: score.py
        deployment:
          port: 9000            # the port
        test:
          input: {"x": 1}
        """,
    )
    refused = mlctl("spec", "validate", str(old))
    assert refused.code == 3 and f"spec migrate --write {old}`" in refused.err  # the path as given
    printed = mlctl("spec", "migrate", str(old))
    assert printed.code == 0 and "apiVersion: mlctl/v1\n" in printed.out and "mlctl/v1alpha1" in old.read_text()
    written = mlctl("-o", "json", "spec", "migrate", "--write", str(old))
    assert written.json()["files"][0]["from"] == ["mlctl/v1alpha1"]
    text = old.read_text()
    assert text.startswith("# pre-release spec\napiVersion: mlctl/v1\n")
    assert "inference_config:       # how to run it" in text and "port: 9000            # the port" in text
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert keys == ["apiVersion", "kind", "name", "model_files", "inference_config", "deployment_config", "test"]
    assert mlctl("spec", "validate", str(old)).code == 0
    assert mlctl("-o", "json", "spec", "migrate", "--write", str(old)).json()["files"][0]["changed"] is False


def test_names_complete_from_the_registry(tmp_path: Path) -> None:
    write(tmp_path / "m.txt", "m")
    mlctl("model", "register", "--name", "digits", "--path", str(tmp_path / "m.txt"))
    env = {**os.environ, "_MLCTL_COMPLETE": "complete_bash", "COMP_WORDS": "mlctl model show di", "COMP_CWORD": "3"}
    proc = subprocess.run([sys.executable, "-m", "mlctl"], capture_output=True, text=True, env=env)
    assert set(proc.stdout.split()) == {"digits:1", "digits@latest"}


def test_target_dry_runs_and_schema_as_yaml() -> None:
    assert mlctl("-o", "json", "target", "add", "t1", "--kind", "process", "--dry-run").json()["dry_run"] is True
    assert [r["name"] for r in mlctl("-o", "json", "target", "list").json()] == list(TARGETS)
    assert mlctl("target", "add", "t1", "--kind", "process").code == 0
    assert mlctl("-o", "json", "target", "remove", "t1", "--dry-run").json() == {
        "name": "t1",
        "removed": True,
        "dry_run": True,
    }
    assert "t1" in [r["name"] for r in mlctl("-o", "json", "target", "list").json()]
    schema = YAML(typ="safe").load(mlctl("-o", "yaml", "spec", "schema", "Model").out)
    assert schema["title"] == "mlctl Model (v1)"
