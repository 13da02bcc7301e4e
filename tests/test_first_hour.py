"""A newcomer's first hour (issue 22): errors that name the real cause, plans that say what
changes, and the importer's output tried on a laptop. Real subprocesses on the process target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import free_port, mlctl, serve_processes, write


def _deploy_error(project: Path) -> dict[str, object]:
    result = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
    assert result.code == 7 and result.out == "", result.err
    return json.loads(result.err.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_missing_package_names_it_and_the_requirements_file(echo_project: Path) -> None:
    write(echo_project / "score.py", "import sklearn_not_installed.linear_model\ndef init():\n    pass\n")
    write(echo_project / "requirements.txt", "# nothing yet\n")
    spec = echo_project / "service.yaml"
    spec.write_text(spec.read_text().replace("environment: current", "requirements: requirements.txt"))
    error = _deploy_error(echo_project)
    hint = str(error["hint"])
    assert "'sklearn_not_installed'" in hint and "requirements file" in hint and "requirements.txt" in hint
    assert "fix the entry script" not in hint
    assert serve_processes() == []


def test_a_missing_package_on_the_current_interpreter_says_to_add_a_requirements_file(echo_project: Path) -> None:
    write(echo_project / "score.py", "import sklearn\nimport not_a_module_anywhere\ndef init():\n    pass\n")
    hint = str(_deploy_error(echo_project)["hint"])
    assert "'not_a_module_anywhere'" in hint and "inference_config.requirements" in hint


def test_a_wrong_model_file_name_lists_what_the_model_folder_holds(echo_project: Path) -> None:
    write(
        echo_project / "score.py",
        "import os\ndef init():\n"
        "    open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'model.pkl'))\n"
        "def run(x):\n    return x\n",
    )
    hint = str(_deploy_error(echo_project)["hint"])
    assert "azureml-models/model/1/model.pkl" in hint and "holds: model.txt" in hint


def test_the_init_failure_is_shown_once_from_the_start_of_its_traceback(echo_project: Path) -> None:
    write(
        echo_project / "score.py",
        "def init():\n    raise RuntimeError('broken ' + 'x' * 40)\ndef run(x):\n    return x\n",
    )
    spec = echo_project / "service.yaml"
    spec.write_text(spec.read_text().replace("workers: 1", "workers: 3"))
    details = [str(d) for d in _deploy_error(echo_project)["details"]]  # type: ignore[union-attr]
    assert sum("Traceback (most recent call last):" in d for d in details) == 1
    assert sum("RuntimeError: broken" in d for d in details) == 1
    assert "entry script failed during load or init()" in details[0]
    assert details[1] == "Traceback (most recent call last):"
    assert not details[0].strip().startswith("^")


def test_a_syntax_error_in_the_entry_script_fails_validation_and_dry_run_at_its_line(echo_project: Path) -> None:
    marker = echo_project / "ran"
    write(echo_project / "score.py", f"open({str(marker)!r}, 'w')\ndef init(:\n    pass\n")
    spec = str(echo_project / "service.yaml")
    for args in (["spec", "validate", spec], ["service", "deploy", "--dry-run", "-f", spec], ["diff", "-f", spec]):
        result = mlctl(*args, cwd=echo_project)
        assert result.code == 3, (args, result.err)
        assert "service.yaml:6:17: $.inference_config.entry_script: the entry script does not compile" in result.err
        assert "score.py:2:10: SyntaxError" in result.err
    assert not marker.exists()  # compiled, never run


def test_a_failed_update_says_the_previous_version_still_serves_and_where(echo_project: Path) -> None:
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert deployed.code == 0, deployed.err
    uri = deployed.json()["scoring_uri"]
    write(
        echo_project / "score.py", "def init():\n    raise RuntimeError('broken release')\ndef run(x):\n    return x\n"
    )
    for args in (["service", "update"], ["apply"]):
        result = mlctl("-o", "json", *args, "-f", str(echo_project / "service.yaml"))
        assert result.code == 7, result.err
        message = json.loads(result.err.strip().splitlines()[-1])["message"]
        assert f"the previous version is still serving at {uri}" in message


def test_a_typo_in_set_is_reported_at_the_option_not_at_a_line_of_the_file(echo_project: Path) -> None:
    spec = str(echo_project / "service.yaml")
    for verb in (["spec", "validate", spec], ["service", "deploy", "--dry-run", "-f", spec]):
        result = mlctl(*verb, "--set", "deployment_config.prot=8970")
        assert result.code == 3, result.err
        assert "--set deployment_config.prot=8970: $.deployment_config.prot: unknown key 'prot'" in result.err
        assert "service.yaml:" not in result.err


def test_hints_quote_the_spec_path_as_given_and_port_in_use_names_the_holder(echo_project: Path) -> None:
    first = mlctl("service", "deploy", "-f", "project/service.yaml", cwd=echo_project.parent)
    assert first.code == 0, first.err
    again = mlctl("service", "deploy", "-f", "project/service.yaml", cwd=echo_project.parent)
    assert again.code == 5 and "`mlctl service update -f project/service.yaml`" in again.err
    other = echo_project / "other.yaml"
    other.write_text((echo_project / "service.yaml").read_text().replace("name: echo", "name: other"))
    taken = mlctl("service", "deploy", "-f", str(other))
    assert taken.code == 6 and "already in use by mlctl service 'echo'" in taken.err
    assert "`mlctl service delete echo`" in taken.err


def test_no_ansi_colour_codes_from_a_docker_build_reach_plain_output(echo_project: Path, engine: Any) -> None:
    write(echo_project / "requirements.txt", "this-package-does-not-exist-mlctl==0.0.1\n")
    spec = echo_project / "service.yaml"
    text = spec.read_text().replace("environment: current", "requirements: requirements.txt")
    spec.write_text(text.replace("kind: Service\n", "kind: Service\ntarget: docker\n"))
    for output in ("table", "json"):
        result = mlctl(
            "-o", output, "service", "deploy", "-f", str(spec), "--set", f"deployment_config.port={free_port()}"
        )
        assert result.code == 7, result.err
        assert "this-package-does-not-exist-mlctl" in result.err
        assert "\x1b" not in result.err and "\\u001b" not in result.err


def test_diff_shows_each_changed_field_old_to_new_and_no_dry_run_notice(echo_project: Path) -> None:
    spec = str(echo_project / "service.yaml")
    applied = mlctl("apply", "-f", spec)
    assert applied.code == 0, applied.err
    port = mlctl("-o", "json", "service", "show", "echo").json()["port"]
    new_port = free_port()
    table = mlctl("diff", "-f", spec, "--set", f"deployment_config.port={new_port}")
    assert table.code == 1
    assert "~ Service echo: update (target)" in table.out
    assert f"    deployment_config.port: {port} -> {new_port}" in table.out
    assert "dry run" not in table.err
    doc = mlctl("-o", "json", "diff", "-f", spec, "--set", f"deployment_config.port={new_port}").json()
    assert doc["changes"][0]["fields"] == [{"field": "deployment_config.port", "old": port, "new": new_port}]


def test_dry_run_in_table_mode_prints_the_rendered_plan(echo_project: Path) -> None:
    result = mlctl("service", "deploy", "--dry-run", "-f", str(echo_project / "service.yaml"))
    assert result.code == 0, result.err
    assert "+ Service echo: create" in result.out
    lines = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    assert "/score" in lines["scoring_uri"]
    assert "-m mlctl.serve --entry-script" in lines["command"]
    assert "environment" in lines and "AZUREML_MODEL_DIR=" in result.out


def test_changing_only_the_test_records_it_without_restarting_the_service(echo_project: Path) -> None:
    spec = echo_project / "service.yaml"
    applied = mlctl("-o", "json", "apply", "-f", str(spec))
    assert applied.code == 0, applied.err
    pids = serve_processes()
    assert mlctl("service", "test", "echo").code == 0
    spec.write_text(spec.read_text() + '  expected: {"model": "not v1"}\n')
    diff = mlctl("-o", "json", "diff", "-f", str(spec))
    assert diff.code == 1 and diff.json()["changes"][0]["reasons"] == ["test"]
    again = mlctl("apply", "-f", str(spec))
    assert again.code == 0, again.err
    assert "~ Service echo: update (test)" in again.out and "recorded, the service keeps running" in again.err
    assert serve_processes() == pids  # the same server: not restarted
    assert mlctl("service", "test", "echo").code == 8  # the recorded test is the new one
    assert mlctl("diff", "-f", str(spec)).code == 0


def test_apply_prints_each_services_scoring_uri(echo_project: Path) -> None:
    first = mlctl("apply", "-f", str(echo_project / "service.yaml"))
    assert first.code == 0, first.err
    uri = mlctl("-o", "json", "service", "show", "echo").json()["scoring_uri"]
    assert f"scoring_uri  {uri}" in first.out
    again = mlctl("-o", "json", "apply", "-f", str(echo_project / "service.yaml"))
    assert again.json()["changes"][0]["scoring_uri"] == uri


def _v1_project(tmp_path: Path, **deployment: Any) -> Path:
    import shutil

    folder = tmp_path / "v1"
    shutil.copytree(Path(__file__).parent / "azureml_v1", folder)
    source = json.loads((folder / "aci-deploymentconfig.json").read_text())
    (folder / "aci.json").write_text(json.dumps({**source, **deployment}))
    return folder


def _import_aci(folder: Path, *extra: str) -> Any:
    return mlctl(
        *("import", "azureml", "--ic", "inferenceconfig.json", "--dc", "aci.json"),
        *("--model-file", "model.txt", "--name", "imp-svc", "--out", "out", *extra),
        cwd=folder,
    )


def test_an_imported_aci_config_applies_on_the_process_target_as_the_importer_says(tmp_path: Path) -> None:
    folder = _v1_project(tmp_path, location="westeurope", sslEnabled=False)
    imported = _import_aci(folder)
    assert imported.code == 0, imported.err
    assert "try it on this machine first: `mlctl apply -f out --set target=process`" in imported.err
    port = f"deployment_config.port={free_port()}"
    applied = mlctl("apply", "-f", "out", "--set", "target=process", "--set", port, cwd=folder)
    assert applied.code == 0, applied.err
    assert "ignores deployment_config.location" in applied.err
    ssl = "deployment_config.ssl_enabled=true"
    asking = mlctl("apply", "-f", "out", "--set", "target=process", "--set", port, "--set", ssl, cwd=folder)
    assert asking.code == 6 and "deployment_config.ssl_enabled" in asking.err  # a value that asks is refused


def test_the_importers_report_names_only_options_that_apply_and_is_not_padded_when_piped(tmp_path: Path) -> None:
    folder = _v1_project(tmp_path)
    inference = json.loads((folder / "inferenceconfig.json").read_text())
    (folder / "inferenceconfig.json").write_text(json.dumps({**inference, "enableGpu": True}))
    imported = _import_aci(folder, "--target", "process")
    assert imported.code == 0, imported.err
    gpu = next(line for line in imported.out.splitlines() if "enableGpu" in line)
    assert "--target docker" in gpu and "--local-target" not in gpu
    assert "--local-target" not in imported.err
    assert all(line == line.rstrip() for line in imported.out.splitlines())
