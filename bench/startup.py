"""Start-up cost of the CLI against a bare interpreter, measured in the same run.

A benchmark, not a test: it prints numbers; record them in docs/benchmarks.md with this command.

    python bench/startup.py [--runs 30]

Goals (issue: a CLI that CI pipelines can trust): ``mlctl --help`` at most 8x ``python -c pass``,
``mlctl spec validate`` of the examples at most 15x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOALS = {"mlctl --help": 8.0, "mlctl spec validate (examples)": 15.0}


def median_seconds(command: list[str], runs: int) -> float:
    """Median wall time of ``command`` over ``runs`` runs, after two warm-up runs."""
    times = []
    for i in range(runs + 2):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if i >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    mlctl = shutil.which("mlctl", path=str(Path(sys.executable).parent)) or shutil.which("mlctl")
    if mlctl is None:
        sys.exit("mlctl is not installed next to this interpreter: pip install -e . first")
    specs = sorted(str(p) for p in (REPO / "specs" / "examples").glob("*/service.yaml"))
    base = median_seconds([sys.executable, "-c", "pass"], args.runs)
    rows = [("python -c pass", base)]
    rows.append(("mlctl --help", median_seconds([mlctl, "--help"], args.runs)))
    rows.append(("mlctl spec validate (examples)", median_seconds([mlctl, "spec", "validate", *specs], args.runs)))
    print(f"{'command':34} {'median ms':>10} {'ratio':>7} {'goal':>6}")
    for name, seconds in rows:
        goal = GOALS.get(name)
        print(f"{name:34} {seconds * 1000:10.1f} {seconds / base:6.1f}x {f'{goal:.0f}x' if goal else '':>6}")


if __name__ == "__main__":
    main()
