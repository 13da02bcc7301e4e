"""The spec language: schemas, positions in error messages, records."""

from __future__ import annotations

import json
import textwrap
from importlib import resources
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO, mlctl, write

from mlctl.errors import SpecError
from mlctl.spec import ServiceSpec, load
from mlctl.spec.schema import KINDS
from mlctl.target_kinds import TARGETS


def _service(tmp_path: Path, body: str) -> Path:
    write(tmp_path / "score.py", "def init(): pass\ndef run(raw): return raw\n")
    write(tmp_path / "model.pkl", "x")
    return write(tmp_path / "service.yaml", body)


VALID = """
    apiVersion: mlctl/v1
    kind: Service
    name: demo
    model_files: [model.pkl]
    inference_config:
      entry_script: score.py
    deployment_config:
      port: 9000
    """


def test_valid_service_becomes_a_frozen_record_with_resolved_paths(tmp_path: Path) -> None:
    spec_file = _service(tmp_path, VALID)
    (record,) = load([spec_file])
    assert isinstance(record, ServiceSpec)
    assert record.model_files == ((tmp_path / "model.pkl").resolve(),)
    assert record.inference is not None and record.inference.entry_script == (tmp_path / "score.py").resolve()
    assert record.inference.environment.kind == "current"  # no environment file given
    assert record.deployment.port == 9000 and record.deployment.workers == 2
    with pytest.raises(AttributeError):
        record.name = "other"  # type: ignore[misc]


def test_validate_reads_a_folder_as_apply_does(tmp_path: Path) -> None:
    _service(tmp_path / "specs", VALID)
    write(tmp_path / "specs" / "nested" / "broken.yml", textwrap.dedent(VALID).replace("port: 9000", "port: nine"))
    write(tmp_path / "specs" / "environment.yml", "name: env\ndependencies: [python=3.11]\n")  # not a spec
    result = mlctl("-o", "json", "spec", "validate", str(tmp_path / "specs"))
    assert result.code == 3, result.err
    checked = [Path(entry["file"]).name for entry in json.loads(result.out)["files"]]
    assert checked == ["broken.yml", "service.yaml"]  # sorted, recursive, the conda file left out
    assert "broken.yml:8:9: $.deployment_config.port: 'nine' is not of type 'integer'" in result.err
    (tmp_path / "specs" / "nested" / "broken.yml").unlink()
    assert mlctl("spec", "validate", str(tmp_path / "specs")).code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    result = mlctl("spec", "validate", str(empty))
    assert result.code == 3 and "no mlctl spec files" in result.err and "Traceback" not in result.err


def test_misspelled_key_names_line_column_path_and_suggestion(tmp_path: Path) -> None:
    spec_file = _service(tmp_path, VALID.replace("entry_script", "entry_scirpt"))
    result = mlctl("spec", "validate", str(spec_file))
    assert result.code == 3
    assert (
        "service.yaml:6:3: $.inference_config.entry_scirpt: unknown key 'entry_scirpt'; "
        "did you mean 'entry_script'?" in result.err
    )
    assert "Traceback" not in result.err


def test_wrong_type_points_at_the_value(tmp_path: Path) -> None:
    spec_file = _service(tmp_path, VALID.replace("port: 9000", "port: nine"))
    result = mlctl("spec", "validate", str(spec_file))
    assert result.code == 3
    assert "service.yaml:8:9: $.deployment_config.port: 'nine' is not of type 'integer'" in result.err


def test_unknown_api_version_is_reported_first_and_alone(tmp_path: Path) -> None:
    body = VALID.replace("mlctl/v1", "mlctl/v9").replace("entry_script", "entry_scirpt")
    result = mlctl("spec", "validate", str(_service(tmp_path, body)))
    assert result.code == 3
    assert "service.yaml:1:13: $.apiVersion: unknown apiVersion 'mlctl/v9'; this mlctl reads mlctl/v1" in result.err
    assert "entry_scirpt" not in result.err


