"""The kubernetes target's pure side: v1's defaults and rules, rendered manifests validated
against the Kubernetes OpenAPI schemas (kubernetes-validate), secrets redacted. No cluster."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from conftest import mlctl, self_signed_certificate, write

SPEC = """
    apiVersion: mlctl/v1
    kind: Service
    name: k8s-echo
    target: kubernetes
    tags: {team: ml, "owner email": a@b.c}
    model_files: [model.txt]
    inference_config:
      entry_script: score.py
      requirements: requirements.txt
    deployment_config:
      port: 8890
"""


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLCTL_REGISTRY", "registry.example:5000")
    monkeypatch.delenv("MLCTL_REGISTRY_USERNAME", raising=False)
    write(tmp_path / "model.txt", "v1")
    write(tmp_path / "score.py", "def init(): pass\ndef run(raw): return raw\n")
    write(tmp_path / "requirements.txt", "")
    return write(tmp_path / "service.yaml", SPEC)


def _render(spec: Path, *sets: str, **env: str) -> tuple[int, dict[str, Any], str]:
    result = mlctl("-o", "json", "service", "render", "-f", str(spec), *[a for s in sets for a in ("--set", s)], **env)
    return result.code, result.json() if result.code == 0 else {}, result.err


def _by_kind(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        m["kind"] + ("/registry" if m["metadata"]["name"].endswith("-registry") else ""): m for m in plan["manifests"]
    }


def test_defaults_are_v1_aks_defaults(spec: Path) -> None:
    code, plan, err = _render(spec)
    assert code == 0, err
    objects = _by_kind(plan)
    assert list(objects) == ["Secret", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    dep = objects["Deployment"]
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlctl"
    assert dep["metadata"]["labels"]["team"] == "ml"  # a valid label; the other tag is an annotation
    assert dep["metadata"]["annotations"]["mlctl.io/tag.owner email"] == "a@b.c"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example:5000/k8s-echo:<next version>"
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert (container["readinessProbe"]["periodSeconds"], container["readinessProbe"]["timeoutSeconds"]) == (10, 2)
    assert container["startupProbe"]["failureThreshold"] == 310  # v1's initial delay, as a startup budget
    assert "--keys-file" in container["command"] and "preStop" in container["lifecycle"]
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 10)
    # v1's router: 70 % of replica_max_concurrent_requests (1) in flight per replica
    assert hpa["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "mlctl_requests_in_flight"},
                "target": {"type": "AverageValue", "averageValue": "700m"},
            },
        }
    ]
    assert plan["scoring_uri"] == "http://k8s-echo.default.svc.cluster.local:8890/score"


def test_num_replicas_turns_autoscaling_off_and_limits_map(spec: Path) -> None:
    given = ["num_replicas=3", "cpu_cores=0.5", "cpu_cores_limit=1", "memory_gb_limit=2", "gpu_cores=1",
             "auth_enabled=false", "replica_max_concurrent_requests=4", "service_type=LoadBalancer"]  # fmt: skip
    sets = [f"deployment_config.{s}" for s in given]
    code, plan, err = _render(spec, *sets)
    assert code == 0, err
    objects = _by_kind(plan)
    assert list(objects) == ["Service", "Deployment", "PodDisruptionBudget"]
    assert objects["Service"]["spec"]["type"] == "LoadBalancer"
    dep = objects["Deployment"]["spec"]
    container = dep["template"]["spec"]["containers"][0]
    assert dep["replicas"] == 3 and "--keys-file" not in container["command"]
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "2048Mi", "nvidia.com/gpu": "1"}
    assert container["command"][container["command"].index("--concurrency") + 1] == "2"  # 4 over 2 workers
    assert container["command"][container["command"].index("--max-wait-ms") + 1] == "500"  # v1's default
    code, plan, err = _render(spec, *sets, D + "max_request_wait_time=1200")
    command = _by_kind(plan)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert code == 0 and command[command.index("--max-wait-ms") + 1] == "1200", err


D = "deployment_config."


@pytest.mark.parametrize(
    ("sets", "metric"),
    [
        (
            [D + "autoscale_target_utilization=50", D + "replica_max_concurrent_requests=4"],
            {"type": "Pods", "pods": {"metric": {"name": "mlctl_requests_in_flight"},
                                      "target": {"type": "AverageValue", "averageValue": "2000m"}}},
        ),
        (
            [D + "autoscale_metric=cpu", D + "autoscale_target_utilization=60"],
            {"type": "Resource",
             "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
        ),
    ],
)  # fmt: skip
def test_autoscale_metric_renders_concurrency_or_cpu(spec: Path, sets: list[str], metric: dict[str, Any]) -> None:
    import kubernetes_validate

    code, plan, err = _render(spec, *sets, D + "autoscale_refresh_seconds=5")
    assert code == 0, err
    hpa = _by_kind(plan)["HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"] == [metric]
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["periodSeconds"] == 5
    kubernetes_validate.validate(hpa, "1.37.0", strict=True)
    hpa["apiVersion"] = "autoscaling/v2beta2"  # the test cluster's (v1.20): the same shape
    kubernetes_validate.validate(hpa, "1.25.0", strict=True)
    assert _render(spec, D + "autoscale_metric=memory")[0] == 3


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ([D + "num_replicas=2", D + "autoscale_enabled=true"], "num_replicas and autoscale_enabled"),
        ([D + "cpu_cores=1", D + "cpu_cores_limit=0.5"], "cpu_cores_limit (0.5) is below cpu_cores (1)"),
        ([D + "memory_gb=2", D + "memory_gb_limit=1"], "memory_gb_limit (1) is below memory_gb (2)"),
        ([D + "autoscale_min_replicas=5", D + "autoscale_max_replicas=2"], "above autoscale_max_replicas"),
        ([D + "token_auth_enabled=true"], "token_auth_enabled is not supported"),
        ([D + "enable_app_insights=true"], "enable_app_insights is not supported"),
        ([D + "collect_model_data=true"], "collect_model_data on the kubernetes target needs"),
        ([D + "namespace=Not_A_Label"], "namespace"),
    ],
)
def test_v1_rules_refuse_bad_configuration(spec: Path, sets: list[str], message: str) -> None:
    code, _, err = _render(spec, *sets)
    assert code == 3 and message in err, err


def test_keys_not_honoured_by_the_target_are_refused(spec: Path) -> None:
    code, _, err = _render(spec, "deployment_config.dns_name_label=my-label")
    assert code == 6 and "does not support deployment_config.dns_name_label" in err, err


def test_tls_becomes_a_content_named_tls_secret_mounted_read_only_and_the_key_is_never_rendered(spec: Path) -> None:
    cert, key = self_signed_certificate(spec.parent)
    canary = "canary-private-key-5d1e"
    key.write_text(key.read_text() + f"# {canary}\n")
    files = [D + "ssl_cert_pem_file=cert.pem", D + "ssl_key_pem_file=key.pem"]
    result = mlctl(
        "service", "render", "-f", str(spec), "--set", files[0], "--set", files[1], "--set", D + "ssl_enabled=true"
    )
    assert result.code == 0 and canary not in result.out + result.err, result.err
    code, plan, err = _render(spec, *files)
    assert code == 0 and canary not in str(plan), err
    objects = {m["kind"] + "/" + m["metadata"]["name"]: m for m in plan["manifests"]}
    (secret_name,) = [n for n in objects if n.startswith("Secret/k8s-echo-tls-")]
    secret = objects[secret_name]
    assert secret["type"] == "kubernetes.io/tls" and secret["stringData"]["tls.key"].startswith("redacted")
    assert base64.b64decode(secret["data"]["tls.crt"]) == cert.read_bytes()  # the public part, for GitOps
    pod = objects["Deployment/k8s-echo"]["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": secret_name.split("/")[1], "defaultMode": 0o440}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "tls", "mountPath": "/run/mlctl-tls", "readOnly": True} in container["volumeMounts"]
    command = container["command"]
    assert command[command.index("--ssl-certfile") + 1] == "/run/mlctl-tls/tls.crt"
    assert command[command.index("--ssl-keyfile") + 1] == "/run/mlctl-tls/tls.key"
    assert {container[p]["httpGet"]["scheme"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"HTTPS"}
    assert plan["scoring_uri"] == "https://k8s-echo.default.svc.cluster.local:8890/score"
    import kubernetes_validate

    for manifest in plan["manifests"]:
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    key.write_text(key.read_text() + "# another key\n")  # other content: another Secret
    assert not any(m["metadata"]["name"] == secret_name.split("/")[1] for m in _render(spec, *files)[1]["manifests"])
    refused = _render(spec, D + "ssl_enabled=true")
    assert refused[0] == 3 and "ssl_enabled needs ssl_cert_pem_file and ssl_key_pem_file" in refused[2]
    refused = _render(spec, *files, D + "ssl_enabled=false")
    assert refused[0] == 3 and "ssl_enabled is false but certificate files are given" in refused[2]


@pytest.mark.parametrize("version", ["1.25.0", "1.37.0"])
def test_manifests_validate_against_the_kubernetes_schemas(spec: Path, version: str) -> None:
    import kubernetes_validate

    for sets in ([], ["deployment_config.num_replicas=2", "deployment_config.auth_enabled=false"]):
        code, plan, err = _render(spec, *sets, MLCTL_REGISTRY_USERNAME="u", MLCTL_REGISTRY_PASSWORD="p")
        assert code == 0, err
        for manifest in plan["manifests"]:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_registry_credentials_and_keys_never_appear_in_the_render(spec: Path) -> None:
    canary = "canary-password-7f3a9"
    result = mlctl("service", "render", "-f", str(spec), MLCTL_REGISTRY_USERNAME="bob", MLCTL_REGISTRY_PASSWORD=canary)
    assert result.code == 0, result.err
    assert canary not in result.out + result.err
    from ruamel.yaml import YAML

    docs = [d for d in YAML(typ="safe").load_all(result.out) if d]
    pull = next(d for d in docs if d["type"] == "kubernetes.io/dockerconfigjson")
    assert pull["stringData"] == {".dockerconfigjson": '{"auths": {}}'}
    keys = next(d for d in docs if d["metadata"]["name"] == "k8s-echo-keys")
    assert keys["stringData"]["keys.json"].startswith("redacted")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "k8s-echo-registry"}]


def test_api_versions_option_picks_what_render_writes(spec: Path) -> None:
    added = mlctl("target", "add", "old", "--kind", "kubernetes", "--option",
                  "api_versions=autoscaling/v2beta2,policy/v1beta1")  # fmt: skip
    assert added.code == 0, added.err
    code, plan, err = _render(spec, "target=old")
    assert code == 0, err
    versions = {m["kind"]: m["apiVersion"] for m in plan["manifests"]}
    assert versions["HorizontalPodAutoscaler"] == "autoscaling/v2beta2"
    assert versions["PodDisruptionBudget"] == "policy/v1beta1"
    bad = mlctl("target", "add", "bad", "--kind", "kubernetes", "--option", "api_versions=apps/v1")
    assert bad.code == 0
    assert _render(spec, "target=bad")[0] == 6


def test_deploy_without_a_registry_says_how_to_configure_one(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLCTL_REGISTRY")
    result = mlctl("service", "deploy", "-f", str(spec))
    assert result.code == 6, result.err
    assert "needs an image registry" in result.err and "MLCTL_REGISTRY" in result.err


def test_list_is_empty_and_quick_without_a_cluster(tmp_path: Path) -> None:
    result = mlctl("-o", "json", "service", "list", KUBECONFIG=str(tmp_path / "none"), HOME=str(tmp_path))
    assert result.code == 0 and result.json() == []


def test_a_service_of_a_built_image_names_itself_as_the_oip_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with an inference_config: the Open Inference Protocol's model is the service (/v2/models/NAME),
    not the server's default name; the image's own entry script or model kind stays in its environment."""
    monkeypatch.setenv("MLCTL_REGISTRY", "registry.example:5000")
    body = "kind: Service\nname: k8s-img\ntarget: kubernetes\nimage: k8s-img:1\ndeployment_config: {port: 8890}\n"
    code, plan, err = _render(write(tmp_path / "service.yaml", "apiVersion: mlctl/v1\n" + body))
    assert code == 0, err
    container = _by_kind(plan)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--model-name") + 1] == "k8s-img"
    assert "--entry-script" not in container["args"]
