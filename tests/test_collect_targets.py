"""Model data collection (issue 19) on the container targets: docker against Azurite (the
connection string a read-only secret file), the rendered wiring of aci, kubernetes and edge, and a
canary connection string that never shows in a spec, record, rendering or log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aci_fake.world import AciWorld
from azurite import API_VERSION, Azurite
from conftest import free_port, mlctl, post, wait_for
from test_collect import HERE, blob_rows

pytest_plugins = ["aci_fixtures"]


def _docker_project(tmp_path: Path, storage: str, *, name: str = "dcdocker", target: str = "docker") -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "score_dc.py").write_text((HERE / "score_dc.py").read_text())
    (project / "weights.txt").write_text("2")
    (project / "requirements.txt").write_text("numpy\n")
    (project / "service.yaml").write_text(
        f"apiVersion: mlctl/v1\nkind: Service\nname: {name}\ntarget: {target}\nmodel_files: [weights.txt]\n"
        "inference_config:\n  entry_script: score_dc.py\n  requirements: requirements.txt\n"
        f"deployment_config:\n  port: {free_port()}\n  workers: 2\n  cpu_cores: 1\n  memory_gb: 1\n"
        f"  collect_model_data: true\n{storage}"
    )
    return project


def test_docker_target_collects_to_azurite_through_a_secret_file(tmp_path: Path, engine: Any) -> None:
    storage = Azurite(tmp_path, free_port())
    storage.start()
    try:
        spec = f"  model_data_storage:\n    connection_string_env: DC_CONN\n    api_version: '{API_VERSION}'\n"
        project = _docker_project(tmp_path, spec)
        env = {"DC_CONN": storage.connection_string}
        deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"), **env)
        assert deployed.code == 0, deployed.err
        uri = str(deployed.json()["scoring_uri"])
        for n in range(4):
            body = json.dumps({"data": [[n, 1, 1]]}).encode()
            assert post(uri, body, {"x-request-id": f"docker-{n}"})[0] == 200
        assert wait_for(lambda: len(blob_rows(storage, "inputs")) == 4, 30)
        assert {r["$aml_request_id"] for r in blob_rows(storage, "inputs")} == {f"docker-{n}" for n in range(4)}
        container = engine.containers.list(filters={"label": "mlctl.service=dcdocker"})[0]
        attrs = json.dumps(container.attrs)
        assert storage.connection_string not in attrs and "AccountKey" not in attrs  # env, labels, command
        assert any(m["Destination"] == "/run/mlctl-secrets" and not m["RW"] for m in container.attrs["Mounts"])
        joined = mlctl("service", "data", "dcdocker", "-o", "json", **env)
        assert [r["prediction:prediction"] for r in joined.json()] == ["4.0", "6.0", "8.0", "10.0"]
    finally:
        mlctl("service", "delete", "dcdocker")
        storage.stop()


def test_aci_target_collects_to_azurite_with_a_secure_environment_value(
    tmp_path: Path, aci_env: AciWorld, mlctl_home: Path
) -> None:
    storage = Azurite(tmp_path, free_port())
    storage.start()
    canary = f"{storage.connection_string}Canary=aci-{os.getpid()};"
    secret_file = tmp_path / "conn.txt"
    secret_file.write_text(canary)
    spec = f"  model_data_storage:\n    connection_string_file: {secret_file}\n    api_version: '{API_VERSION}'\n"
    project = _docker_project(tmp_path, spec, name="aci-dc", target="aci-dev")
    added = mlctl("target", "add", "aci-dev", "--kind", "aci", *aci_env.target_options())
    assert added.code == 0, added.err
    outputs = []
    try:
        rendered = mlctl("-o", "json", "service", "render", "-f", str(project / "service.yaml"))
        assert rendered.code == 0, rendered.err
        env = rendered.json()["body"]["properties"]["containers"][0]["properties"]["environmentVariables"]
        assert {"name": "AML_MODEL_DC_STORAGE", "secureValue": "<redacted>"} in env
        assert {"name": "AML_MODEL_DC_STORAGE_ENABLED", "value": "true"} in env
        deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
        assert deployed.code == 0, deployed.err
        uri = str(deployed.json()["scoring_uri"])
        for n in range(3):
            assert post(uri, json.dumps({"data": [[n, 1, 1]]}).encode(), {"x-request-id": f"aci-{n}"})[0] == 200
        assert wait_for(lambda: len(blob_rows(storage, "inputs")) == 3, 30)
        assert {r["$aml_request_id"] for r in blob_rows(storage, "inputs")} == {f"aci-{n}" for n in range(3)}
        outputs += [rendered, deployed, mlctl("service", "logs", "aci-dc"), mlctl("service", "show", "aci-dc")]
        data = mlctl("service", "data", "aci-dc", "-o", "json")
        assert len(data.json()) == 3, data.err
    finally:
        outputs.append(mlctl("service", "delete", "aci-dc"))
        storage.stop()
    for result in outputs:
        assert canary not in result.out and canary not in result.err
    for path in mlctl_home.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            assert canary.encode() not in path.read_bytes(), path