def test_unknown_kind_suggests_the_closest(tmp_path: Path) -> None:
    result = mlctl("spec", "validate", str(_service(tmp_path, VALID.replace("kind: Service", "kind: Servise"))))
    assert result.code == 3
    assert "$.kind: unknown kind 'Servise'; did you mean 'Service'?" in result.err


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    spec_file = write(tmp_path / "bad.yaml", "apiVersion: mlctl/v1\nkind: Model\nname: [unclosed\npath: x\n")
    result = mlctl("spec", "validate", str(spec_file))
    assert result.code == 3
    assert "bad.yaml:4:" in result.err and "Traceback" not in result.err


def test_exactly_one_source_is_required(tmp_path: Path) -> None:
    body = VALID.replace("model_files: [model.pkl]", "model_files: [model.pkl]\n    models: [m:1]")
    result = mlctl("spec", "validate", str(_service(tmp_path, body)))
    assert result.code == 3
    assert "needs exactly one of 'model_files', 'models', 'image' (found 'model_files', 'models')" in result.err


def test_conda_file_and_requirements_are_exclusive(tmp_path: Path) -> None:
    body = VALID.replace(
        "entry_script: score.py", "entry_script: score.py\n      conda_file: a.yml\n      requirements: r.txt"
    )
    result = mlctl("spec", "validate", str(_service(tmp_path, body)))
    assert "'conda_file' and 'requirements' cannot both be given; keep one" in result.err


def test_missing_model_file_points_at_its_line(tmp_path: Path) -> None:
    spec_file = _service(tmp_path, VALID.replace("[model.pkl]", "[missing.pkl]"))
    result = mlctl("spec", "validate", str(spec_file))
    assert result.code == 3
    assert "service.yaml:4:" in result.err and "$.model_files[0]: file not found" in result.err


def test_every_error_of_every_document_is_reported(tmp_path: Path) -> None:
    body = (
        textwrap.dedent(VALID).replace("port: 9000", "port: nine")
        + "---\napiVersion: mlctl/v1\nkind: Model\nname: m\npth: x\n"
    )
    result = mlctl("-o", "json", "spec", "validate", str(_service(tmp_path, body)))
    assert result.code == 3
    doc = result.json()
    assert doc["valid"] is False
    errors = doc["files"][0]["errors"]
    assert any("service.yaml:8:9: $.deployment_config.port: 'nine'" in e for e in errors)
    assert any("service.yaml:13:1: $.pth: unknown key 'pth'; did you mean 'path'?" in e for e in errors)
    # the misspelling explains the missing key: one line, not two
    assert not any("missing required key 'path'" in e for e in errors)


def test_examples_are_valid_once_trained(trained_examples: Path) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*/*.yaml"))
    result = mlctl("-o", "json", "spec", "validate", *files)
    assert result.code == 0, result.err
    kinds = {d["kind"] for f in result.json()["files"] for d in f["documents"]}
    assert kinds == {"Model", "Service", "Image", "EdgeDeployment"}  # edge/: the IoT Edge examples


def test_schema_target_examples_are_the_target_registry() -> None:
    schema = json.loads((REPO / "specs/schemas/v1/service.json").read_text())
    assert schema["properties"]["target"]["examples"] == list(TARGETS)


def test_schemas_ship_inside_the_package() -> None:
    for file in KINDS.values():
        shipped = resources.files("mlctl").joinpath("schemas", "v1", file).read_text()
        assert json.loads(shipped)["$id"].endswith(file)


def test_spec_schema_prints_json_and_unknown_kind_is_not_found() -> None:
    result = mlctl("spec", "schema", "Service")
    assert result.code == 0 and json.loads(result.out)["title"] == "mlctl Service (v1)"
    assert mlctl("spec", "schema", "Servce").code == 4


def test_load_raises_spec_error_for_two_environment_files(tmp_path: Path) -> None:
    body = VALID.replace("entry_script: score.py", "entry_script: score.py\n      environment: sideways")
    with pytest.raises(SpecError) as info:
        load([_service(tmp_path, body)])
    assert "'sideways' is not one of 'isolated', 'current'" in info.value.details[0]
