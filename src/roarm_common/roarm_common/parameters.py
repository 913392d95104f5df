"""Typed, ranged parameter declarations: every roarm-vla node declares its parameters through this one helper.

A node module holds ``PARAMETERS: tuple[Param, ...]`` (the table the README documents and the YAML test checks)
and calls ``declare_parameters(node, PARAMETERS)`` once in its constructor. The type comes from the default
(bool, int, float, str, list of float/int/str), so a YAML value of another type is refused by rclpy at start-up,
and a value outside ``range``/``choices`` is refused with the parameter's name and its allowed values, at
start-up and on every later ``ros2 param set``.

``Param`` and ``check_value`` are plain Python (the YAML test uses them without rclpy); ``declare_parameters``
imports rclpy lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Param:
    """One node parameter: name, default (its type is the parameter's type), description, allowed values."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None  # inclusive [low, high] for numbers (each element of a number list)
    choices: tuple[str, ...] | None = None  # allowed strings
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.range is not None and not isinstance(self.default, (int, float, list, tuple)):
            raise TypeError(f"{self.name}: range given for a non-numeric default {self.default!r}")
        if self.choices is not None and not isinstance(self.default, str):
            raise TypeError(f"{self.name}: choices given for a non-string default {self.default!r}")
        problem = check_value(self, self.default)
        if problem:
            raise ValueError(f"default of {problem}")

    @property
    def kind(self) -> str:
        """'bool', 'int', 'float', 'str', 'float[]', 'int[]' or 'str[]' (what rclpy will enforce)."""
        return value_kind(self.default)


def value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        kinds = {value_kind(v) for v in value}
        if kinds <= {"float", "int"} and "float" in kinds:
            return "float[]"
        if len(kinds) == 1:
            return f"{kinds.pop()}[]"
        if not kinds:
            raise TypeError("an empty list default has no element type: give one element or a typed default")
    raise TypeError(f"unsupported parameter value {value!r}")


def compatible(param: Param, value: Any) -> bool:
    """Would rclpy accept ``value`` (as a YAML file gives it) for this parameter's type?"""
    try:
        have = value_kind(value)
    except TypeError:
        return False
    # rclpy refuses an int for a double parameter (YAML `1` vs `1.0`), so the kinds must match exactly.
    return have == param.kind


def check_value(param: Param, value: Any) -> str:
    """'' when the value is allowed, else a message naming the parameter and what is allowed."""
    values: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
    if param.range is not None:
        low, high = param.range
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
                return f"{param.name}={value!r}: must be within [{low}, {high}]"
    if param.choices is not None and value not in param.choices:
        return f"{param.name}={value!r}: must be one of {list(param.choices)}"
    return ""


def declare_parameters(node, params: Iterable[Param]) -> dict[str, Any]:
    """Declare every parameter with a typed, ranged descriptor; returns {name: value} as set at start-up.

    Raises ValueError naming every parameter whose start-up value (YAML, launch override) is out of range.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

    params = tuple(params)
    by_name = {p.name: p for p in params}
    values: dict[str, Any] = {}
    for p in params:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if p.choices is not None:
            descriptor.additional_constraints = f"one of {list(p.choices)}"
        if p.range is not None:
            descriptor.additional_constraints = f"within [{p.range[0]}, {p.range[1]}]"
            if p.kind == "float":
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                                     to_value=float(p.range[1]))]
            elif p.kind == "int":
                descriptor.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]))]
        values[p.name] = node.declare_parameter(p.name, p.default, descriptor).value
    problems = [check_value(by_name[name], value) for name, value in values.items()]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("parameter(s) out of range: " + "; ".join(problems))

    def _on_set(changes) -> "SetParametersResult":
        for change in changes:
            spec = by_name.get(change.name)
            problem = check_value(spec, change.value) if spec else ""
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_on_set)
    return values


def parameter_table(params: Iterable[Param]) -> Mapping[str, Param]:
    """{name: Param}: what a YAML test or a README generator reads."""
    return {p.name: p for p in params}
