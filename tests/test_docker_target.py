"""The docker target on a real Docker engine: deploy, test, update without loss, logs, delete."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    BATCH_SCORE,
    ECHO_SCORE,
    EXAMPLES,
    following_logs,
    free_port,
    mlctl,
    post,
    requests_throughout,
    self_signed_certificate,
    service_spec,
    wait_for,
    write,
)
from oci_registry import run_registry


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


def _image_spec(project: Path, name: str) -> Path:
    """An Image spec ``name`` of model m:1 and the project's entry script and requirements."""
    return write(
        project / "image.yaml",
        f"apiVersion: mlctl/v1\nkind: Image\nname: {name}\nmodels: [m:1]\n"
        "entry_script: score.py\nrequirements: requirements.txt\n",
    )


def _image_service_spec(project: Path, service: str, image: str) -> Path:
    """A docker Service spec ``service`` deployed from the built ``image`` on a free port."""
    return write(
        project / "svc.yaml",
        f"apiVersion: mlctl/v1\nkind: Service\nname: {service}\ntarget: docker\n"
        f"image: {image}\ndeployment_config:\n  port: {free_port()}\n",
    )


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
    _image_spec(project, "from-image-img")
    built = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"))
    assert built.code == 0, built.err
    _image_service_spec(project, "from-image", "from-image-img:1")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "svc.yaml"))
    assert deployed.code == 0, deployed.err
    assert json.loads(post(deployed.json()["scoring_uri"], b'{"y": 2}')[2])["echo"] == {"y": 2}
    refused = mlctl("image", "delete", "from-image-img:1")
    assert refused.code == 5 and "from-image" in refused.err
    assert mlctl("service", "delete", "from-image").code == 0
    assert mlctl("-o", "json", "image", "delete", "from-image-img:1").json()["deleted"] is True


def test_keys_tls_and_batching_work_on_docker_and_logs_follow(tmp_path: Path, engine: Any) -> None:
    project = _docker_project(tmp_path, name="secure")
    write(project / "score.py", BATCH_SCORE)
    cert, _ = self_signed_certificate(project)
    trusted = project / "trusted.pem"  # what clients trust, while the spec's cert.pem may change
    trusted.write_bytes(cert.read_bytes())
    spec = project / "service.yaml"
    extra = (
        "workers: 1\n  auth_enabled: true\n  access_log: true\n  ssl_cert_pem_file: cert.pem\n"
        "  ssl_key_pem_file: key.pem\n  batching: {max_batch_size: 4, max_wait_ms: 20}"
    )
    spec.write_text(spec.read_text().replace("workers: 2", extra))
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed.code == 0, deployed.err
    uri = deployed.json()["scoring_uri"]
    assert uri.startswith("https://127.0.0.1:") and deployed.json()["auth_enabled"] is True
    keys = mlctl("-o", "json", "service", "keys", "secure", "--reveal").json()
    keys_file = Path(keys["keys_file"])
    assert oct(keys_file.stat().st_mode)[-3:] == "600" and oct(keys_file.parent.stat().st_mode)[-3:] == "700"
    assert keys_file.stat().st_uid == (1000 if os.geteuid() == 0 else os.geteuid())  # only the container's user
    (container,) = _containers(engine, "secure")
    assert keys["primary_key"] not in json.dumps(container.attrs)  # not in its command, env or labels

    def score(x: int, key: str | None = keys["primary_key"], request_id: str = "") -> tuple[int, dict[str, Any]]:
        return _https_post(uri, {"x": x}, trusted, key, request_id)

    assert score(1, key=None)[0] == 401 and score(1, key="wrong")[0] == 401
    status, answer = score(1)
    assert status == 200 and answer == {"x": 1, "batch": 1}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(score, range(24)))
    assert [a["x"] for _, a in answers] == list(range(24)) and max(a["batch"] for _, a in answers) > 1
    assert mlctl("service", "test", "secure").code == 0  # the CLI sends the key, over TLS

    cert.write_text("not a certificate")
    failed = mlctl("service", "update", "-f", str(spec))
    assert failed.code == 7 and "cannot use the TLS certificate and key" in failed.err
    assert score(4)[0] == 200 and _containers(engine, "secure") == [container]  # the old one serves on
    container.restart(timeout=10)  # and still has its own certificate when it starts again

    def answers() -> bool:
        try:
            return score(5)[0] == 200
        except OSError:
            return False

    assert wait_for(answers, 60)

    with following_logs("secure") as follower:
        assert follower.stdout is not None
        score(2, request_id="follow-me")
        assert any("follow-me" in follower.stdout.readline() for _ in range(3))

        rotated = mlctl("-o", "json", "service", "keys", "secure", "--regenerate", "primary", "--reveal").json()
        assert wait_for(lambda: score(3)[0] == 401, 5)  # the old primary key stops working
        assert score(3, key=rotated["primary_key"])[0] == 200 and score(3, key=keys["secondary_key"])[0] == 200
        assert keys_file.stat().st_uid == (1000 if os.geteuid() == 0 else os.geteuid())

        assert mlctl("service", "delete", "secure").code == 0
        assert follower.wait(30) == 0  # the stream ends with the container
    assert not keys_file.parent.exists()


