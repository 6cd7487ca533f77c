"""The parameter tables declared on rclpy nodes: descriptors, typed values, validated run-time changes.

The tables themselves (names, types, ranges, defaults) are ROS-free data in `vla_accel_ros.params`; this
module only maps them onto rcl: a ParameterDescriptor per field, the declaration, and a handle that
keeps the typed snapshot current when a peer sets a parameter at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from vla_accel_ros.params.schema import Kind, P, ParameterError, ParamInfo

ROS_TYPES = {
    Kind.BOOL: Parameter.Type.BOOL,
    Kind.INT: Parameter.Type.INTEGER,
    Kind.FLOAT: Parameter.Type.DOUBLE,
    Kind.STR: Parameter.Type.STRING,
    Kind.INT_ARRAY: Parameter.Type.INTEGER_ARRAY,
    Kind.FLOAT_ARRAY: Parameter.Type.DOUBLE_ARRAY,
    Kind.STR_ARRAY: Parameter.Type.STRING_ARRAY,
}


def descriptor(info: ParamInfo) -> ParameterDescriptor:
    """The rcl descriptor of one table field (type, description, range, choices, read-only)."""
    d = ParameterDescriptor(
        name=info.name,
        type=ROS_TYPES[info.kind].value,
        description=info.meta.description,
        read_only=info.meta.read_only,
    )
    rng = info.meta.range
    if rng is not None and info.kind is Kind.FLOAT:
        d.floating_point_range = [
            FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)
        ]
    elif rng is not None and info.kind is Kind.INT:
        d.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
    constraints = []
    if rng is not None and info.kind.is_array:
        constraints.append(f"each element in [{rng[0]}, {rng[1]}]")
    if info.meta.choices:
        constraints.append("one of: " + ", ".join(info.meta.choices))
    d.additional_constraints = "; ".join(constraints)
    return d


class ParamHandle(Generic[P]):
    """A node's declared parameters as a typed, validated snapshot (`values`), kept current at run time.

    Declaring fails loudly (ParameterError naming the parameter); a run-time change that fails validation
    is refused by the node and the old value stays.
    """

    def __init__(self, node: Node, cls: type[P]) -> None:
        self._cls = cls
        self._listeners: list[Callable[[P, P], None]] = []
        where = node.get_fully_qualified_name()
        try:
            declared = node.declare_parameters(
                "", [(i.name, _ros_value(i.default, i.kind), descriptor(i)) for i in cls.infos()]
            )
        except (InvalidParameterValueException, InvalidParameterTypeException) as err:
            raise ParameterError(f"{where}: {err}") from err
        self.values: P = cls.from_mapping({p.name: p.value for p in declared})
        self._names = set(cls.names())
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)

    def on_change(self, listener: Callable[[P, P], None]) -> None:
        """Call listener(old, new) after an accepted run-time change."""
        self._listeners.append(listener)

    def _changes(self, params: list[Parameter]) -> dict[str, Any]:
        return {p.name: p.value for p in params if p.name in self._names}

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        try:
            replace(self.values, **self._changes(params))
        except ValueError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply(self, params: list[Parameter]) -> None:
        changes = self._changes(params)
        if not changes:
            return
        old, self.values = self.values, replace(self.values, **changes)
        for listener in self._listeners:
            listener(old, self.values)


def declare_params(node: Node, cls: type[P]) -> ParamHandle[P]:
    return ParamHandle(node, cls)


def _ros_value(value: Any, kind: Kind) -> Any:
    """rclpy cannot type an empty list: an empty (optional) array is declared by its type alone."""
    if isinstance(value, tuple):
        return list(value) if value else ROS_TYPES[kind]
    return value
