"""Params files: the one reader and writer of the nodes' YAML (rcl's params-file layout), without rclpy.

A params file has a top key per node (`controller_node` or `/**/controller_node`, any namespace) with a
`ros__parameters` mapping. The launcher, the offline settings and the calibration commands all read
and write it here, so rcl and the offline code agree on every value.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vla_accel_ros.params.schema import NodeParams, ParameterError
from vla_accel_ros.params.tables import NODE_PARAMS


def yaml_scalar(value: Any) -> str:
    """One value as YAML that rcl and PyYAML read alike (strings quoted: `y`/`on` are booleans to rcl)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"  # PyYAML (YAML 1.1) needs a dot to read a float
        return text
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    raise TypeError(f"no YAML form for {value!r}")


def _comment(cls: type[NodeParams], name: str) -> list[str]:
    info = cls.info(name)
    extra = []
    if info.meta.range is not None:
        extra.append(f"range [{info.meta.range[0]}, {info.meta.range[1]}]")
    if info.meta.choices:
        extra.append("one of " + ", ".join(info.meta.choices))
    if info.meta.read_only:
        extra.append("read-only")
    note = f" ({'; '.join(extra)})" if extra else ""
    return textwrap.wrap(
        info.meta.description + note,
        100,
        initial_indent="    # ",
        subsequent_indent="    #   ",
        break_on_hyphens=False,
    )


def render_yaml(sections: Mapping[str, Mapping[str, Any]], comments: bool = True) -> str:
    """Params-file text: `/**/<node>: ros__parameters:` per node (any namespace matches)."""
    lines: list[str] = []
    for node, values in sections.items():
        cls = NODE_PARAMS[node]
        lines.append(f"/**/{node}:")
        lines.append("  ros__parameters:")
        for name, value in values.items():
            if comments and name in cls.names():
                lines.extend(_comment(cls, name))
            lines.append(f"    {name}: {yaml_scalar(value)}")
        lines.append("")
    return "\n".join(lines)


def default_yaml() -> str:
    """config/vla_accel.yaml as generated from the tables' defaults."""
    header = (
        "# Parameters of the vla_accel_ros graph, one section per node. Generated from the tables in\n"
        "# vla_accel_ros/params/tables.py (`python -m vla_accel_ros.params > config/vla_accel.yaml`);\n"
        "# test/test_params.py checks that every declared parameter is here and nothing else.\n"
        "# Calibration values (kinematics_node; controller_node thresholds) come from\n"
        "# `vla-accel calibrate`.\n\n"
    )
    return header + render_yaml({n: cls().to_mapping() for n, cls in NODE_PARAMS.items()})


def _sections(path: Path, data: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of node names")
    out: dict[str, dict[str, Any]] = {}
    for key, section in data.items():
        node = str(key).rsplit("/", 1)[-1]
        if node not in NODE_PARAMS:
            raise ParameterError(f"{path}: unknown node {key!r}; known: {', '.join(NODE_PARAMS)}")
        values = (section or {}).get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(values, dict):
            raise ParameterError(f"{path}: {key} has no ros__parameters mapping")
        out.setdefault(node, {}).update(values)
    return out


def read_params_file(path: str | Path, missing_ok: bool = False) -> dict[str, dict[str, Any]]:
    """node -> {name: value} of one params file; {} for a missing file when `missing_ok` (optional
    overlays such as calibration.yaml); ParameterError for a file that is not a params file."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParameterError(f"{path}: not valid YAML ({err})") from err
    return _sections(path, data)


def merge_sections(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later layers win, per parameter (as rcl applies several --params-file)."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for node, values in layer.items():
            merged.setdefault(node, {}).update(values)
    return merged


def read_params_files(paths: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Merge params files (later wins) into node -> {name: value}; keys may be `node` or `/**/node`."""
    return merge_sections(*(read_params_file(p) for p in paths))


def validate_sections(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, NodeParams]:
    """Build every node's table from merged params files; ParameterError names the first bad value."""
    return {node: NODE_PARAMS[node].from_mapping(values) for node, values in sections.items()}


def write_params_file(path: Path, sections: Mapping[str, Mapping[str, Any]], header: Sequence[str]) -> None:
    """A params file with `header` lines as comments (provenance), values in the `/**/node` layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {f"/**/{node}": {"ros__parameters": dict(values)} for node, values in sections.items()}
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(data, sort_keys=True)
    path.write_text(text, encoding="utf-8")
