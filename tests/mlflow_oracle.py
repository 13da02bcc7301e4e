"""MLflow's own scoring server as a test oracle: the full ``mlflow`` package in a separate venv.

The venv pins the versions of this test environment (the same scikit-learn, pandas, numpy,
cloudpickle; the newest full mlflow not newer than mlflow-skinny), so both servers run the
model with the same libraries.
It is built once per machine under the temporary folder (keyed by those versions; a ``.complete``
marker says the build finished: console scripts carry their folder in their shebang, so it is
built where it stays), and never imported by mlctl.

Run ``python tests/mlflow_oracle.py`` to build it ahead of the tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path


def pins() -> list[str]:
    """The oracle's requirements: the full mlflow (at most this mlflow-skinny's version: a release's
    full package can lag its skinny one on the index), and this environment's libraries."""
    same = ("scikit-learn", "pandas", "numpy", "cloudpickle")
    return [f"mlflow<={version('mlflow-skinny')}", *(f"{name}=={version(name)}" for name in same)]


def oracle_python() -> Path:
    """The interpreter of the oracle venv (built on first use; minutes, then cached).

    Raises:
        subprocess.CalledProcessError: pip cannot install mlflow here (the output says why).
    """
    requirements = pins()
    key = hashlib.sha256(("\n".join(requirements) + sys.version).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "mlctl-test-oracles" / f"mlflow-{key}"
    python = folder / "bin" / "python"
    if (folder / ".complete").exists():
        return python
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted build
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", *requirements]
    subprocess.run(pip, check=True, timeout=1200)
    (folder / ".complete").write_text("\n".join(requirements) + "\n")
    return python


def oracle_env(python: Path | str) -> dict[str, str]:
    """The environment to run the oracle in: its venv's ``bin`` first (``mlflow models serve`` runs ``uvicorn``)."""
    return {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


if __name__ == "__main__":
    print(oracle_python())
