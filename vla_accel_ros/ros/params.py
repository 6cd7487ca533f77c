"""Parameters of the four nodes: one typed table per node, the single source of truth.

Each node's table is a frozen dataclass whose fields carry the ROS metadata (description, range, allowed
strings, read-only) via `param(...)`. From it come the ParameterDescriptors a node declares, the typed
values the node reads, the validation of start-up and run-time values (one code path: `__post_init__`),
and config/vla_accel.yaml (`python -m vla_accel_ros.ros.params > config/vla_accel.yaml`).

Why not one dict of defaults: names spelled once, types checked once, and a test can compare the YAML
with what the nodes declare.
"""

from __future__ import annotations

import array
import enum
import math
import sys
import textwrap
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from vla_accel_ros.control import PrecisionPolicy, SafetyLimits, ThresholdPolicy
from vla_accel_ros.control.action_space import KINDS, OUTPUT_TYPES, UNITS, ActionSpace
from vla_accel_ros.control.threshold_policy import DIRECTIONS
from vla_accel_ros.kinematics import ActionKalman, KalmanCompensator, ProxyCalibration
from vla_accel_ros.sim.tasks import parse_task_list

DECODINGS = ("ar", "spec", "specvla", "kerv")
# Declared by rclpy on every node; allowed in params files, not part of the tables.
BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
# Policy.precisions of the runtime's full-precision mode (vla_accel_ros.policy.runtime.FULL_PRECISION).
FULL_PRECISION = "fp32"


class ParameterError(ValueError):
    """A parameter value a node must not start (or continue) with; the message names the parameter."""


class Kind(enum.Enum):
    BOOL = Parameter.Type.BOOL
    INT = Parameter.Type.INTEGER
    FLOAT = Parameter.Type.DOUBLE
    STR = Parameter.Type.STRING
    INT_ARRAY = Parameter.Type.INTEGER_ARRAY
    FLOAT_ARRAY = Parameter.Type.DOUBLE_ARRAY
    STR_ARRAY = Parameter.Type.STRING_ARRAY

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
    name: str
    kind: Kind
    default: Any
    meta: Meta

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(
            name=self.name,
            type=self.kind.value.value,
            description=self.meta.description,
            read_only=self.meta.read_only,
        )
        rng = self.meta.range
        if rng is not None and self.kind is Kind.FLOAT:
            d.floating_point_range = [
                FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)
            ]
        elif rng is not None and self.kind is Kind.INT:
            d.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
        constraints = []
        if rng is not None and self.kind.is_array:
            constraints.append(f"each element in [{rng[0]}, {rng[1]}]")
        if self.meta.choices:
            constraints.append("one of: " + ", ".join(self.meta.choices))
        d.additional_constraints = "; ".join(constraints)
        return d

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


# --------------------------------------------------------------------------------------------------
# The four tables.


