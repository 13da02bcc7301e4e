"""The kubernetes target's lifecycle times on the test cluster (scripts/k8s-up.sh), for the
diabetes example with 2 replicas (autoscaling, minimum 2), the image already pushed.

A benchmark, not a test: it prints numbers; record them in docs/benchmarks.md with this command.

    MLCTL_BASE_IMAGE=mlctl-test/python:bookworm python bench/kubernetes.py [--runs 3]

Measures, each as the wall time of the ``mlctl`` command (CLI start-up included):
deploy to available (and /readyz through a port-forward), an update rolled out (a changed
environment variable: a new pod template, same image), and a failed update rolled back
(``AZUREML_MODEL_DIR`` pointing nowhere: init() raises, CrashLoopBackOff, the old pods restored).
Uses its own MLCTL_HOME and namespace ``k8s-bench-*``, deleted at the end.

``--autoscale cpu|concurrency`` measures autoscaling instead (the test cluster's metrics APIs from
tests/metrics_api.py, served and registered for the run): a service of 1 to 2 replicas
(tests/k8s_autoscale.py: ``autoscale_metric`` and its target, ``autoscale_refresh_seconds`` 1, HPA
stabilization windows 0), then per run the time from load start until the second replica is
ready, and from load end until the Deployment is back to 1 replica. The settings are printed.

    MLCTL_BASE_IMAGE=mlctl-test/python:bookworm python bench/kubernetes.py --autoscale concurrency --runs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KUBECONFIG = "/tmp/k8s/kubeconfig"
SETS = ["--set", "target=k8s-bench", "--set", "deployment_config.autoscale_min_replicas=2",
        "--set", "deployment_config.period_seconds=1"]  # fmt: skip


def mlctl(*args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run the CLI; returns (seconds, the finished process)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlctl", *args], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if check and proc.returncode != 0:
        sys.exit(f"mlctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, proc


def image_spec(folder: Path, image: str, env: dict[str, str]) -> Path:
    """A Service spec running the already pushed ``image``."""
    spec = {
        "apiVersion": "mlctl/v1", "kind": "Service", "name": "diabetes", "target": "k8s-bench", "image": image,
        "deployment_config": {"port": 8890, "workers": 2, "autoscale_min_replicas": 2, "period_seconds": 1,
                              "environment_variables": env},
    }  # fmt: skip
    path = folder / "image.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--autoscale", choices=["cpu", "concurrency"], help="measure autoscaling on this metric")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent  # this file is kubernetes.py: keep it from shadowing the package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if args.autoscale:
        autoscale(args.autoscale, args.runs)
        return
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(KUBECONFIG))
    namespace = f"k8s-bench-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="k8s-bench-"))
    os.environ.update(MLCTL_HOME=str(work / "home"), KUBECONFIG=KUBECONFIG, MLCTL_REGISTRY="127.0.0.1:5000")
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        time.sleep(2)  # the namespace's default ServiceAccount
        mlctl("target", "add", "k8s-bench", "--kind", "kubernetes", "--option", f"namespace={namespace}")
        example = work / "diabetes"
        shutil.copytree(REPO / "specs/examples/diabetes", example)
        if not (example / "sklearn_regression_model.pkl").exists():
            subprocess.run([sys.executable, str(example / "train.py")], check=True, capture_output=True)
        _, first = mlctl(
            "-o", "json", "service", "deploy", "-f", str(example / "service.yaml"), *SETS
        )  # builds, pushes
        image = json.loads(first.stdout)["image"].rpartition("/")[2]
        mlctl("service", "delete", "diabetes")
        times: dict[str, list[float]] = {
            "deploy to available": [],
            "update rolled out": [],
            "failed update rolled back": [],
        }
        for run in range(args.runs):
            ok = image_spec(work, image, {"RUN": str(run)})
            times["deploy to available"].append(mlctl("service", "deploy", "-f", str(ok))[0])
            updated = image_spec(work, image, {"RUN": f"{run}-updated"})
            times["update rolled out"].append(mlctl("service", "update", "-f", str(updated))[0])
            broken = image_spec(work, image, {"RUN": f"{run}-broken", "AZUREML_MODEL_DIR": "/nonexistent"})
            seconds, proc = mlctl("service", "update", "-f", str(broken), check=False)
            if proc.returncode != 7:
                sys.exit(f"the broken update should exit 7, got {proc.returncode}:\n{proc.stderr}")
            times["failed update rolled back"].append(seconds)
            mlctl("service", "delete", "diabetes")
        print(f"kubernetes target, diabetes, 2 replicas, image {image} already pushed, {args.runs} runs")
        print(f"{'measure':28} {'median s':>9} {'min s':>7} {'max s':>7}")
        for measure, values in times.items():
            print(f"{measure:28} {statistics.median(values):9.1f} {min(values):7.1f} {max(values):7.1f}")
    finally:
        mlctl("service", "delete", "diabetes", check=False)
        core.delete_namespace(namespace)
        shutil.rmtree(work, ignore_errors=True)


def autoscale(metric: str, runs: int) -> None:
    """Time scale-up under load and scale-down after it (see the module docstring)."""
    sys.path.insert(0, str(REPO / "tests"))
    from k8s_autoscale import LOADS, METRIC_SETS, load, short_windows, wait_replicas, write_service
    from kubernetes import client, config
    from metrics_api import running

    api = config.new_client_from_config(KUBECONFIG)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    namespace = f"k8s-bench-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="k8s-bench-"))
    os.environ.update(MLCTL_HOME=str(work / "home"), KUBECONFIG=KUBECONFIG, MLCTL_REGISTRY="127.0.0.1:5000")
    core.create_namespace({"metadata": {"name": namespace}})
    times: dict[str, list[float]] = {"load start -> 2nd replica ready": [], "load end -> back to 1 replica": []}
    try:
        time.sleep(2)  # the namespace's default ServiceAccount
        mlctl("target", "add", "k8s-bench", "--kind", "kubernetes", "--option", f"namespace={namespace}")
        with contextlib.contextmanager(running)(api, work):
            mlctl("service", "deploy", "-f", str(write_service(work / "svc", "k8s-bench", metric)))
            short_windows(api, namespace)
            for _ in range(runs):
                if wait_replicas(apps, namespace, 1, 180) is None:
                    sys.exit("the service did not settle at 1 replica")
                with load(api, namespace, metric, limit_s=240):
                    up = wait_replicas(apps, namespace, 2, 240)
                down = wait_replicas(apps, namespace, 1, 240)
                if up is None or down is None:
                    sys.exit(f"no scaling seen (up {up}, down {down})")
                times["load start -> 2nd replica ready"].append(up)
                times["load end -> back to 1 replica"].append(down)
        body, clients, pause = LOADS[metric]
        print(f"kubernetes target, autoscale_metric {metric}: {METRIC_SETS[metric]}, cpu_cores 0.1, 1-2 replicas,")
        print("autoscale_refresh_seconds 1, HPA stabilization windows 0 s, HPA controller sync period 15 s (default);")
        print(f"load: {clients} client(s) posting {json.dumps(body)} back to back (pause {pause} s); {runs} runs")
        print(f"{'measure':34} {'median s':>9} {'min s':>7} {'max s':>7}")
        for measure, values in times.items():
            print(f"{measure:34} {statistics.median(values):9.1f} {min(values):7.1f} {max(values):7.1f}")
    finally:
        mlctl("service", "delete", "k8s-scale", check=False)
        core.delete_namespace(namespace)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
