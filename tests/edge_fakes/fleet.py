"""Provisioning for the tests: a simulated device for each ``*.connection-string`` file in a folder."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_fakes.device import SimulatedDevice


@contextmanager
def provisioned(
    folder: Path, ca_file: Path, engine: Any, offsets: Mapping[str, int]
) -> Iterator[dict[str, SimulatedDevice]]:
    """While the block runs, every connection string file written to ``folder`` gets a running
    simulated device (port offset from ``offsets``, by device id, default 0); all are stopped and
    their containers removed afterwards. Yields the running devices by id."""
    devices: dict[str, SimulatedDevice] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for file in folder.glob("*.connection-string"):
                device_id = file.name.removesuffix(".connection-string")
                if device_id not in devices and file.stat().st_size:
                    text = file.read_text()
                    devices[device_id] = SimulatedDevice(
                        text, ca_file, engine, port_offset=offsets.get(device_id, 0)
                    ).start()
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield devices
    finally:
        stop.set()
        watcher.join(10)
        for device in devices.values():
            device.stop()