@dataclass(frozen=True)
class InferenceParams(NodeParams):
    NODE: ClassVar[str] = "inference_node"

    # Model
    model_path: str = param(
        "builtin", "Checkpoint directory, or 'builtin' for the packaged model.", read_only=True
    )
    allow_pickle: bool = param(
        False,
        "Allow a pickle-based checkpoint (.bin/.pt/.pth/.pkl/.ckpt), which can run code when loaded; only "
        "for a checkpoint from a trusted source (safetensors needs no such trust).",
        read_only=True,
    )
    device: str = param(
        "auto",
        "Torch device for the policy ('auto': the policy's own choice).",
        choices=("auto", "cpu", "cuda"),
        read_only=True,
    )
    norm_stats_file: str = param(
        "",
        "JSON of `vla-accel stats` for your robot: its action q01/q99 (and joint mean/std) replace the "
        "checkpoint's. Dimensions must match the model's, else the model is not loaded ('' = the "
        "checkpoint's own statistics).",
        read_only=True,
    )
    precision_ladder: str = param(
        "none",
        "Weights the precision modes are served from: 'none' (the checkpoint as stored, one mode) or "
        "'int4' (quantized once at load to int4 groups; modes w4a4-emu, w4a8-emu, w4a16, switched per "
        "step by the controller's AccelConfig: set controller_node.precision_modes to the same names), or "
        "'int4-whole' (the same, with the token table and the head, cut to the action bins, in the int4 "
        "copy too: the smallest footprint, docs/PRECISION.md).",
        choices=("none", "int4", "int4-whole"),
        read_only=True,
    )
    quant_group_size: int = param(
        32,
        "int4 group size along the input dimension (32 kept 95 % token agreement on the 135 M model, "
        "64 only 41 %; docs/PRECISION.md). A multiple of 32 that divides every layer's input size.",
        range=(32, 256),
        read_only=True,
    )
    num_threads: int = param(
        0,
        "CPU threads for torch (0: torch's default). 1 when the graph shares a few cores: measured 24 ms "
        "vs. 1.8 s per action with 2 threads on a loaded 2-core machine.",
        range=(0, 1024),
        read_only=True,
    )
    # Inputs
    camera_names: tuple[str, ...] = param(
        ("corner", "wrist"), "Policy camera names, in the order of camera_topics.", read_only=True
    )
    camera_topics: tuple[str, ...] = param(
        ("camera/image_raw", "wrist_camera/image_raw"),
        "Image topics (sensor_msgs/Image), one per camera name; relative names follow the namespace.",
        read_only=True,
    )
    image_transport: str = param(
        "raw",
        "'raw': sensor_msgs/Image on each topic; 'compressed': CompressedImage on <topic>/compressed.",
        choices=("raw", "compressed"),
        read_only=True,
    )
    max_image_age_s: float = param(
        0.5, "Images older than this (header stamp vs. node clock) are not acted on.", range=(0.001, 3600.0)
    )
    max_state_age_s: float = param(
        0.5, "Joint states and Kalman predictions older than this are not used.", range=(0.001, 3600.0)
    )
    # Stepping
    trigger: str = param(
        "timer",
        "'timer': one inference per control_rate_hz tick; 'image': one per new set of camera frames "
        "(lockstep simulation: the graph advances as fast as inference allows).",
        choices=("timer", "image"),
        read_only=True,
    )
    control_rate_hz: float = param(
        10.0, "Inference rate with trigger 'timer'.", range=(0.1, 200.0), read_only=True
    )
    sync_timeout_s: float = param(
        0.25,
        "Trigger 'image': wait up to this long for the joint state, Kalman prediction and AccelConfig of the "
        "same step (stamps >= the image stamp), then run with what is there (0: never wait).",
        range=(0.0, 10.0),
    )
    # Modes used until (or when) the controller's AccelConfig does not say otherwise
    default_precision: str = param(
        "top",
        "Precision before the first AccelConfig and instead of an unknown one (flagged); 'top': the policy's "
        "most precise mode (the last of Policy.precisions).",
    )
    default_decoding: str = param("ar", "Decoding before the first AccelConfig.", choices=DECODINGS)
    default_threshold: float = param(
        0.0, "Relaxed acceptance threshold (bins) before the first AccelConfig.", range=(0.0, 255.0)
    )

    def check(self) -> None:
        if len(self.camera_names) != len(self.camera_topics):
            raise ParameterError(
                f"{self.NODE}: camera_names has {len(self.camera_names)} entries, camera_topics "
                f"{len(self.camera_topics)}"
            )
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ParameterError(f"{self.NODE}.camera_names: names repeat: {list(self.camera_names)}")
        if not self.default_precision.strip():
            raise ParameterError(f"{self.NODE}.default_precision: must not be empty")


