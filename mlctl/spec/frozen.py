"""``FrozenRecord``: the base of the spec records, a frozen dataclass that costs nothing to define.

Why not ``@dataclass(frozen=True)``: on Python 3.11 a dataclass compiles six generated methods from
source text when its class is defined (0.4-2 ms each class here, 8 ms for the spec records), and
every command that reads a spec pays it at start-up, ``mlctl spec validate`` included (its goal:
at most 1.25x the import of the libraries it must load). This base gives the same behaviour with
generic methods written once: typed fields from the class annotations with their defaults,
positional or keyword construction, immutability (``dataclasses.FrozenInstanceError``), equality
and hashing by type and field values, a dataclass-style ``repr``, ``replace(**changes)``. Type
checkers see the fields through ``typing.dataclass_transform`` (PEP 681), as they see a dataclass.

Defaults must be immutable values (a record is shared, never copied); a mutable default (list,
dict, set) is refused when the class is defined, as dataclasses refuse them.
"""

from __future__ import annotations

import sys
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, ClassVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # Python 3.10: typing_extensions has it (a dependency for 3.10 only)
    from typing_extensions import dataclass_transform

if TYPE_CHECKING:
    from typing_extensions import Self

_MUTABLE = (list, dict, set, bytearray)


@dataclass_transform(frozen_default=True)
class FrozenRecord:
    """Base class: subclasses declare annotated fields (``name: str``, ``port: int = 8890``).

    Raises (at construction):
        TypeError: a missing or unexpected argument, as a dataclass's ``__init__`` raises it.
    """

    __field_names__: ClassVar[tuple[str, ...]] = ()
    __field_defaults__: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls.__field_names__)
        defaults = dict(cls.__field_defaults__)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                value = cls.__dict__[name]
                if isinstance(value, _MUTABLE):
                    raise TypeError(f"{cls.__name__}.{name}: mutable default {type(value).__name__} is not allowed")
                defaults[name] = value
            elif defaults:
                raise TypeError(f"{cls.__name__}.{name}: a field without a default follows one with a default")
        cls.__field_names__ = tuple(names)
        cls.__field_defaults__ = defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self.__field_names__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, {len(args)} were given")
        values = dict(zip(names, args, strict=False))  # the rest by keyword or default
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
            values[name] = value
        missing = [n for n in names if n not in values and n not in self.__field_defaults__]
        if missing:
            raise TypeError(f"{type(self).__name__}() missing required argument(s): {', '.join(missing)}")
        for name in names:
            object.__setattr__(self, name, values[name] if name in values else self.__field_defaults__[name])

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields, in declaration order (what ``dataclasses.fields`` lists)."""
        return cls.__field_names__

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (what ``dataclasses.replace`` does).

        Raises:
            TypeError: a change names no field.
        """
        return type(self)(**{**self._values(), **changes})

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__field_names__}

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrozenRecord) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), *self._values().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._values().items())
        return f"{type(self).__name__}({fields})"
