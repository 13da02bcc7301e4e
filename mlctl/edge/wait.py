"""Waiting for IoT Edge devices and deployments, and reading their state.

A device is done when its ``$edgeAgent`` module twin reports ``lastDesiredVersion`` equal to the
desired ``$version``, ``lastDesiredStatus.code`` 200 and every expected module ``running``
(Azure/iotedge ``AgentState``; wire reference D.6). An at-scale deployment is done when
``appliedCount`` and the ``reportedSuccessfulCount`` metric reach the wanted share of
``targetedCount``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlctl.edge.hub import Hub
from mlctl.errors import DeploymentError, WaitTimeout

POLL_S = 0.5
FAILED = ("backoff", "failed", "dead")


def device_status(hub: Hub, device_id: str) -> dict[str, Any]:
    """What the device's agent reports: connection, desired vs applied version, status, modules.

    Raises:
        NotFoundError: no such device.
    """
    device = hub.device(device_id)
    twin = hub.agent_twin(device_id)
    desired = twin.get("properties", {}).get("desired", {})
    reported = twin.get("properties", {}).get("reported", {})
    modules = {
        name: {
            "runtime_status": m.get("runtimeStatus", "unknown"),
            "exit_code": m.get("exitCode"),
            "restart_count": m.get("restartCount", 0),
            "status_description": m.get("statusDescription", ""),
            "image": (m.get("settings") or {}).get("image"),
        }
        for name, m in (reported.get("modules") or {}).items()
    }
    last = reported.get("lastDesiredStatus") or {}
    return {
        "device_id": device_id,
        "connection_state": device.get("connectionState"),
        "last_activity_time": device.get("lastActivityTime"),
        "reported": "lastDesiredVersion" in reported,
        "desired_version": desired.get("$version"),
        "last_desired_version": reported.get("lastDesiredVersion"),
        "last_desired_status": {"code": last.get("code"), "description": last.get("description", "")},
        "modules": modules,
    }


def wait_device(
    hub: Hub, device_id: str, modules: Sequence[str], *, timeout_s: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Poll until the device runs the desired version with every module in ``modules`` running.

    Raises:
        DeploymentError: phase ``edge agent`` (the agent refused the deployment) or ``module``
            (a module is backoff/failed; its exit code, restart count and description in details).
        WaitTimeout: not done in ``timeout_s``; says whether the device ever reported.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status = device_status(hub, device_id)
        if _done(status, modules):
            return status
        progress(_describe(status))
        if time.monotonic() >= deadline:
            raise _timeout(status, timeout_s)
        time.sleep(POLL_S)


def _done(status: dict[str, Any], modules: Sequence[str]) -> bool:
    if status["last_desired_version"] != status["desired_version"]:
        return False
    last = status["last_desired_status"]
    if last["code"] != 200:
        raise DeploymentError(
            f"the IoT Edge agent of device {status['device_id']} refused the deployment: "
            f"{last['code']} {last['description']}".rstrip(),
            phase="edge agent",
            hint="`mlctl edge status DEVICE` shows what it reports; check the manifest and registry credentials",
        )
    for name in modules:
        module = status["modules"].get(name, {})
        if module.get("runtime_status") in FAILED:
            raise DeploymentError(
                f"module {name} on device {status['device_id']} is {module['runtime_status']}: "
                f"exit code {module.get('exit_code')}, restarted {module.get('restart_count')} time(s)",
                phase="module",
                details=[str(module.get("status_description") or "")],
                hint="the module's own logs are on the device (`iotedge logs MODULE`)",
            )
    return all(status["modules"].get(n, {}).get("runtime_status") == "running" for n in modules)


def _describe(status: dict[str, Any]) -> str:
    if not status["reported"]:
        return f"waiting for device {status['device_id']} to report ({status['connection_state']})"
    running = {n: m["runtime_status"] for n, m in status["modules"].items()}
    return f"version {status['last_desired_version']}/{status['desired_version']} {running}"


def _timeout(status: dict[str, Any], timeout_s: float) -> WaitTimeout:
    device = status["device_id"]
    if not status["reported"]:
        return WaitTimeout(
            f"device {device} never reported in {timeout_s:g}s (connection state: {status['connection_state']})",
            hint="is the IoT Edge runtime installed, provisioned with the device's connection string, and online?",
        )
    return WaitTimeout(
        f"device {device} did not run version {status['desired_version']} in {timeout_s:g}s: {_describe(status)}",
        hint=f"`mlctl edge status {device}` shows the agent's report; wait longer with --timeout",
    )


def deployment_counts(hub: Hub, config_id: str) -> dict[str, Any]:
    """Targeted, applied, reported-successful and reported-failed counts of a deployment.

    Raises:
        NotFoundError: no such deployment.
    """
    config = hub.configuration(config_id)
    system = (config.get("systemMetrics") or {}).get("results") or {}
    custom = (config.get("metrics") or {}).get("results") or {}
    return {
        "id": config_id,
        "priority": config.get("priority"),
        "target_condition": config.get("targetCondition"),
        "labels": config.get("labels") or {},
        "targeted": int(system.get("targetedCount", 0)),
        "applied": int(system.get("appliedCount", 0)),
        "reported_successful": int(custom.get("reportedSuccessfulCount", 0)),
        "reported_failed": int(custom.get("reportedFailedCount", 0)),
        "metrics": {k: v for k, v in custom.items() if k not in ("reportedSuccessfulCount", "reportedFailedCount")},
        "created_time_utc": config.get("createdTimeUtc"),
    }


def wait_deployment(
    hub: Hub, config_id: str, *, min_success: float, timeout_s: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Poll until ``applied`` and ``reported_successful`` reach ``ceil(min_success * targeted)``.

    Raises:
        DeploymentError: phase ``edge agent``: more devices failed than ``min_success`` allows.
        WaitTimeout: not reached in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        counts = deployment_counts(hub, config_id)
        needed = math.ceil(min_success * counts["targeted"])
        if counts["applied"] >= needed and counts["reported_successful"] >= needed:
            return counts
        if counts["reported_failed"] > counts["targeted"] - needed:
            raise DeploymentError(
                f"deployment {config_id}: {counts['reported_failed']} of {counts['targeted']} device(s) failed",
                phase="edge agent",
                hint="`mlctl edge status DEVICE` on a failed device shows why",
            )
        progress(_counts_text(counts))
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"deployment {config_id} did not reach {needed} device(s) in {timeout_s:g}s: {_counts_text(counts)}",
                hint="wait longer with --timeout, or accept fewer with --min-success",
            )
        time.sleep(POLL_S)


def _counts_text(c: dict[str, Any]) -> str:
    return (
        f"targeted {c['targeted']}, applied {c['applied']}, "
        f"successful {c['reported_successful']}, failed {c['reported_failed']}"
    )
