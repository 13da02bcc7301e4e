"""The local model registry: versions, content addressing, integrity, atomicity, concurrency."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from conftest import mlctl, write

from mlctl import registry as registry_module
from mlctl.errors import ConflictError, IntegrityError, NotFoundError
from mlctl.registry import Registry
from mlctl.spec.records import ModelRef


def test_register_versions_one_two_three_with_tags_and_description(tmp_path: Path) -> None:
    model = write(tmp_path / "m.pkl", "weights")
    first = mlctl(
        "-o",
        "json",
        "model",
        "register",
        "--name",
        "m",
        "--path",
        str(model),
        "--tag",
        "stage=dev",
        "--description",
        "first",
    )
    assert first.code == 0, first.err
    assert first.json()["version"] == 1 and first.json()["tags"] == {"stage": "dev"}
    second = mlctl("-o", "json", "model", "register", "--name", "m", "--path", str(model))
    assert second.json()["version"] == 2
    shown = mlctl("-o", "json", "model", "show", "m:1").json()
    assert shown["description"] == "first" and shown["source_name"] == "m.pkl"
    assert mlctl("-o", "json", "model", "show", "m").json()["version"] == 2  # latest
    listed = mlctl("-o", "json", "model", "list", "--tag", "stage=dev").json()
    assert [(m["name"], m["version"]) for m in listed] == [("m", 1)]


def test_register_from_spec_file_and_folder_models(tmp_path: Path) -> None:
    write(tmp_path / "folder" / "weights.bin", "w")
    write(tmp_path / "folder" / "sub" / "vocab.txt", "a b c")
    spec = write(
        tmp_path / "model.yaml",
        """
        apiVersion: mlctl/v1
        kind: Model
        name: bert
        path: folder
        tags: {lang: en}
        properties: {layers: 12}
        """,
    )
    result = mlctl("-o", "json", "model", "register", "-f", str(spec))
    assert result.code == 0, result.err
    (doc,) = result.json()
    assert doc["is_folder"] and sorted(f["path"] for f in doc["files"]) == ["sub/vocab.txt", "weights.bin"]
    assert doc["properties"] == {"layers": "12"}
    out = tmp_path / "download"
    assert mlctl("model", "download", "bert:1", "--to", str(out)).code == 0
    assert (out / "folder" / "sub" / "vocab.txt").read_text() == "a b c"
    (out / "folder" / "weights.bin").write_text("changed")  # a download is a copy, not the stored blob
    Registry(Path(os.environ["MLCTL_HOME"])).verify(Registry(Path(os.environ["MLCTL_HOME"])).get(ModelRef("bert", 1)))


def test_identical_content_is_stored_once(tmp_path: Path, mlctl_home: Path) -> None:
    reg = Registry(mlctl_home)
    a, b = write(tmp_path / "a" / "model.pkl", "same bytes"), write(tmp_path / "b" / "other.pkl", "same bytes")
    first, second = reg.register("x", a), reg.register("y", b)
    assert first.content_hash != "" and first.files[0][1] == second.files[0][1]
    assert len(list(reg.blob_root.glob("*/*"))) == 1


def test_corrupt_blob_is_reported_never_served(tmp_path: Path, mlctl_home: Path) -> None:
    reg = Registry(mlctl_home)
    model = reg.register("m", write(tmp_path / "m.pkl", "good"))
    blob = next(reg.blob_root.glob("*/*"))
    os.chmod(blob, 0o644)
    blob.write_text("evil")
    with pytest.raises(IntegrityError):
        reg.materialize(model, tmp_path / "out")
    result = mlctl("model", "download", "m:1", "--to", str(tmp_path / "out2"))
    assert result.code == 10 and "corrupt" in result.err
    assert not (tmp_path / "out2" / "m.pkl").exists()


def test_interrupted_register_leaves_no_version(
    tmp_path: Path, mlctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    for i in range(3):
        write(folder / f"part{i}.bin", f"part {i}")
    real_copy = registry_module.copy_hashing
    calls = []

    def copy_then_interrupt(source: Path, dest: Path) -> tuple[str, int]:
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_copy(source, dest)

    monkeypatch.setattr(registry_module, "copy_hashing", copy_then_interrupt)
    reg = Registry(mlctl_home)
    with pytest.raises(KeyboardInterrupt):
        reg.register("m", folder)
    assert reg.models() == []
    assert list((mlctl_home / "blobs" / "tmp").iterdir()) == []  # no stray temporary file
    monkeypatch.setattr(registry_module, "copy_hashing", real_copy)
    assert reg.register("m", folder).version == 1


def _register_many(home: str, path: str, count: int) -> None:
    reg = Registry(Path(home))
    for _ in range(count):
        reg.register("shared", Path(path))


def test_concurrent_registers_get_distinct_versions(tmp_path: Path, mlctl_home: Path) -> None:
    model = write(tmp_path / "m.pkl", "w")
    mlctl_home.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(str(mlctl_home), str(model), 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    versions = [m.version for m in Registry(mlctl_home).models(name="shared")]
    assert versions == list(range(1, 16))


def test_missing_model_or_version_is_not_found(tmp_path: Path, mlctl_home: Path) -> None:
    reg = Registry(mlctl_home)
    with pytest.raises(NotFoundError, match="not registered"):
        reg.get(ModelRef("nope", 1))
    reg.register("m", write(tmp_path / "m.pkl", "w"))
    with pytest.raises(NotFoundError, match="has no version 7"):
        reg.get(ModelRef("m", 7))
    result = mlctl("model", "show", "m:7")
    assert result.code == 4 and "versions: 1" in result.err
    assert mlctl("model", "register", "--name", "m", "--path", str(tmp_path / "absent.pkl")).code == 4


def test_delete_is_refused_while_a_service_uses_the_version(tmp_path: Path, mlctl_home: Path) -> None:
    reg = Registry(mlctl_home)
    model = reg.register("m", write(tmp_path / "m.pkl", "w"))
    reg.save_service("svc", "process", {"name": "svc"}, [model])
    with pytest.raises(ConflictError, match="used by service"):
        reg.delete(ModelRef("m", 1))
    result = mlctl("model", "delete", "m:1")
    assert result.code == 5 and "--force" in result.err
    assert mlctl("model", "delete", "m:1", "--force").code == 0
    assert reg.models() == []


def test_bad_cli_usage_exits_2(tmp_path: Path) -> None:
    assert mlctl("model", "register", "--name", "m").code == 2
    assert mlctl("model", "register", "--name", "bad name!", "--path", str(tmp_path)).code == 2
    assert mlctl("model", "list", "--tag", "no-equals").code == 2
    assert mlctl("model", "delete", "m").code == 2  # the version must be named
