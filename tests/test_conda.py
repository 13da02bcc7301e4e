"""Conda match specs to pip requirements (py-rattler parses them), and the Azure ML SDK packages
a v1 environment lists, on the process target and in images."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write

from mlctl import conda, environments, images
from mlctl.errors import SpecError
from mlctl.spec.records import EnvironmentSpec, InferenceConfig


@pytest.mark.parametrize(
    "dep, expected",
    [
        ("scipy 1.11.*", "scipy==1.11.*"),  # was scipy==1.11.*.* (an invalid pip requirement)
        ("numpy=1.21", "numpy==1.21.*"),
        ("numpy==1.21.2", "numpy==1.21.2"),
        ("numpy 1.8*", "numpy==1.8.*"),
        ("numpy >=1.2", "numpy>=1.2"),
        ("conda-forge::numpy>=1.2,<2", "numpy>=1.2,<2"),
        ("defaults::pytorch[version='>=1.0']", "pytorch>=1.0"),
        ("tensorflow~=2.3", "tensorflow~=2.3"),
        ("six!=1.0", "six!=1.0"),
        ("Scikit-Learn", "scikit-learn"),
        ("numpy *", "numpy"),
    ],
)
def test_match_specs_become_the_pip_requirement_meaning_the_same(dep: str, expected: str) -> None:
    warnings: list[str] = []
    assert conda.pip_requirement(dep, "env.yml", warnings.append) == expected
    assert warnings == []


def test_what_pip_cannot_express_is_dropped_with_a_warning() -> None:
    warnings: list[str] = []
    assert conda.pip_requirement("openssl=1.1.1=h7b6447c_0", "env.yml", warnings.append) == "openssl==1.1.1"
    assert conda.pip_requirement("pandas>=1.0|<0.5", "env.yml", warnings.append) == "pandas"
    assert "build strings" in warnings[0] and "h7b6447c_0" in warnings[0]
    assert "alternatives" in warnings[1]


def test_a_dependency_conda_would_refuse_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError, match=r"env.yml: 'numpy=!!' is not a conda match spec"):
        environments.conda_to_pip("dependencies:\n  - numpy=!!\n", "env.yml", print)


V1_CONDA = """\
# The conda file of an Azure ML SDK v1 project, as `az ml model deploy` took it.
name: project_environment
dependencies:
  - python=3.11
  - scikit-learn
  - scipy 1.11.*
  - pip:
    - azureml-defaults>=1.0.45
    - azureml-core
    - inference-schema[numpy-support]
    - joblib
"""


def test_the_azureml_sdk_is_skipped_with_a_notice_unless_the_spec_keeps_it(tmp_path: Path) -> None:
    env_file = write(tmp_path / "env.yml", V1_CONDA)
    notices: list[str] = []
    skipped = environments.plan(EnvironmentSpec("conda", env_file), tmp_path, notices.append)
    assert skipped.requirements == ("scikit-learn", "scipy==1.11.*", "inference-schema[numpy-support]", "joblib")
    assert len(notices) == 1 and "azureml-core, azureml-defaults" in notices[0]
    assert "keep_azureml_defaults: true" in notices[0]
    kept = environments.plan(EnvironmentSpec("conda", env_file, keep_azureml_defaults=True), tmp_path, print)
    assert "azureml-defaults>=1.0.45" in kept.requirements and kept.key != skipped.key

    requirements = write(tmp_path / "requirements.txt", "azureml-defaults\nAzureML_Core==1.50\njoblib\n")
    assert environments.plan(EnvironmentSpec("pip", requirements), tmp_path).requirements == ("joblib",)


def test_images_skip_it_too_with_pip_and_with_conda(tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    env_file = write(tmp_path / "env.yml", V1_CONDA)
    entry = write(tmp_path / "score.py", "def init():\n    pass\ndef run(x):\n    return x\n")
    for keep in (False, True):
        inference = InferenceConfig(entry, EnvironmentSpec("conda", env_file, keep_azureml_defaults=keep))
        notices: list[str] = []
        plan = images.plan_context("v1s-img", inference, (), base_image="base", warn=notices.append)
        assert plan.conda_file is not None
        pip_list = YAML(typ="safe").load(plan.conda_file)["dependencies"][-1]["pip"]
        assert ("azureml-defaults>=1.0.45" in plan.requirements) is keep
        assert ("azureml-defaults>=1.0.45" in pip_list) is keep and "joblib" in pip_list
        assert bool(notices) is not keep
        assert "werkzeug" in " ".join(plan.runtime_requirements)  # the @rawhttp runtime is in every image


@pytest.mark.slow
def test_a_v1_conda_file_with_conda_only_syntax_serves_what_it_asked_for(tmp_path: Path) -> None:
    # a wildcard, a channel and a build string, as real v1 conda files have them: installed with
    # pip as what they mean, seen by the entry script behind the scoring server over real HTTP
    import json

    from conftest import free_port, mlctl, post

    project = tmp_path / "p"
    write(project / "model.txt", "m")
    write(
        project / "myenv.yml",
        "name: project_environment\ndependencies:\n  - python=3.11\n  - conda-forge::six 1.16.*\n"
        "  - joblib=1.4.2=pyhd8ed1ab_0\n  - pip:\n    - azureml-defaults\n",
    )
    write(
        project / "score.py",
        "import joblib, six\ndef init():\n    pass\n"
        "def run(raw):\n    return {'six': six.__version__, 'joblib': joblib.__version__}\n",
    )
    spec = write(
        project / "service.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: Service
        name: v1s-conda
        target: process
        model_files: [model.txt]
        inference_config: {{entry_script: score.py, conda_file: myenv.yml}}
        deployment_config: {{port: {free_port()}, workers: 1}}
        """,
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    try:
        assert deployed.code == 0, deployed.err
        assert "pyhd8ed1ab_0" in deployed.err and "build strings" in deployed.err  # dropped, with a warning
        assert "not installing azureml-defaults" in deployed.err
        status, _, body = post(deployed.json()["scoring_uri"], b"{}")
        assert status == 200, body
        versions = json.loads(body)
        assert versions["six"].startswith("1.16.") and versions["joblib"] == "1.4.2"
    finally:
        mlctl("service", "delete", "v1s-conda")