@dataclass(frozen=True)
class KinematicsParams(NodeParams):
    NODE: ClassVar[str] = "kinematics_node"

    # Proxy calibration (from `vla-accel calibrate` on demonstrations)
    mu95: float = param(
        1.0, "95th percentile of the executed translation magnitude ||a_xyz||.", range=(1e-9, 1e6)
    )
    nu95: float = param(
        0.5,
        "95th percentile of the raw jerk (rotation change; translation change for 4-D).",
        range=(1e-9, 1e6),
    )
    phi95: float = param(0.5, "95th percentile of the raw motion fluctuation.", range=(1e-9, 1e6))
    window_m: int = param(10, "Trailing window of motion fineness M (steps).", range=(1, 10000))
    window_j: int = param(5, "Trailing window of angular jerk J (steps).", range=(1, 10000))
    window_f: int = param(10, "Window of the motion fluctuation (steps).", range=(1, 10000))
    weight: float = param(0.5, "Weight of M in the sensitivity S = w*M + (1-w)*J.", range=(0.0, 1.0))
    # KERV Kalman prediction
    kalman_q: tuple[float, ...] = param(
        (1e-3,), "Process noise per action dimension (one value: all dimensions).", range=(0.0, 1e6)
    )
    kalman_r: tuple[float, ...] = param(
        (1e-2,), "Measurement noise per action dimension (one value: all dimensions).", range=(1e-12, 1e6)
    )
    history_length: int = param(10, "Executed actions in the Kalman window (KERV AC).", range=(2, 1000))
    cooldown_steps: int = param(
        4, "Steps without compensation after a Kalman fill (KERV n).", range=(0, 1000)
    )
    # Joint-space derivatives
    joint_max_gap_s: float = param(
        0.5, "A joint-state gap longer than this restarts the finite differences.", range=(1e-3, 3600.0)
    )

    def check(self) -> None:
        self.proxy_calibration()

    def compensator(self, action_dim: int) -> KalmanCompensator:
        """KERV Kalman filter with its fill cool-down; the action dimension comes from the first action."""
        kalman = ActionKalman(action_dim, self.kalman_q, self.kalman_r, self.history_length)
        return KalmanCompensator(kalman, cooldown=self.cooldown_steps)

    def proxy_calibration(self) -> ProxyCalibration:
        return ProxyCalibration(
            mu95=self.mu95,
            nu95=self.nu95,
            phi95=self.phi95,
            window_m=self.window_m,
            window_j=self.window_j,
            weight=self.weight,
            window_f=self.window_f,
        )


