"""An AKS cluster attached by name (``--option aks_cluster=GROUP/NAME``): its kubeconfig fetched
through the ARM fake (tests/aci_fake: managedClusters listClusterUserCredential /
listClusterAdminCredential, as the REST spec's recorded example answers), kept 0600 under
MLCTL_HOME, refreshed when it stops working; ARM errors by code; and, on the real test cluster
(tests/k8s_cluster.py), a service deployed, tested and deleted through such a target."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aci_fake import FakeAci, running_fake
from conftest import mlctl, write
from k8s_cluster import KUBECONFIG, REGISTRY, Cluster, k8s_fixture  # noqa: F401 - k8s_fixture: the k8s fixture
from test_kubernetes_faults import ECHO, SPEC

GROUP = "aks-rg"
EXEC_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: aad, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: aad, context: {cluster: aad, user: aad}}]
current-context: aad
users:
- name: aad
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin, args: [get-token]}
"""


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    """The echo service of tests/test_kubernetes_faults.py (1 replica, no keys)."""
    write(tmp_path / "model.txt", "v1")
    write(tmp_path / "score.py", ECHO)
    write(tmp_path / "requirements.txt", "")
    return write(tmp_path / "service.yaml", SPEC)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAci]:
    """The ARM fake with the test cluster's kubeconfig as AKS cluster ``test`` (when there is one),
    an Azure AD cluster ``aad`` and a cluster ``secret`` whose credentials the caller may not list."""
    with running_fake(tmp_path_factory.mktemp("arm"), {GROUP}) as arm:
        arm.clusters["test"] = KUBECONFIG.read_bytes() if KUBECONFIG.is_file() else b"apiVersion: v1\nkind: Config\n"
        arm.clusters["aad"] = EXEC_KUBECONFIG.encode()
        arm.denied_clusters.add("secret")
        yield arm


