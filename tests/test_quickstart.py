"""The README's quick start is true: its code blocks are the files in specs/examples/quickstart/,
and those files, copied as a newcomer would, deploy on the process target and answer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO, free_port, mlctl, post

QUICKSTART = EXAMPLES / "quickstart"
FILES = ("train.py", "score.py", "requirements.txt", "service.yaml")
# a README block that is a file: a line starting "**`NAME`**", a blank line, then the fenced block
_BLOCK = re.compile(r"^\*\*`(?P<name>[^`]+)`\*\*[^\n]*\n\n```[a-z]*\n(?P<text>.*?)^```$", re.MULTILINE | re.DOTALL)


def _readme_files() -> dict[str, str]:
    return {m["name"]: m["text"] for m in _BLOCK.finditer((REPO / "README.md").read_text())}


def test_the_readme_shows_the_quickstart_files_exactly() -> None:
    shown = _readme_files()
    for name in FILES:
        assert shown.get(name) == (QUICKSTART / name).read_text(), f"README's {name} differs from {QUICKSTART / name}"


@pytest.mark.slow
def test_the_quickstart_copied_as_shown_deploys_and_answers_on_the_process_target(tmp_path: Path) -> None:
    project = tmp_path / "my-model"
    project.mkdir()
    for name, text in _readme_files().items():
        if name in FILES:
            (project / name).write_text(text)
    subprocess.run([sys.executable, "train.py"], cwd=project, check=True, capture_output=True)
    port = free_port()  # the README's port may be taken by a running quick start
    deployed = mlctl(
        "-o", "json", "service", "deploy", "-f", "service.yaml", "--set", f"deployment_config.port={port}", cwd=project
    )
    assert deployed.code == 0, deployed.err
    assert deployed.json()["environment"] != "current"  # built from requirements.txt
    tested = mlctl("-o", "json", "service", "test", "iris")
    assert tested.code == 0 and tested.json()["passed"] is True, tested.err
    status, _, body = post(f"http://127.0.0.1:{port}/score", b'{"data": [[5.9, 3.0, 5.1, 1.8]]}')
    assert status == 200 and json.loads(body) == [2]
    assert mlctl("service", "delete", "iris").code == 0
    shutil.rmtree(project)
