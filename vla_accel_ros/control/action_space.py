"""The declared action space: what each model action dimension means on this robot.

A VLA model emits a bare vector; whether value 3 is a roll in rad or a joint delta, and whether gripper +1
opens or closes, depends on the data it was trained on. The user declares it per dimension (name, kind,
units, scale) plus one frame and one gripper convention, and this module checks the declaration against the
arm output chosen (a Twist needs x, y, z translation dims; a JointTrajectory needs joint dims) before the
controller commands anything. The field names are the controller_node parameter names without `action_`
so an error names the key to fix.

Units say what `value * scale` is: a per-step change ("m", "rad") or a velocity ("m/s", "rad/s"); the
control rate converts between them. The gripper value is absolute (not a delta), mapped linearly from
[gripper_open_value, gripper_closed_value] to [gripper_open_position, gripper_closed_position].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

KINDS = ("translation", "rotation", "joint", "gripper")
UNITS: dict[str, tuple[str, ...]] = {
    "translation": ("m", "m/s"),
    "rotation": ("rad", "rad/s"),
    "joint": ("rad", "m"),  # per-step position change of a revolute / prismatic joint
    "gripper": ("normalized",),
}
VELOCITY_UNITS = frozenset({"m/s", "rad/s"})
OUTPUT_TYPES = ("vla_action", "twist", "joint_trajectory")


class ActionSpaceError(ValueError):
    """A declaration the controller must not start with; the message begins with the parameter name."""


@dataclass(frozen=True)
class ActionSpace:
    """One model action vector's meaning; validated on construction (raises ActionSpaceError)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    units: tuple[str, ...]
    scales: tuple[float, ...]
    frame: str
    gripper_open_value: float = -1.0
    gripper_closed_value: float = 1.0
    joint_names: tuple[str, ...] = ()
    gripper_open_position: float = 0.04
    gripper_closed_position: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise ActionSpaceError("action_names: declare one name per model action dimension")
        for key, values in (("action_kinds", self.kinds), ("action_units", self.units)):
            _same_length(key, values, n)
        _same_length("action_scales", self.scales, n)
        if len(set(self.names)) != n:
            raise ActionSpaceError(f"action_names: names repeat: {list(self.names)}")
        for i, (kind, unit, scale) in enumerate(zip(self.kinds, self.units, self.scales, strict=True)):
            if kind not in KINDS:
                raise ActionSpaceError(f"action_kinds[{i}]: {kind!r} is not one of {', '.join(KINDS)}")
            if unit not in UNITS[kind]:
                raise ActionSpaceError(
                    f"action_units[{i}]: {unit!r} is not a unit of a {kind} dim ({', '.join(UNITS[kind])})"
                )
            if not (math.isfinite(scale) and scale > 0):
                raise ActionSpaceError(f"action_scales[{i}]: must be a finite number > 0, got {scale!r}")
        if len(self.dims("gripper")) > 1:
            raise ActionSpaceError(f"action_kinds: at most one gripper dim, got {list(self.dims('gripper'))}")
        for kind in ("translation", "rotation"):
            if len(self.dims(kind)) not in (0, 3):
                raise ActionSpaceError(
                    f"action_kinds: {kind} dims come as x, y, z (3 of them) or not at all, got "
                    f"{len(self.dims(kind))}"
                )
        if self.cartesian and not self.frame.strip():
            raise ActionSpaceError("action_frame: translation/rotation dims need a frame (e.g. base_link)")
        if self.gripper_open_value == self.gripper_closed_value:
            raise ActionSpaceError("gripper_open_value: must differ from gripper_closed_value")
        if len(set(self.joint_names)) != len(self.joint_names) or any(not j for j in self.joint_names):
            raise ActionSpaceError(
                f"joint_names: names must be non-empty and distinct: {list(self.joint_names)}"
            )

    @property
    def dim(self) -> int:
        return len(self.names)

    def dims(self, kind: str) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.kinds) if k == kind)

    @property
    def gripper_dim(self) -> int | None:
        g = self.dims("gripper")
        return g[0] if g else None

    @property
    def cartesian(self) -> bool:
        """True when some dims are end-effector deltas (translation or rotation)."""
        return bool(self.dims("translation") or self.dims("rotation"))

    def check_output(self, output_type: str) -> None:
        """Refuse an arm output this declaration cannot drive (why: a wrong mapping moves the wrong axes)."""
        if output_type not in OUTPUT_TYPES:
            raise ActionSpaceError(f"output_type: {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")
        joints = self.dims("joint")
        if output_type == "twist":
            if joints:
                raise ActionSpaceError(
                    "output_type: 'twist' needs end-effector dims; action_kinds has joint dims "
                    f"{list(joints)} (use joint_trajectory or vla_action)"
                )
            if not self.dims("translation"):
                raise ActionSpaceError(
                    "output_type: 'twist' needs 3 translation dims (x, y, z) in action_kinds"
                )
        if output_type == "joint_trajectory":
            if self.cartesian:
                cart = sorted(self.dims("translation") + self.dims("rotation"))
                raise ActionSpaceError(
                    "output_type: 'joint_trajectory' cannot take end-effector deltas (action_kinds dims "
                    f"{cart} are translation/rotation; use twist, or a model with joint dims)"
                )
            if not joints:
                raise ActionSpaceError("output_type: 'joint_trajectory' needs joint dims in action_kinds")
            n_grip = len(self.dims("gripper"))
            if len(self.joint_names) not in (len(joints), len(joints) + n_grip):
                want = f"{len(joints)}" + (
                    f" or {len(joints) + n_grip} (with the gripper joint)" if n_grip else ""
                )
                raise ActionSpaceError(
                    f"joint_names: {len(self.joint_names)} names, need {want}: one per joint dim, in "
                    "action order"
                )

    # -- conversions -------------------------------------------------------------------------------------
    def per_second(self, rate_hz: float) -> np.ndarray:
        """Velocity per action unit of every dim: a per-step change happens once per control period."""
        s = np.asarray(self.scales, dtype=np.float64)
        step = np.array([u not in VELOCITY_UNITS for u in self.units])
        return np.where(step, s * rate_hz, s)

    def per_step(self, rate_hz: float) -> np.ndarray:
        """Physical change per action unit within one control period, for every dim."""
        return self.per_second(rate_hz) / rate_hz

    def twist(self, action: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """(linear m/s, angular rad/s) of an end-effector action; zero angular without rotation dims."""
        a = np.asarray(action, dtype=np.float64) * self.per_second(rate_hz)
        linear = a[list(self.dims("translation"))]
        rot = self.dims("rotation")
        angular = a[list(rot)] if rot else np.zeros(3)
        return linear, angular

    def gripper_position(self, value: float) -> float:
        """Gripper joint position of an absolute gripper command (clamped between open and closed)."""
        t = (value - self.gripper_open_value) / (self.gripper_closed_value - self.gripper_open_value)
        t = min(1.0, max(0.0, t))
        return self.gripper_open_position + t * (self.gripper_closed_position - self.gripper_open_position)

    def joint_targets(
        self, action: np.ndarray, current: Mapping[str, float], keep_gripper: bool = False
    ) -> list[float]:
        """Positions for joint_names: current + delta * scale per joint dim; the gripper joint (if named)
        from the convention, or its current position with keep_gripper. KeyError names a missing joint."""
        a = np.asarray(action, dtype=np.float64)
        step = self.per_step(1.0)  # joint units are per-step changes (validated)
        targets = []
        named = zip(self.joint_names, self.dims("joint") + self.dims("gripper"), strict=False)
        for name, i in named:
            if name not in current:
                raise KeyError(name)
            if self.kinds[i] == "gripper":
                targets.append(float(current[name]) if keep_gripper else self.gripper_position(float(a[i])))
            else:
                targets.append(float(current[name]) + float(a[i]) * float(step[i]))
        return targets


def _same_length(key: str, values: Sequence[object], n: int) -> None:
    if len(values) != n:
        raise ActionSpaceError(
            f"{key}: {len(values)} values, action_names has {n} (one per model action dimension)"
        )


# The built-in Meta-World action: (dx, dy, dz, gripper) in [-1, 1], 1/100 m per unit per step, +1 = close.
META_WORLD = ActionSpace(
    names=("dx", "dy", "dz", "gripper"),
    kinds=("translation", "translation", "translation", "gripper"),
    units=("m", "m", "m", "normalized"),
    scales=(0.01, 0.01, 0.01, 1.0),
    frame="base_link",
    gripper_open_value=-1.0,
    gripper_closed_value=1.0,
)

# The LIBERO arm's 7-D OSC_POSE action (vla_accel_ros.sim.libero_arm): (dx, dy, dz, droll, dpitch, dyaw,
# gripper) in [-1, 1], robosuite's OSC_POSE output_max per unit and step (0.05 m, 0.5 rad axis-angle) in
# the world frame, -1 = open, +1 = close; config/libero.yaml declares it for the controller node.
LIBERO = ActionSpace(
    names=("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
    kinds=("translation",) * 3 + ("rotation",) * 3 + ("gripper",),
    units=("m",) * 3 + ("rad",) * 3 + ("normalized",),
    scales=(0.05,) * 3 + (0.5,) * 3 + (1.0,),
    frame="world",
    gripper_open_value=-1.0,
    gripper_closed_value=1.0,
)
