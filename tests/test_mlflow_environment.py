"""An MLflow model's own environment (python_env.yaml, requirements.txt, conda.yaml, as MLflow writes
them), resolved with MLflow's precedence, for a model folder in a spec and for a registered model
built into an image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port, mlctl, post, write

from mlctl import environments, images
from mlctl.registry import Registry
from mlctl.spec import ImageSpec, ServiceSpec, load

SAVE = """
import sys
import mlflow.pyfunc


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


mlflow.pyfunc.save_model(sys.argv[1], python_model=Echo(), pip_requirements=["mlflow", "tabulate==0.9.0"])
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A custom pyfunc saved by MLflow whose requirements name ``tabulate==0.9.0`` beside mlflow."""
    folder = tmp_path_factory.mktemp("mlflow-env")
    (folder / "save.py").write_text(SAVE)
    subprocess.run([sys.executable, "save.py", str(folder / "model")], check=True, timeout=300, cwd=folder)
    return folder / "model"


def model_copy(saved: Path, tmp_path: Path) -> Path:
    shutil.copytree(saved, tmp_path / "model")
    return tmp_path / "model"


def add_to_python_env(model: Path, requirement: str) -> None:
    """Name ``requirement`` in the model's python_env.yaml only, after MLflow's ``-r requirements.txt``."""
    text = (model / "python_env.yaml").read_text()
    (model / "python_env.yaml").write_text(
        text.replace("- -r requirements.txt", f"- -r requirements.txt\n- {requirement}")
    )


def service_requirements(tmp_path: Path, home: Path) -> tuple[str, tuple[str, ...]]:
    """The environment kind and pip requirements of a Service spec serving ``model`` with no entry script."""
    spec_file = tmp_path / "svc.yaml"
    spec_file.write_text("apiVersion: mlctl/v1\nkind: Service\nname: svc\nmodel_files: [model]\ninference_config: {}\n")
    (record,) = load([spec_file])
    assert isinstance(record, ServiceSpec) and record.inference is not None
    env = record.inference.environment
    return env.kind, environments.plan(env, home).requirements


def test_mlflow_writes_the_files_read_here(saved: Path) -> None:
    assert {"MLmodel", "python_env.yaml", "requirements.txt", "conda.yaml"} <= {p.name for p in saved.iterdir()}
    assert "-r requirements.txt" in (saved / "python_env.yaml").read_text()


def test_python_env_yaml_comes_first_with_its_requirements_references(
    saved: Path, tmp_path: Path, mlctl_home: Path
) -> None:
    model = model_copy(saved, tmp_path)
    add_to_python_env(model, "humanize")
    kind, requirements = service_requirements(tmp_path, mlctl_home)
    assert kind == "python_env"
    assert {"tabulate==0.9.0", "humanize", "mlflow-skinny"} <= set(requirements)
    assert not any(r.startswith("pip") for r in requirements)  # build_dependencies' pip is the venv's own


def test_a_constraints_file_pins_the_packages_the_model_names(saved: Path, tmp_path: Path, mlctl_home: Path) -> None:
    """``-c constraints.txt`` (what MLflow writes for pip_requirements with a constraint) cannot be
    passed on as a file, so its pins replace the model's requirements of those packages."""
    model = model_copy(saved, tmp_path)
    with (model / "requirements.txt").open("a") as requirements:
        requirements.write('\n-c constraints.txt\nhumanize; python_version >= "3.8"\n')
    (model / "constraints.txt").write_text("tabulate==0.8.10\nnot-named-by-the-model==1\n")
    _kind, requirements = service_requirements(tmp_path, mlctl_home)
    assert "tabulate==0.8.10" in requirements and "tabulate==0.9.0" not in requirements
    assert not any(r.startswith("not-named") for r in requirements)
    assert 'humanize; python_version >= "3.8"' in requirements


def test_a_reference_to_a_file_the_model_lacks_names_it(saved: Path, tmp_path: Path) -> None:
    model = model_copy(saved, tmp_path)
    (model / "requirements.txt").unlink()
    result = mlctl("model", "register", "--name", "lacking", "--path", str(model))
    assert result.code == 0
    write(tmp_path / "svc.yaml", "apiVersion: mlctl/v1\nkind: Image\nname: lacking\nmodels: [lacking:1]\n")
    planned = mlctl("image", "build", "--dry-run", "-f", str(tmp_path / "svc.yaml"))
    assert planned.code == 3, planned.err
    assert "python_env.yaml references requirements.txt, which the MLflow model does not hold" in planned.err


