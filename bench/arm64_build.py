"""Image build times of the diabetes example for linux/amd64 (native) and linux/arm64 (QEMU user
emulation) — a benchmark, not a test.

    python bench/arm64_build.py [--arm64-base IMAGE] [--amd64-base IMAGE] [--platforms LIST]

Prints, per platform: the cold build (no layer cache: the environment's pip install runs, under
emulation for arm64) and the rebuild after a model-only change (cached environment), plus the
image size. Needs a Docker engine with both base images and qemu-aarch64 in binfmt_misc
(`bash scripts/docker-up.sh` as root), and scikit-learn (to train the model). Builds are run one
after the other; the images it builds (arm-bench-diabetes) are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "specs" / "examples" / "diabetes"
NAME = "arm-bench-diabetes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amd64-base", default="mlctl-test/python:bookworm")
    parser.add_argument("--arm64-base", default="mlctl-test/python:bookworm-arm64")
    parser.add_argument("--platforms", default="linux/amd64,linux/arm64")
    args = parser.parse_args()
    os.environ["MLCTL_HOME"] = tempfile.mkdtemp(prefix="mlctl-bench-arm64-")
    import docker

    from mlctl import builder, images, platforms
    from mlctl.home import mlctl_home
    from mlctl.registry import Registry
    from mlctl.spec import ServiceSpec, load_one

    subprocess.run([sys.executable, str(EXAMPLE / "train.py")], check=True, capture_output=True)
    registry = Registry(mlctl_home())
    spec = load_one([EXAMPLE / "service.yaml"], ServiceSpec)
    assert spec.inference is not None
    model = EXAMPLE / "sklearn_regression_model.pkl"
    bases = {"linux/amd64": args.amd64_base, "linux/arm64": args.arm64_base}
    client = docker.from_env()

    def plan_for(extra: bytes) -> images.ContextPlan:
        copy = Path(os.environ["MLCTL_HOME"]) / "sklearn_regression_model.pkl"
        copy.write_bytes(model.read_bytes() + extra)  # a new model version, same model
        registered = registry.register("diabetes-bench", copy)
        return images.plan_context(NAME, spec.inference, (registered,), base_image=args.amd64_base)

    rows = []
    try:
        for platform in platforms.parse_list([args.platforms]):
            options = {"platforms": (platform,), "bases": bases}
            started = time.perf_counter()
            builder.build(plan_for(platform.encode()), registry, lambda _: None, cache=False, **options)
            cold = time.perf_counter() - started
            started = time.perf_counter()
            rebuilt = builder.build(plan_for(platform.encode() * 2), registry, lambda _: None, **options)
            warm = time.perf_counter() - started
            rows.append((platform, cold, warm, int(rebuilt["size"] or 0)))
    finally:
        for image in client.images.list(name=NAME):
            client.images.remove(image.id, force=True, noprune=True)
    print(f"{'platform':14} {'cold build':>12} {'model-only rebuild':>19} {'image size':>11}")
    for platform, cold, warm, size in rows:
        print(f"{platform:14} {cold:11.1f}s {warm:18.1f}s {size / 1e6:9.1f}MB")


if __name__ == "__main__":
    main()
