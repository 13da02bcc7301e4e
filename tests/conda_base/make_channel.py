"""Build a local conda channel for the tests' conda base image, with packages made from this image.

Packages (conda's package format: a ``.tar.bz2`` holding ``info/index.json``, ``info/paths.json``,
``info/files`` and the payload), all ``linux-64``:

- ``python``: a prefix whose ``bin/python`` runs the image's own Python 3 as a virtual environment
  of that prefix (``pyvenv.cfg``), so PREFIX/lib/pythonX.Y/site-packages is the environment's;
- ``pip``: pip, from the wheel Debian ships for ``ensurepip``, unpacked into that site-packages;
- ``mlctl-conda-probe``: a conda-only package (not on PyPI): module ``mlctl_conda_probe``.

Usage: python make_channel.py CHANNEL_DIR, then index it (rattler.index.index_fs).
"""

import hashlib
import io
import json
import sys
import tarfile
import time
import zipfile
from pathlib import Path

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"lib/python{PY}/site-packages"


def package(channel: Path, name: str, version: str, files: dict[str, bytes | str], depends: list[str]) -> None:
    """Write NAME-VERSION-0.tar.bz2; ``files`` maps a prefix path to its bytes, or to a symlink target (str)."""
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": depends,
        "subdir": "linux-64",
        "platform": "linux",
        "arch": "x86_64",
        "license": "MIT",
        "timestamp": int(time.time() * 1000),
    }
    paths = []
    for path, content in sorted(files.items()):
        if isinstance(content, str):
            paths.append({"_path": path, "path_type": "softlink"})
        else:
            paths.append(
                {
                    "_path": path,
                    "path_type": "hardlink",
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "size_in_bytes": len(content),
                }
            )
    meta = {
        "info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted(files)).encode(),
    }
    out = channel / "linux-64" / f"{name}-{version}-0.tar.bz2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2") as tar:
        for path, content in [*meta.items(), *sorted(files.items())]:
            info = tarfile.TarInfo(path)
            info.mtime = int(time.time())
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755 if path.startswith("bin/") else 0o644
                tar.addfile(info, io.BytesIO(content))


def main(channel: Path) -> None:
    interpreter = f"/usr/bin/python{PY}"
    version = sys.version.split()[0]
    package(
        channel,
        "python",
        version,
        {
            "bin/python": interpreter,
            "bin/python3": interpreter,
            f"bin/python{PY}": interpreter,
            "pyvenv.cfg": f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n".encode(),
        },
        [],
    )
    wheel = sorted(Path("/usr/share/python-wheels").glob("pip-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as zf:
        pip_files = {f"{SITE}/{n}": zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    package(channel, "pip", wheel.name.split("-")[1], pip_files, [f"python {PY}.*"])
    probe = b'"""A conda-only package: installed by conda, unknown to PyPI."""\nSOURCE = "conda"\n'
    package(channel, "mlctl-conda-probe", "1.0", {f"{SITE}/mlctl_conda_probe.py": probe}, [f"python {PY}.*"])
    (channel / "noarch").mkdir(exist_ok=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
