"""A module's logs and restarts through the IoT Edge agent's built-in direct methods.

The hub relays the call to the device's ``$edgeAgent`` module (``Hub.invoke_module_method``), as
``az iot hub invoke-module-method -m '$edgeAgent' --method-name GetModuleLogs|RestartModule``.
Payloads as the agent reads them (Azure/iotedge edge-agent ``Core/requests``: schema 1.0):

* ``GetModuleLogs`` ``{"schemaVersion": "1.0", "items": [{"id": REGEX, "filter": {"tail": N,
  "since": S, "until": S}}], "encoding": "none", "contentType": "text"}`` answers a list of
  ``{"id": MODULE, "payload": TEXT}``, one per module whose name the (case-insensitive,
  unanchored) regex matches -- so mlctl sends ``^NAME$``; none is an empty list. At most 127000
  characters of logs fit (else 400).
* ``RestartModule`` ``{"schemaVersion": "1.0", "id": MODULE}`` answers 200 with no payload; an
  unknown module is 500 "Module X not found in the current environment".

The agent answers errors as ``{"message": ...}`` with 400 (bad request) or 500 (anything else).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from mlctl.edge.hub import Hub
from mlctl.errors import NotFoundError, TargetError

AGENT = "$edgeAgent"
SCHEMA = "1.0"
FOLLOW_POLL_S = 1.0
_KEEP = 5000  # lines remembered to find where a new window starts
_DURATION = re.compile(r"^(\s*\d+\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?|w|weeks?))+\s*$")


def check_since(text: str) -> str:
    """``text`` unchanged when the agent can read it as a ``since``/``until`` (edgelet
    ``parse_since``): a duration back from now (``15m``, ``2h``, ``1h 30m``, ``3d``), an RFC 3339
    time (``2024-05-01T12:00:00Z``) or a unix time in seconds.

    Raises:
        ValueError: none of these, with what is accepted.
    """
    if _DURATION.match(text) or text.strip().isdigit():
        return text.strip()
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None or "T" not in text.upper():
        raise ValueError(f"{text!r} is not a duration (15m, 2h, 1h 30m), an RFC 3339 time or a unix time")
    return text.strip()


def module_logs(
    hub: Hub,
    device_id: str,
    module: str,
    *,
    tail: int | None = None,
    since: str | None = None,
    until: str | None = None,
    timeout_s: int = 30,
    connect_timeout_s: int = 0,
) -> dict[str, Any]:
    """The module's log lines, read by the device's agent (``GetModuleLogs``).

    Returns:
        ``{"device_id", "module", "filter": {tail, since, until}, "lines": [str]}`` (the lines
        without their line ends, oldest first).

    Raises:
        NotFoundError: no such device, or the agent runs no module of that name.
        TargetError: the device is not connected, or its agent refused the request (e.g. more
            than 127000 characters of logs: narrow it with ``tail``/``since``).
        WaitTimeout: no answer within ``timeout_s``.
    """
    log_filter = {k: v for k, v in (("tail", tail), ("since", since), ("until", until)) if v is not None}
    payload = {
        "schemaVersion": SCHEMA,
        "items": [{"id": f"^{re.escape(module)}$", "filter": log_filter}],
        "encoding": "none",
        "contentType": "text",
    }
    status, answer = _invoke(hub, device_id, "GetModuleLogs", payload, timeout_s, connect_timeout_s)
    if status != 200:
        raise _refused(hub, device_id, module, "GetModuleLogs", status, answer)
    found = [a for a in answer or [] if isinstance(a, dict) and str(a.get("id", "")).lower() == module.lower()]
    if not found:
        raise _no_module(hub, device_id, module)
    text = str(found[0].get("payload") or "")
    return {"device_id": device_id, "module": module, "filter": log_filter, "lines": text.splitlines()}


def follow_logs(
    hub: Hub,
    device_id: str,
    module: str,
    *,
    tail: int | None = None,
    since: str | None = None,
    timeout_s: int = 30,
    connect_timeout_s: int = 0,
) -> Iterator[str]:
    """The module's lines as ``module_logs`` gives them, then every new line, polling forever.

    A direct method cannot stream, so every ``FOLLOW_POLL_S`` mlctl asks again for the lines of a
    window reaching back past the previous call (``since`` as a duration: the device's clock, not
    this host's) and prints only the lines after the run it printed already (``_overlap``).
    Raises as ``module_logs``.
    """

    def read(tail: int | None, since: str | None) -> list[str]:
        doc = module_logs(
            hub, device_id, module, tail=tail, since=since, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s
        )
        return list(doc["lines"])

    started = time.monotonic()
    printed = read(tail, since)
    yield from printed
    while True:
        time.sleep(FOLLOW_POLL_S)
        window = math.ceil(time.monotonic() - started) + 2
        started = time.monotonic()
        lines = read(None, f"{window}s")
        new = lines[_overlap(printed, lines) :]
        yield from new
        printed = (printed + new)[-_KEEP:]


def _overlap(printed: list[str], lines: list[str]) -> int:
    """How many of ``lines`` (a window of the log) were printed already: the largest j such that
    ``lines[:j]`` ends with the end of ``printed`` (all of ``printed``, or all of ``lines[:j]``)."""
    if not printed:
        return 0
    for j in range(len(lines), 0, -1):
        k = min(j, len(printed))
        if lines[j - k : j] == printed[len(printed) - k :]:
            return j
    return 0


def restart_module(
    hub: Hub, device_id: str, module: str, *, timeout_s: int = 30, connect_timeout_s: int = 0
) -> dict[str, Any]:
    """Restart the module's container on the device (``RestartModule``); returns once the agent did.

    Returns:
        ``{"device_id", "module", "restarted": true}``.

    Raises:
        as ``module_logs`` (NotFoundError for a module the agent does not run).
    """
    payload = {"schemaVersion": SCHEMA, "id": module}
    status, answer = _invoke(hub, device_id, "RestartModule", payload, timeout_s, connect_timeout_s)
    if status != 200:
        raise _refused(hub, device_id, module, "RestartModule", status, answer)
    return {"device_id": device_id, "module": module, "restarted": True}


def _invoke(hub: Hub, device_id: str, method: str, payload: Any, timeout_s: int, connect_s: int) -> tuple[int, Any]:
    return hub.invoke_module_method(device_id, AGENT, method, payload, timeout_s=timeout_s, connect_timeout_s=connect_s)


def _refused(hub: Hub, device_id: str, module: str, method: str, status: int, answer: Any) -> Exception:
    message = str(answer.get("message", "")) if isinstance(answer, dict) else str(answer or "")
    if "not found in the current environment" in message:
        return _no_module(hub, device_id, module)
    hint = "rerun with --debug for details"
    if "payload is too large" in message:
        message = message.split("\n")[0]
        hint = "ask for fewer lines: --tail N or --since 10m"
    return TargetError(
        f"the IoT Edge agent of device {device_id} refused {method} ({status}): {message[:300]}", hint=hint
    )


def _no_module(hub: Hub, device_id: str, module: str) -> NotFoundError:
    reported = hub.agent_twin(device_id).get("properties", {}).get("reported", {})
    names = sorted(reported.get("modules") or {})
    listed = f"it runs {', '.join(names)}" if names else "it reports no modules"
    return NotFoundError(
        f"module {module} does not run on device {device_id}",
        hint=f"{listed} (`mlctl edge status {device_id}`)",
    )