@dataclass(frozen=True)
class ControllerParams(NodeParams):
    NODE: ClassVar[str] = "controller_node"

    # Output
    dry_run: bool = param(
        True, "Never command the arm (safe default); /vla/action_safe is still published for monitoring."
    )
    output_type: str = param(
        "vla_action",
        "Arm command type: 'vla_action' (VlaAction), 'twist' (TwistStamped, MoveIt Servo; end-effector "
        "dims) or 'joint_trajectory' (trajectory_msgs/JointTrajectory, ros2_control "
        "JointTrajectoryController; joint dims, needs joint_states).",
        choices=OUTPUT_TYPES,
        read_only=True,
    )
    control_rate_hz: float = param(
        10.0,
        "Rate of the model's actions: converts per-step units (m, rad) to velocities for twist, and is "
        "1 / time_from_start of a joint_trajectory point.",
        range=(0.1, 1000.0),
    )
    # The declared action space (vla_accel_ros.control.action_space), one entry per model action dim.
    action_names: tuple[str, ...] = param(
        ("dx", "dy", "dz", "gripper"),
        "Name of each model action dimension; its length is the action dimension (Meta-World: 4; "
        "OpenVLA-style: dx, dy, dz, droll, dpitch, dyaw, gripper).",
        read_only=True,
    )
    action_kinds: tuple[str, ...] = param(
        ("translation", "translation", "translation", "gripper"),
        "Kind of each dim: translation / rotation (end-effector deltas about x, y, z, in action_frame), "
        "joint (joint-position delta) or gripper (absolute command, at most one).",
        choices=KINDS,
        read_only=True,
    )
    action_units: tuple[str, ...] = param(
        ("m", "m", "m", "normalized"),
        "Units of value * scale per dim: a per-step change (m, rad) or a velocity (m/s, rad/s); joint: rad "
        "or m; gripper: normalized.",
        choices=tuple(dict.fromkeys(u for units in UNITS.values() for u in units)),
        read_only=True,
    )
    action_scales: tuple[float, ...] = param(
        (0.01, 0.01, 0.01, 1.0),
        "Units per action unit of each dim (Meta-World moves 1/100 m per unit and step).",
        range=(1e-9, 1e6),
        read_only=True,
    )
    action_frame: str = param(
        "base_link",
        "Frame of the translation/rotation dims: frame_id of the Twist, of ee_pose and the workspace box.",
        read_only=True,
    )
    gripper_open_value: float = param(
        -1.0, "Model gripper value meaning fully open (Meta-World: -1; OpenVLA/Bridge: 1).", range=(-1e6, 1e6)
    )
    gripper_closed_value: float = param(
        1.0,
        "Model gripper value meaning fully closed (Meta-World: +1; OpenVLA/Bridge: 0).",
        range=(-1e6, 1e6),
    )
    joint_names: tuple[str, ...] = param(
        (),
        "joint_trajectory: the joint of each joint dim, in action order, then optionally the gripper joint "
        "(else the gripper is not commanded).",
        read_only=True,
        optional=True,
    )
    gripper_open_position: float = param(
        0.04, "joint_trajectory: gripper joint position when fully open (m or rad).", range=(-1e3, 1e3)
    )
    gripper_closed_position: float = param(
        0.0, "joint_trajectory: gripper joint position when fully closed (m or rad).", range=(-1e3, 1e3)
    )
    # Safety (vla_accel_ros.control.SafetyGuard); limits in action units
    action_min: tuple[float, ...] = param(
        (-1.0, -1.0, -1.0, -1.0),
        "Per-dimension lower clip, one per action_names entry.",
        range=(-1e6, 1e6),
    )
    action_max: tuple[float, ...] = param(
        (1.0, 1.0, 1.0, 1.0), "Per-dimension upper clip, one per action_names entry.", range=(-1e6, 1e6)
    )
    max_translation: float = param(
        1.8,
        "Largest norm of the translation dims passed on (action units); a larger one is refused (hold).",
        range=(0.0, 1e6),
    )
    max_rotation: float = param(
        1.8,
        "Largest norm of the rotation dims passed on (action units; actions with rotation dims).",
        range=(0.0, 1e6),
    )
    max_joint_delta: float = param(
        1.0, "Largest |joint dim| passed on (action units; actions with joint dims).", range=(0.0, 1e6)
    )
    max_gripper_change: float = param(
        2.0, "Largest gripper change between two accepted commands (action units).", range=(0.0, 1e6)
    )
    workspace_min: tuple[float, ...] = param(
        (),
        "End-effector box lower corner x, y, z (m, in action_frame); [] = no box. With a box, actions are "
        "held until a fresh ee_pose (geometry_msgs/PoseStamped, subscribed only with a box) arrives; a move "
        "leaving the box is refused.",
        range=(-1e3, 1e3),
        read_only=True,
        optional=True,
    )
    workspace_max: tuple[float, ...] = param(
        (),
        "End-effector box upper corner x, y, z (m); [] = no box.",
        range=(-1e3, 1e3),
        read_only=True,
        optional=True,
    )
    watchdog_timeout_s: float = param(
        1.0,
        "No fresh VlaAction for this long (after the first): hold (zero motion, gripper kept) once per "
        "period and ERROR on /diagnostics.",
        range=(0.01, 60.0),
    )
    max_rate_hz: float = param(50.0, "Arm commands faster than this are dropped.", range=(0.1, 1000.0))
    # DyQ precision switching (vla_accel_ros.control.PrecisionPolicy)
    precision_switching: bool = param(
        True, "Choose the precision from the kinematic sensitivity (else always the top mode)."
    )
    precision_modes: tuple[str, ...] = param(
        (FULL_PRECISION,),
        "Precision ladder, cheapest first, top (most precise) last; Policy.precisions names.",
    )
    top_threshold: float = param(0.5, "Sensitivity S above which the top mode runs.", range=(0.0, 100.0))
    precision_table_bounds: tuple[float, ...] = param(
        (0.5,),
        "Upper S bounds, increasing: the first with S <= bound selects precision_table_modes[i].",
        range=(0.0, 100.0),
    )
    precision_table_modes: tuple[str, ...] = param(
        (FULL_PRECISION,), "Mode of each bound (names from precision_modes)."
    )
    downgrade_after: int = param(
        5, "Steady steps before moving to a lower mode (upgrades are immediate).", range=(1, 100000)
    )
    # Decoding and the KERV threshold (vla_accel_ros.control.ThresholdPolicy)
    decoding: str = param("ar", "Decoding the controller asks for.", choices=DECODINGS)
    specvla_threshold: float = param(
        9.0, "Fixed relaxed threshold (bins) of decoding 'specvla'.", range=(0.0, 255.0)
    )
    r_min: float = param(5.0, "Smallest KERV threshold (bins).", range=(0.0, 255.0))
    r_max: float = param(15.0, "Largest KERV threshold (bins).", range=(0.0, 255.0))
    fluctuation_lo: float = param(
        0.0, "Normalized fluctuation at or below which the threshold is at one end.", range=(0.0, 1e6)
    )
    fluctuation_hi: float = param(
        1.0, "Normalized fluctuation at or above which the threshold is at the other end.", range=(0.0, 1e6)
    )
    threshold_direction: str = param(
        "tighten_on_fluctuation",
        "Whether fluctuating motion narrows or widens the KERV threshold.",
        choices=DIRECTIONS,
    )
    # Visualization
    marker_frame_id: str = param("base_link", "frame_id of /vla/markers.")
    marker_scale: float = param(0.1, "Marker arrow length (m) per action unit.", range=(1e-6, 100.0))

    def check(self) -> None:
        n = self.NODE
        try:
            self.action_space().check_output(self.output_type)
        except ValueError as err:
            raise ParameterError(f"{n}.{err}") from err
        for key in ("action_min", "action_max"):
            if len(getattr(self, key)) != self.action_dim:
                raise ParameterError(
                    f"{n}.{key}: {len(getattr(self, key))} values, action_names has {self.action_dim} "
                    "(one per model action dimension)"
                )
        if len(self.precision_table_bounds) != len(self.precision_table_modes):
            raise ParameterError(
                f"{n}: precision_table_bounds has {len(self.precision_table_bounds)} values, "
                f"precision_table_modes {len(self.precision_table_modes)}"
            )
        # The algorithms validate their own settings: build them once, report with the node's name.
        self.safety_limits()
        self.precision_policy()
        self.threshold_policy()

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def action_space(self) -> ActionSpace:
        return ActionSpace(
            names=self.action_names,
            kinds=self.action_kinds,
            units=self.action_units,
            scales=self.action_scales,
            frame=self.action_frame,
            gripper_open_value=self.gripper_open_value,
            gripper_closed_value=self.gripper_closed_value,
            joint_names=self.joint_names,
            gripper_open_position=self.gripper_open_position,
            gripper_closed_position=self.gripper_closed_position,
        )

    def safety_limits(self) -> SafetyLimits:
        space = self.action_space()
        box = bool(self.workspace_min or self.workspace_max)
        if box and not space.dims("translation"):
            raise ParameterError(
                f"{self.NODE}.workspace_min: a workspace box needs translation dims in action_kinds (a "
                "joint-space action gives no end-effector move to check); set workspace_min/max to []"
            )
        return SafetyLimits(
            action_dim=self.action_dim,
            kinds=self.action_kinds,
            max_translation=self.max_translation if space.dims("translation") else None,
            max_rotation=self.max_rotation if space.dims("rotation") else None,
            max_joint_delta=self.max_joint_delta if space.dims("joint") else None,
            clip_min=self.action_min,
            clip_max=self.action_max,
            max_gripper_change=self.max_gripper_change if space.gripper_dim is not None else None,
            workspace_min=self.workspace_min or None,
            workspace_max=self.workspace_max or None,
            translation_scale=space.per_step(self.control_rate_hz)[list(space.dims("translation"))]
            if box
            else 1.0,
        )

    def precision_policy(self) -> PrecisionPolicy:
        table = list(zip(self.precision_table_bounds, self.precision_table_modes, strict=True))
        return PrecisionPolicy(self.precision_modes, self.top_threshold, table, self.downgrade_after)

    def threshold_policy(self) -> ThresholdPolicy:
        return ThresholdPolicy(
            self.r_min, self.r_max, self.fluctuation_lo, self.fluctuation_hi, self.threshold_direction
        )


