"""``edge push`` to one device: each mlctl image must have a variant for the device's platform.

The device's platform comes from its ``$edgeAgent`` reported properties, ``runtime.platform``
(``os``, ``architecture``), which edgeAgent fills from its container engine's system information
(``uname -m`` names: ``x86_64``, ``aarch64``, ``armv7l``). A device that has never connected has
none: then mlctl warns and sends. Images not built by mlctl (a registry reference) are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlctl import platforms
from mlctl.edge.hub import Hub
from mlctl.errors import TargetError
from mlctl.output import Reporter
from mlctl.registry import Registry


def device_platform(hub: Hub, device_id: str) -> tuple[str | None, str | None]:
    """``(platform, reported architecture)`` of a device from its ``$edgeAgent`` twin; the
    platform is None when nothing (or an unknown architecture) is reported."""
    twin = hub.agent_twin(device_id)
    reported = (twin.get("properties") or {}).get("reported") or {}
    platform = ((reported.get("runtime") or {}).get("platform")) or {}
    architecture = platform.get("architecture")
    return platforms.from_architecture(architecture, platform.get("os") or "linux"), architecture


def check(
    hub: Hub, device_id: str, images: Mapping[str, str], registry: Registry, reporter: Reporter
) -> dict[str, Any]:
    """Refuse to send images with no variant for ``device_id``'s platform; ``images`` is module ->
    pulled reference (as ``deploy.resolve_images`` returns). Returns ``{"platform",
    "architecture"}`` of the device (None when unknown, after a warning).

    Raises:
        TargetError: (exit 6) an mlctl image has no variant for the reported platform.
    """
    platform, architecture = device_platform(hub, device_id)
    if platform is None:
        what = f"an unknown architecture ({architecture})" if architecture else "no architecture yet"
        reporter.warn(
            f"device {device_id} reports {what} (runtime.platform in its $edgeAgent twin): the images' "
            "platforms cannot be checked; a device of another architecture cannot run them"
        )
        return {"platform": None, "architecture": architecture}
    records = {str(r.get("pushed")): r for r in registry.images() if r.get("pushed")}
    for module, ref in images.items():
        record = records.get(ref)
        if record is None:
            continue  # not an mlctl image: its platforms are the registry's business
        built = list(record.get("platforms") or [])
        if not built:
            reporter.warn(f"module {module}: image {record['name']}:{record['version']} records no platform")
        elif platform not in built:
            name = f"{record['name']}:{record['version']}"
            raise TargetError(
                f"module {module}: image {name} has no variant for device {device_id}, which is "
                f"{platform} ({architecture}); it was built for {', '.join(built)}",
                hint=f"build it for that platform: `mlctl image build --platform {platform}` "
                f"(or --platform {','.join([*built, platform])} for one image for all), then use the new version",
            )
    return {"platform": platform, "architecture": architecture}
