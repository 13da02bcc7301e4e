"""Model data collection (issue 19) on the container targets: docker against Azurite (the
connection string a read-only secret file), the rendered wiring of aci, kubernetes and edge, and a
canary connection string that never shows in a spec, record, rendering or log."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aci_fake.world import AciWorld
from azurite import API_VERSION, Azurite
from conftest import Result, free_port, mlctl, post, wait_for
from test_collect import HERE, blob_rows

from mlctl.targets.kubernetes.render import REDACTED_CONNECTION

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
        _rows_survive_update_and_delete(storage, uri, project, "dcdocker", "docker", first=4, **env)
    finally:
        mlctl("service", "delete", "dcdocker")
        storage.stop()


def test_docker_delete_without_waiting_keeps_the_rows_collected_right_before(
    tmp_path: Path, engine: Any, mlctl_home: Path
) -> None:
    """`service delete --no-wait` removes the container at once (a SIGKILL: no graceful-stop
    flush), so the driver asks the service to flush first (with the service key). The writers here
    hold rows for a minute: only that flush can have written them to the local store."""
    spec = "  auth_enabled: true\n  environment_variables:\n    MLCTL_DC_INTERVAL_S: '60'\n"
    project = _docker_project(tmp_path, spec, name="dcdocker-nw")
    try:
        deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
        assert deployed.code == 0, deployed.err
        uri = str(deployed.json()["scoring_uri"])
        key = json.loads((mlctl_home / "services" / "dcdocker-nw" / "secrets" / "keys.json").read_text())["primary"]
        ids = [f"nowait-{n}" for n in range(6)]
        for n, request_id in enumerate(ids):
            body = json.dumps({"data": [[n, 1, 1]]}).encode()
            assert post(uri, body, {"x-request-id": request_id, "Authorization": f"Bearer {key}"})[0] == 200
        assert _stored("dcdocker-nw", "inputs") == []  # still buffered in the workers
        deleted = mlctl("service", "delete", "dcdocker-nw", "--no-wait")
        assert deleted.code == 0, deleted.err
        assert not engine.containers.list(all=True, filters={"label": "mlctl.service=dcdocker-nw"})
        assert sorted(r["$aml_request_id"] for r in _stored("dcdocker-nw", "inputs")) == ids
        assert len(_stored("dcdocker-nw", "predictions")) == len(ids)
        assert "asking dcdocker-nw to write the model data rows it buffers" in deleted.err, deleted.err
        assert "warning" not in deleted.err.lower() and key not in deleted.out + deleted.err, deleted.err
    finally:
        mlctl("service", "delete", "dcdocker-nw")


def _stored(name: str, designation: str) -> list[dict[str, str]]:
    """The rows of ``designation`` in the local store (``mlctl service data``: a deleted service's too)."""
    result = mlctl("-o", "json", "service", "data", name, "--designation", designation)
    assert result.code == 0, result.err
    return list(result.json())


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


def _deploy_on_aci(project: Path, aci_env: AciWorld) -> str:
    """Add target ``aci-dev`` (the ACI fake) and deploy ``project``'s service there; its scoring URI."""
    assert mlctl("target", "add", "aci-dev", "--kind", "aci", *aci_env.target_options()).code == 0
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
    assert deployed.code == 0, deployed.err
    return str(deployed.json()["scoring_uri"])


def _rows_survive_update_and_delete(
    storage: Azurite,
    uri: str,
    project: Path,
    name: str,
    prefix: str,
    *,
    first: int,
    headers: dict[str, str] | None = None,
    **env: str,
) -> tuple[Result, Result]:
    """Requests scored right before ``service update`` and right before ``service delete``: every
    one's input row and prediction row is in Azurite when the command returns (no waiting), so the
    retiring server wrote what it buffered before it stopped. Returns the two commands' results."""
    ids = [f"{prefix}-{n}" for n in range(first)]

    def score(count: int) -> None:
        for n in range(len(ids), len(ids) + count):
            ids.append(f"{prefix}-{n}")
            body = json.dumps({"data": [[n, 1, 1]]}).encode()
            assert post(uri, body, {"x-request-id": ids[-1], **(headers or {})})[0] == 200

    score(5)
    updated = mlctl("service", "update", "-f", str(project / "service.yaml"), **env)
    assert updated.code == 0, updated.err
    after_update = sorted(r["$aml_request_id"] for r in blob_rows(storage, "inputs"))
    assert after_update == sorted(ids) and len(blob_rows(storage, "predictions")) == len(ids)
    score(4)
    deleted = mlctl("service", "delete", name, **env)
    assert deleted.code == 0, deleted.err
    assert sorted(r["$aml_request_id"] for r in blob_rows(storage, "inputs")) == sorted(ids)
    predictions = sorted(r["$aml_request_id"] for r in blob_rows(storage, "predictions"))
    assert predictions == sorted(ids), predictions
    return updated, deleted


def test_aci_update_and_delete_keep_the_rows_collected_right_before(
    tmp_path: Path, aci_env: AciWorld, mlctl_home: Path
) -> None:
    """ACI (and its fake, Azure/azure-cli#16673) stops the old container with no SIGTERM, so the
    driver asks the service to flush first (``POST /-/mlctl/model-data/flush``, with the service
    key). The writers here would hold rows for a minute: only that flush can have written them."""
    storage = Azurite(tmp_path, free_port())
    storage.start()
    secret_file = tmp_path / "conn.txt"
    secret_file.write_text(storage.connection_string)
    spec = (
        f"  model_data_storage:\n    connection_string_file: {secret_file}\n    api_version: '{API_VERSION}'\n"
        "  auth_enabled: true\n  environment_variables:\n    MLCTL_DC_INTERVAL_S: '60'\n"
    )
    project = _docker_project(tmp_path, spec, name="aci-dc2", target="aci-dev")
    try:
        uri = _deploy_on_aci(project, aci_env)
        key = json.loads((mlctl_home / "services" / "aci-dc2" / "secrets" / "keys.json").read_text())["primary"]
        auth = {"Authorization": f"Bearer {key}"}
        results = _rows_survive_update_and_delete(storage, uri, project, "aci-dc2", "aci", first=0, headers=auth)
        for result in results:
            assert "asking aci-dc2 to write the model data rows it buffers" in result.err, result.err
            assert "warning" not in result.err and key not in result.out + result.err, result.err
    finally:
        mlctl("service", "delete", "aci-dc2")
        storage.stop()


def test_aci_update_and_delete_go_on_with_a_warning_when_the_flush_fails(
    tmp_path: Path, aci_env: AciWorld, mlctl_home: Path
) -> None:
    """The storage is unreachable, so the service cannot write its rows: the flush answers 504
    after its time limit; ``update`` and ``delete`` warn (how many rows) and succeed anyway."""
    closed = free_port()
    secret_file = tmp_path / "conn.txt"
    secret_file.write_text(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{closed}/devstoreaccount1;"
    )
    spec = f"  model_data_storage:\n    connection_string_file: {secret_file}\n    api_version: '{API_VERSION}'\n"
    project = _docker_project(tmp_path, spec, name="aci-dc3", target="aci-dev")
    try:
        uri = _deploy_on_aci(project, aci_env)
        for command in (("service", "update", "-f", str(project / "service.yaml")), ("service", "delete", "aci-dc3")):
            assert post(uri, json.dumps({"data": [[1, 1, 1]]}).encode())[0] == 200  # one input, one prediction row
            result = mlctl(*command)
            assert result.code == 0, result.err
            assert "did not confirm that its buffered model data rows are written" in result.err, result.err
            assert "2 row(s) were still not written after 10s" in result.err, result.err
        assert mlctl("-o", "json", "service", "list").json() == []
    finally:
        mlctl("service", "delete", "aci-dc3")


K8S_SPEC = """apiVersion: mlctl/v1
kind: Service
name: k8s-dc
target: kubernetes
model_files: [weights.txt]
inference_config:
  entry_script: score_dc.py
  requirements: requirements.txt
deployment_config:
  port: 8890
  collect_model_data: true
  model_data_storage:
    connection_string_env: DC_CONN
"""


def test_kubernetes_wiring_secret_mount_env_and_no_canary_in_render_or_dry_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pods of the test cluster have no route off themselves, so Azurite cannot be reached from
    one: the wiring is proven here (the collection itself on the docker and aci targets, which run
    the same image): a Secret holding the connection string, mounted read-only, the switches in env."""
    from mlctl.spec import load_one
    from mlctl.spec.records import ServiceSpec
    from mlctl.targets.kubernetes.render import Inputs, manifests
    from mlctl.targets.kubernetes.settings import settings

    canary = f"DefaultEndpointsProtocol=http;AccountName=canary;AccountKey=k8s-canary-{os.getpid()}"
    monkeypatch.setenv("MLCTL_REGISTRY", "registry.example:5000")
    monkeypatch.setenv("DC_CONN", canary)
    (tmp_path / "weights.txt").write_text("2")
    (tmp_path / "score_dc.py").write_text((HERE / "score_dc.py").read_text())
    (tmp_path / "requirements.txt").write_text("numpy\n")
    spec_file = tmp_path / "service.yaml"
    spec_file.write_text(K8S_SPEC)
    outputs = [
        mlctl("-o", "json", "service", "render", "-f", str(spec_file)),
        mlctl("service", "render", "-f", str(spec_file)),
        mlctl("-o", "json", "service", "deploy", "--dry-run", "-f", str(spec_file)),
        mlctl("spec", "validate", str(spec_file)),
    ]
    for result in outputs:
        assert canary not in result.out + result.err and "k8s-canary" not in result.out + result.err
    plan = outputs[0].json()
    by_name = {m["metadata"]["name"]: m for m in plan["manifests"]}
    assert by_name["k8s-dc-modeldata"]["stringData"] == {"modeldata-connection-string": REDACTED_CONNECTION}
    pod = next(m for m in plan["manifests"] if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AML_MODEL_DC_STORAGE_ENABLED"] == "true" and env["SERVICE_NAME"] == "k8s-dc"
    assert env["MLCTL_DC_STORAGE_FILE"] == "/run/mlctl-modeldata/modeldata-connection-string"
    assert "AML_MODEL_DC_STORAGE" not in env  # the secret is a mounted file, never an env value
    assert {"name": "modeldata", "mountPath": "/run/mlctl-modeldata", "readOnly": True} in container["volumeMounts"]
    assert {"name": "modeldata", "secret": {"secretName": "k8s-dc-modeldata", "defaultMode": 0o440}} in pod["volumes"]
    # what deploy applies: the Secret holds the connection string, nothing else does
    spec = load_one([spec_file], ServiceSpec)
    assert isinstance(spec, ServiceSpec)
    applied = manifests(spec, settings(spec), Inputs(image="img:1", models="weights:1", modeldata_connection=canary))
    secret = next(m for m in applied if m["metadata"]["name"] == "k8s-dc-modeldata")
    assert base64.b64decode(secret["data"]["modeldata-connection-string"]).decode() == canary
    assert canary not in json.dumps([m for m in applied if m is not secret])
    deployment = next(m for m in applied if m["kind"] == "Deployment")
    assert {"name": "MLCTL_DC_MODELS", "value": "weights:1"} in deployment["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]


def test_edge_module_collects_into_a_volume_on_the_device(tmp_path: Path) -> None:
    """An IoT Edge module with ``collect_model_data``: the switches in its env, the device volume
    bound at the local store; the manifest still validates against the agent's schema."""
    from test_edge_manifest import DEVICE, IMAGES, _spec

    from mlctl.edge import manifest

    text = DEVICE.replace("    desired_properties: {threshold: 0.5}\n", "    collect_model_data: true\n")
    text += "  sidecar:\n    image: sidecar:1\n    collect_model_data: true\n    model_data_volume: /srv/modeldata\n"
    content = manifest.render(_spec(tmp_path, text), IMAGES)
    manifest.validate(content, layered=False)
    modules = content["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    model = modules["model"]
    assert model["env"]["AML_MODEL_DC_STORAGE_ENABLED"] == {"value": "true"}
    assert model["env"]["MLCTL_DC_LOCAL"] == {"value": "/var/mlctl/modeldata"}
    assert model["env"]["SERVICE_NAME"] == {"value": "model"} and model["env"]["THRESHOLD"] == {"value": 0.5}
    options = json.loads(model["settings"]["createOptions"])
    assert options["HostConfig"]["Binds"] == ["mlctl-modeldata:/var/mlctl/modeldata"]
    assert options["HostConfig"]["PortBindings"] == {"5001/tcp": [{"HostPort": "9000"}]}
    sidecar = json.loads(modules["sidecar"]["settings"]["createOptions"])
    assert sidecar["HostConfig"]["Binds"] == ["/srv/modeldata:/var/mlctl/modeldata"]
