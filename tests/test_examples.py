"""The README's main job on the real examples: isolated environments built with pip, real models.

These build real virtual environments (scikit-learn from the package index), so they are the
slowest tests; the environment is cached by content, so both examples share one build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from conftest import EXAMPLES, free_port, mlctl, post

pytestmark = pytest.mark.slow

DIABETES_ROWS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLCTL_HOME/envs shared by this module's tests (linked in), so the env is built once."""
    return tmp_path_factory.mktemp("envs")


def _free_port_for(service: str, *, selector: bool = False) -> list[str]:
    """``--set`` moving an example off its fixed port (a running `make demo` may hold it)."""
    prefix = f"Service/{service}:" if selector else ""
    return ["--set", f"{prefix}deployment_config.port={free_port()}"]


def _share_envs(home: Path, envs: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "envs").symlink_to(envs, target_is_directory=True)


def test_diabetes_from_model_file_returns_exactly_the_in_process_predictions(
    trained_examples: Path, mlctl_home: Path, env_cache: Path
) -> None:
    _share_envs(mlctl_home, env_cache)
    spec = EXAMPLES / "diabetes" / "service.yaml"
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), *_free_port_for("diabetes"))
    assert deployed.code == 0, deployed.err
    state = deployed.json()
    assert state["environment"] != "current"  # an isolated environment from the conda file

    tested = mlctl("-o", "json", "service", "test", "diabetes")
    assert tested.code == 0, tested.err
    assert tested.json()["passed"] is True

    model = joblib.load(EXAMPLES / "diabetes" / "sklearn_regression_model.pkl")
    in_process = model.predict(np.array(DIABETES_ROWS)).tolist()
    status, _, body = post(state["scoring_uri"], json.dumps({"data": DIABETES_ROWS}).encode())
    assert status == 200 and json.loads(body) == in_process  # bit for bit, through JSON

    log_file = Path(mlctl("-o", "json", "service", "show", "diabetes").json()["log_file"])
    assert "init() completed" in log_file.read_text()
    assert mlctl("service", "delete", "diabetes").code == 0


def test_digits_registered_first_then_deployed_from_the_registry(
    trained_examples: Path, mlctl_home: Path, env_cache: Path
) -> None:
    _share_envs(mlctl_home, env_cache)
    registered = mlctl("-o", "json", "model", "register", "-f", str(EXAMPLES / "digits" / "model.yaml"))
    assert registered.code == 0, registered.err
    assert registered.json()[0]["name"] == "digits" and registered.json()[0]["version"] == 1

    deployed = mlctl(
        "-o", "json", "service", "deploy", "-f", str(EXAMPLES / "digits" / "service.yaml"), *_free_port_for("digits")
    )
    assert deployed.code == 0, deployed.err
    assert deployed.json()["models"] == ["digits:1"]
    tested = mlctl("-o", "json", "service", "test", "digits")
    assert tested.code == 0, tested.err
    assert tested.json()["prediction"] == [0, 1, 7]


def test_example_pins_match_the_training_requirements() -> None:
    train = {
        line
        for line in (EXAMPLES / "requirements-train.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    digits = set((EXAMPLES / "digits" / "requirements.txt").read_text().split())
    conda = (EXAMPLES / "diabetes" / "environment.yml").read_text()
    assert train == digits
    assert all(pin in conda for pin in train)


def test_pipeline_script_uses_only_json_and_exit_codes(
    trained_examples: Path, mlctl_home: Path, env_cache: Path
) -> None:
    _share_envs(mlctl_home, env_cache)
    env = {**os.environ, "MLCTL": f"{sys.executable} -m mlctl"}
    proc = subprocess.run(
        [
            "bash",
            str(EXAMPLES / "pipeline.sh"),
            str(EXAMPLES / "diabetes" / "service.yaml"),
            *_free_port_for("diabetes"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "running", "True"]
    assert proc.stderr == ""  # --quiet: nothing but results


def test_applying_the_examples_twice_changes_nothing_the_second_time(
    trained_examples: Path, mlctl_home: Path, env_cache: Path
) -> None:
    _share_envs(mlctl_home, env_cache)
    ports = [*_free_port_for("diabetes", selector=True), *_free_port_for("digits", selector=True)]
    folders = [arg for example in ("diabetes", "digits") for arg in ("-f", str(EXAMPLES / example))]
    first = mlctl("-o", "json", "apply", *folders, *ports)
    assert first.code == 0, first.err
    assert {(c["kind"], c["name"], c["action"]) for c in first.json()["changes"]} == {
        ("Model", "digits", "create"),
        ("Service", "diabetes", "create"),
        ("Service", "digits", "create"),
    }
    second = mlctl("-o", "json", "apply", *folders, *ports)
    assert second.json()["changed"] is False
    assert mlctl("-o", "json", "service", "test", "digits").json()["passed"] is True


# float32 ONNX against the float64 pickle: measured 3e-4 at most on these rows and the data set
ONNX_TOLERANCE = 1e-2


def test_onnx_example_answers_the_pickles_predictions_within_its_tolerance(
    trained_examples: Path, mlctl_home: Path, env_cache: Path
) -> None:
    from sklearn.datasets import load_diabetes

    _share_envs(mlctl_home, env_cache)
    spec = EXAMPLES / "onnx" / "service.yaml"
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec), *_free_port_for("diabetes-onnx"))
    assert deployed.code == 0, deployed.err
    tested = mlctl("-o", "json", "service", "test", "diabetes-onnx")
    assert tested.code == 0 and tested.json()["passed"] is True, tested.out

    pickle = joblib.load(EXAMPLES / "diabetes" / "sklearn_regression_model.pkl")
    features, _ = load_diabetes(return_X_y=True)
    for rows in (np.array(DIABETES_ROWS, dtype=float), features):
        status, _, body = post(deployed.json()["scoring_uri"], json.dumps({"data": rows.tolist()}).encode())
        assert status == 200
        answers = np.array(json.loads(body))
        assert answers.shape == (len(rows),)
        assert np.abs(answers - pickle.predict(rows)).max() <= ONNX_TOLERANCE
