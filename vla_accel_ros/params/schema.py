"""The schema of the parameter tables: typed fields with ROS metadata, validated on construction.

Each node's table (`vla_accel_ros.params.tables`) is a frozen dataclass whose fields carry a description,
range, allowed strings and read-only flag via `param(...)`. From that one declaration come the values a
node reads, the validation of start-up and run-time values (one code path: `__post_init__`), the YAML
of config/vla_accel.yaml and, in `vla_accel_ros.ros.params`, the rcl ParameterDescriptors.

This module imports no rclpy, so offline runs (evaluation, replay, benchmarks, calibration) build their
decision objects from the very tables the nodes declare.
"""

from __future__ import annotations

import array
import enum
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar, TypeVar

# Declared by rclpy on every node; allowed in params files, not part of the tables.
BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})


class ParameterError(ValueError):
    """A parameter value a node must not start (or continue) with; the message names the parameter."""


class Kind(enum.Enum):
    """The parameter types rcl knows; `ros/params.py` maps each to its `rclpy.Parameter.Type`."""

    BOOL = "bool"
    INT = "integer"
    FLOAT = "double"
    STR = "string"
    INT_ARRAY = "integer_array"
    FLOAT_ARRAY = "double_array"
    STR_ARRAY = "string_array"

    @property
    def is_array(self) -> bool:
        return self in (Kind.INT_ARRAY, Kind.FLOAT_ARRAY, Kind.STR_ARRAY)

    @property
    def element(self) -> Kind:
        return {Kind.INT_ARRAY: Kind.INT, Kind.FLOAT_ARRAY: Kind.FLOAT, Kind.STR_ARRAY: Kind.STR}.get(
            self, self
        )


_KINDS = {
    bool: Kind.BOOL,
    int: Kind.INT,
    float: Kind.FLOAT,
    str: Kind.STR,
    tuple[int, ...]: Kind.INT_ARRAY,
    tuple[float, ...]: Kind.FLOAT_ARRAY,
    tuple[str, ...]: Kind.STR_ARRAY,
}


@dataclass(frozen=True)
class Meta:
    """The ROS metadata of one parameter, kept beside its default in the table's field."""

    description: str
    range: tuple[float, float] | None = None  # inclusive; for arrays, each element
    choices: tuple[str, ...] | None = None  # for strings (and string arrays), each element
    read_only: bool = False
    optional: bool = False  # arrays: empty allowed (= off); declared to rcl by type only, `[]` in YAML


def param(
    default: Any,
    description: str,
    *,
    range: tuple[float, float] | None = None,
    choices: Sequence[str] | None = None,
    read_only: bool = False,
    optional: bool = False,
) -> Any:
    """A field of a parameter table (see module doc)."""
    meta = Meta(description, range, tuple(choices) if choices is not None else None, read_only, optional)
    return field(default=default, metadata={"param": meta})


@dataclass(frozen=True)
class ParamInfo:
    """One field of a table with its type and metadata: what a descriptor, a YAML comment and the
    validation of a value are made from."""

    name: str
    kind: Kind
    default: Any
    meta: Meta

    def coerce(self, value: Any, where: str) -> Any:
        """Value as the table's Python type (tuples for arrays); ParameterError if it is not valid."""
        if self.kind.is_array:
            if value is None and self.meta.optional:
                return ()  # rcl reads `[]` as "not set"
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, array.array)):
                raise ParameterError(f"{where}: expected a list, got {value!r}")
            if not value and not self.meta.optional:
                raise ParameterError(f"{where}: must not be empty")
            out: Any = tuple(self._scalar(self.kind.element, v, f"{where}[{i}]") for i, v in enumerate(value))
        else:
            out = self._scalar(self.kind, value, where)
        return out

    def _scalar(self, kind: Kind, value: Any, where: str) -> Any:
        if kind is Kind.BOOL:
            if not isinstance(value, bool):
                raise ParameterError(f"{where}: expected true or false, got {value!r}")
            return value
        if kind is Kind.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParameterError(f"{where}: expected an integer, got {value!r}")
            self._check_range(value, where)
            return int(value)
        if kind is Kind.FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"{where}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise ParameterError(f"{where}: must be finite, got {value!r}")
            self._check_range(value, where)
            return float(value)
        if not isinstance(value, str):
            raise ParameterError(f"{where}: expected a string, got {value!r}")
        if self.meta.choices is not None and value not in self.meta.choices:
            raise ParameterError(f"{where}: {value!r} is not one of {', '.join(self.meta.choices)}")
        return value

    def _check_range(self, value: float, where: str) -> None:
        rng = self.meta.range
        if rng is not None and not rng[0] <= value <= rng[1]:
            raise ParameterError(f"{where}: {value!r} is out of range [{rng[0]}, {rng[1]}]")


class NodeParams:
    """Base of the per-node tables: validates every field on construction (frozen dataclasses)."""

    NODE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for info in self.infos():
            where = f"{self.NODE}.{info.name}"
            object.__setattr__(self, info.name, info.coerce(getattr(self, info.name), where))
        try:
            self.check()
        except ParameterError:
            raise
        except ValueError as err:
            raise ParameterError(f"{self.NODE}: {err}") from err

    def check(self) -> None:
        """Relations between parameters; raise ParameterError naming them."""

    @classmethod
    @cache
    def infos(cls) -> tuple[ParamInfo, ...]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):  # type: ignore[arg-type]
            meta = f.metadata.get("param")
            if meta is None:
                continue
            kind = _KINDS.get(hints[f.name])
            if kind is None:
                raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {hints[f.name]}")
            out.append(ParamInfo(f.name, kind, f.default, meta))
        return tuple(out)

    @classmethod
    def names(cls) -> list[str]:
        return [i.name for i in cls.infos()]

    @classmethod
    def info(cls, name: str) -> ParamInfo:
        for i in cls.infos():
            if i.name == name:
                return i
        raise ParameterError(f"{cls.NODE} has no parameter {name!r}; known: {', '.join(cls.names())}")

    @classmethod
    def from_mapping(cls: type[P], values: Mapping[str, Any]) -> P:
        """Defaults overridden by `values` (e.g. a YAML's ros__parameters); unknown names are errors."""
        known = set(cls.names())
        unknown = sorted(set(values) - known - BUILTIN_PARAMETERS)
        if unknown:
            raise ParameterError(f"{cls.NODE}: unknown parameter(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in known})  # type: ignore[call-arg]

    def to_mapping(self) -> dict[str, Any]:
        return {i.name: getattr(self, i.name) for i in self.infos()}


P = TypeVar("P", bound=NodeParams)
