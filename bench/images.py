"""Image build and docker deploy costs on the diabetes example (a benchmark, not a test).

    MLCTL_BASE_IMAGE=mlctl-test/python:bookworm python bench/images.py

Prints: the cold build (no layer cache), the rebuild after a model-only change (goal: at most
10 % of the cold build), the image size against base + the same environment + app + models built
without mlctl (the runtime's overhead; goal: at most 20 MB), and deploy-to-ready of
`mlctl service deploy` on the docker target with the image cached (goal: at most 5 s).
Needs a Docker engine (`make docker-up`) and scikit-learn (to train the model).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _server import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "specs" / "examples" / "diabetes"


def main() -> None:
    os.environ.setdefault("MLCTL_BASE_IMAGE", "mlctl-test/python:bookworm")
    os.environ["MLCTL_HOME"] = tempfile.mkdtemp(prefix="mlctl-bench-images-")
    import docker

    from mlctl import builder, config, images
    from mlctl.home import mlctl_home
    from mlctl.registry import Registry
    from mlctl.spec import ServiceSpec, load_one

    subprocess.run([sys.executable, str(EXAMPLE / "train.py")], check=True, capture_output=True)
    registry = Registry(mlctl_home())
    spec = load_one([EXAMPLE / "service.yaml"], ServiceSpec)
    assert spec.inference is not None
    model = EXAMPLE / "sklearn_regression_model.pkl"
    client = docker.from_env()

    def plan_for(version_bytes: bytes) -> images.ContextPlan:
        model_copy = Path(os.environ["MLCTL_HOME"]) / "sklearn_regression_model.pkl"
        model_copy.write_bytes(model.read_bytes() + version_bytes)  # a new model version, same model
        registered = registry.register("diabetes-bench", model_copy)
        return images.plan_context(
            "mlctl-bench-diabetes", spec.inference, (registered,), base_image=config.base_image()
        )

    started = time.perf_counter()
    builder.build(plan_for(b""), registry, lambda _: None, cache=False)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    second = builder.build(plan_for(b"\n"), registry, lambda _: None)
    warm = time.perf_counter() - started
    size = client.images.get(f"{second['name']}:{second['version']}").attrs["Size"]
    reference = _reference_size(client, plan_for(b"\n\n"), registry)
    deploy = _deploy_seconds(f"{second['name']}:{second['version']}")
    print(f"{'measure':44} {'value':>12} {'goal':>14}")
    print(f"{'cold build (no cache)':44} {cold:11.1f}s {'':>14}")
    print(f"{'rebuild after a model-only change':44} {warm:11.1f}s {f'<= {cold * 0.1:.1f}s (10%)':>14}")
    print(f"{'image size':44} {size / 1e6:10.1f}MB {'':>14}")
    print(f"{'base + environment + app + models, no mlctl':44} {reference / 1e6:10.1f}MB {'':>14}")
    print(f"{'mlctl runtime overhead':44} {(size - reference) / 1e6:10.1f}MB {'<= 20 MB':>14}")
    print(f"{'deploy to ready, image cached':44} {deploy:11.1f}s {'<= 5 s':>14}")
    for image in client.images.list(name="mlctl-bench-diabetes") + client.images.list(name="mlctl-bench-reference"):
        client.images.remove(image.id, force=True)


def _reference_size(client: object, plan: object, registry: object) -> int:
    """Size of base + venv with the spec's own requirements + app + models, without mlctl's runtime."""
    from mlctl import environments, images

    with tempfile.TemporaryDirectory() as tmp:
        context = images.write_context(plan, Path(tmp) / "c", registry)  # type: ignore[arg-type]
        own = [r for r in plan.requirements if r.split("==")[0] not in environments.RUNTIME_PACKAGES]  # type: ignore[attr-defined]
        (context / "requirements.txt").write_text("".join(f"{r}\n" for r in own))
        (context / "Dockerfile").write_text(
            "\n".join(
                [
                    f"FROM {plan.base_image}",  # type: ignore[attr-defined]
                    "COPY requirements.txt /opt/ref/requirements.txt",
                    "RUN python3 -m venv /opt/ref/venv && /opt/ref/venv/bin/pip install --no-cache-dir "
                    "-r /opt/ref/requirements.txt",
                    "COPY app/ /var/azureml-app/",
                    "COPY azureml-models/ /var/azureml-app/azureml-models/",
                    "",
                ]
            )
        )
        image, _ = client.images.build(path=str(context), tag="mlctl-bench-reference:1", network_mode="host", rm=True)  # type: ignore[attr-defined]
    return int(image.attrs["Size"])


def _deploy_seconds(image: str) -> float:
    port = free_port()
    spec = Path(os.environ["MLCTL_HOME"]) / "svc.yaml"
    spec.write_text(
        f"apiVersion: mlctl/v1\nkind: Service\nname: bench-deploy\ntarget: docker\nimage: {image}\n"
        f"deployment_config:\n  port: {port}\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlctl", "-q", "service", "deploy", "-f", str(spec)], check=True)
    elapsed = time.perf_counter() - started
    subprocess.run([sys.executable, "-m", "mlctl", "-q", "service", "delete", "bench-deploy"], check=True)
    return elapsed


if __name__ == "__main__":
    main()