def test_requirements_txt_without_python_env_yaml(saved: Path, tmp_path: Path, mlctl_home: Path) -> None:
    model = model_copy(saved, tmp_path)
    (model / "python_env.yaml").unlink()
    kind, requirements = service_requirements(tmp_path, mlctl_home)
    assert kind == "pip" and "tabulate==0.9.0" in requirements


def test_conda_yaml_alone_goes_through_the_conda_handling(saved: Path, tmp_path: Path, mlctl_home: Path) -> None:
    model = model_copy(saved, tmp_path)
    (model / "python_env.yaml").unlink()
    (model / "requirements.txt").unlink()
    conda = (model / "conda.yaml").read_text()
    (model / "conda.yaml").write_text(conda.replace("dependencies:\n", "dependencies:\n- scipy=1.11\n", 1))
    kind, requirements = service_requirements(tmp_path, mlctl_home)
    assert kind == "conda"
    assert {"tabulate==0.9.0", "scipy==1.11.*"} <= set(requirements)


def test_a_registered_mlflow_model_built_into_an_image_brings_its_requirements(
    saved: Path, tmp_path: Path, mlctl_home: Path
) -> None:
    model = model_copy(saved, tmp_path)
    registry = Registry(mlctl_home)
    registry.register("envmodel", model)
    spec_file = tmp_path / "image.yaml"
    spec_file.write_text(
        textwrap.dedent("""\
        apiVersion: mlctl/v1
        kind: Image
        name: envimg
        models: ["envmodel:1"]
        """)
    )
    (record,) = load([spec_file])
    assert isinstance(record, ImageSpec)
    plan = images.plan_context(
        "envimg", record.inference, (registry.get(record.models[0]),), base_image="base", registry=registry
    )
    assert plan.model_kind == "mlflow"
    assert {"tabulate==0.9.0", "mlflow-skinny"} <= set(plan.requirements)


@pytest.mark.parametrize("kind", ["Service", "Image"])
def test_image_build_of_a_registered_mlflow_model_lists_its_requirements(
    saved: Path, tmp_path: Path, kind: str
) -> None:
    """Through the CLI (``image build --dry-run``), for a Service spec (docker, kubernetes, aci build
    this way) and an Image spec (IoT Edge modules build this way)."""
    model = model_copy(saved, tmp_path)
    assert mlctl("model", "register", "--name", "envmodel", "--path", str(model)).code == 0
    body = {
        "Service": "kind: Service\nname: envsvc\ntarget: docker\nmodels: [envmodel:1]\ninference_config: {}\n",
        "Image": "kind: Image\nname: envimg\nmodels: [envmodel:1]\n",
    }[kind]
    write(tmp_path / "spec.yaml", "apiVersion: mlctl/v1\n" + body)
    planned = mlctl("-o", "json", "image", "build", "--dry-run", "-f", str(tmp_path / "spec.yaml"))
    assert planned.code == 0, planned.err
    requirements = set(planned.json()["requirements"])
    assert {"tabulate==0.9.0", "mlflow-skinny"} <= requirements
    assert "MLCTL_MODEL_KIND=mlflow" in planned.json()["dockerfile"]


def test_a_registered_model_with_conda_yaml_alone_gives_the_image_its_conda_file(
    saved: Path, tmp_path: Path, mlctl_home: Path
) -> None:
    """The conda-only package stays a conda package for an image whose base image has conda."""
    model = model_copy(saved, tmp_path)
    (model / "python_env.yaml").unlink()
    (model / "requirements.txt").unlink()
    conda = (model / "conda.yaml").read_text()
    (model / "conda.yaml").write_text(conda.replace("dependencies:\n", "dependencies:\n- scipy=1.11\n", 1))
    registry = Registry(mlctl_home)
    version = registry.register("condamodel", model)
    write(tmp_path / "image.yaml", "apiVersion: mlctl/v1\nkind: Image\nname: condaimg\nmodels: [condamodel:1]\n")
    (record,) = load([tmp_path / "image.yaml"])
    assert isinstance(record, ImageSpec)
    plan = images.plan_context("condaimg", record.inference, (version,), base_image="base", registry=registry)
    assert plan.conda_file is not None and "scipy=1.11" in plan.conda_file and "tabulate==0.9.0" in plan.conda_file
    assert {"tabulate==0.9.0", "scipy==1.11.*"} <= set(plan.requirements)


