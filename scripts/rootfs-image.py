#!/usr/bin/env python3
"""Write a one-layer image of a root file system tarball as a `docker load` archive on stdout,
with the image config's architecture set (the engine 20.10's `docker import` records its own
architecture whatever `--platform` says, so a foreign base image would pass for a native one).

    python3 scripts/rootfs-image.py ROOTFS.tar IMAGE linux/arm64 | docker load

The config: os/architecture[/variant] from the platform, ENV PATH and LANG, CMD ["python3"] (as
base-image.sh's `docker import --change` lines give the native one). Standard library only.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import sys
import tarfile


def main() -> None:
    rootfs, image, platform = sys.argv[1:4]
    os_name, architecture, *variant = platform.split("/")
    digest = hashlib.sha256()
    with open(rootfs, "rb") as layer:
        for block in iter(lambda: layer.read(1 << 20), b""):
            digest.update(block)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": architecture,
        **({"variant": variant[0]} if variant else {}),
        "os": os_name,
        "created": now,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
            "Cmd": ["python3"],
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        "history": [{"created": now, "created_by": f"scripts/base-image.sh (debootstrap, {platform})"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [image], "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as archive:
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        archive.add(rootfs, arcname="layer/layer.tar")


if __name__ == "__main__":
    main()
