"""Inference node: camera images + joint state + instruction -> one VlaAction per control step.

Callbacks only validate and store the latest input (with its header stamp). The model loads on a
background thread (the node answers and reports 'loading' meanwhile; a failed load is reported and the
node stays up). Inference runs on one worker thread, one call in flight:
- trigger 'timer': a tick at control_rate_hz asks for one call on the latest inputs; a tick while a call
  is running is skipped (counted);
- trigger 'image': a new frame from every camera asks for one call (lockstep simulation). The call waits
  up to sync_timeout_s for the joint state, Kalman prediction and AccelConfig of the same step (stamp >=
  the image stamp), so the closed loop sees the same inputs as an offline evaluation; a request while a
  call is running is queued (one, latest inputs win).

A step publishes nothing, with a WARN on /diagnostics naming the reason, when the model is not ready or
the instruction, an image or the joint state is missing, stale or invalid; an image or joint state whose
stamp goes back, or lies ahead of the node's clock by more than its max age, is dropped. With
`state_joint_names` the joint state is built by name from any number of joint_states messages (arm and
gripper apart; `control.joint_selection`): a joint never received or older than max_state_age_s means
no action, with a WARN naming it; the oldest selected joint's stamp is the joint state's. An unknown
precision or decoding in the AccelConfig falls back to the defaults, and any fallback (the runtime's
included) is flagged in the VlaAction and reported as a WARN.

Input sizes: an image over max_image_pixels is refused before it is converted and drops its camera's
frame (no action until a valid one); an instruction over max_instruction_chars is refused and clears
the instruction (no action until a valid one); logs and diagnostics show instructions truncated.
A Kalman prediction for a fill is clipped into the range the policy's decoder can emit
(`control.decoder_range`) before the runtime executes it; a policy without an action tokenizer to ask
gets no fill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from vla_accel_ros.control.decoder_range import DecoderRange
from vla_accel_ros.control.joint_selection import JointSelection, JointSelectionError
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, VlaAction
from vla_accel_ros.params import DECODINGS, InferenceParams
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.diagnostics import ERROR, OK, WARN, Health, RateMeter
from vla_accel_ros.ros.params import declare_params
from vla_accel_ros.ros.qos import (
    camera_qos,
    instruction_plain_qos,
    instruction_qos,
    joint_states_qos,
    vla_qos,
)
from vla_accel_ros.ros.spin import run_node


class PolicyLike(Protocol):
    """What the node needs of vla_accel_ros.policy.runtime.Policy (a fake in unit tests)."""

    action_dim: int
    cameras: list[str]
    precisions: list[str]

    def act(
        self,
        inp: Any,
        precision: str = ...,
        decoding: str = ...,
        threshold: float = ...,
        kalman_action: np.ndarray | None = ...,
    ) -> Any: ...


PolicyLoader = Callable[[InferenceParams], tuple[PolicyLike, Callable[..., Any]]]


def load_policy(p: InferenceParams) -> tuple[PolicyLike, Callable[..., Any]]:
    """The policy the parameters describe (`policy.builder.build_policy`, as every offline run builds
    it) and its PolicyInput class; torch is imported here, on the loading thread."""
    from vla_accel_ros.policy.builder import PolicySpec, build_policy
    from vla_accel_ros.policy.runtime import PolicyInput
    from vla_accel_ros.policy.threads import use_threads

    use_threads(p.num_threads)
    return build_policy(PolicySpec.from_params(p)), PolicyInput


def shorten(text: str, limit: int = 80) -> str:
    """The first `limit` characters of a text for a log line, with its length when cut (no log line
    carries a whole instruction: it may be huge, or carry what logs should not)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


@dataclass(frozen=True)
class Stamped:
    """A latest input with the header stamp it came with, so staleness can be judged per step."""

    value: Any
    stamp_ns: int  # header stamp


