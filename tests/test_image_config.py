"""The rest of Azure ML v1's image configuration (docker_file, dependencies, enable_gpu/cuda_version,
base_image_registry with the password by reference) and ``apply`` building Image documents in
dependency order, idempotently."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_IMAGE, free_port, mlctl, write
from oci_registry import run_registry

SCORE = """
import json, os

here = os.path.dirname(os.path.abspath(__file__))

def init():
    pass

def run(raw_data):
    with open(os.path.join(here, "data.txt")) as f, open(os.path.join(here, "assets", "a.txt")) as g:
        data, asset = f.read().strip(), g.read().strip()
    with open("/opt/marker") as f:
        marker = f.read().strip()
    return {"data": data, "asset": asset, "marker": marker, "gpu": os.environ.get("NVIDIA_VISIBLE_DEVICES")}
"""


def _project(tmp_path: Path, *, base: str = BASE_IMAGE, registry: str = "") -> Path:
    project = tmp_path / "project"
    write(project / "model.txt", "m")
    write(project / "score.py", SCORE)
    write(project / "requirements.txt", "# only the scoring runtime\n")
    write(project / "data.txt", "first")
    write(project / "assets" / "a.txt", "asset")
    write(project / "steps.dockerfile", "RUN echo from-extra-steps > /opt/marker\n")
    write(
        project / "image.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: Model
        name: imp-m
        path: model.txt
        ---
        apiVersion: mlctl/v1
        kind: Image
        name: imp-img
        models: [imp-m@latest]
        entry_script: score.py
        requirements: requirements.txt
        base_image: {base}
        docker_file: steps.dockerfile
        dependencies: [data.txt, assets]
        enable_gpu: true
        cuda_version: "12.4"
        {registry}
        """,
    )
    return project


def test_the_build_context_has_the_extra_steps_files_and_gpu_settings(tmp_path: Path) -> None:
    project = _project(
        tmp_path, registry="base_image_registry: {address: 127.0.0.1:5999, username: ci, password_env: IMP_PW}"
    )
    assert mlctl("model", "register", "--name", "imp-m", "--path", str(project / "model.txt")).code == 0
    image = project / "image-only.yaml"
    image.write_text((project / "image.yaml").read_text().split("---\n")[1])
    dry = mlctl("-o", "json", "image", "build", "-f", str(image), "--dry-run")
    assert dry.code == 0, dry.err
    dockerfile = dry.json()["dockerfile"]
    assert dockerfile.startswith("# Written by mlctl") and f"FROM 127.0.0.1:5999/{BASE_IMAGE}\n" in dockerfile
    lines = dockerfile.splitlines()
    steps = lines.index("RUN echo from-extra-steps > /opt/marker")
    assert lines.index("RUN sh /opt/mlctl/environment/install.sh") < steps < lines.index("COPY app/ /var/azureml-app/")
    assert "COPY dependencies/ /var/azureml-app/" in lines
    assert "ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility CUDA_VERSION=12.4" in lines
    assert "not a CUDA image" in dry.err and "installs no CUDA" in dry.err  # honest about the CPU base
    context = tmp_path / "context"
    assert mlctl("image", "build", "-f", str(image), "--context-only", str(context)).code == 0
    assert (context / "dependencies" / "data.txt").read_text() == "first"
    assert (context / "dependencies" / "assets" / "a.txt").read_text() == "asset"


@pytest.mark.parametrize(
    ("line", "code", "says"),
    [
        ("base_image_registry: {address: r.example, username: u, password: hunter2}", 3, "password_env"),
        ("cuda_version: '11.8'", 3, "enable_gpu"),
        ("docker_file: whole.dockerfile", 3, "not a whole Dockerfile"),
    ],
)
def test_bad_image_options_are_spec_errors(tmp_path: Path, line: str, code: int, says: str) -> None:
    project = tmp_path / "p"
    write(project / "score.py", "def init(): pass\ndef run(x): return x\n")
    write(project / "requirements.txt", "\n")
    write(project / "whole.dockerfile", "FROM debian\nRUN true\n")
    spec = project / "image.yaml"
    spec.write_text(
        "apiVersion: mlctl/v1\nkind: Image\nname: imp-bad\nmodels: [m:1]\nentry_script: score.py\n"
        f"requirements: requirements.txt\n{line}\n"
    )
    assert mlctl("model", "register", "--name", "m", "--path", str(project / "score.py")).code == 0
    result = mlctl("image", "build", "-f", str(spec), "--dry-run")
    assert result.code == code, result.err
    assert says in result.err
    assert "hunter2" not in result.out + result.err


