"""Model registration against one SHA-256 pass and one copy of the same file, in the same run.

A benchmark, not a test: it prints numbers; record them in docs/benchmarks.md with this command.

    python bench/register.py [--size-mb 1024] [--rounds 3]

Baselines, each the median of ``--rounds`` interleaved rounds over the same (page-cached) file:

* ``sha256 pass``: read the file and hash it (hashlib, 1 MiB ``readinto``), as ``sha256sum`` does;
* ``copy pass``: read, hash and write it to a new file on the registry's disk, then ``fsync``,
  which is the least a crash-safe store of new content can do.

Measured: ``Registry.register`` of new content (a fresh MLCTL_HOME each round) and of identical
content (the same file again, another model name), in-process; and the ``mlctl model register``
console command for both, which adds the CLI's start-up. Goals (issue "speed to the floor"):
identical ≤ 1.2x the sha256 pass, new ≤ 1.2x the copy pass.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20
GOALS = {"register identical": ("sha256 pass", 1.2), "register new": ("copy pass", 1.2)}


def sha256_pass(path: Path) -> None:
    """One read-and-hash pass over ``path``."""
    digest, buffer = hashlib.sha256(), bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])


def copy_pass(path: Path, dest: Path) -> None:
    """Read, hash and write ``path`` to ``dest``, then fsync it (and remove it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, buffer = hashlib.sha256(), bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as src, dest.open("wb", buffering=0) as out:
        while n := src.readinto(buffer):
            digest.update(view[:n])
            out.write(view[:n])
        os.fsync(out.fileno())
    dest.unlink()


def timed(action: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(command: list[str], env: dict[str, str]) -> None:
    """Run a console command quietly; fail loudly."""
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def one_round(model: Path, folder: Path, mlctl: str, record: Callable[[str, float], None]) -> None:
    """One interleaved round of every measurement, each register into a new MLCTL_HOME."""
    from mlctl.registry import Registry

    registry = Registry(folder / "home")
    record("sha256 pass", timed(lambda: sha256_pass(model)))
    record("copy pass", timed(lambda: copy_pass(model, folder / "copy.bin")))
    record("register new", timed(lambda: registry.register("m", model)))
    record("register identical", timed(lambda: registry.register("again", model)))
    env = {**os.environ, "MLCTL_HOME": str(folder / "cli-home")}
    command = [mlctl, "-q", "model", "register", "--path", str(model), "--name"]
    record("mlctl model register new", timed(lambda: run([*command, "m"], env)))
    record("mlctl model register identical", timed(lambda: run([*command, "n"], env)))
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    mlctl = shutil.which("mlctl", path=str(Path(sys.executable).parent)) or "mlctl"
    work = Path(tempfile.mkdtemp(prefix="mlctl-bench-register-", dir=os.environ.get("BENCH_DIR")))
    model = work / "model.bin"
    with model.open("wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(CHUNK))
    sha256_pass(model)  # into the page cache, as every measured pass reads it from there
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)

    try:
        for i in range(args.rounds):
            one_round(model, work / f"round-{i}", mlctl, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(times) for name, times in results.items()}
    print(f"file: {args.size_mb} MiB, median of {args.rounds} interleaved rounds, disk of {work.parent}")
    print(f"{'what':32} {'median s':>9} {'ratio':>22} {'goal':>6}")
    for name, seconds in medians.items():
        base, goal = GOALS.get(name.removeprefix("mlctl model "), (None, None))
        ratio = f"{seconds / medians[base]:.2f}x {base}" if base else ""
        print(f"{name:32} {seconds:9.3f} {ratio:>22} {f'{goal}x' if goal and 'mlctl' not in name else '':>6}")


if __name__ == "__main__":
    main()