@dataclass(frozen=True)
class SimArmParams(NodeParams):
    NODE: ClassVar[str] = "sim_arm_node"

    task: str = param(
        "reach",
        "Meta-World task ('reach' or 'reach-v3'), a comma-separated list, or 'all' "
        "(episodes go round the list).",
        read_only=True,
    )
    seed_start: int = param(
        1_000_000,
        "Seed of the first episode of each task (evaluation layouts).",
        range=(0, 2**31 - 1),
        read_only=True,
    )
    episodes: int = param(0, "Episodes to run in all (0: until stopped).", range=(0, 10**6), read_only=True)
    max_steps: int = param(
        200, "Steps after which an unsuccessful episode ends.", range=(1, 100000), read_only=True
    )
    image_size: int = param(64, "Camera image width and height (pixels).", range=(8, 1024), read_only=True)
    lockstep: bool = param(
        True,
        "Step when a new command arrives (closed loop matches offline evaluation); else step at "
        "control_rate_hz with the latest command.",
        read_only=True,
    )
    control_rate_hz: float = param(
        10.0, "Step rate when not in lockstep.", range=(0.1, 1000.0), read_only=True
    )
    hold_timeout_s: float = param(
        2.0,
        "Lockstep: with no command for this long, step once with a hold (zero motion); before the first "
        "command, the observation is republished instead.",
        range=(0.01, 600.0),
    )
    command_type: str = param(
        "vla_action",
        "Command message: 'vla_action' (VlaAction) or 'twist' (TwistStamped).",
        choices=("vla_action", "twist"),
        read_only=True,
    )
    twist_linear_scale: float = param(
        0.1, "Twist commands: m/s per action unit (as the controller's).", range=(1e-6, 10.0)
    )

    def check(self) -> None:
        try:
            parse_task_list(self.task)
        except ValueError as err:
            raise ParameterError(f"{self.NODE}.task: {err}") from err


