"""Container images: the build context, and real builds on a real Docker engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, free_port, mlctl, post, wait_for, write

SCORE = """
import json, os

def init():
    global text
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        text = f.read().strip()

def run(raw_data):
    return {"model": text, "echo": json.loads(raw_data), "uid": os.getuid()}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A registered model, an entry script and an Image spec with a unique image name."""
    monkeypatch.setenv("MLCTL_BASE_IMAGE", BASE_IMAGE)
    name = f"mlctl-test-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    write(folder / "model.txt", "v1")
    write(folder / "score.py", SCORE)
    write(folder / "requirements.txt", "# the scoring runtime is added by mlctl\n")
    write(
        folder / "image.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: Image
        name: {name}
        models: [echo-model@latest]
        entry_script: score.py
        requirements: requirements.txt
        description: test image
        """,
    )
    assert mlctl("model", "register", "--name", "echo-model", "--path", str(folder / "model.txt")).code == 0
    yield folder
    try:
        import docker

        client = docker.from_env()
        for image in client.images.list(name=name):
            client.images.remove(image.id, force=True)
    except Exception:  # noqa: BLE001 - cleanup of a test without an engine
        pass


def test_context_only_writes_a_layered_context(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "context"
    result = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"), "--context-only", str(out))
    assert result.code == 0, result.err
    dockerfile = (out / "Dockerfile").read_text()
    order = [
        dockerfile.index(step) for step in ("FROM ", "install.sh", "COPY runtime/", "COPY app/", "COPY azureml-models/")
    ]
    assert order == sorted(order)  # what changes least first
    assert "USER 1000:1000" in dockerfile and "EXPOSE 5001" in dockerfile and "HEALTHCHECK" in dockerfile
    assert 'mlctl.model.0="echo-model:1"' in dockerfile and "org.opencontainers.image.title" in dockerfile
    assert (out / "azureml-models" / "echo-model" / "1" / "model.txt").read_text() == "v1"
    assert (out / "app" / "score.py").exists() and (out / "runtime" / "mlctl" / "serve" / "app.py").exists()
    assert "uvicorn==" in (out / "environment" / "requirements.txt").read_text()
    assert (out / "environment" / "install.sh").exists() and not (out / "environment" / "conda.yml").exists()


def test_a_conda_file_goes_into_the_context_for_conda_and_its_pip_part_for_pip(project: Path, tmp_path: Path) -> None:
    _use_conda_file(project)
    out = tmp_path / "context"
    assert mlctl("image", "build", "-f", str(project / "image.yaml"), "--context-only", str(out)).code == 0
    conda_yml = (out / "environment" / "conda.yml").read_text()
    assert "mlctl-conda-probe" in conda_yml and "file:///opt/conda-channel" in conda_yml and "name:" not in conda_yml
    requirements = (out / "environment" / "requirements.txt").read_text().split()
    assert "mlctl-conda-probe==1.0.*" in requirements and "six==1.17.0" in requirements
    assert [r.split("==")[0] for r in (out / "environment" / "runtime-requirements.txt").read_text().split()] == [
        "uvicorn",
        "uvloop",
        "httptools",
        "werkzeug",
        "azure-iot-device",  # edgeHub messages when the image runs as an IoT Edge module
    ]


def test_build_versions_runs_as_non_root_and_a_model_change_reuses_the_environment(
    project: Path, engine: object
) -> None:
    spec = str(project / "image.yaml")
    first = mlctl("-o", "json", "image", "build", "-f", spec)
    assert first.code == 0, first.err
    record = first.json()
    assert record["version"] == 1 and record["models"] == ["echo-model:1"]
    name = record["name"]
    image = engine.images.get(f"{name}:1")  # type: ignore[attr-defined]
    labels = image.labels
    assert labels["mlctl.model.0"] == "echo-model:1" and len(labels["mlctl.model.0.sha256"]) == 64
    assert image.attrs["Config"]["User"] == "1000:1000" and image.attrs["Config"]["Healthcheck"]["Test"]

    port = free_port()
    container = engine.containers.run(f"{name}:1", detach=True, ports={"5001/tcp": ("127.0.0.1", port)})  # type: ignore[attr-defined]
    try:
        assert wait_for(lambda: _answers(port), 60), container.logs().decode()
        status, _, body = post(f"http://127.0.0.1:{port}/score", b'{"x": 1}')
        assert status == 200 and json.loads(body) == {"model": "v1", "echo": {"x": 1}, "uid": 1000}
    finally:
        container.remove(force=True)

    (project / "model.txt").write_text("v2")
    assert mlctl("model", "register", "--name", "echo-model", "--path", str(project / "model.txt")).code == 0
    second = mlctl("-o", "json", "image", "build", "-f", spec)
    assert second.code == 0, second.err
    assert second.json()["version"] == 2 and second.json()["models"] == ["echo-model:2"]
    assert engine.images.get(f"{name}:1").id != engine.images.get(f"{name}:2").id  # type: ignore[attr-defined]
    shared = _shared_layers(engine, name)
    assert shared >= 3  # base + environment + runtime layers come from the cache
    shown = mlctl("image", "show", f"{name}:2").out.splitlines()  # for people: sizes in MB, a label a line
    assert shown[0].split() == ["name", name] and any(line.split()[-1] == "MB" for line in shown)
    assert any(line.strip() == "mlctl.model.0=echo-model:2" for line in shown)
    listed = mlctl("-o", "json", "image", "list", "--name", name).json()
    assert [i["version"] for i in listed] == [1, 2]
    assert mlctl("-o", "json", "image", "delete", f"{name}:1").json()["deleted"] is True
    assert [i["version"] for i in mlctl("-o", "json", "image", "list", "--name", name).json()] == [2]


def test_a_failing_step_is_named_with_its_output_and_records_nothing(project: Path, engine: object) -> None:
    write(project / "requirements.txt", "this-package-does-not-exist-mlctl==0.0.1\n")
    result = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"))
    assert result.code == 7
    error = json.loads(result.err.strip().splitlines()[-1])
    assert error["phase"] == "image build" and "step" in error["message"]
    assert any("this-package-does-not-exist-mlctl" in line for line in error["details"])
    assert "conda-only package" in error["hint"] and "this-package-does-not-exist-mlctl" in error["hint"]
    assert mlctl("-o", "json", "image", "list").json() == []
    assert not [t for i in engine.images.list() for t in i.tags if ":building-" in t]  # type: ignore[attr-defined]


def test_a_conda_file_is_installed_with_conda_when_the_base_image_has_it(
    project: Path, conda_base_image: str, engine: object
) -> None:
    _use_conda_file(project)
    built = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"), MLCTL_BASE_IMAGE=conda_base_image)
    assert built.code == 0, built.err
    name = built.json()["name"]
    port = free_port()
    container = engine.containers.run(f"{name}:1", detach=True, ports={"5001/tcp": ("127.0.0.1", port)})  # type: ignore[attr-defined]
    try:
        assert wait_for(lambda: _answers(port), 60), container.logs().decode()
        status, _, body = post(f"http://127.0.0.1:{port}/score", b"{}")
        assert status == 200, body
        answer = json.loads(body)
        # the conda-only package came from the channel, six through the conda file's pip list
        assert answer["probe"] == "conda" and answer["six"] == "/opt/mlctl/env/lib/python3.11/site-packages/six.py"
        assert answer["prefix"] == "/opt/mlctl/env" and answer["uid"] == 1000
        conda_meta = container.exec_run(["ls", "/opt/mlctl/env/conda-meta"]).output.decode()
        assert "mlctl-conda-probe-1.0-0.json" in conda_meta
    finally:
        container.remove(force=True)


def test_a_conda_only_package_without_conda_in_the_base_image_is_a_clear_error(project: Path, engine: object) -> None:
    _use_conda_file(project)
    result = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"))
    assert result.code == 7
    error = json.loads(result.err.strip().splitlines()[-1])
    assert error["phase"] == "image build"
    assert "mlctl-conda-probe" in error["hint"] and "conda-only package" in error["hint"]
    assert "this base image has none" in error["hint"]
    assert mlctl("-o", "json", "image", "list").json() == []


def _use_conda_file(project: Path) -> None:
    """Point the project's Image spec at a conda file with a conda-only package and a pip list."""
    write(
        project / "environment.yml",
        """
        name: probe-env
        channels: [file:///opt/conda-channel]
        dependencies:
          - python=3.11
          - mlctl-conda-probe=1.0
          - pip:
              - six==1.17.0
        """,
    )
    write(
        project / "score.py",
        """
        import os, sys

        def init():
            pass

        def run(raw_data):
            import mlctl_conda_probe, six
            return {"probe": mlctl_conda_probe.SOURCE, "six": six.__file__, "prefix": sys.prefix, "uid": os.getuid()}
        """,
    )
    spec = project / "image.yaml"
    spec.write_text(spec.read_text().replace("requirements: requirements.txt", "conda_file: environment.yml"))


def test_a_base_image_the_engine_cannot_get_says_how_to_choose_one(project: Path, engine: object) -> None:
    missing = f"mlctl-test/no-such-base-{uuid.uuid4().hex[:8]}:1"
    result = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"), MLCTL_BASE_IMAGE=missing)
    assert result.code == 7
    error = json.loads(result.err.strip().splitlines()[-1])
    assert "step 1/" in error["message"] and missing in error["hint"] and "MLCTL_BASE_IMAGE" in error["hint"]
    assert mlctl("-o", "json", "image", "list").json() == []


def test_an_unreachable_daemon_says_how_to_check_it(project: Path) -> None:
    result = mlctl("image", "build", "-f", str(project / "image.yaml"), DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.code == 6 and "docker info" in result.err and "DOCKER_HOST" in result.err


def _answers(port: int) -> bool:
    try:
        return post(f"http://127.0.0.1:{port}/score", b"{}", timeout=2)[0] == 200
    except OSError:
        return False


def _shared_layers(engine: object, name: str) -> int:
    histories = [[h["Id"] for h in engine.images.get(f"{name}:{v}").history()] for v in (1, 2)]  # type: ignore[attr-defined]
    return len(set(histories[0]) & set(histories[1]) - {"<missing>"})