class SingleFlight:
    """Runs `fn` on one worker thread, one call at a time.

    A trigger while a call runs is skipped (queue=False) or remembered once (queue=True: the next call
    starts right after and reads the latest inputs). `skipped` counts triggers that did not start a call.
    """

    def __init__(
        self, fn: Callable[[], None], queue: bool, on_error: Callable[[BaseException], None]
    ) -> None:
        self._fn = fn
        self._queue = queue
        self._on_error = on_error
        self._cond = threading.Condition()
        self._requested = False
        self._busy = False
        self._stopped = False
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def trigger(self) -> bool:
        with self._cond:
            if self._busy and not self._queue:
                self.skipped += 1
                return False
            if self._requested:
                self.skipped += 1
            self._requested = True
            self._cond.notify()
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._requested and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                self._requested = False
                self._busy = True
            try:
                self._fn()
            except Exception as err:  # the worker must survive a failed call
                self._on_error(err)
            finally:
                with self._cond:
                    self._busy = False

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout_s)

    @property
    def idle(self) -> bool:
        """No call running and none requested (a tool driving the node waits for this)."""
        with self._cond:
            return not self._busy and not self._requested


class Skip(Exception):
    """This step publishes no action; `level`, `key` and the message go to /diagnostics."""

    def __init__(self, level: int, key: str, detail: str = "") -> None:
        super().__init__(detail)
        self.level, self.key, self.detail = level, key, detail


