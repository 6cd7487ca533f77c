"""The graph's parameters for offline runs: the same files, the same tables, the same decision objects.

`vla-accel up --sim` loads config/vla_accel.yaml, then config/calibration.yaml (from `vla-accel
calibrate`) and, for DyQ, config/dyq.yaml (from `vla-accel calibrate-dyq`). Evaluation, replay,
calibration and every benchmark load `GraphSettings` from the same files in the same order and build
their precision policy, threshold policy, Kalman filter and precision ladder from the typed tables,
so a row in docs/ decides each step as the running graph does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vla_accel_ros.params.files import config_dir
from vla_accel_ros.params.tables import ControllerParams, InferenceParams, KinematicsParams
from vla_accel_ros.params.yaml_io import merge_sections, read_params_file

GRAPH_FILE = "vla_accel.yaml"
CALIBRATION_FILE = "calibration.yaml"
DYQ_FILE = "dyq.yaml"


def default_files(config: Path | None = None, dyq: bool = False) -> list[Path]:
    """The params files of the graph, in load order: the tables' YAML, the calibration, and (dyq) the
    DyQ overlay; optional files that do not exist are skipped by `GraphSettings.load`."""
    config = config_dir() if config is None else Path(config)
    files = [config / GRAPH_FILE, config / CALIBRATION_FILE]
    return files + [config / DYQ_FILE] if dyq else files


@dataclass(frozen=True)
class GraphSettings:
    """The inference, kinematics and controller tables as the graph would have them from `files`."""

    inference: InferenceParams
    kinematics: KinematicsParams
    controller: ControllerParams
    files: tuple[Path, ...] = ()

    @classmethod
    def load(
        cls,
        files: Sequence[str | Path] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> GraphSettings:
        """Tables from params files (default: `default_files()`; the first must exist, later ones are
        optional overlays), then `overrides` ({node: {name: value}}); ParameterError names a bad value."""
        paths = [Path(f) for f in (default_files() if files is None else files)]
        layers = [read_params_file(p, missing_ok=i > 0) for i, p in enumerate(paths)]
        return cls.from_sections(merge_sections(*layers, overrides or {}), tuple(paths))

    @classmethod
    def from_sections(
        cls, sections: Mapping[str, Mapping[str, Any]], files: tuple[Path, ...] = ()
    ) -> GraphSettings:
        return cls(
            InferenceParams.from_mapping(sections.get(InferenceParams.NODE, {})),
            KinematicsParams.from_mapping(sections.get(KinematicsParams.NODE, {})),
            ControllerParams.from_mapping(sections.get(ControllerParams.NODE, {})),
            files,
        )

    def sections(self) -> dict[str, dict[str, Any]]:
        """node -> every parameter's value (what a params file of these settings would hold)."""
        return {t.NODE: t.to_mapping() for t in (self.inference, self.kinematics, self.controller)}

    def with_values(self, node: str, **values: Any) -> GraphSettings:
        """A copy with some parameters of one node changed (validated as a run-time change would be)."""
        tables = {t.NODE: t for t in (self.inference, self.kinematics, self.controller)}
        tables[node] = replace(tables[node], **values)
        return GraphSettings(
            tables[InferenceParams.NODE],
            tables[KinematicsParams.NODE],
            tables[ControllerParams.NODE],
            self.files,
        )

    def describe(self) -> str:
        """Which files these settings came from (for reports)."""
        return " + ".join(p.name for p in self.files if p.is_file()) or "table defaults"
