"""Environment planning: conda files to pip requirements, cache keys, the runtime copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write

from mlctl import environments
from mlctl.errors import DeploymentError, SpecError
from mlctl.spec.records import EnvironmentSpec


def test_conda_dependencies_become_pip_requirements() -> None:
    warnings: list[str] = []
    text = """
name: env
channels: [conda-forge]
dependencies:
  - python=2.7
  - pip
  - numpy=1.26
  - conda-forge::pandas>=2.0
  - scipy
  - scikit-learn=1.5.2=py311_0
  - pip:
      - inference-schema[numpy-support]==1.8
"""
    reqs = environments.conda_to_pip(text, "env.yml", warnings.append)
    assert reqs == [
        "numpy==1.26.*",
        "pandas>=2.0",
        "scipy",
        "scikit-learn==1.5.2",  # name=version=build: that exact version (conda's reading)
        "inference-schema[numpy-support]==1.8",
    ]
    assert warnings and "python 2.7" in warnings[0] and "'py311_0'" in warnings[1]


def test_a_conda_file_for_conda_loses_its_name_and_gains_python_and_pip() -> None:
    from ruamel.yaml import YAML

    text = "name: env\nprefix: /somewhere\nchannels: [conda-forge]\ndependencies:\n  - conda-forge::numpy>=1.26\n"
    doc = YAML(typ="safe").load(environments.conda_env_file(text, "env.yml"))
    assert doc == {"channels": ["conda-forge"], "dependencies": ["python", "pip", "conda-forge::numpy>=1.26"]}
    pinned = "dependencies:\n  - python=3.10\n  - pip=24\n  - pip:\n      - six\n"
    doc = YAML(typ="safe").load(environments.conda_env_file(pinned, "env.yml"))
    assert doc == {"dependencies": ["python=3.10", "pip=24", {"pip": ["six"]}]}  # kept as written
    with pytest.raises(SpecError):
        environments.conda_env_file("dependencies: 3\n", "x.yml")


def test_a_file_that_is_not_a_conda_environment_is_a_spec_error() -> None:
    with pytest.raises(SpecError):
        environments.conda_to_pip("dependencies: 3\n", "x.yml", print)
    with pytest.raises(SpecError):
        environments.conda_to_pip("a: [unclosed\n", "x.yml", print)


def test_same_requirements_share_one_environment_key(tmp_path: Path) -> None:
    conda = write(tmp_path / "env.yml", "dependencies:\n  - pip:\n      - joblib==1.6.0\n")
    pip = write(tmp_path / "requirements.txt", "# comment\njoblib==1.6.0  # pinned\n")
    other = write(tmp_path / "other.txt", "joblib==1.5.0\n")
    a = environments.plan(EnvironmentSpec("conda", conda), tmp_path)
    b = environments.plan(EnvironmentSpec("pip", pip), tmp_path)
    c = environments.plan(EnvironmentSpec("pip", other), tmp_path)
    assert a.key == b.key != c.key
    assert a.requirements == ("joblib==1.6.0",) and not a.ready
    assert environments.plan(EnvironmentSpec("current"), tmp_path).python == Path(sys.executable)


def test_runtime_copy_serves_without_mlctl_installed(tmp_path: Path) -> None:
    runtime = environments.install_runtime(tmp_path)
    assert sorted(p.name for p in (runtime / "mlctl").iterdir()) == ["__init__.py", "serve"]
    # python -I ignores PYTHONPATH and site customisations: prove the copy alone has the server
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import mlctl.serve.app, mlctl; print(mlctl.__file__)",
            str(runtime),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert proc.stdout.strip().startswith(str(runtime))


def test_pip_failure_is_a_deployment_error_naming_the_package(tmp_path: Path) -> None:
    reqs = write(tmp_path / "requirements.txt", "this-package-does-not-exist-mlctl==0.0.1\n")
    env = environments.plan(EnvironmentSpec("pip", reqs), tmp_path)
    with pytest.raises(DeploymentError) as info:
        environments.prepare(env, tmp_path, lambda _: None)
    assert info.value.phase == "environment"
    assert "this-package-does-not-exist-mlctl" in (info.value.hint or "")
    assert not (tmp_path / "envs" / env.key).exists()
    assert [p.name for p in (tmp_path / "envs").iterdir()] == []  # no half-built environment left
