"""Apply twice, no changes: on every target kind this mlctl has (process, docker; aci on the ACI
fake and kubernetes on the test cluster, each from Azure's docs sample imported with `mlctl import
azureml`); renders are deterministic; the FPGA (Brainwave) target is refused with its successor;
``gpu_cores`` is a GPU device request."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from aci_fake.world import AciWorld
from conftest import ECHO_SCORE, engine_or_skip, free_port, mlctl, remove_images, service_spec, write
from k8s_cluster import Cluster, k8s_fixture  # noqa: F401 - k8s_fixture: the k8s fixture

from mlctl import services
from mlctl.registry import Registry
from mlctl.spec import ServiceSpec, load_one
from mlctl.target_kinds import TARGETS
from mlctl.targets import Deployment, driver_for

pytest_plugins = ["aci_fixtures"]
V1_SAMPLES = Path(__file__).parent / "azureml_v1"


def _project(tmp_path: Path, *, name: str, target: str, extra: str = "") -> Path:
    project = tmp_path / "project"
    write(project / "model.txt", "v1")
    write(project / "score.py", ECHO_SCORE)
    write(project / "requirements.txt", "# only the scoring runtime\n")
    spec = service_spec(project / "service.yaml", port=free_port(), name=name)
    text = spec.read_text().replace("kind: Service\n", f"kind: Service\ntarget: {target}\n")
    if target != "process":  # an image needs its own environment
        text = text.replace("environment: current", "requirements: requirements.txt")
    spec.write_text(text.replace("  workers: 1\n", f"  workers: 1\n{extra}"))
    return spec


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_render_and_fingerprint_are_the_same_at_deploy_and_later(kind: str, tmp_path: Path, mlctl_home: Path) -> None:
    spec = load_one([_project(tmp_path, name="imp-render", target=kind)], ServiceSpec)
    assert isinstance(spec, ServiceSpec)
    model = Registry(mlctl_home).register("model", tmp_path / "project" / "model.txt")
    driver = driver_for(kind, registry=Registry(mlctl_home), home=mlctl_home)
    deployment = Deployment(spec=spec, models=(model,))
    first, first_print = driver.render(deployment), services.fingerprint(deployment, driver)
    time.sleep(1.1)  # a timestamp in seconds would differ now
    assert driver.render(deployment) == first
    assert services.fingerprint(deployment, driver) == first_print


def _apply_twice(spec: Path, engine: Any = None) -> None:
    first = mlctl("-o", "json", "apply", "-f", str(spec))
    assert first.code == 0, first.err
    assert [c["action"] for c in first.json()["changes"]] == ["create"]
    again = mlctl("diff", "-f", str(spec))
    assert again.code == 0, again.out + again.err  # diff: exit 0 = no changes
    second = mlctl("-o", "json", "apply", "-f", str(spec))
    assert second.code == 0, second.err
    assert second.json()["changed"] is False
    assert [c["action"] for c in second.json()["changes"]] == ["unchanged"]


def test_apply_twice_changes_nothing_on_process(tmp_path: Path) -> None:
    _apply_twice(_project(tmp_path, name="imp-twice-proc", target="process"))


def test_deploy_then_diff_and_apply_change_nothing_on_docker(tmp_path: Path, engine: Any) -> None:
    spec = _project(tmp_path, name="imp-twice-dock", target="docker")
    try:
        deployed = mlctl("-o", "json", "service", "deploy", "-f", str(spec))
        assert deployed.code == 0, deployed.err
        diff = mlctl("diff", "-f", str(spec))
        assert diff.code == 0, diff.out + diff.err  # was: update (target)
        applied = mlctl("-o", "json", "apply", "-f", str(spec))
        assert applied.code == 0 and applied.json()["changed"] is False, applied.out + applied.err
        images = mlctl("-o", "json", "image", "list", "--name", "imp-twice-dock").json()
        assert [i["version"] for i in images] == [1]  # no rebuild as imp-twice-dock:2
        # a real change is still seen
        spec.write_text(spec.read_text().replace("workers: 1", "workers: 2"))
        changed = mlctl("-o", "json", "diff", "-f", str(spec))
        assert changed.code == 1 and changed.json()["changes"][0]["reasons"] == ["target"]
    finally:
        mlctl("service", "delete", "imp-twice-dock")
        for version in (1, 2):
            mlctl("image", "delete", f"imp-twice-dock:{version}", "--force")


def test_gpu_cores_is_an_nvidia_device_request_on_docker(tmp_path: Path, mlctl_home: Path) -> None:
    spec = load_one([_project(tmp_path, name="imp-gpu", target="docker", extra="  gpu_cores: 2\n")], ServiceSpec)
    assert isinstance(spec, ServiceSpec)
    driver = driver_for("docker", registry=Registry(mlctl_home), home=mlctl_home)
    plan = driver.render(Deployment(spec=spec, models=()))
    assert plan["device_requests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    without = load_one([_project(tmp_path / "b", name="imp-cpu", target="docker")], ServiceSpec)
    assert "device_requests" not in driver.render(Deployment(spec=without, models=()))  # type: ignore[arg-type]
    dry = mlctl("-o", "json", "service", "deploy", "-f", str(tmp_path / "project" / "service.yaml"), "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.json()["plan"]["device_requests"][0]["Capabilities"] == [["gpu"]]


@pytest.mark.parametrize("target", ["fpga", "Brainwave"])
def test_the_fpga_target_is_refused_as_retired_naming_the_successors(target: str, tmp_path: Path) -> None:
    spec = _project(tmp_path, name="imp-fpga", target="process")
    spec.write_text(spec.read_text().replace("target: process", f"target: {target.lower()}"))
    for verb in (["service", "deploy", "-f", str(spec)], ["apply", "-f", str(spec)]):
        result = mlctl("-o", "json", *verb)
        assert result.code == 6, result.err
        assert "Brainwave" in result.err and "retired" in result.err
        assert "gpu_cores" in result.err and "ONNX Runtime" in result.err
    added = mlctl("target", "add", "accel", "--kind", target)
    assert added.code == 6 and "retired" in added.err


def _imported_sample(tmp_path: Path, deployment_config: str, name: str) -> Path:
    """Azure's docs sample ``deployment_config`` (tests/azureml_v1, unchanged) imported with
    `mlctl import azureml` from the model file; the folder of the specs written."""
    project = tmp_path / "v1"
    shutil.copytree(V1_SAMPLES, project)
    (project / "sample.json").write_text('{"x": 1}')
    imported = mlctl("-o", "json", "import", "azureml", "--ic", str(project / "inferenceconfig.json"), "--dc",
                     str(project / deployment_config), "--model-file", str(project / "model.txt"), "--name", name,
                     "--out", str(project / "out"))  # fmt: skip
    assert imported.code == 0, imported.err
    return project / "out"


def _apply_twice_on(out: Path, target: str, name: str) -> None:
    """Apply the imported specs on ``target``, test the service, then: diff and apply change nothing."""
    sets = ["--set", f"target={target}"]
    first = mlctl("-o", "json", "apply", "-f", str(out), *sets, "--timeout", "300")
    assert first.code == 0, first.err
    assert [(c["kind"], c["action"]) for c in first.json()["changes"]] == [("Model", "create"), ("Service", "create")]
    tested = mlctl("-o", "json", "service", "test", name, "--data", str(out.parent / "sample.json"))
    assert tested.code == 0 and tested.json()["prediction"]["model"] == "v1", tested.out + tested.err
    diff = mlctl("diff", "-f", str(out), *sets)
    assert diff.code == 0, diff.out + diff.err  # diff: exit 0 = no changes
    second = mlctl("-o", "json", "apply", "-f", str(out), *sets)
    assert second.code == 0, second.err
    assert second.json()["changed"] is False, second.out
    assert [c["action"] for c in second.json()["changes"]] == ["unchanged", "unchanged"]
    images = mlctl("-o", "json", "image", "list", "--name", name).json()
    assert [i["version"] for i in images] == [1]  # not rebuilt


def _ours(tag: str) -> bool:
    return tag.rpartition(":")[0].rpartition("/")[2].startswith("a9-")


def test_the_aci_docs_sample_applies_twice_without_changes_on_aci(aci_env: AciWorld, tmp_path: Path) -> None:
    out = _imported_sample(tmp_path, "aci-deploymentconfig.json", "a9-aci-sample")
    added = mlctl("target", "add", "a9-aci", "--kind", "aci", *aci_env.target_options())
    assert added.code == 0, added.err
    try:
        _apply_twice_on(out, "a9-aci", "a9-aci-sample")
        shown = mlctl("-o", "json", "service", "show", "a9-aci-sample").json()
        assert shown["target"] == "aci" and shown["auth_enabled"] is True  # the sample's authEnabled
    finally:
        mlctl("service", "delete", "a9-aci-sample")
        remove_images(engine_or_skip(), _ours)


def test_the_aks_docs_sample_applies_twice_without_changes_on_kubernetes(k8s: Cluster, tmp_path: Path) -> None:
    out = _imported_sample(tmp_path, "aks-deploymentconfig.json", "a9-aks-sample")
    try:
        _apply_twice_on(out, "k8s-test", "a9-aks-sample")
        shown = mlctl("-o", "json", "service", "show", "a9-aks-sample").json()
        assert shown["autoscaler"]["max_replicas"] == 3 and shown["auth_enabled"] is True, json.dumps(shown)
    finally:
        mlctl("service", "delete", "a9-aks-sample")
        remove_images(engine_or_skip(), _ours)