@pytest.fixture
def arm(fake: FakeAci, monkeypatch: pytest.MonkeyPatch) -> FakeAci:
    """``fake`` with the stand-in ``az`` first on PATH as DefaultAzureCredential's only credential."""
    monkeypatch.setenv("PATH", f"{fake.az_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    return fake


def _options(fake: FakeAci, cluster: str, *extra: str) -> list[str]:
    options = [f"aks_cluster={cluster}", f"subscription_id={fake.subscription}", f"base_url={fake.base_url}",
               f"ca_bundle={fake.ca_file}", *extra]  # fmt: skip
    return [arg for option in options for arg in ("--option", option)]


def _kept(home: Path, fake: FakeAci, name: str) -> Path:
    return home / "aks" / fake.subscription / GROUP / f"{name}.kubeconfig"


def test_target_add_fetches_the_user_kubeconfig_0600_and_admin_only_when_asked(arm: FakeAci, mlctl_home: Path) -> None:
    added = mlctl("target", "add", "prod", "--kind", "kubernetes", *_options(arm, f"{GROUP}/test"))
    assert added.code == 0, added.err
    kept = _kept(mlctl_home, arm, "test")
    assert kept.read_bytes() == arm.clusters["test"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    calls = [r["path"].rpartition("/")[2] for r in arm.requests if "managedClusters" in r["path"]]
    assert calls[-1] == "listClusterUserCredential"
    provider = "providers/Microsoft.ContainerService/managedClusters"
    resource_id = f"/subscriptions/{arm.subscription}/resourceGroups/{GROUP}/{provider}/test"
    admin = mlctl("target", "add", "prod-admin", "--kind", "kubernetes", *_options(arm, resource_id, "aks_admin=true"))
    assert admin.code == 0, admin.err
    assert [r["path"] for r in arm.requests][-1].endswith("/managedClusters/test/listClusterAdminCredential")
    assert _kept(mlctl_home, arm, "test-admin").read_bytes() == arm.clusters["test"]


@pytest.mark.parametrize(
    ("cluster", "code", "words"),
    [
        (f"{GROUP}/missing", 4, ["AKS cluster aks-rg/missing does not exist", "az aks list"]),
        (f"{GROUP}/secret", 6, ["no permission", "AuthorizationFailed", "Azure Kubernetes Service Cluster User Role"]),
        (f"{GROUP}/aad", 6, ["Azure AD", "kubelogin", "aks_admin=true"]),
        ("other-rg/test", 6, ["ResourceGroupNotFound"]),
        ("just-a-name", 6, ["RESOURCE_GROUP/NAME"]),
    ],
)
def test_arm_errors_are_said_by_code(arm: FakeAci, cluster: str, code: int, words: list[str]) -> None:
    added = mlctl("target", "add", "prod", "--kind", "kubernetes", *_options(arm, cluster))
    assert added.code == code, added.err
    assert all(w in added.err for w in words), added.err
    assert mlctl("target", "show", "prod").code != 0  # nothing was added


def test_denied_sign_in_says_how_to_sign_in(arm: FakeAci) -> None:
    added = mlctl(
        "target", "add", "prod", "--kind", "kubernetes", *_options(arm, f"{GROUP}/test"),
        PATH=f"{arm.denied_az_bin}{os.pathsep}{os.environ['PATH']}",
    )  # fmt: skip
    assert added.code == 6 and "az login" in added.err, added.err


@pytest.mark.slow
def test_attached_cluster_with_an_acr_deploys_tests_deletes_and_refreshes_a_stale_kubeconfig(
    arm: FakeAci, k8s: Cluster, echo: Path, mlctl_home: Path
) -> None:
    """Through ``aks_cluster`` (the fake lists the test cluster's kubeconfig) and ``registry_resource``
    (the fake ACR names the cluster's registry, with a canary admin password): the image is pushed
    there, the pull Secret holds the ACR's credentials, and the password is never printed or stored."""
    canary = "acr-canary-" + secrets.token_hex(8)
    arm.clusters["test"] = KUBECONFIG.read_bytes()
    arm.registries["k8sacr"] = (REGISTRY, "k8sacr", canary)
    options = _options(arm, f"{GROUP}/test", "registry_resource=k8sacr", f"namespace={k8s.namespace}",
                       "api_versions=autoscaling/v2beta2,policy/v1beta1")  # fmt: skip
    env = {"KUBECONFIG": "/nonexistent", "MLCTL_REGISTRY": ""}  # only the target's ARM answers can do it
    added = mlctl("target", "add", "aks", "--kind", "kubernetes", *options, **env)
    assert added.code == 0, added.err
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(echo), "--set", "target=aks", **env)
    assert deployed.code == 0, deployed.err
    assert deployed.json()["environment"].startswith(f"{REGISTRY}/k8s-echo:")
    assert len(k8s.pods("k8s-echo")) == 1
    pull = k8s.core.read_namespaced_secret("k8s-echo-registry", k8s.namespace)
    auths = json.loads(base64.b64decode(pull.data[".dockerconfigjson"]))["auths"]
    assert auths[REGISTRY]["username"] == "k8sacr" and auths[REGISTRY]["password"] == canary
    assert any(r["path"].endswith("/registries/k8sacr/listCredentials") for r in arm.requests)
    tested = mlctl("service", "test", "k8s-echo", **env)
    assert tested.code == 0, tested.err
    kept = _kept(mlctl_home, arm, "test")
    kept.write_text(kept.read_text().replace("https://127.0.0.1:6443", "https://127.0.0.1:1"))  # stopped working
    before = len(arm.requests)
    shown = mlctl("-o", "json", "service", "show", "k8s-echo", **env)
    assert shown.code == 0, shown.err
    assert any(r["path"].endswith("listClusterUserCredential") for r in arm.requests[before:])  # fetched again
    assert kept.read_bytes() == arm.clusters["test"]
    deleted = mlctl("service", "delete", "k8s-echo", **env)
    assert deleted.code == 0, deleted.err
    assert [o for o in k8s.objects("k8s-echo") if not o.startswith("Pod/")] == []
    for result in (added, deployed, tested, shown, deleted):
        assert canary not in result.out + result.err
    for path in mlctl_home.rglob("*"):
        assert not path.is_file() or canary.encode() not in path.read_bytes(), path
