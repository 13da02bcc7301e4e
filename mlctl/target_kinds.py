"""The compute target kinds: the table of driver modules and the retired kinds.

Apart from the driver contract (``mlctl.targets``) so that checking a spec's ``target`` (``mlctl
spec validate``, resolving a target's name) loads neither the contract nor any driver.
"""

from __future__ import annotations

# kind -> module defining ``Driver``; imported lazily so `mlctl --help` loads no target SDK.
TARGETS: dict[str, str] = {
    "process": "mlctl.targets.process",
    "docker": "mlctl.targets.docker",
    "aci": "mlctl.targets.aci",
    "kubernetes": "mlctl.targets.kubernetes",
}

# Target kinds Azure ML had and retired: asking for one is refused (exit 6) with its successor.
RETIRED: dict[str, tuple[str, str]] = {
    kind: (
        f"compute target {kind!r} (Azure ML's FPGA deployment, Project Brainwave) is retired: Azure "
        "ended FPGA inference, so no one can run it",
        "serve the model on GPUs with deployment_config.gpu_cores (docker target; kubernetes), or "
        "convert it to ONNX and serve it with ONNX Runtime (onnxruntime in the conda file)",
    )
    for kind in ("fpga", "brainwave")
}


def refuse_retired(kind: str) -> None:
    """Raise TargetError (exit 6) naming the successor when ``kind`` is a retired target kind."""
    from mlctl.errors import TargetError

    if kind.lower() in RETIRED:
        message, hint = RETIRED[kind.lower()]
        raise TargetError(message, hint=hint)
