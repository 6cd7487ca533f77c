"""The parameter tables of the four nodes: the single source of truth for names, types, ranges, defaults.

The nodes declare them (`vla_accel_ros.ros.params`), config/vla_accel.yaml is generated from them
(`python -m vla_accel_ros.params > config/vla_accel.yaml`), and every offline run builds its decision
objects from them (`vla_accel_ros.params.settings`), so a benchmark row decides as the graph does.

Why not one dict of defaults: names spelled once, types checked once, and a test can compare the YAML
with what the nodes declare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vla_accel_ros.control.action_space import KINDS, OUTPUT_TYPES, UNITS, ActionSpace
from vla_accel_ros.control.joint_guard import JointLimits
from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.safety import SafetyLimits
from vla_accel_ros.control.threshold_policy import DIRECTIONS, ThresholdPolicy
from vla_accel_ros.kinematics.kalman import ActionKalman, KalmanCompensator
from vla_accel_ros.kinematics.proxies import ProxyCalibration
from vla_accel_ros.params.schema import NodeParams, ParameterError, param
from vla_accel_ros.sim.tasks import parse_task_list

DECODINGS = ("ar", "spec", "specvla", "kerv")
# Policy.precisions of the runtime's full-precision mode (vla_accel_ros.policy.runtime.FULL_PRECISION).
FULL_PRECISION = "fp32"
# What `model_path` / `--checkpoint` call the checkpoint packaged with vla_accel_ros.
BUILTIN_CHECKPOINT = "builtin"
# int4 group size of the precision ladder the graph ships (config/dyq.yaml) and every offline ladder
# uses: 32 keeps 97 % token agreement with fp32 on the realistic model, 64 only 42 % (docs/PRECISION.md).
QUANT_GROUP_SIZE = 32

STATE_JOINT_NAMES_DOC = (
    "The model's joint-state (proprio) vector by joint name, in the model's order: the latest position of "
    "each, from any number of joint_states messages (arm and gripper published apart). A joint never "
    "received, or older than the age limit, means no action, with a diagnostic naming it. [] = each "
    "joint_states message taken as it is, whole."
)


@dataclass(frozen=True)
class InferenceParams(NodeParams):
    """What the inference node loads (checkpoint, device, precision ladder) and how it steps."""

    NODE: ClassVar[str] = "inference_node"

    # Model
    model_path: str = param(
        BUILTIN_CHECKPOINT, "Checkpoint directory, or 'builtin' for the packaged model.", read_only=True
    )
    allow_pickle: bool = param(
        False,
        "Allow a pickle-based checkpoint (.bin/.pt/.pth/.pkl/.ckpt), which can run code when loaded; only "
        "for a checkpoint from a trusted source (safetensors needs no such trust).",
        read_only=True,
    )
    device: str = param(
        "auto",
        "Torch device for the policy: 'auto' is CUDA when available for an OpenVLA checkpoint and the CPU "
        "for the package's own models; 'cuda' without CUDA, or a precision ladder whose int4 kernel "
        "cannot take the model's layers there, stops the load with an error naming it.",
        choices=("auto", "cpu", "cuda"),
        read_only=True,
    )
    unnorm_key: str = param(
        "",
        "OpenVLA checkpoints: the dataset whose action statistics un-normalize the actions (e.g. "
        "bridge_orig). '' = the checkpoint's only dataset; a key the checkpoint lacks (or any key for "
        "another checkpoint format) stops the load, and the error lists the keys it has.",
        read_only=True,
    )
    dtype: str = param(
        "auto",
        "OpenVLA checkpoints: the dtype the model is loaded in ('auto' = bfloat16, as OpenVLA runs). The "
        "package's own models run as stored (use full_format: bf16 for their bf16 cast), so any other "
        "value for them stops the load.",
        choices=("auto", "bfloat16", "float16", "float32"),
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
        QUANT_GROUP_SIZE,
        "int4 group size along the input dimension (32 kept 95 % token agreement on the 135 M model, "
        "64 only 41 %; docs/PRECISION.md). A multiple of 32 that divides every layer's input size.",
        range=(32, 256),
        read_only=True,
    )
    compile_decoder: bool = param(
        False,
        "torch.compile the Llama decoder (Inductor): same kernels for the matmuls, the small ops between "
        "them fused, exact up to float reassociation. Measured on an AVX-512 EPYC: compiled bf16 1.18x "
        "faster per action than eager bf16, compiled w4a16 1.31x faster than compiled bf16 "
        "(docs/PRECISION.md), for a compile at start-up of 1-4 minutes per format and ladder mode (about "
        "one once Inductor's disk cache is warm), so off unless asked for.",
        read_only=True,
    )
    num_threads: int = param(
        0,
        "CPU threads for torch (0: every core this process may run on, os.sched_getaffinity; the graph's "
        "other nodes wake once per action for under a millisecond). Lower it when a simulator shares the "
        "cores (config/sim.yaml: 1): oversubscribed, 2 threads took 1.8 s instead of 24 ms per action.",
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
    max_image_pixels: int = param(
        3840 * 2160,
        "Largest camera image (width x height) taken; a larger one is refused before it is converted "
        "(its camera's frame is dropped: no action until a valid frame). Default: 4K UHD.",
        range=(1, 2**31 - 1),
        read_only=True,
    )
    max_state_age_s: float = param(
        0.5, "Joint states and Kalman predictions older than this are not used.", range=(0.001, 3600.0)
    )
    state_joint_names: tuple[str, ...] = param((), STATE_JOINT_NAMES_DOC, read_only=True, optional=True)
    max_instruction_chars: int = param(
        1000,
        "Longest instruction taken (characters); a longer one is refused, the node stops acting until a "
        "valid one arrives, and logs show it truncated.",
        range=(1, 1_000_000),
        read_only=True,
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
        check_state_joint_names(self.NODE, self.state_joint_names)


@dataclass(frozen=True)
class KinematicsParams(NodeParams):
    """The proxies' calibration and the KERV Kalman filter of the kinematics node."""

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
    kalman_damping: tuple[float, ...] = param(
        (1.0,),
        "Trend damping per action dimension (1: constant velocity, 0: the last action; one value: all "
        "dimensions); fitted by `vla-accel calibrate`.",
        range=(0.0, 1.0),
    )
    history_length: int = param(10, "Executed actions in the Kalman window (KERV AC).", range=(2, 1000))
    cooldown_steps: int = param(
        4, "Steps without compensation after a Kalman fill (KERV n).", range=(0, 1000)
    )
    # Joint-space derivatives
    joint_max_gap_s: float = param(
        0.5, "A joint-state gap longer than this restarts the finite differences.", range=(1e-3, 3600.0)
    )
    state_joint_names: tuple[str, ...] = param(
        (),
        "Joints whose derivatives are published, by name, in this order (as inference_node."
        "state_joint_names; a joint more than joint_max_gap_s older than the newest: no derivatives, a "
        "diagnostic naming it). [] = each joint_states message as it is, the first one's joints.",
        read_only=True,
        optional=True,
    )

    def check(self) -> None:
        self.proxy_calibration()
        check_state_joint_names(self.NODE, self.state_joint_names)

    def compensator(self, action_dim: int) -> KalmanCompensator:
        """KERV Kalman filter with its fill cool-down; the action dimension comes from the first action."""
        kalman = ActionKalman(
            action_dim, self.kalman_q, self.kalman_r, self.history_length, self.kalman_damping
        )
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
    """The declared action space, the safety limits and the DyQ / KERV decision settings."""

    NODE: ClassVar[str] = "controller_node"
    # Parameters whose run-time change holds the arm first (ros/controller_node.py): what a command may be.
    SAFETY_PARAMS: ClassVar[tuple[str, ...]] = (
        "dry_run",
        "control_rate_hz",
        "action_min",
        "action_max",
        "decoder_action_min",
        "decoder_action_max",
        "max_translation",
        "max_rotation",
        "max_joint_delta",
        "max_gripper_change",
        "joint_position_min",
        "joint_position_max",
        "max_joint_state_jump",
        "watchdog_timeout_s",
        "max_rate_hz",
        "gripper_open_value",
        "gripper_closed_value",
        "gripper_open_position",
        "gripper_closed_position",
    )

    # Output
    dry_run: bool = param(
        True,
        "Never command the arm (safe default); /vla/action_safe is still published for monitoring. Set "
        "false at start-up (params file, launch argument); a run-time change to false is refused unless "
        "allow_runtime_arming. Any run-time change holds the arm first.",
    )
    allow_runtime_arming: bool = param(
        False,
        "Accept a run-time dry_run=false (set_parameters from any peer on the graph); it is logged as a "
        "warning. Off: the arm is armed only at start-up.",
        read_only=True,
    )
    use_sim_episode: bool = param(
        False,
        "Follow `sim/episode` start events (reset the gripper memory, holds and AccelConfig, as an "
        "offline evaluation does). Simulation only (config/sim.yaml sets it): on a robot a stray start "
        "event must not clear a hold.",
        read_only=True,
    )
    output_type: str = param(
        "vla_action",
        "Arm command type: 'vla_action' (VlaAction), 'twist' (TwistStamped, MoveIt Servo; end-effector "
        "dims) or 'joint_trajectory' (trajectory_msgs/JointTrajectory, ros2_control "
        "JointTrajectoryController; joint dims, needs joint_states).",
        choices=OUTPUT_TYPES,
        read_only=True,
    )
    gripper_command_topic: str = param(
        "gripper/commands",
        "twist: topic of the gripper command (std_msgs/Float64MultiArray, one value: the gripper joint "
        "position from gripper_open/closed_position), what a ros2_control forward_command_controller "
        "takes on <controller>/commands; sent with each twist, after the same gate (dry_run, limits, "
        "rate limit, max_gripper_change); a hold sends none. '' = no gripper command.",
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
        0.04,
        "joint_trajectory and twist's gripper command: gripper joint position when fully open (m or rad).",
        range=(-1e3, 1e3),
    )
    gripper_closed_position: float = param(
        0.0,
        "joint_trajectory and twist's gripper command: gripper joint position when fully closed (m or rad).",
        range=(-1e3, 1e3),
    )
    # Safety (vla_accel_ros.control.SafetyGuard); limits in action units. A run-time change of any of
    # them (SAFETY_PARAMS) holds the arm first.
    action_min: tuple[float, ...] = param(
        (-1.0, -1.0, -1.0, -1.0),
        "Per-dimension lower clip, one per action_names entry.",
        range=(-1e6, 1e6),
    )
    action_max: tuple[float, ...] = param(
        (1.0, 1.0, 1.0, 1.0), "Per-dimension upper clip, one per action_names entry.", range=(-1e6, 1e6)
    )
    decoder_action_min: tuple[float, ...] = param(
        (-1.0, -1.0, -1.0, -1.0),
        "Per-dimension lowest value the policy's token decoder can emit (its first bin, de-normalized: "
        "the checkpoint's action q01; the built-in model: -1). A finite action below it cannot come from "
        "the decoder and is refused (hold), not clipped. [] = no such check.",
        range=(-1e6, 1e6),
        optional=True,
    )
    decoder_action_max: tuple[float, ...] = param(
        (1.0, 1.0, 1.0, 1.0),
        "Per-dimension highest value the decoder can emit (the checkpoint's action q99; built-in: 1); "
        "above it: refused (hold). [] = no such check.",
        range=(-1e6, 1e6),
        optional=True,
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
    joint_position_min: tuple[float, ...] = param(
        (),
        "joint_trajectory: lower position limit of each joint_names entry (rad or m); required with "
        "joint_trajectory. A target outside the limits is refused (hold), not clipped.",
        range=(-1e3, 1e3),
        optional=True,
    )
    joint_position_max: tuple[float, ...] = param(
        (),
        "joint_trajectory: upper position limit of each joint_names entry (rad or m); required with "
        "joint_trajectory.",
        range=(-1e3, 1e3),
        optional=True,
    )
    max_joint_state_jump: float = param(
        0.1,
        "joint_trajectory: largest move of a joint between consecutive joint_states (rad or m); a larger "
        "one (a second publisher, a glitch) is not used and holds the arm until the joint states are "
        "steady for a watchdog period. 0 = no jump check.",
        range=(0.0, 1e3),
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
        if bool(self.decoder_action_min) != bool(self.decoder_action_max):
            raise ParameterError(f"{n}.decoder_action_min/max: give both, or set both to []")
        for key in ("decoder_action_min", "decoder_action_max"):
            if getattr(self, key) and len(getattr(self, key)) != self.action_dim:
                raise ParameterError(
                    f"{n}.{key}: {len(getattr(self, key))} values, action_names has {self.action_dim} "
                    "(one per model action dimension, or [] for no decoder-range check)"
                )
        if self.output_type == "joint_trajectory" and not (
            self.joint_position_min and self.joint_position_max
        ):
            raise ParameterError(
                f"{n}.joint_position_min/max: joint_trajectory needs joint position limits, one per "
                f"joint_names entry ({len(self.joint_names)})"
            )
        try:
            self.joint_limits()
        except ValueError as err:
            raise ParameterError(f"{n}.joint_position_min/max: {err}") from err
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
            decoder_min=self.decoder_action_min or None,
            decoder_max=self.decoder_action_max or None,
            workspace_min=self.workspace_min or None,
            workspace_max=self.workspace_max or None,
            translation_scale=space.per_step(self.control_rate_hz)[list(space.dims("translation"))]
            if box
            else 1.0,
        )

    def safety_changes(self, new: ControllerParams) -> list[str]:
        """The SAFETY_PARAMS that differ in `new`: a run-time change of any holds the arm first."""
        return [n for n in self.SAFETY_PARAMS if getattr(self, n) != getattr(new, n)]

    def arming_refusal(self, changes: dict[str, object]) -> str | None:
        """Why a run-time change must be refused: dry_run false from a dry run without
        allow_runtime_arming (arming is a start-up decision, not something any peer may do)."""
        if changes.get("dry_run") is False and self.dry_run and not self.allow_runtime_arming:
            return (
                "dry_run=false at run time is refused: arm at start-up (params file, launch argument "
                "dry_run:=false), or start with allow_runtime_arming:=true"
            )
        return None

    def joint_limits(self) -> JointLimits | None:
        """The joint checks of a joint_trajectory output (None: not that output, or no limits given)."""
        if self.output_type != "joint_trajectory" or not (self.joint_position_min or self.joint_position_max):
            return None
        return JointLimits(
            names=self.joint_names,
            lower=self.joint_position_min,
            upper=self.joint_position_max,
            max_jump=self.max_joint_state_jump or None,
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
    """The simulated arm: which tasks, layouts and stepping mode."""

    NODE: ClassVar[str] = "sim_arm_node"

    task: str = param(
        "reach",
        "Meta-World task ('reach' or 'reach-v3'), a LIBERO one ('libero_object:3', needs the libero "
        "extra), a comma-separated list, or 'all' (the Meta-World tasks; episodes go round the list).",
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
        0,
        "Steps after which an unsuccessful episode ends (0: the task's own limit, Meta-World 200, LIBERO "
        "the suite's evaluation limit).",
        range=(0, 100000),
        read_only=True,
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
        0.1,
        "Twist commands: m/s per action unit (the controller's action_scales x control_rate_hz).",
        range=(1e-6, 10.0),
    )
    twist_angular_scale: float = param(
        10.0,
        "Twist commands to a 7-D arm (LIBERO): rad/s per rotation action unit (the controller's "
        "action_scales x control_rate_hz; LIBERO: 0.5 rad x 20 Hz).",
        range=(1e-6, 1000.0),
    )
    gripper_command_topic: str = param(
        "gripper/commands",
        "Twist commands: topic of the controller's gripper command (std_msgs/Float64MultiArray, the "
        "gripper joint position); without one the gripper keeps its last value. '' = not subscribed.",
        read_only=True,
    )
    gripper_open_position: float = param(
        0.04, "Gripper command position meaning open (as the controller's).", range=(-1e3, 1e3)
    )
    gripper_closed_position: float = param(
        0.0, "Gripper command position meaning closed (as the controller's).", range=(-1e3, 1e3)
    )

    def check(self) -> None:
        if self.gripper_open_position == self.gripper_closed_position:
            raise ParameterError(
                f"{self.NODE}.gripper_open_position: must differ from gripper_closed_position"
            )
        try:
            parse_task_list(self.task)
        except ValueError as err:
            raise ParameterError(f"{self.NODE}.task: {err}") from err


def check_state_joint_names(node: str, names: tuple[str, ...]) -> None:
    """state_joint_names must name each joint once (a repeated name would feed one value twice)."""
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise ParameterError(f"{node}.state_joint_names: names must be non-empty and distinct: {list(names)}")


NODE_PARAMS: dict[str, type[NodeParams]] = {
    cls.NODE: cls for cls in (InferenceParams, KinematicsParams, ControllerParams, SimArmParams)
}