class InferenceNode(Node):
    """The graph's policy node: takes the latest inputs at each step and publishes one VlaAction.

    Thin by design: decoding, precision and fallbacks live in the Policy; the node only gathers inputs,
    never waits for other nodes, and reports its health on /diagnostics.
    """

    def __init__(self, policy_loader: PolicyLoader | None = None, **kwargs: Any) -> None:
        super().__init__("inference_node", **kwargs)
        self._params = declare_params(self, InferenceParams)
        p = self._params.values
        self._health = Health(self)
        self._lock = threading.Lock()
        self._images: dict[str, Stamped] = {}
        # The model's joint-state vector: by name from any number of messages with state_joint_names.
        self._joints = JointSelection(p.state_joint_names, convert.MAX_ABS_JOINT_POSITION)
        self._instruction: str | None = None
        self._config: Stamped | None = None
        self._prediction: Stamped | None = None
        self._used_stamps: dict[str, int] = {}  # trigger 'image': frames already acted on
        self._waiting_since: float | None = None
        self._policy: PolicyLike | None = None
        self._policy_input: Callable[..., Any] | None = None
        self._decoder_range: DecoderRange | None = None  # what the policy's decoder can emit (fills)
        self._load_error: str | None = None
        self._rate = RateMeter()
        self._counts = {
            "actions": 0,
            "dropped_frames": 0,
            "skipped_steps": 0,
            "unsynced_steps": 0,
            "received_frames": 0,
            "received_joint_states": 0,
            "fallbacks": 0,
        }

        self._action_pub = self.create_publisher(VlaAction, "vla/action_raw", vla_qos())
        for name, topic in zip(p.camera_names, p.camera_topics, strict=True):
            if p.image_transport == "compressed":
                self.create_subscription(
                    CompressedImage,
                    f"{topic}/compressed",
                    lambda m, n=name: self._on_image(n, m),
                    camera_qos(),
                )
            else:
                self.create_subscription(Image, topic, lambda m, n=name: self._on_image(n, m), camera_qos())
        self.create_subscription(JointState, "joint_states", self._on_joint_state, joint_states_qos())
        # Two subscriptions, one callback: the latched one gets the last instruction of a latched publisher
        # (`vla-accel instruct`, a task manager) even when it was sent before this node started; the
        # plain one matches a volatile publisher such as `ros2 topic pub`, which the latched one cannot.
        self.create_subscription(String, "instruction", self._on_instruction, instruction_qos())
        self.create_subscription(String, "instruction", self._on_instruction, instruction_plain_qos())
        self.create_subscription(AccelConfig, "vla/accel_config", self._on_config, vla_qos())
        self.create_subscription(KalmanPrediction, "vla/kalman_prediction", self._on_prediction, vla_qos())

        self._worker = SingleFlight(self._step, queue=p.trigger == "image", on_error=self._on_worker_error)
        if p.trigger == "timer":
            self._tick_timer = self.create_timer(1.0 / p.control_rate_hz, self._worker.trigger)
        else:
            self._sync_timer = self.create_timer(max(p.sync_timeout_s, 1e-3), self._on_sync_timeout)
            self._sync_timer.cancel()
        self._health.set_state(WARN, f"loading model '{p.model_path}'")
        loader = policy_loader or load_policy
        self._loader = threading.Thread(target=self._load, args=(loader,), name="policy-load", daemon=True)
        self._loader.start()

    # -- model loading (background thread) ------------------------------------------------------------
    def _load(self, loader: PolicyLoader) -> None:
        p = self._params.values
        t0 = time.monotonic()
        try:
            policy, policy_input = loader(p)
            missing = [c for c in policy.cameras if c not in p.camera_names]
            if missing:
                raise RuntimeError(
                    f"the policy needs camera(s) {missing}; camera_names are {list(p.camera_names)}"
                )
        except Exception as err:  # any failure is reported; the node stays up
            self._load_error = f"load failed: {err}"
            self._health.set_state(ERROR, self._load_error)
            return
        decoder_range = DecoderRange.of_policy(policy)
        with self._lock:
            self._policy, self._policy_input = policy, policy_input
            self._decoder_range = decoder_range
        if p.default_precision != "top" and p.default_precision not in policy.precisions:
            self._health.report(
                WARN, "unknown default_precision", f"{p.default_precision!r} not in {policy.precisions}"
            )
        self.get_logger().info(
            f"model '{p.model_path}' loaded in {time.monotonic() - t0:.1f} s: cameras {policy.cameras}, "
            f"precisions {policy.precisions}, action_dim {policy.action_dim}"
        )
        self._health.set_state(OK, "running")

    # -- callbacks: validate, store, maybe forward a trigger -------------------------------------------
    def _on_image(self, camera: str, msg: Image | CompressedImage) -> None:
        self._counts["received_frames"] += 1
        cap = self._params.values.max_image_pixels
        try:
            if isinstance(msg, CompressedImage):
                image = convert.compressed_to_numpy(msg)
                size = int(image.shape[0]) * int(image.shape[1])
            else:
                size = int(msg.width) * int(msg.height)
                image = convert.image_to_numpy(msg) if size <= cap else None
            if size > cap:
                raise convert.ConversionError(
                    f"image of {size} pixels exceeds max_image_pixels {cap}: refused, frame dropped"
                )
        except convert.ConversionError as err:
            with self._lock:
                self._images.pop(camera, None)  # no action on an older frame of this camera either
            self._counts["dropped_frames"] += 1
            self._health.report(WARN, f"bad image from {camera}", str(err))
            return
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        with self._lock:
            last = self._images.get(camera)
            problem = convert.stamp_problem(
                stamp_ns,
                self.get_clock().now().nanoseconds,
                last.stamp_ns if last is not None else None,
                self._params.values.max_image_age_s,
            )
            if problem is None:
                self._images[camera] = Stamped(image, stamp_ns)
        if problem is not None:
            self._counts["dropped_frames"] += 1
            self._health.report(WARN, f"bad image from {camera}", problem)
            return
        self._maybe_trigger()

    def _on_joint_state(self, msg: JointState) -> None:
        self._counts["received_joint_states"] += 1
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        try:
            if self._joints.selecting:  # only the selected joints are checked (JointSelection)
                names, positions = list(msg.name), np.asarray(msg.position, dtype=np.float64)
            else:
                names, positions = convert.joint_state_to_arrays(msg)
            now_ns, max_age_s = self.get_clock().now().nanoseconds, self._params.values.max_state_age_s
            with self._lock:  # backwards: against the stored stamps of this message's joints
                last_ns = self._joints.last_stamp_ns(names)
                problem = convert.stamp_problem(stamp_ns, now_ns, last_ns, max_age_s)
                problem = problem or self._joints.observe(names, positions, stamp_ns)
            if problem is not None:
                raise convert.ConversionError(problem)
        except convert.ConversionError as err:
            self._health.report(WARN, "bad joint state", str(err))
            return
        self._maybe_trigger()

    def _on_instruction(self, msg: String) -> None:
        cap = self._params.values.max_instruction_chars
        if len(msg.data) > cap:
            with self._lock:
                self._instruction = None  # the operator meant another task: do not go on with the old one
            detail = f"{len(msg.data)} characters (max_instruction_chars {cap}): {shorten(msg.data)!r}"
            self.get_logger().error(f"instruction refused: {detail}")
            self._health.report(ERROR, "instruction too long", detail)
            return
        text = msg.data.strip()
        if not text:
            self._health.report(WARN, "empty instruction")
            return
        with self._lock:
            same = text == self._instruction  # a latched publisher reaches both subscriptions
            self._instruction = text
        if not same:
            self.get_logger().info(f"instruction: {shorten(text)!r}")

    def _on_config(self, msg: AccelConfig) -> None:
        with self._lock:
            self._config = Stamped(msg, convert.stamp_to_ns(msg.header.stamp))
        self._maybe_trigger()

    def _on_prediction(self, msg: KalmanPrediction) -> None:
        with self._lock:
            self._prediction = Stamped(msg, convert.stamp_to_ns(msg.header.stamp))
        self._maybe_trigger()

    # -- trigger 'image' -------------------------------------------------------------------------------
    def _maybe_trigger(self) -> None:
        p = self._params.values
        if p.trigger != "image":
            return
        with self._lock:
            frames = [self._images.get(c) for c in p.camera_names]
            if any(
                f is None or f.stamp_ns <= self._used_stamps.get(c, -1)
                for c, f in zip(p.camera_names, frames, strict=True)
            ):
                return  # not a complete set of new frames
            ref = min(f.stamp_ns for f in frames if f is not None)
            joints_ns = self._joints.stamp_ns  # the oldest selected joint's
            synced = all(s is None or s.stamp_ns >= ref for s in (self._config, self._prediction)) and (
                joints_ns is not None and joints_ns >= ref
            )
            if not synced and p.sync_timeout_s > 0:
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
                    self._sync_timer.reset()
                return
            self._fire_locked(p)

    def _on_sync_timeout(self) -> None:
        self._sync_timer.cancel()
        p = self._params.values
        with self._lock:
            if self._waiting_since is None:
                return
            self._fire_locked(p)
        # Expected while the arm republishes its first frame; a steady count means a slow node upstream.
        self._counts["unsynced_steps"] += 1

    def _fire_locked(self, p: InferenceParams) -> None:
        self._used_stamps = {c: self._images[c].stamp_ns for c in p.camera_names}
        self._waiting_since = None
        self._worker.trigger()

    # -- one control step (worker thread) --------------------------------------------------------------
    def _step(self) -> None:
        try:
            msg = self._infer()
        except Skip as skip:
            self._counts["skipped_steps"] += 1
            self._health.report(skip.level, skip.key, skip.detail)
            return
        if not self.context.ok():
            return  # shutting down: the publisher is gone
        self._action_pub.publish(msg)
        self._rate.tick()
        self._counts["actions"] += 1
        if msg.fallback:
            self._counts["fallbacks"] += 1
            self._health.report(WARN, "fallback", msg.fallback_reason)
        self._health.set_values(
            action_rate_hz=self._rate.rate(),
            last_latency_ms=msg.total_ms,
            precision=msg.precision,
            decoding=msg.decoding,
            skipped_ticks=self._worker.skipped,
            **self._counts,
        )

    def _infer(self) -> VlaAction:
        p = self._params.values
        with self._lock:
            policy, policy_input = self._policy, self._policy_input
            images, selection, instruction = dict(self._images), self._joints.copy(), self._instruction
            config, prediction = self._config, self._prediction
        if policy is None or policy_input is None:
            raise Skip(ERROR if self._load_error else WARN, "model not ready", self._load_error or "loading")
        now_ns = self.get_clock().now().nanoseconds
        if instruction is None:
            raise Skip(WARN, "no instruction", "nothing received on 'instruction' yet")
        frames = {}
        for cam in policy.cameras:
            frame = images.get(cam)
            if frame is None:
                raise Skip(WARN, "no image", f"no frame from camera '{cam}' yet")
            age_s = (now_ns - frame.stamp_ns) * 1e-9
            if age_s > p.max_image_age_s:
                raise Skip(
                    WARN,
                    "stale image",
                    f"camera '{cam}' frame is {age_s:.3f} s old (max {p.max_image_age_s})",
                )
            frames[cam] = frame
        try:  # a missing, never received or stale joint: no action (the controller's watchdog holds)
            joints = selection.vector(now_ns, p.max_state_age_s)
        except JointSelectionError as err:
            raise Skip(WARN, err.key, str(err)) from err

        precision, decoding, threshold, fallbacks = self._modes(p, policy, config)
        kalman = self._kalman_action(p, policy, prediction, decoding, now_ns)
        if kalman is not None:
            kalman = self._clip_fill(kalman)
        inp = policy_input(
            images={c: f.value for c, f in frames.items()},
            joint_positions=joints.positions,
            instruction=instruction,
        )
        try:
            result = policy.act(
                inp, precision=precision, decoding=decoding, threshold=threshold, kalman_action=kalman
            )
        except ValueError as err:  # the runtime's InputError: an observation it must not act on
            raise Skip(WARN, "policy refused the input", str(err)) from err
        image_stamp_ns = min(f.stamp_ns for f in frames.values())
        msg = convert.action_result_to_msg(result, self.get_clock().now().nanoseconds, image_stamp_ns)
        if fallbacks:
            msg.fallback = True
            msg.fallback_reason = "; ".join(
                fallbacks + ([msg.fallback_reason] if msg.fallback_reason else [])
            )
        return msg

    def _modes(
        self, p: InferenceParams, policy: PolicyLike, config: Stamped | None
    ) -> tuple[str, str, float, list[str]]:
        default = policy.precisions[-1] if p.default_precision == "top" else p.default_precision
        if config is None:
            return default, p.default_decoding, p.default_threshold, []
        msg: AccelConfig = config.value
        precision, decoding, threshold = msg.precision, msg.decoding, float(msg.threshold)
        fallbacks = []
        if precision not in policy.precisions:
            fallbacks.append(f"unknown precision {precision!r}, used {default!r}")
            self._health.report(WARN, "unknown precision", f"{precision!r} not in {policy.precisions}")
            precision = default
        if decoding not in DECODINGS:
            fallbacks.append(f"unknown decoding {decoding!r}, used {p.default_decoding!r}")
            self._health.report(WARN, "unknown decoding", f"{decoding!r} not in {list(DECODINGS)}")
            decoding, threshold = p.default_decoding, p.default_threshold
        if not np.isfinite(threshold) or threshold < 0:
            fallbacks.append(f"bad threshold {threshold!r}, used {p.default_threshold}")
            threshold = p.default_threshold
        return precision, decoding, threshold, fallbacks

    def _kalman_action(
        self, p: InferenceParams, policy: PolicyLike, prediction: Stamped | None, decoding: str, now_ns: int
    ) -> np.ndarray | None:
        if decoding != "kerv" or prediction is None:
            return None
        if (now_ns - prediction.stamp_ns) * 1e-9 > p.max_state_age_s:
            return None
        try:
            action = convert.kalman_action(prediction.value)
        except convert.ConversionError as err:
            self._health.report(WARN, "bad Kalman prediction", str(err))
            return None
        if action is not None and action.size != policy.action_dim:
            self._health.report(
                WARN, "bad Kalman prediction", f"{action.size} values, policy has {policy.action_dim}"
            )
            return None
        return action

    def _clip_fill(self, action: np.ndarray) -> np.ndarray | None:
        """A fill clipped into the decoder's range (the runtime executes it as is); None without a range."""
        with self._lock:
            decoder_range = self._decoder_range
        if decoder_range is None:
            self._health.report(WARN, "no Kalman fill", "the policy has no action tokenizer to bound a fill")
            return None
        clipped = decoder_range.clip(action)
        if not np.array_equal(clipped, action, equal_nan=True):
            self._health.report(WARN, "Kalman fill clipped", f"{action.tolist()} -> {clipped.tolist()}")
        return clipped

    def _on_worker_error(self, err: BaseException) -> None:
        if not self.context.ok():
            return  # a call cut short by shutdown
        self._counts["skipped_steps"] += 1
        self._health.report(ERROR, "inference failed", f"{type(err).__name__}: {err}")

    # -- for tools that drive the node in-process (vla-accel fuzz) -----------------------------------
    @property
    def params(self) -> InferenceParams:
        """The live parameter values (read-only view)."""
        return self._params.values

    @property
    def idle(self) -> bool:
        """No inference step running or requested."""
        return self._worker.idle

    def health_status(self) -> Any:
        """The node's current DiagnosticStatus (what the next /diagnostics message would say)."""
        return self._health.status()

    def forget_inputs(self) -> None:
        """Drop the stored frames and joint state, as if they had gone stale: the next step skips."""
        with self._lock:
            self._images = {}
            self._joints.clear()

    def infer(self) -> VlaAction:
        """One control step on the latest inputs, not published; raises Skip where it must not act."""
        return self._infer()

    def destroy_node(self) -> None:
        self._worker.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(InferenceNode, "inference_node", args)


if __name__ == "__main__":
    main()
