"""Image platforms (``OS/ARCH[/VARIANT]``, as in OCI image indexes): parsing, the names engines and
devices use for architectures, and the local tags of a multi-platform image version.

A local Docker engine holds one platform per tag, so an image version built for several platforms
is kept as one image per platform, tagged ``NAME:N-<suffix>`` (``NAME:3-amd64``, ``NAME:3-arm64``,
``NAME:3-arm-v7``), and ``NAME:N`` is the variant of the engine's own platform (else the first one
built). Pushed, the version is one image index (a Docker manifest list) ``REGISTRY/NAME:N``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mlctl.errors import SpecError

# Architecture names as reported by `uname -m` / Docker's `docker info` (what edgeAgent reports in
# runtime.platform.architecture), Debian and Go -> the OCI ``architecture[/variant]``.
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "arm64/v8": "arm64",
    "armv7l": "arm/v7",
    "armv7": "arm/v7",
    "armhf": "arm/v7",
    "arm": "arm/v7",
    "arm/v7": "arm/v7",
    "armv6l": "arm/v6",
    "arm/v6": "arm/v6",
}
SUPPORTED = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def normalize(text: str) -> str:
    """``linux/aarch64``, ``linux/arm64/v8``, ``arm64`` -> ``linux/arm64`` (the OCI name).

    Raises:
        SpecError: not ``linux/ARCH`` with a known architecture.
    """
    value = text.strip().lower()
    os_name, _, arch = value.partition("/") if "/" in value else ("linux", "", value)
    normal = _ARCHITECTURES.get(arch)
    if os_name != "linux" or normal is None:
        raise SpecError(
            f"{text!r} is not a platform mlctl builds for",
            hint=f"give one of {', '.join(SUPPORTED)} (several: comma-separated or --platform repeated)",
        )
    return f"linux/{normal}"


def parse_list(values: Iterable[str]) -> tuple[str, ...]:
    """``--platform`` values (each may be comma-separated) -> normalized platforms, first
    occurrence order, no duplicates. Raises SpecError (see ``normalize``)."""
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                platform = normalize(part)
                if platform not in found:
                    found.append(platform)
    return tuple(found)


def parse_bases(values: Iterable[str]) -> dict[str, str]:
    """``--platform-base PLATFORM=IMAGE`` values -> {normalized platform: image}.

    Raises:
        SpecError: a value without ``=`` or with an unknown platform.
    """
    bases: dict[str, str] = {}
    for value in values:
        platform, sep, image = value.partition("=")
        if not sep or not image.strip():
            raise SpecError(f"--platform-base {value!r}: expected PLATFORM=IMAGE", hint="e.g. linux/arm64=python:3.11")
        bases[normalize(platform)] = image.strip()
    return bases


def from_architecture(architecture: str | None, os_name: str | None = "linux") -> str | None:
    """The platform of a machine from its reported architecture (``x86_64``, ``aarch64``,
    ``armv7l``, ...) and OS; None when either is missing or unknown."""
    if not architecture:
        return None
    normal = _ARCHITECTURES.get(architecture.strip().lower())
    if normal is None or (os_name or "linux").lower() != "linux":
        return None
    return f"linux/{normal}"


def of_image(attrs: Mapping[str, object]) -> str:
    """The platform of a local image from its engine inspect document (``Os``, ``Architecture``,
    ``Variant``)."""
    arch = str(attrs.get("Architecture") or "amd64")
    variant = attrs.get("Variant")
    if arch == "arm" and variant:
        arch = f"arm/{variant}"
    return f"{attrs.get('Os') or 'linux'}/{_ARCHITECTURES.get(arch, arch)}"


def suffix(platform: str) -> str:
    """The local tag suffix of a platform's variant: ``linux/arm/v7`` -> ``arm-v7``."""
    return platform.split("/", 1)[1].replace("/", "-")


def oci(platform: str) -> dict[str, str]:
    """An image index entry's ``platform`` object: ``{"os", "architecture"[, "variant"]}``."""
    os_name, arch, *variant = platform.split("/")
    return {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}
