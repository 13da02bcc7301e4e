"""The spec records' base class behaves as a frozen dataclass (mlctl/spec/frozen.py)."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from types import MappingProxyType

import pytest

from mlctl.spec.frozen import FrozenRecord
from mlctl.spec.records import DeploymentConfig, ModelRef, ServiceTest


class Point(FrozenRecord):
    x: int
    y: int = 0
    tags: Mapping[str, str] = MappingProxyType({})


class Other(FrozenRecord):
    x: int
    y: int = 0
    tags: Mapping[str, str] = MappingProxyType({})


def test_construction_positional_keyword_and_defaults() -> None:
    assert (Point(1).x, Point(1).y) == (1, 0)
    assert Point(1, 2) == Point(x=1, y=2) == Point(y=2, x=1)
    assert Point.field_names() == ("x", "y", "tags")
    assert DeploymentConfig().port == 8890 and DeploymentConfig(port=9000).workers == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument(s): x"),
        ((1, 2, {}, 4), {}, "takes 3 arguments, 4 were given"),
        ((1,), {"z": 1}, "unexpected keyword argument 'z'"),
        ((1,), {"x": 2}, "multiple values for argument 'x'"),
    ],
)
def test_bad_arguments_raise_type_error(args: tuple[object, ...], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Point(*args, **kwargs)


def test_frozen() -> None:
    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.x  # type: ignore[misc]
    assert point.x == 1


def test_equality_and_hash_by_type_and_values() -> None:
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Other(1, 2)  # same values, another record type
    assert Point(1, 2) != (1, 2)
    assert hash(ModelRef("a", 1)) == hash(ModelRef("a", 1))
    assert len({ModelRef("a", 1), ModelRef("a", 1), ModelRef("a", 2)}) == 2


def test_repr_replace_and_pickle() -> None:
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=mappingproxy({}))"
    moved = Point(1, 2).replace(y=5)
    assert moved == Point(1, 5) and type(moved) is Point
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1).replace(z=1)
    test = ServiceTest(body=b"{}", expected=[1.5], has_expected=True)
    assert pickle.loads(pickle.dumps(test)) == test


def test_class_definition_rules() -> None:
    with pytest.raises(TypeError, match="mutable default list"):

        class Bad(FrozenRecord):
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="without a default follows one with a default"):

        class Disordered(FrozenRecord):
            a: int = 1
            b: int
