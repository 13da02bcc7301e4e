"""Start-up cost of the installed ``mlctl`` console script against the imports it cannot avoid.

A benchmark, not a test: it prints numbers; record them in docs/benchmarks.md with this command.

    python bench/startup.py [--runs 15] [--venv DIR]

Measured as users run it: the ``mlctl`` console script of a regular (non-editable)
``pip install .`` in a fresh virtual environment (made in ``--venv``, default a temporary folder;
an existing one is reused), median wall time of ``--runs`` runs after two warm-ups, all commands
interleaved so that machine noise hits each alike; the CPU time (user + system) of each is printed
too, being less disturbed by other tenants of a shared machine. Baselines, in the same environment:
``python -c "import typer"`` (the floor of ``mlctl --help``: Typer is the card's choice) and
``python -c "import typer, ruamel.yaml, jsonschema"`` (the libraries ``spec validate`` must load).
Goals (issue "speed to the floor"): both ratios at most 1.25x.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL = 1.25


def fresh_install(venv: Path) -> Path:
    """A virtual environment with mlctl installed from this checkout (reused when present)."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mlctl").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO)], check=True)
    return python


def median_times(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall seconds and median CPU seconds (user + system of the process) of each command,
    runs interleaved, after two warm-up rounds. CPU time is less disturbed by other tenants of a
    shared machine than wall time (it still counts what they cost in caches)."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for i in range(runs + 2):
        for name, command in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            if i >= 2:
                times[name].append((wall, cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--venv", type=Path, default=None, help="where the fresh install goes (reused)")
    args = parser.parse_args()
    venv = args.venv or Path(tempfile.gettempdir()) / "mlctl-bench-startup-venv"
    python = fresh_install(venv)
    mlctl = str(venv / "bin" / "mlctl")
    # the two original examples (their models must be trained: `make demo` or the tests do it)
    specs = [str(REPO / "specs" / "examples" / name / "service.yaml") for name in ("diabetes", "digits")]
    commands = {
        "python -c pass": [str(python), "-c", "pass"],
        "import typer": [str(python), "-c", "import typer"],
        "import typer, ruamel.yaml, jsonschema": [str(python), "-c", "import typer, ruamel.yaml, jsonschema"],
        "mlctl --help": [mlctl, "--help"],
        "mlctl spec validate (examples)": [mlctl, "spec", "validate", *specs],
    }
    medians = median_times(commands, args.runs)
    baseline = {
        "mlctl --help": "import typer",
        "mlctl spec validate (examples)": "import typer, ruamel.yaml, jsonschema",
    }
    print(f"fresh venv {venv}, median of {args.runs} interleaved runs; load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':40} {'median ms':>10} {'ratio':>8} {'goal':>6} {'cpu ms':>8} {'cpu ratio':>10}")
    for name, (seconds, cpu) in medians.items():
        base = baseline.get(name)
        ratio = f"{seconds / medians[base][0]:.2f}x" if base else ""
        cpu_ratio = f"{cpu / medians[base][1]:.2f}x" if base else ""
        goal = f"{GOAL}x" if base else ""
        print(f"{name:40} {seconds * 1000:10.1f} {ratio:>8} {goal:>6} {cpu * 1000:8.1f} {cpu_ratio:>10}")


if __name__ == "__main__":
    main()
