"""Mutation soak of the spec layer: random mutations of the example specs, checked as `mlctl spec
validate` checks them (load_file, schema validation, records), counting what was not a located
spec error.

A benchmark/soak script, not a test: it prints numbers; record them in docs/benchmarks.md with this
command (tests/test_spec_mutations.py runs a shorter, property-based version in the suite).

    python bench/spec_mutations.py [--mutations 10000] [--seed 9]

Mutations: a value replaced by a list, a map, null, a string with a NUL character, a long string
(300 or 5,000 characters), a path-like string over the file system's limits, a number or a
boolean; a key line duplicated; a line cut short or deleted; a raw control character inserted.
Outcomes: ``valid``; ``located`` (a SpecError every line of which reads ``FILE:LINE:COL: ...``);
``unlocated`` (an mlctl error without a position); ``unexpected`` (any other exception: a crash).
Goal: 0 unlocated and 0 unexpected.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "specs" / "examples"
LOCATED = re.compile(r"^.+:\d+:\d+: ")

VALUES: list[Any] = [
    ["a", 1],
    {"k": "v", "n": {"deep": [1]}},
    None,
    "a\0b",
    "x" * 300,
    "y" * 5000,
    "d/" * 2100,
    0,
    -1,
    2**70,
    3.5,
    True,
    "",
    "../" * 3 + "nowhere",
]


def example_specs() -> list[Path]:
    """The example spec files (``*/*.yaml`` under specs/examples)."""
    return sorted(EXAMPLES.glob("*/*.yaml"))


def workspace(tmp: Path) -> list[Path]:
    """Copies of the example folders in ``tmp`` (with placeholder model files where training has
    not run), so relative paths resolve as they do in the repository; returns the copied specs."""
    for folder in sorted({spec.parent for spec in example_specs()}):
        shutil.copytree(folder, tmp / folder.name, ignore=shutil.ignore_patterns("__pycache__", "out"))
    specs = [tmp / spec.parent.name / spec.name for spec in example_specs()]
    for spec in specs:
        for name in re.findall(r"[\w./-]+\.(?:pkl|onnx)", spec.read_text()):
            placeholder = (spec.parent / name).resolve()
            if not placeholder.exists():
                placeholder.write_bytes(b"")
    return specs


def _slots(node: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a round-trip YAML tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in list(items):
        found.append((node, key))
        _slots(value, found)
    return found


def replace_value(text: str, rng: random.Random) -> str:
    """``text`` with one value, chosen at random, replaced by one of ``VALUES``."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    docs = [d for d in yaml.load_all(text) if d is not None]
    slots = [slot for doc in docs for slot in _slots(doc, [])]
    container, key = rng.choice(slots)
    container[key] = rng.choice(VALUES)
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def mutate_text(text: str, rng: random.Random) -> str:
    """``text`` with one line duplicated, cut, or deleted, or a control character inserted."""
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    operation = rng.choice(["duplicate", "cut", "delete", "control"])
    if operation == "duplicate":
        lines.insert(i, lines[i])
    elif operation == "cut":
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    elif operation == "delete":
        del lines[i]
    else:
        at = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:at] + rng.choice(["\0", "\x07", "\t", "\ufeff", "%", "&", "*", "!!"]) + lines[i][at:]
    return "".join(lines)


def mutate(text: str, rng: random.Random) -> str:
    """One to three random mutations of ``text`` (values or lines)."""
    for _ in range(rng.randint(1, 3)):
        try:
            text = replace_value(text, rng) if rng.random() < 0.6 else mutate_text(text, rng)
        except Exception:  # noqa: BLE001 - the text no longer parses: mutate its lines instead
            text = mutate_text(text, rng)
    return text


def check(file: Path) -> tuple[str, str]:
    """Run ``file`` through the spec layer as `mlctl spec validate` does: (outcome, detail)."""
    from mlctl.errors import MlctlError
    from mlctl.spec import build, load_file
    from mlctl.spec.schema import validate

    try:
        docs = load_file(file)
        errors = [line for doc in docs for line in validate(doc)]
        if not errors:
            for doc in docs:
                build(doc)
    except MlctlError as error:
        errors = list(error.details) or [error.message]
    except Exception:  # noqa: BLE001 - what this soak looks for
        return "unexpected", traceback.format_exc(limit=3)
    if not errors:
        return "valid", ""
    unlocated = [e for e in errors if not LOCATED.match(e)]
    return ("unlocated", unlocated[0]) if unlocated else ("located", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    shown: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mlctl-mutations-") as tmp:
        specs = workspace(Path(tmp))
        originals = {spec: spec.read_text() for spec in specs}
        for n in range(args.mutations):
            spec = rng.choice(specs)
            mutant = spec.with_name(f"mutant-{n % 50}.yaml")
            mutant.write_text(mutate(originals[spec], rng), encoding="utf-8")
            outcome, detail = check(mutant)
            outcomes[outcome] += 1
            if outcome in ("unexpected", "unlocated") and detail.splitlines()[-1] not in shown:
                shown.add(detail.splitlines()[-1])
                print(f"--- {outcome} ({spec.parent.name}/{spec.name}):\n{detail}", file=sys.stderr)
    print(f"mutations tried: {args.mutations} (seed {args.seed}, {len(specs)} example specs)")
    for outcome in ("valid", "located", "unlocated", "unexpected"):
        print(f"  {outcome:>10}: {outcomes[outcome]}")
    return 0 if outcomes["unexpected"] == outcomes["unlocated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