def test_a_user_other_than_root_deploys_with_the_container_running_as_them(tmp_path: Path, engine: Any) -> None:
    """Everything else here runs as root (the container then runs as the image's uid 1000); this
    runs mlctl itself as an unprivileged user of the docker group, through setpriv."""
    if os.geteuid() != 0:
        pytest.skip("the suite already runs as a user other than root: every docker test covers this")
    import grp
    import shutil
    import tempfile

    uid = 4242
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={docker_gid}", "--"]
    if shutil.which("setpriv") is None or grp.getgrgid(docker_gid).gr_name == "root":
        pytest.skip("needs setpriv and a docker socket group")
    top = Path(tempfile.mkdtemp(prefix="mlctl-nonroot-"))
    try:
        project = _docker_project(top, name="nonroot")
        for path in [top, *top.rglob("*")]:
            os.chown(path, uid, uid)
        env = {**os.environ, "MLCTL_HOME": str(top / "home"), "HOME": str(top), "TMPDIR": str(top)}
        probe = subprocess.run([*as_user, sys.executable, "-c", "import mlctl"], env=env, capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"the checkout is not readable by uid {uid}: {probe.stderr.decode()[-200:]}")

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            command = [*as_user, sys.executable, "-m", "mlctl", "-o", "json", *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

        deployed = run("service", "deploy", "-f", str(project / "service.yaml"))
        assert deployed.returncode == 0, deployed.stderr
        (container,) = _containers(engine, "nonroot")
        assert container.attrs["Config"]["User"] == f"{uid}:{uid}"
        deploy_dir = Path(container.labels["mlctl.deploy_dir"])
        assert deploy_dir.stat().st_uid == uid and oct(deploy_dir.stat().st_mode)[-3:] != "777"
        assert json.loads(post(json.loads(deployed.stdout)["scoring_uri"], b"{}")[2])["model"] == "v1"
        assert run("service", "delete", "nonroot").returncode == 0
        assert _containers(engine, "nonroot") == []
    finally:
        for container in _containers(engine, "nonroot"):
            container.remove(force=True)
        shutil.rmtree(top, ignore_errors=True)


def _https_post(uri: str, body: Any, cafile: Path, key: str | None, request_id: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    if request_id:
        headers["x-request-id"] = request_id
    request = urllib.request.Request(uri, data=json.dumps(body).encode(), headers=headers, method="POST")
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, None


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
def oci_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (a real OCI registry), stopped by PID afterwards."""
    with run_registry(tmp_path) as address:
        yield address


def test_a_registry_that_needs_credentials_gets_them_from_the_environment_and_never_shows_them(
    tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    import bcrypt

    password = secrets.token_urlsafe(16)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"ci:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
    project = _docker_project(tmp_path, name="private")
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "model.txt")).code == 0
    name = f"private-img-{free_port()}"
    _image_spec(project, name)
    with run_registry(tmp_path, htpasswd) as address:
        monkeypatch.setenv("MLCTL_REGISTRY", address)
        assert mlctl("image", "build", "-f", str(project / "image.yaml")).code == 0
        refused = mlctl("image", "push", f"{name}:1")
        assert refused.code == 6 and "docker login" in refused.err and "MLCTL_REGISTRY_USERNAME" in refused.err
        credentials = {"MLCTL_REGISTRY_USERNAME": "ci", "MLCTL_REGISTRY_PASSWORD": password}
        pushed = mlctl("-o", "json", "image", "push", f"{name}:1", **credentials)
        assert pushed.code == 0, pushed.err
        assert pushed.json()["pushed"] == f"{address}/{name}:1" and password not in pushed.out + pushed.err

        for tag in (f"{name}:1", f"{address}/{name}:1"):
            engine.images.remove(tag, force=True)
        _image_service_spec(project, "private", f"{name}:1")
        denied = mlctl("service", "deploy", "-f", str(project / "svc.yaml"))
        assert denied.code == 6 and "pulling" in denied.err and "docker login" in denied.err
        deployed = mlctl("-o", "json", "--debug", "service", "deploy", "-f", str(project / "svc.yaml"), **credentials)
        assert deployed.code == 0, deployed.err
        assert password not in deployed.out + deployed.err
        assert json.loads(post(deployed.json()["scoring_uri"], b"{}")[2])["model"] == "v1"
        assert mlctl("service", "delete", "private").code == 0
    for image_id in {i.id for i in engine.images.list(name=name) + engine.images.list(name=f"{address}/{name}")}:
        engine.images.remove(image_id, force=True)


def test_pushed_image_deleted_locally_is_pulled_back_and_answers(
    tmp_path: Path, engine: Any, oci_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCTL_REGISTRY", oci_registry)
    project = _docker_project(tmp_path, name="pushed")
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "model.txt")).code == 0
    name = f"pushed-img-{free_port()}"
    _image_spec(project, name)
    built = mlctl("-o", "json", "image", "build", "-f", str(project / "image.yaml"), "--push")
    assert built.code == 0, built.err
    assert built.json()["pushed"] == f"{oci_registry}/{name}:1" and built.json()["digest"].startswith("sha256:")
    for tag in (f"{name}:1", f"{oci_registry}/{name}:1"):
        engine.images.remove(tag, force=True)
    _image_service_spec(project, "pushed", f"{name}:1")
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
    _image_spec(project, "nopush-img")
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
