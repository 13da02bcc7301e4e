"""The docker target on a real Docker engine: deploy, test, update without loss, logs, delete."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import ECHO_SCORE, EXAMPLES, free_port, mlctl, post, requests_throughout, service_spec, write


@pytest.fixture(autouse=True)
def _remove_new_images(request: pytest.FixtureRequest) -> Any:
    """Images a test builds (named after its services) are removed after it."""
    if "engine" not in request.fixturenames:
        yield
        return
    engine = request.getfixturevalue("engine")
    before = {i.id for i in engine.images.list()}
    yield
    from docker.errors import APIError

    for image in engine.images.list():
        if image.id not in before:
            try:
                engine.images.remove(image.id, force=True)
            except APIError:  # removed already, with another of its tags
                pass


def _docker_project(tmp_path: Path, *, name: str = "echo") -> Path:
    project = tmp_path / "project"
    write(project / "model.txt", "v1")
    write(project / "score.py", ECHO_SCORE)
    write(project / "requirements.txt", "# only the scoring runtime\n")
    spec = service_spec(project / "service.yaml", port=free_port(), name=name)
    text = spec.read_text().replace("environment: current", "requirements: requirements.txt")
    spec.write_text(
        text.replace("kind: Service\n", "kind: Service\ntarget: docker\n").replace(
            "workers: 1", "workers: 2\n  cpu_cores: 1\n  memory_gb: 0.5"
        )
    )
    return project


def _containers(engine: Any, name: str) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"mlctl.service={name}"})


def test_deploy_test_update_without_loss_logs_and_delete(tmp_path: Path, engine: Any) -> None:
    project = _docker_project(tmp_path)
    spec = str(project / "service.yaml")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", spec)
    assert deployed.code == 0, deployed.err
    state = deployed.json()
    assert state["target"] == "docker" and state["state"] == "running" and state["image"] == "echo:1"
    uri = state["scoring_uri"]
    (container,) = _containers(engine, "echo")
    assert container.labels["mlctl.models"] == "model:1"
    assert container.attrs["HostConfig"]["NanoCpus"] == 10**9 and container.attrs["HostConfig"]["Memory"] == 512 * 2**20
    assert json.loads(post(uri, b"{}")[2])["model"] == "v1"
    assert mlctl("-o", "json", "service", "test", "echo").json()["prediction"]["echo"] == {"x": 1}
    assert any("init() completed" in line for line in mlctl("-o", "json", "service", "logs", "echo").json()["lines"])
    assert [s["name"] for s in mlctl("-o", "json", "service", "list").json()] == ["echo"]

    (project / "model.txt").write_text("v2")
    with requests_throughout(uri, until_model="v2") as (failures, answers):
        updated = mlctl("-o", "json", "service", "update", "-f", spec)
    assert updated.code == 0, updated.err
    assert updated.json()["models"] == ["model:2"] and updated.json()["image"] == "echo:2"
    assert failures == [] and answers == {"v1", "v2"}
    assert len(_containers(engine, "echo")) == 1

    assert mlctl("-o", "json", "service", "delete", "echo").json()["deleted"] is True
    assert _containers(engine, "echo") == []
    assert mlctl("-o", "json", "service", "delete", "echo").json()["deleted"] is False


def test_deploy_from_a_built_image(tmp_path: Path, engine: Any) -> None:
    project = _docker_project(tmp_path, name="from-image")
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "model.txt")).code == 0
    write(
        project / "image.yaml",
        "apiVersion: mlctl/v1\nkind: Image\nname: from-image-img\nmodels: [m:1]\n"
        "entry_script: score.py\nrequirements: requirements.txt\n",
    )
    built = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"))
    assert built.code == 0, built.err
    port = free_port()
    write(
        project / "svc.yaml",
        f"apiVersion: mlctl/v1\nkind: Service\nname: from-image\ntarget: docker\n"
        f"image: from-image-img:1\ndeployment_config:\n  port: {port}\n",
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "svc.yaml"))
    assert deployed.code == 0, deployed.err
    assert json.loads(post(deployed.json()["scoring_uri"], b'{"y": 2}')[2])["echo"] == {"y": 2}
    refused = mlctl("image", "delete", "from-image-img:1")
    assert refused.code == 5 and "from-image" in refused.err
    assert mlctl("service", "delete", "from-image").code == 0
    assert mlctl("-o", "json", "image", "delete", "from-image-img:1").json()["deleted"] is True


def test_init_failure_shows_the_container_log_and_leaves_no_container(tmp_path: Path, engine: Any) -> None:
    project = _docker_project(tmp_path, name="broken")
    write(
        project / "score.py",
        "def init():\n    raise RuntimeError('no weights in the image')\ndef run(x):\n    return x\n",
    )
    result = mlctl("service", "deploy", "-f", str(project / "service.yaml"))
    assert result.code == 7 and "RuntimeError: no weights in the image" in result.err
    assert _containers(engine, "broken") == []


def test_port_in_use_is_a_target_error(tmp_path: Path, engine: Any) -> None:
    project = _docker_project(tmp_path, name="busy")
    port = int((project / "service.yaml").read_text().split("port:")[1].split()[0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = mlctl("service", "deploy", "-f", str(project / "service.yaml"))
    assert result.code == 6 and "already in use" in result.err
    assert _containers(engine, "busy") == []


@pytest.mark.slow
def test_examples_answer_on_docker_exactly_as_on_the_process_target(trained_examples: Path, engine: Any) -> None:
    for example, service in (("diabetes", "diabetes"), ("digits", "digits")):
        if example == "digits":
            assert mlctl("model", "register", "-f", str(EXAMPLES / "digits" / "model.yaml")).code == 0
        spec = str(EXAMPLES / example / "service.yaml")
        answers = []
        for target in ("process", "docker"):
            deployed = mlctl(
                "-o",
                "json",
                "service",
                "deploy",
                "-f",
                spec,
                "--set",
                f"target={target}",
                "--set",
                f"deployment_config.port={free_port()}",
                timeout=900,
            )
            assert deployed.code == 0, deployed.err
            tested = mlctl("-o", "json", "service", "test", service)
            assert tested.code == 0 and tested.json()["passed"] is True, tested.err
            answers.append(tested.json()["prediction"])
            assert mlctl("service", "delete", service).code == 0
        assert answers[0] == answers[1]
    for image in engine.images.list(name="diabetes") + engine.images.list(name="digits"):
        engine.images.remove(image.id, force=True)


@pytest.fixture
def oci_registry(tmp_path: Path) -> Any:
    """Debian's docker-registry on 127.0.0.1 (a real OCI registry), stopped by PID afterwards."""
    import shutil
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no docker-registry (run `make docker-up` as root)")
    port = free_port()
    config = write(
        tmp_path / "registry.yml",
        f"""
        version: 0.1
        storage:
          filesystem:
            rootdirectory: {tmp_path / "registry-data"}
          delete:
            enabled: true
        http:
          addr: 127.0.0.1:{port}
        """,
    )
    with (tmp_path / "registry.log").open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_pushed_image_deleted_locally_is_pulled_back_and_answers(
    tmp_path: Path, engine: Any, oci_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCTL_REGISTRY", oci_registry)
    project = _docker_project(tmp_path, name="pushed")
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "model.txt")).code == 0
    name = f"pushed-img-{free_port()}"
    write(
        project / "image.yaml",
        f"apiVersion: mlctl/v1\nkind: Image\nname: {name}\nmodels: [m:1]\n"
        "entry_script: score.py\nrequirements: requirements.txt\n",
    )
    built = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"), "--push")
    assert built.code == 0, built.err
    assert built.json()["pushed"] == f"{oci_registry}/{name}:1" and built.json()["digest"].startswith("sha256:")
    for tag in (f"{name}:1", f"{oci_registry}/{name}:1"):
        engine.images.remove(tag, force=True)
    port = free_port()
    write(
        project / "svc.yaml",
        f"apiVersion: mlctl/v1\nkind: Service\nname: pushed\ntarget: docker\n"
        f"image: {name}:1\ndeployment_config:\n  port: {port}\n",
    )
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "svc.yaml"))
    assert deployed.code == 0, deployed.err
    assert json.loads(post(deployed.json()["scoring_uri"], b'{"z": 3}')[2])["echo"] == {"z": 3}
    assert mlctl("service", "delete", "pushed").code == 0
    for image_id in {i.id for i in engine.images.list(name=name) + engine.images.list(name=f"{oci_registry}/{name}")}:
        engine.images.remove(image_id, force=True)


