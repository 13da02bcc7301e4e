"""Rewrite spec files of an older ``apiVersion`` to the current one, keeping comments and key
order (ruamel.yaml round trip).

Each migration upgrades one version to the next; they chain. ``mlctl/v1alpha1`` is the
pre-release form of v1 (``inference``/``deployment`` became ``inference_config``/
``deployment_config``; a Model's ``model_path`` became ``path``); it keeps the upgrade path
exercised until a v2 exists.
"""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

from mlctl.spec.schema import API_VERSION


def _rename(node: Any, old: str, new: str) -> None:
    """Rename a mapping key in place: same position, same comments."""
    if not hasattr(node, "insert") or old not in node:
        return
    position = list(node.keys()).index(old)
    comment = node.ca.items.pop(old, None)
    value = node.pop(old)
    node.insert(position, new, value)
    if comment is not None:
        node.ca.items[new] = comment


def _v1alpha1_to_v1(doc: Any) -> None:
    if doc.get("kind") == "Model":
        _rename(doc, "model_path", "path")
    if doc.get("kind") == "Service":
        _rename(doc, "inference", "inference_config")
        _rename(doc, "deployment", "deployment_config")


# old apiVersion -> (next apiVersion, how to rewrite a document of it)
MIGRATIONS: dict[str, tuple[str, Callable[[Any], None]]] = {
    "mlctl/v1alpha1": ("mlctl/v1", _v1alpha1_to_v1),
}


def migrate_text(text: str) -> tuple[str, list[str]]:
    """``text`` with every document upgraded to ``API_VERSION``; also the versions it came from.

    Documents already current (or of an unknown version, left for validation to report) are
    unchanged. Returns the input text itself when nothing changed.
    """
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    docs = list(yaml.load_all(text))
    upgraded: list[str] = []
    for doc in docs:
        while isinstance(doc, dict) and is_older(doc.get("apiVersion")):
            upgraded.append(str(doc["apiVersion"]))
            following, rewrite = MIGRATIONS[str(doc["apiVersion"])]
            rewrite(doc)
            doc["apiVersion"] = following
    if not upgraded:
        return text, []
    out = StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue(), sorted(set(upgraded))


def is_older(api_version: Any) -> bool:
    """Whether ``api_version`` can be migrated to the current one."""
    return isinstance(api_version, str) and api_version in MIGRATIONS and api_version != API_VERSION
