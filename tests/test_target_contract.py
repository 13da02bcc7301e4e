"""The driver contract of mlctl.targets, checked once for every registered target."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import mlctl, service_spec, write
from k8s_cluster import k8s_fixture  # noqa: F401 - the kubernetes target's real test cluster

from mlctl.errors import NotFoundError
from mlctl.output import Reporter
from mlctl.registry import Registry
from mlctl.spec import ServiceSpec, load_one
from mlctl.target_kinds import TARGETS
from mlctl.targets import Deployment, driver_for

pytest_plugins = ["aci_fixtures"]


@pytest.fixture(params=sorted(TARGETS))
def driver(request: pytest.FixtureRequest, mlctl_home: Path):  # type: ignore[no-untyped-def]
    if request.param == "aci":  # a target named aci on the ACI fake (tests/aci_fake)
        world = request.getfixturevalue("aci_env")
        assert mlctl("target", "add", "aci", "--kind", "aci", *world.target_options()).code == 0
    if request.param == "kubernetes":
        request.getfixturevalue("k8s")  # skips, saying why, where no cluster can be started
    return driver_for(request.param, registry=Registry(mlctl_home), home=mlctl_home)


def test_status_of_an_unknown_service_raises_not_found(driver) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError):
        driver.status("nobody")
    with pytest.raises(NotFoundError):
        list(driver.logs("nobody", follow=False, tail=None))


def test_delete_is_idempotent(driver) -> None:  # type: ignore[no-untyped-def]
    assert driver.delete("nobody", Reporter("json", quiet=True)) is False
    assert list(driver.list()) == []


def test_render_is_pure_and_names_the_scoring_uri(driver, tmp_path: Path, mlctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path / "model.txt", "m")
    write(tmp_path / "score.py", "def init(): pass\ndef run(x): return x\n")
    spec = load_one([service_spec(tmp_path / "s.yaml", port=8123)], ServiceSpec)
    model = Registry(mlctl_home).register("m", tmp_path / "model.txt")
    before = sorted(p.relative_to(mlctl_home) for p in mlctl_home.rglob("*"))
    plan = driver.render(Deployment(spec=spec, models=(model,)))  # type: ignore[arg-type]
    assert plan["scoring_uri"].endswith(":8123/score") and plan["models"] == ["m:1"]
    assert sorted(p.relative_to(mlctl_home) for p in mlctl_home.rglob("*")) == before