def test_push_without_a_registry_says_how_to_set_one(
    tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLCTL_REGISTRY", raising=False)
    result = mlctl("image", "push", "nothing:1")
    assert result.code == 4  # the image does not exist: checked first
    project = _docker_project(tmp_path, name="nopush")
    write(
        project / "image.yaml",
        "apiVersion: mlctl/v1\nkind: Image\nname: nopush-img\nmodels: [m:1]\n"
        "entry_script: score.py\nrequirements: requirements.txt\n",
    )
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "model.txt")).code == 0
    refused = mlctl("image", "build", "-f", str(project / "image.yaml"), "--push")
    assert refused.code == 6 and "MLCTL_REGISTRY" in refused.err
    assert mlctl("-o", "json", "image", "list").json() == []  # refused before building


def test_a_failed_update_keeps_the_old_container_serving(tmp_path: Path, engine: Any) -> None:
    project = _docker_project(tmp_path, name="steady")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
    assert deployed.code == 0, deployed.err
    write(project / "score.py", "def init():\n    raise RuntimeError('broken release')\ndef run(x):\n    return x\n")
    result = mlctl("service", "update", "-f", str(project / "service.yaml"))
    assert result.code == 7 and "RuntimeError: broken release" in result.err  # the new container's log
    status, _, body = post(deployed.json()["scoring_uri"], b"{}")
    assert status == 200 and json.loads(body)["model"] == "v1"
    assert len(_containers(engine, "steady")) == 1
    assert mlctl("-o", "json", "service", "show", "steady").json()["state"] == "running"
    assert mlctl("service", "delete", "steady").code == 0
