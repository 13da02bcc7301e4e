"""Where mlctl keeps its state: ``MLCTL_HOME``, else the user's data folder.

Under test (``MLCTL_TESTING`` set) the default is refused, so no test can touch a real home.
"""

from __future__ import annotations

import os
from pathlib import Path


def mlctl_home() -> Path:
    """The state folder (created if missing).

    Raises:
        RuntimeError: under test with no ``MLCTL_HOME`` set.
    """
    value = os.environ.get("MLCTL_HOME")
    if value:
        path = Path(value).expanduser()
    elif os.environ.get("MLCTL_TESTING"):
        raise RuntimeError("MLCTL_TESTING is set but MLCTL_HOME is not: tests must not use the real home")
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("mlctl"))
    path.mkdir(parents=True, exist_ok=True)
    return path