NODE_PARAMS: dict[str, type[NodeParams]] = {
    cls.NODE: cls for cls in (InferenceParams, KinematicsParams, ControllerParams, SimArmParams)
}


# --------------------------------------------------------------------------------------------------
# Declaring on a node.


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
                "", [(i.name, _ros_value(i.default, i.kind), i.descriptor()) for i in cls.infos()]
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
        return list(value) if value else kind.value
    return value


# --------------------------------------------------------------------------------------------------
# YAML (the nodes' params file, the launcher's overrides).


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


def render_yaml(sections: Mapping[str, Mapping[str, Any]], comments: bool = True) -> str:
    """Params-file text: `/**/<node>: ros__parameters:` per node (any namespace matches)."""
    lines: list[str] = []
    for node, values in sections.items():
        cls = NODE_PARAMS[node]
        lines.append(f"/**/{node}:")
        lines.append("  ros__parameters:")
        for name, value in values.items():
            if comments and name in cls.names():
                info = cls.info(name)
                extra = []
                if info.meta.range is not None:
                    extra.append(f"range [{info.meta.range[0]}, {info.meta.range[1]}]")
                if info.meta.choices:
                    extra.append("one of " + ", ".join(info.meta.choices))
                if info.meta.read_only:
                    extra.append("read-only")
                note = f" ({'; '.join(extra)})" if extra else ""
                lines.extend(
                    textwrap.wrap(
                        info.meta.description + note,
                        100,
                        initial_indent="    # ",
                        subsequent_indent="    #   ",
                        break_on_hyphens=False,
                    )
                )
            lines.append(f"    {name}: {yaml_scalar(value)}")
        lines.append("")
    return "\n".join(lines)


def default_yaml() -> str:
    header = (
        "# Parameters of the vla_accel_ros graph, one section per node. Generated from the tables in\n"
        "# vla_accel_ros/ros/params.py (`python -m vla_accel_ros.ros.params > config/vla_accel.yaml`);\n"
        "# test/test_params.py checks that every declared parameter is here and nothing else.\n"
        "# Calibration values (kinematics_node; controller_node thresholds) come from\n"
        "# `vla-accel calibrate`.\n\n"
    )
    return header + render_yaml({n: cls().to_mapping() for n, cls in NODE_PARAMS.items()})


def read_params_files(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Merge params files (later wins) into node -> {name: value}; keys may be `node` or `/**/node`."""
    import yaml

    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ParameterError(f"{path}: expected a mapping of node names")
        for key, section in data.items():
            node = str(key).rsplit("/", 1)[-1]
            if node not in NODE_PARAMS:
                raise ParameterError(f"{path}: unknown node {key!r}; known: {', '.join(NODE_PARAMS)}")
            values = (section or {}).get("ros__parameters")
            if not isinstance(values, dict):
                raise ParameterError(f"{path}: {key} has no ros__parameters mapping")
            merged.setdefault(node, {}).update(values)
    return merged


def validate_sections(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, NodeParams]:
    """Build every node's table from merged params files; ParameterError names the first bad value."""
    return {node: NODE_PARAMS[node].from_mapping(values) for node, values in sections.items()}


if __name__ == "__main__":
    sys.stdout.write(default_yaml())
