"""Property: whatever is done to an example spec, the spec layer answers with a located spec error
(``FILE:LINE:COL: ...``, exit 3 from the CLI) or a valid document, never a crash.

Hypothesis mutates the example specs the way people break files: a value replaced by a list, a
map, null, a string with a NUL character or far too long for a file name, a number; a line
duplicated (a duplicate key), cut short or removed; a stray control character. Each case is checked
as `mlctl spec validate` checks it (parse, schema, records). bench/spec_mutations.py runs the same
kind of soak over 10,000 random mutations.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, mlctl, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlctl.errors import MlctlError
from mlctl.spec import build, load_file
from mlctl.spec.schema import validate

LOCATED = re.compile(r"^.+:\d+:\d+: ")
SPECS = sorted(EXAMPLES.glob("*/*.yaml"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from("ab/\0."), min_size=1, max_size=10),  # NUL characters in paths
    st.integers(256, 6000).map(lambda n: "n" * n),  # a file name too long for any file system
    st.integers(1100, 2500).map(lambda n: "d/" * n),  # a path too long
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    """The example folders copied (placeholder model files where training has not run), so
    relative paths resolve as in the repository: {copied spec: its text}."""
    root = tmp_path_factory.mktemp("examples")
    for folder in sorted({s.parent for s in SPECS}):
        shutil.copytree(folder, root / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    copies = {root / s.parent.name / s.name: s.read_text() for s in SPECS}
    for spec, text in copies.items():
        for name in re.findall(r"[\w./-]+\.(?:pkl|onnx)", text):
            placeholder = (spec.parent / name).resolve()
            if not placeholder.exists():
                placeholder.write_bytes(b"")
    return copies


def _slots(node: Any) -> list[tuple[Any, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    found = []
    for key, value in list(items):
        found.append((node, key))
        found.extend(_slots(value))
    return found


def _replace(text: str, choose: Any, value: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    docs = [d for d in yaml.load_all(text) if d is not None]
    slots = [slot for doc in docs for slot in _slots(doc)]
    container, key = slots[choose(len(slots))]
    container[key] = value
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def _edit_line(text: str, choose: Any, operation: str) -> str:
    lines = text.splitlines(keepends=True)
    i = choose(len(lines))
    if operation == "duplicate":
        lines.insert(i, lines[i])
    elif operation == "cut":
        lines[i] = lines[i][: choose(len(lines[i]) + 1)]
    elif operation == "delete":
        del lines[i]
    else:
        at = choose(len(lines[i]) + 1)
        lines[i] = lines[i][:at] + operation + lines[i][at:]
    return "".join(lines)


def _outcome(file: Path) -> list[str]:
    """The spec layer's problems with ``file`` (empty: valid); raises whatever is not an mlctl error."""
    try:
        docs = load_file(file)
        problems = [line for doc in docs for line in validate(doc)]
        if not problems:
            for doc in docs:
                build(doc)
    except MlctlError as error:
        return list(error.details) or [error.message]
    return problems


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_mutation_of_an_example_spec_crashes_the_spec_layer(data: st.DataObject, examples: dict[Path, str]) -> None:
    spec = data.draw(st.sampled_from(sorted(examples)), label="spec")
    text = examples[spec]

    def choose(n: int) -> int:
        return data.draw(st.integers(0, n - 1))

    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        if data.draw(st.booleans(), label="replace a value"):
            try:
                text = _replace(text, choose, data.draw(values, label="value"))
                continue
            except Exception:  # noqa: BLE001 - an earlier line edit broke the YAML: edit lines instead
                pass
        operation = data.draw(st.sampled_from(["duplicate", "cut", "delete", "\0", "\x07", "\t", "!!", "&a", "*"]))
        text = _edit_line(text, choose, operation)
    mutant = spec.with_name("mutant.yaml")
    mutant.write_text(text, encoding="utf-8")
    problems = _outcome(mutant)  # an exception here is the failure this test looks for
    assert all(LOCATED.match(p) for p in problems), problems


@pytest.mark.parametrize(
    "line, message",
    [
        ("apiVersion: [mlctl/v1]", "service.yaml:1:1: $.apiVersion: apiVersion must be a string"),
        ("apiVersion: {v: 1}", "service.yaml:1:1: $.apiVersion: apiVersion must be a string"),
        ('model_files: ["model\\0.pkl"]', "$.model_files[0]: a path cannot contain a NUL character"),
        (f"model_files: [{'m' * 300}.pkl]", "$.model_files[0]: a file or folder name in this path is 304 bytes"),
        (f"model_files: [{'d/' * 2100}m.pkl]", "$.model_files[0]: this path is longer than the file system allows"),
    ],
)
def test_the_three_crashes_of_the_issue_are_located_spec_errors(tmp_path: Path, line: str, message: str) -> None:
    spec = write(
        tmp_path / "service.yaml",
        """
        apiVersion: mlctl/v1
        kind: Service
        name: v1s-bad
        model_files: [model.pkl]
        inference_config:
          entry_script: score.py
        """,
    )
    key = line.split(":")[0]
    text = "\n".join(line if row.startswith(key + ":") else row for row in spec.read_text().splitlines())
    spec.write_text(text + "\n")
    write(tmp_path / "model.pkl", "m")
    write(tmp_path / "score.py", "def init():\n    pass\ndef run(x):\n    return x\n")
    result = mlctl("spec", "validate", str(spec), cwd=tmp_path)
    assert result.code == 3, result.err
    assert message in result.err and "unexpected" not in result.err


@pytest.mark.parametrize(
    "path, message",
    [
        ("image\\0.yaml", "a path cannot contain a NUL character"),
        ("x" * 300 + ".yaml", "a file or folder name in this path is 305 bytes"),
        ("d/" * 2100 + "image.yaml", "this path is longer than the file system allows"),
    ],
)
@pytest.mark.parametrize("key", ["build", "password_file"])
def test_unusable_paths_in_an_edge_deployment_are_located_spec_errors(
    tmp_path: Path, key: str, path: str, message: str
) -> None:
    # found by bench/spec_mutations.py on specs/examples/edge (OSError, ValueError from build_edge)
    build_path, password = (f'"{path}"', "pw.txt") if key == "build" else ("image.yaml", f'"{path}"')
    spec = write(
        tmp_path / "edge.yaml",
        f"""
        apiVersion: mlctl/v1
        kind: EdgeDeployment
        name: v1s-edge
        target: hub1
        device_id: dev1
        runtime:
          registry_credentials:
            local: {{address: "127.0.0.1:5000", username: ci, password_file: {password}}}
        modules:
          scorer:
            build: {build_path}
        """,
    )
    write(tmp_path / "image.yaml", "apiVersion: mlctl/v1\nkind: Image\nname: v1s-img\n")
    result = mlctl("spec", "validate", str(spec), cwd=tmp_path)
    assert result.code == 3, result.err
    where = "$.modules.scorer.build" if key == "build" else "$.runtime.registry_credentials.local.password_file"
    assert re.search(rf"edge\.yaml:\d+:\d+: {re.escape(where)}: {message}", result.err), result.err
    assert "unexpected" not in result.err
