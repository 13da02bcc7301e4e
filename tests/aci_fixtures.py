"""Fixtures of the ACI tests (a pytest plugin: ``pytest_plugins = ["aci_fixtures"]``): the fake,
module-scoped so it outlives each test's MLCTL_HOME clean-up, and a registry with credentials."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from aci_fake import running_fake
from aci_fake.world import REGISTRY_USER, RESOURCE_GROUP, AciWorld, engine_or_skip
from oci_registry import run_registry


@pytest.fixture(scope="module")
def aci_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AciWorld]:
    """The fake ACI (HTTPS, its own CA) and a registry with basic authentication, both on
    127.0.0.1; the images tests create (``aci-*`` and their registry tags) are removed afterwards,
    not their layers: a later build of the same environment (another target's test) is a cache hit."""
    import bcrypt

    engine = engine_or_skip()
    folder = tmp_path_factory.mktemp("aci")
    password = "aci-pw-" + secrets.token_hex(12)  # also the canary: it must appear in no output
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{REGISTRY_USER}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
    with run_registry(folder, htpasswd) as registry, running_fake(folder / "fake", {RESOURCE_GROUP}) as fake:
        yield AciWorld(fake, registry, password)
    for image in engine.images.list():  # only our own names: the engine is shared
        ours = [t for t in image.tags if _ours(t)]
        if not image.tags and any(_ours(d.partition("@")[0]) for d in image.attrs.get("RepoDigests") or []):
            ours = [image.id]  # a pushed version whose tag moved to a later build of the same name
        for ref in ours:
            try:
                engine.images.remove(ref, noprune=True)  # the build cache stays (as conftest.remove_images)
            except Exception:  # noqa: BLE001 - removed already, or still used by a container
                pass


def _ours(reference: str) -> bool:
    return reference.rpartition("/")[2].startswith("aci-")


@pytest.fixture
def aci_env(aci_world: AciWorld, monkeypatch: pytest.MonkeyPatch) -> AciWorld:
    """``aci_world`` with its environment set for this test (the CLI subprocesses inherit it)."""
    for key, value in aci_world.env().items():
        monkeypatch.setenv(key, value)
    for key in ("AZURE_SUBSCRIPTION_ID", "AZURE_DEFAULTS_GROUP", "AZURE_DEFAULTS_LOCATION"):
        monkeypatch.delenv(key, raising=False)
    return aci_world