def test_a_registered_model_on_the_process_target_gets_its_python_env(
    saved: Path, tmp_path: Path, mlctl_home: Path
) -> None:
    from mlctl import model_kinds

    model = model_copy(saved, tmp_path)
    add_to_python_env(model, "humanize")
    registry = Registry(mlctl_home)
    version = registry.register("pyenvmodel", model)
    write(
        tmp_path / "svc.yaml",
        "apiVersion: mlctl/v1\nkind: Service\nname: svc\nmodels: [pyenvmodel:1]\ninference_config: {}\n",
    )
    (record,) = load([tmp_path / "svc.yaml"])
    assert isinstance(record, ServiceSpec)
    env = model_kinds.environment(record, (version,), registry)
    assert env.kind == "python_env"
    assert {"tabulate==0.9.0", "humanize", "mlflow-skinny"} <= set(environments.plan(env, mlctl_home).requirements)


@pytest.mark.parametrize("source", ["python_env.yaml", "conda.yaml"])
def test_a_model_saved_with_another_python_is_reported(saved: Path, tmp_path: Path, source: str) -> None:
    """python_env.yaml's ``python``; without python_env.yaml, conda.yaml's (requirements.txt gives the packages)."""
    import re

    model = model_copy(saved, tmp_path)
    if source == "conda.yaml":
        (model / "python_env.yaml").unlink()
    text = (model / source).read_text()
    (model / source).write_text(re.sub(r"python(: |=)3\.\d+\.\d+", r"python\g<1>3.7.1", text))
    spec_file = tmp_path / "svc.yaml"
    spec_file.write_text("apiVersion: mlctl/v1\nkind: Service\nname: svc\nmodel_files: [model]\ninference_config: {}\n")
    (record,) = load([spec_file])
    assert isinstance(record, ServiceSpec) and record.inference is not None
    notices: list[str] = []
    environments.plan(record.inference.environment, tmp_path, notices.append)
    assert any("python 3.7" in n for n in notices), notices
    assert record.inference.environment.kind == ("python_env" if source == "python_env.yaml" else "pip")


HUMANIZE_MODEL = """
import sys
import mlflow
import mlflow.pyfunc


class Commas(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        import humanize  # only in the model's python_env.yaml: fails unless that file was read

        return [humanize.intcomma(int(v)) for v in model_input["a"]]


mlflow.pyfunc.save_model(sys.argv[1], python_model=Commas(), pip_requirements=[f"mlflow=={mlflow.__version__}"])
"""


def test_a_registered_model_deploys_on_the_process_target_with_its_python_env(tmp_path: Path) -> None:
    """End to end: the package python_env.yaml adds is installed in the service's environment."""
    (tmp_path / "save.py").write_text(HUMANIZE_MODEL)
    subprocess.run([sys.executable, "save.py", str(tmp_path / "model")], check=True, timeout=300, cwd=tmp_path)
    add_to_python_env(tmp_path / "model", "humanize")
    assert mlctl("model", "register", "--name", "commas", "--path", str(tmp_path / "model")).code == 0
    body = "kind: Service\nname: commas\nmodels: [commas:1]\ninference_config: {}\n"
    body += f"deployment_config: {{port: {free_port()}, workers: 1}}\n"
    write(tmp_path / "svc.yaml", "apiVersion: mlctl/v1\n" + body)
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(tmp_path / "svc.yaml"), timeout=900)
    assert deployed.code == 0, deployed.err
    try:
        request = b'{"dataframe_split": {"columns": ["a"], "data": [[1234567]]}}'
        status, _, reply = post(deployed.json()["scoring_uri"], request)
        assert status == 200 and json.loads(reply) == ["1,234,567"], reply
    finally:
        assert mlctl("service", "delete", "commas").code == 0
