"""Azure ML v1 entry scripts in images on the docker target: ``Model.get_model_path`` finds the
model in the image's ``azureml-models`` by file name and by registered name, deployed from a model
file, from a registered model and from a built image; a ``@rawhttp`` script answers CORS
preflights with werkzeug (installed in every image), and the v1 conda file's ``azureml-defaults``
is left out of the image."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, mlctl, post, write

V1_SCORE = """
from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from azureml.core.model import Model

def init():
    global by_file, by_name
    by_file = Model.get_model_path("weights.txt")  # v1: the registered file's name
    by_name = Model.get_model_path(MODEL_NAME)

@rawhttp
def run(request):
    resp = AMLResponse("" if request.method == "OPTIONS" else open(by_file).read() + "|" + by_name, 200)
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp
"""

V1_CONDA = """
name: project_environment
dependencies:
  - python=3.11
  - pip:
      - azureml-defaults
"""


@pytest.fixture(autouse=True)
def _remove_new_images(request: pytest.FixtureRequest) -> Any:
    """Images a test builds (named after its v1s- services) are removed after it."""
    engine = request.getfixturevalue("engine")
    before = {i.id for i in engine.images.list()}
    yield
    from docker.errors import APIError

    for image in engine.images.list():
        if image.id not in before and any(t.startswith("v1s-") for t in image.tags):
            try:
                engine.images.remove(image.id, force=True)
            except APIError:  # removed already, with another of its tags
                pass


def _service(project: Path, name: str, models: str, model_name: str) -> Path:
    write(project / "score.py", V1_SCORE.replace("MODEL_NAME", repr(model_name)))
    return write(
        project / f"{name}.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: Service
        name: {name}
        target: docker
        {models}
        inference_config:
          entry_script: score.py
          conda_file: myenv.yml
        deployment_config:
          port: {free_port()}
          workers: 1
        """,
    )


def _preflight(uri: str) -> str | None:
    request = urllib.request.Request(uri, method="OPTIONS", headers={"Origin": "https://example.com"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Access-Control-Allow-Origin"]


def test_v1_scripts_find_their_model_in_the_image_from_a_file_and_from_the_registry(
    tmp_path: Path, engine: Any
) -> None:
    project = tmp_path / "project"
    write(project / "weights.txt", "w1")
    write(project / "myenv.yml", V1_CONDA)
    spec = _service(project, "v1s-file", "model_files: [weights.txt]", "weights")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed.code == 0, deployed.err
    assert "not installing azureml-defaults" in deployed.err
    uri = deployed.json()["scoring_uri"]
    status, headers, body = post(uri, b"{}")
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    assert body == b"w1|azureml-models/weights/1/weights.txt"
    assert _preflight(uri) == "*"

    register = write(project / "model.yaml", "apiVersion: mlctl/v1\nkind: Model\nname: v1s-w\npath: weights.txt\n")
    assert mlctl("model", "register", "-f", str(register)).code == 0
    spec = _service(project, "v1s-registered", "models: [v1s-w:1]", "v1s-w")
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed.code == 0, deployed.err
    assert post(deployed.json()["scoring_uri"], b"{}")[2] == b"w1|azureml-models/v1s-w/1/weights.txt"

    # the third deploy option: an image built first (the registered model in it), deployed by name
    image = write(project / "image.yaml", "apiVersion: mlctl/v1\nkind: Image\nname: v1s-img\nmodels: [v1s-w:1]\n"
                  "entry_script: score.py\nconda_file: myenv.yml\n")  # fmt: skip
    built = mlctl("-o", "json", "image", "build", "-f", str(image))
    assert built.code == 0, built.err
    spec = write(project / "v1s-image.yaml", "apiVersion: mlctl/v1\nkind: Service\nname: v1s-image\ntarget: docker\n"
                 f"image: v1s-img:1\ndeployment_config:\n  port: {free_port()}\n")  # fmt: skip
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
    assert deployed.code == 0, deployed.err
    assert post(deployed.json()["scoring_uri"], b"{}")[2] == b"w1|azureml-models/v1s-w/1/weights.txt"
    for name in ("v1s-file", "v1s-registered", "v1s-image"):
        assert json.loads(mlctl("-o", "json", "service", "delete", name).out)["deleted"] is True