def test_the_process_target_refuses_image_options(tmp_path: Path) -> None:
    project = tmp_path / "p"
    write(project / "model.txt", "m")
    write(project / "score.py", "def init(): pass\ndef run(x): return x\n")
    write(project / "steps.dockerfile", "RUN true\n")
    spec = write(
        project / "service.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: Service
        name: imp-proc-img
        target: process
        model_files: [model.txt]
        inference_config: {{entry_script: score.py, docker_file: steps.dockerfile}}
        deployment_config: {{port: {free_port()}}}
        """,
    )
    result = mlctl("service", "deploy", "-f", str(spec))
    assert result.code == 6 and "builds no image" in result.err and "inference_config.docker_file" in result.err


def test_apply_builds_images_in_order_idempotently_from_a_private_registry(
    tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bcrypt

    password = secrets.token_urlsafe(16)  # the canary: never in any output
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"ci:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
    with run_registry(tmp_path, htpasswd) as address:
        remote = f"{address}/{BASE_IMAGE}"
        engine.images.get(BASE_IMAGE).tag(remote)
        for _ in engine.images.push(remote, auth_config={"username": "ci", "password": password}, stream=True):
            pass
        engine.images.remove(remote)  # the build must pull it, with the credentials
        project = _project(
            tmp_path,
            registry=f"base_image_registry: {{address: '{address}', username: ci, password_env: IMP_PW}}",
        )
        port = free_port()
        (project / "image.yaml").write_text(
            (project / "image.yaml").read_text()
            + "---\napiVersion: mlctl/v1\nkind: Service\nname: imp-img-svc\ntarget: docker\nimage: imp-img:1\n"
            f"deployment_config: {{port: {port}}}\ntest: {{input: {{}}}}\n"
        )
        outputs = []
        try:
            unset = mlctl("apply", "-f", str(project / "image.yaml"))
            outputs.append(unset.out + unset.err)
            assert unset.code == 3 and "IMP_PW" in unset.err  # says which variable
            assert mlctl("-o", "json", "model", "list").json() == []  # and changed nothing
            wrong = mlctl("apply", "-f", str(project / "image.yaml"), IMP_PW="not-it")
            outputs.append(wrong.out + wrong.err)
            assert wrong.code == 6 and address in wrong.err  # the pull is refused (the model is registered)
            first = mlctl("-o", "json", "apply", "-f", str(project / "image.yaml"), IMP_PW=password)
            outputs.append(first.out + first.err)
            assert first.code == 0, first.err
            assert [(c["kind"], c["action"]) for c in first.json()["changes"]] == [
                ("Model", "unchanged"),
                ("Image", "create"),
                ("Service", "create"),
            ]
            tested = mlctl("-o", "json", "service", "test", "imp-img-svc")
            assert tested.code == 0, tested.err
            assert tested.json()["prediction"] == {
                "data": "first",
                "asset": "asset",
                "marker": "from-extra-steps",
                "gpu": "all",
            }
            again = mlctl("-o", "json", "apply", "-f", str(project / "image.yaml"), IMP_PW=password)
            outputs.append(again.out + again.err)
            assert again.code == 0 and again.json()["changed"] is False, again.out
            write(project / "data.txt", "second")
            changed = mlctl("-o", "json", "apply", "-f", str(project / "image.yaml"), IMP_PW=password)
            outputs.append(changed.out + changed.err)
            assert changed.code == 0, changed.err
            image_change = changed.json()["changes"][1]
            assert image_change["action"] == "update" and image_change["reasons"] == ["dependencies"]
            assert image_change["version"] == 2
            assert [i["version"] for i in mlctl("-o", "json", "image", "list", "--name", "imp-img").json()] == [1, 2]
            assert all(password not in text for text in outputs)
        finally:
            mlctl("service", "delete", "imp-img-svc")
            for version in (1, 2):
                mlctl("image", "delete", f"imp-img:{version}", "--force")
            try:
                engine.images.remove(remote)
            except Exception:  # noqa: BLE001 - only what this test pulled; absent is fine
                pass
