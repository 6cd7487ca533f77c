"""Offline replay of a recorded bag through the graph's per-step decisions, one run per method.

Every camera frame of the bag (bag_io.iter_steps) is one control step. For each method the same
objects the nodes chain run in one process (methods.build_loop -> AccelLoop, Policy.act), in bag
time, all methods in lockstep on one decoded frame. The loops and the policies come from the graph's
tables (params.GraphSettings of config/, or of the folder given): methods run on the policy that serves
them (methods.MethodPolicies: the checkpoint as is, its bf16 cast for ar@bf16, or its int4-ladder copy,
at the inference node's group size, for ar@<mode> and DyQ); a method no policy can serve is reported
with the reason, never swapped for another. The loop is
fed the action the bag says was executed (its reference action) when there is one, else the policy's
own action, as the kinematics node would be fed by the arm.

Output, per method, a rosbag2 bag with what the graph would have published for that step, all
stamped with the frame's bag time: /vla/accel_config (the decision used at the step),
/vla/kalman_prediction (the prediction available at the step, before it executed),
/vla/action_raw (the policy's action) and /vla/kinematics (proxies after the executed action, with
the bag's joint derivatives). Plus metrics.json and plots. Output goes to `<out>.partial` and is
renamed to `<out>` only when complete.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vla_accel_ros.control.accel_loop import AccelLoop, StepDecision
from vla_accel_ros.data.bag_io import (
    VLA_ACTION,
    BagError,
    BagStep,
    ReadStats,
    TopicMap,
    iter_steps,
    open_reader,
    typestore,
)
from vla_accel_ros.evaluation.methods import (
    ALL_METHODS,
    MethodPolicies,
    build_loop,
    expand,
    ladder_settings,
    load_settings,
    method,
)
from vla_accel_ros.evaluation.stats import percentiles
from vla_accel_ros.kinematics.joint_derivatives import JointDerivatives, NonIncreasingStampError
from vla_accel_ros.kinematics.kalman import KalmanCompensator
from vla_accel_ros.kinematics.proxies import ProxyValues
from vla_accel_ros.params.settings import DYQ_FILE, GraphSettings
from vla_accel_ros.params.tables import BUILTIN_CHECKPOINT
from vla_accel_ros.policy.builder import PolicyBuildError, PolicySpec

DEFAULT_METHODS = ALL_METHODS
WARMUP_STEPS = 3
PKG = "vla_accel_ros/msg"
OUTPUT_TOPICS = {
    "accel_config": ("/vla/accel_config", f"{PKG}/AccelConfig"),
    "kalman_prediction": ("/vla/kalman_prediction", f"{PKG}/KalmanPrediction"),
    "action_raw": ("/vla/action_raw", VLA_ACTION),
    "kinematics": ("/vla/kinematics", f"{PKG}/KinematicState"),
}
_FLOAT32_MAX = 3.0e38


class ReplayError(ValueError):
    """A replay that cannot run, with the reason; `exit_status` is what `vla-accel replay` exits with
    (2: a usage error, an unusable bag or checkpoint; nothing is left at the output folder)."""

    exit_status = 2


class MethodsUnavailable(ReplayError):
    """No requested method can run with this policy (each one's reason is in the message)."""

    exit_status = 1


def bag_dir_name(method_name: str) -> str:
    """A file-system name for a method ('kerv+dyq' and 'ar@w4a16' stay as they are; ':' and '/' -> '_')."""
    return method_name.replace(":", "_").replace("/", "_")


def unavailable_reason(policy: Any, name: str, settings: GraphSettings) -> str | None:
    """Why `policy` cannot serve method `name` (None: it can). Raises ValueError for unknown names."""
    m = method(name, settings, top_precision=policy.precisions[-1])
    if m.decoding not in policy.decoders:
        why = getattr(policy, "draft_error", None) or "no draft model attached"
        return f"decoding '{m.decoding}' needs a draft model: {why}"
    if m.precision is None and len(policy.precisions) < 2:
        return f"dynamic precision needs a precision ladder; the policy serves only {policy.precisions}"
    if m.precision is not None and m.precision not in policy.precisions:
        return f"precision '{m.precision}' is not served by the policy (serves {policy.precisions})"
    try:
        build_loop(name, policy.action_dim, policy.precisions, settings)
    except ValueError as err:
        return str(err)
    return None


# -- output bags ------------------------------------------------------------------------------------
class OutputBag:
    """The four /vla topics of one method, written with rosbags (CDR that rclpy also reads)."""

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.enums import StoragePlugin

        self._ts = typestore()
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self._writer = Writer(path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._conns = {
            key: self._writer.add_connection(topic, msgtype, typestore=self._ts)
            for key, (topic, msgtype) in OUTPUT_TOPICS.items()
        }
        self.messages = 0

    def _header(self, stamp_ns: int, frame_id: str = "") -> Any:
        t = self._ts.types
        stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def _put(self, key: str, msg: Any, stamp_ns: int) -> None:
        msgtype = OUTPUT_TOPICS[key][1]
        self._writer.write(self._conns[key], stamp_ns, self._ts.serialize_cdr(msg, msgtype))
        self.messages += 1

    def accel_config(self, stamp_ns: int, d: StepDecision, precision: str) -> None:
        cls = self._ts.types[OUTPUT_TOPICS["accel_config"][1]]
        msg = cls(
            header=self._header(stamp_ns),
            precision=precision,
            decoding=d.decoding,
            threshold=float(d.threshold),
            reason=d.reason or "fixed",
        )
        self._put("accel_config", msg, stamp_ns)

    def kalman_prediction(self, stamp_ns: int, comp: KalmanCompensator) -> None:
        mean, variance = comp.kalman.predict()
        mean = np.where(comp.mask, mean, np.nan).astype(np.float32)
        variance = np.minimum(np.nan_to_num(variance, nan=_FLOAT32_MAX, posinf=_FLOAT32_MAX), _FLOAT32_MAX)
        cls = self._ts.types[OUTPUT_TOPICS["kalman_prediction"][1]]
        msg = cls(
            header=self._header(stamp_ns),
            action=mean,
            variance=variance.astype(np.float32),
            history_length=int(comp.kalman.samples),
            valid=bool(comp.can_fill()),
        )
        self._put("kalman_prediction", msg, stamp_ns)

    def action_raw(self, stamp_ns: int, result: Any) -> None:
        timings = dict(result.timings_ms)
        cls = self._ts.types[VLA_ACTION]
        stamp = self._header(stamp_ns).stamp
        msg = cls(
            header=self._header(stamp_ns),
            image_stamp=stamp,
            action=np.asarray(result.action, dtype=np.float32).reshape(-1),
            token_ids=np.asarray(result.token_ids, dtype=np.int32).reshape(-1),
            precision=str(result.precision),
            decoding=str(result.decoding),
            threshold=float(result.threshold),
            draft_tokens=int(result.draft_tokens),
            accepted_tokens=int(result.accepted_tokens),
            kalman_filled=np.asarray(result.kalman_filled, dtype=np.uint32),
            target_passes=int(result.target_passes),
            fallback=bool(result.fallback),
            fallback_reason=result.fallback or "",
            stage_names=list(timings),
            stage_ms=np.asarray(list(timings.values()), dtype=np.float32),
            total_ms=float(sum(timings.values())),
        )
        self._put("action_raw", msg, stamp_ns)

    def kinematics(self, stamp_ns: int, values: ProxyValues, joint_names: list[str], derivs: tuple) -> None:
        cls = self._ts.types[OUTPUT_TOPICS["kinematics"][1]]
        arrays = [np.zeros(0) if a is None else np.asarray(a, dtype=np.float64) for a in derivs]
        msg = cls(
            header=self._header(stamp_ns),
            translation_speed=float(values.translation_speed),
            angular_jerk=float(values.angular_jerk),
            motion_fineness=float(values.motion_fineness),
            sensitivity=float(values.sensitivity),
            fluctuation=float(values.fluctuation),
            joint_names=list(joint_names) if derivs[0] is not None else [],
            joint_velocity=arrays[0],
            joint_acceleration=arrays[1],
            joint_jerk=arrays[2],
        )
        self._put("kinematics", msg, stamp_ns)

    def close(self) -> None:
        self._writer.close()


# -- per-method bookkeeping -------------------------------------------------------------------------
@dataclass
class _Record:
    stamps: list[int] = field(default_factory=list)
    episode: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    policy_ms: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    precision: list[str] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    sensitivity: list[float] = field(default_factory=list)  # S the decision was made from (NaN: none)
    fluctuation: list[float] = field(default_factory=list)
    abs_err: list[np.ndarray | None] = field(default_factory=list)
    bin_err: list[np.ndarray | None] = field(default_factory=list)
    draft: int = 0
    accepted: int = 0
    fill_steps: int = 0
    filled_dims: int = 0
    passes: list[int] = field(default_factory=list)
    fallbacks: Counter = field(default_factory=Counter)


@dataclass
class _Run:
    name: str
    loop: AccelLoop
    monitor: KalmanCompensator  # the kinematics node's filter (the loop's own one for KERV methods)
    bag: OutputBag
    bag_path: Path
    policy: Any
    rec: _Record = field(default_factory=_Record)


def _monitor(loop: AccelLoop, settings: GraphSettings, action_dim: int) -> KalmanCompensator:
    """The kinematics node's Kalman filter for the /vla/kalman_prediction output: the loop's own for
    KERV methods, else one built from the same table (the node runs it whatever the method)."""
    if loop.compensator is not None:
        return loop.compensator
    return settings.kinematics.compensator(action_dim)


def _frame_count(bag: Path, topic: str) -> int | None:
    """Frames on the main camera topic, from the bag's index (for the progress bar only)."""
    try:
        reader = open_reader(bag)
    except BagError:
        return None
    try:
        info = reader.topics.get(topic)
        return int(info.msgcount) if info is not None else None
    finally:
        reader.close()


def _check_step(policy: Any, step: BagStep, tm: TopicMap) -> None:
    """Refuse a bag whose observations the policy cannot take, naming the mismatch."""
    missing = [c for c in policy.cameras if c not in step.images]
    if missing:
        raise BagError(
            f"the policy needs camera(s) {missing}; the topic map gives {sorted(step.images)} "
            "(map them with --camera-topic / --wrist-topic)"
        )
    n = int(np.asarray(step.joint_positions).size)
    if policy.config.state_dim and n != policy.config.state_dim:  # 0: the model reads no joints (OpenVLA)
        raise BagError(
            f"joint states on {tm.joint_states} have {n} positions ({step.joint_names}); the policy "
            f"expects {policy.config.state_dim} (select joints with --joint-names)"
        )
    if step.reference_action is not None and step.reference_action.size != policy.action_dim:
        raise BagError(
            f"reference actions on {tm.action} have {step.reference_action.size} values; the policy "
            f"acts in {policy.action_dim} dimensions (pick another --action-topic, or 'none')"
        )
    if not step.instruction.strip():
        raise BagError(
            f"no instruction before the first frame (topic {tm.instruction}); give one with --instruction"
        )


def _method_settings(policy: Any, name: str, settings: GraphSettings, notes: list[str]) -> GraphSettings:
    """The settings a method's loop is built from: DyQ methods get a table over the policy's ladder
    (config/dyq.yaml's, as the graph loads it, when it names the ladder's modes)."""
    fixed = method(name, settings, top_precision=policy.precisions[-1]).precision is not None
    if fixed or len(policy.precisions) < 2:
        return settings
    dyq_file = settings.files[0].parent / DYQ_FILE if settings.files else None  # beside vla_accel.yaml
    adapted, note = ladder_settings(settings, policy.precisions, dyq_file)
    if note is not None and note not in notes:
        notes.append(note)
    return adapted


def _precision_order(policies: MethodPolicies) -> list[str]:
    """Every mode the runs can use, cheapest first (the plots' axis order)."""
    modes = list(policies.ladder.precisions) if policies.ladder is not None else []
    return modes + [p for p in policies.full.precisions if p not in modes]


def replay(
    bag: Path | str,
    policy: Any,
    methods: list[str],
    out_dir: Path,
    topic_map: TopicMap | None = None,
    settings: GraphSettings | None = None,
    warmup: int = WARMUP_STEPS,
    max_steps: int | None = None,
    progress: bool = True,
    storage: str = "mcap",
    max_episodes: int | None = None,
) -> dict:
    """Replay `bag` with each method, writing bags/<method>/ under `out_dir`; returns the metrics.

    `policy` is a MethodPolicies, or one policy that then serves every method it can; `settings` are
    the graph's (default: config/'s params files, as `vla-accel up` loads them).
    """
    from tqdm import tqdm

    from vla_accel_ros.policy.runtime import PolicyInput

    bag = Path(bag)
    tm = topic_map or TopicMap()
    settings = load_settings() if settings is None else settings
    policies = policy if isinstance(policy, MethodPolicies) else MethodPolicies.single(policy)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    report: dict[str, Any] = {"methods": {}}
    runs: list[_Run] = []
    for name in methods:
        served, reason = policies.for_method(name)
        if served is not None:
            method_settings = _method_settings(served, name, settings, notes)
            reason = unavailable_reason(served, name, method_settings)
        if reason is not None:
            report["methods"][name] = {"available": False, "reason": reason}
            continue
        loop = build_loop(name, served.action_dim, served.precisions, method_settings)
        path = out_dir / "bags" / bag_dir_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        monitor = _monitor(loop, method_settings, served.action_dim)
        runs.append(_Run(name, loop, monitor, OutputBag(path, storage), path, served))
    if not runs:
        reasons = "; ".join(f"{n}: {r['reason']}" for n, r in report["methods"].items())
        raise MethodsUnavailable(f"none of the methods can be served by this policy ({reasons})")
    policy = runs[0].policy  # every policy shares the checkpoint's config: cameras, state, actions
    joints = JointDerivatives(max_gap_s=settings.kinematics.joint_max_gap_s)
    stats = ReadStats()
    total = _frame_count(bag, tm.camera)
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    steps = 0
    outside = 0
    episode: int | None = None
    episodes: set[int] = set()
    try:
        bar = tqdm(total=total, desc=f"replay {bag.name}", unit="step", disable=not progress)
        for step in iter_steps(bag, tm, stats):
            if max_steps is not None and steps >= max_steps:
                break
            if step.episode < 0:
                outside += 1  # between an episode's end and the next start: not part of any episode
                continue
            if max_episodes is not None and step.episode not in episodes and len(episodes) >= max_episodes:
                break
            if steps == 0:
                _check_step(policy, step, tm)
            if step.episode != episode:
                episode = step.episode
                episodes.add(episode)
                joints.reset()
                for run in runs:
                    run.loop.reset()
                    run.monitor.reset()
            try:
                derivs = joints.update(step.stamp_ns * 1e-9, step.joint_positions)
            except NonIncreasingStampError:
                joints.reset()
                derivs = joints.update(step.stamp_ns * 1e-9, step.joint_positions)
            inp = PolicyInput(
                images={c: np.array(step.images[c]) for c in policy.cameras},  # bag buffers are read-only
                joint_positions=np.asarray(step.joint_positions, dtype=np.float32),
                instruction=step.instruction,
            )
            for run in runs:
                _run_step(run, inp, step, derivs)
            steps += 1
            bar.update(1)
        bar.close()
    finally:
        for run in runs:
            run.bag.close()
    if steps == 0:
        detail = f" ({stats.skipped_incomplete} frames lacked a joint state or a camera)"
        raise BagError(f"bag {bag} holds no complete camera frame inside an episode{detail}")
    report.update(
        {
            "bag": str(bag),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "topics": {
                "cameras": tm.cameras(),
                "joint_states": tm.joint_states,
                "instruction": tm.instruction,
                "reference_action": tm.action,
            },
            "steps": steps,
            "episodes": len(episodes),
            "skipped_incomplete_frames": stats.skipped_incomplete,
            "skipped_outside_episodes": outside,
            "warmup_steps": warmup,
            "precisions": _precision_order(policies),
            "settings": settings.describe(),
            "notes": notes,
        }
    )
    for run in runs:
        report["methods"][run.name] = _summary(run, warmup, out_dir)
    report["methods"] = {name: report["methods"][name] for name in methods}
    return report


def _run_step(run: _Run, inp: Any, step: BagStep, derivs: tuple) -> None:
    t_step = time.perf_counter()
    rec, policy = run.rec, run.policy
    d = run.loop.decide()
    precision = d.precision if d.precision is not None else policy.precisions[-1]
    run.bag.accel_config(step.stamp_ns, d, precision)
    run.bag.kalman_prediction(step.stamp_ns, run.monitor)
    t0 = time.perf_counter()
    result = policy.act(
        inp, precision=precision, decoding=d.decoding, threshold=d.threshold, kalman_action=d.kalman_action
    )
    latency_ms = (time.perf_counter() - t0) * 1e3
    executed = step.reference_action if step.reference_action is not None else result.action
    values = run.loop.observe(executed, result.kalman_filled)
    if run.monitor is not run.loop.compensator:
        if result.kalman_filled:
            run.monitor.mark_filled()
        run.monitor.observe(executed)
    run.bag.action_raw(step.stamp_ns, result)
    run.bag.kinematics(step.stamp_ns, values, step.joint_names, derivs)

    rec.stamps.append(step.stamp_ns)
    rec.episode.append(step.episode)
    rec.latency_ms.append(latency_ms)
    rec.policy_ms.append(result.total_ms)
    rec.precision.append(result.precision)
    rec.threshold.append(float(result.threshold))
    rec.sensitivity.append(d.proxies.sensitivity if d.proxies is not None else math.nan)
    rec.fluctuation.append(d.proxies.fluctuation if d.proxies is not None else math.nan)
    if step.reference_action is not None:
        ref = np.asarray(step.reference_action, dtype=np.float32)
        act = np.asarray(result.action, dtype=np.float32)
        rec.abs_err.append(np.abs(act - ref))
        bins = policy.actions.id_to_bin
        rec.bin_err.append(
            np.abs(bins(policy.actions.encode(act)) - bins(policy.actions.encode(ref))).astype(np.float64)
        )
    else:
        rec.abs_err.append(None)
        rec.bin_err.append(None)
    rec.draft += int(result.draft_tokens)
    rec.accepted += int(result.accepted_tokens)
    if result.kalman_filled:
        rec.fill_steps += 1
        rec.filled_dims += len(result.kalman_filled)
    rec.passes.append(int(result.target_passes))
    if result.fallback:
        rec.fallbacks[result.fallback] += 1
    rec.step_s.append(time.perf_counter() - t_step)


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values]


def jsonable(obj: Any) -> Any:
    """Standard JSON: NaN and infinities become null (json.dumps would write bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def _summary(run: _Run, warmup: int, out_dir: Path) -> dict:
    rec = run.rec
    n = len(rec.stamps)
    measured = rec.latency_ms[warmup:]
    errs = [e for e in rec.abs_err if e is not None]
    bins = [b for b in rec.bin_err if b is not None]
    per_step_err = [float(e.mean()) if e is not None else math.nan for e in rec.abs_err]
    steady_s = sum(rec.step_s[warmup:])
    out: dict[str, Any] = {
        "available": True,
        "policy": "int4 ladder" if run.policy.ladder is not None else "as loaded",
        "bag": str(run.bag_path.relative_to(out_dir)),
        "steps": n,
        "steps_per_s": (len(rec.step_s[warmup:]) / steady_s) if steady_s > 0 else None,
        "steps_per_s_all": n / sum(rec.step_s) if sum(rec.step_s) > 0 else None,
        "latency_ms": {
            **percentiles(measured),
            "mean": float(np.mean(measured)) if measured else None,
            "measured_steps": len(measured),
            "warmup_steps": min(warmup, n),
            "warmup_ms": [float(v) for v in rec.latency_ms[:warmup]],
        },
        "policy_stage_ms_p50": float(np.median(rec.policy_ms[warmup:])) if measured else None,
        "reference_steps": len(errs),
        "action_mae": np.mean(errs, axis=0).tolist() if errs else None,
        "action_mae_mean": float(np.mean(errs)) if errs else None,
        "token_bin_error": np.mean(bins, axis=0).tolist() if bins else None,
        "token_bin_error_mean": float(np.mean(bins)) if bins else None,
        "precision_counts": dict(Counter(rec.precision)),
        "precision_share": {p: c / n for p, c in Counter(rec.precision).items()} if n else {},
        "acceptance": {
            "draft_tokens": rec.draft,
            "accepted_tokens": rec.accepted,
            "rate": rec.accepted / rec.draft if rec.draft else None,
        },
        "kalman_fill_rate": rec.fill_steps / n if n else None,
        "kalman_filled_dims": rec.filled_dims,
        "target_passes": {
            "total": int(sum(rec.passes)),
            "per_step": float(np.mean(rec.passes)) if rec.passes else None,
        },
        "fallback": {"steps": int(sum(rec.fallbacks.values())), "reasons": dict(rec.fallbacks)},
        "timeline": {
            "stamp_ns": rec.stamps,
            "episode": rec.episode,
            "precision": rec.precision,
            "threshold": rec.threshold,
            "sensitivity": _nan_to_none(rec.sensitivity),
            "fluctuation": _nan_to_none(rec.fluctuation),
            "latency_ms": rec.latency_ms,
            "action_error": _nan_to_none(per_step_err),
        },
    }
    return out


# -- the whole run, with atomic output ---------------------------------------------------------------
def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".partial")


def replay_to(
    bag: Path | str,
    policy: Any,
    methods: list[str],
    out_dir: Path,
    overwrite: bool = False,
    plots: bool = True,
    **kwargs: Any,
) -> dict:
    """replay() into `<out_dir>.partial`, then metrics.json and plots, then rename to `out_dir`.

    On any failure the partial directory is removed, so `out_dir` only ever holds a complete run.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    tmp = partial_dir(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted earlier run: never a complete result
    try:
        report = replay(bag, policy, methods, tmp, **kwargs)
        if plots:
            from vla_accel_ros.evaluation.plots import replay_plots

            report["plots"] = [str(p.relative_to(tmp)) for p in replay_plots(report, tmp / "plots")]
        (tmp / "metrics.json").write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return report


def method_list(methods: str | list[str]) -> list[str]:
    """Comma-separated (or listed) method names with the shorthands expanded (methods.expand)."""
    items = methods.split(",") if isinstance(methods, str) else methods
    return expand([m.strip() for m in items if m.strip()])


def run_replay(
    bag: Path | str,
    methods: str | list[str],
    out_dir: Path,
    checkpoint: str = BUILTIN_CHECKPOINT,
    draft: Path | None = None,
    threads: int = 0,
    config: Path | None = None,
    **kwargs: Any,
) -> dict:
    """`vla-accel replay` without its flags (bench-replay runs it too): the graph's settings from
    `config` (default config/), the policies the methods need built from the inference node's table
    with `checkpoint` and `draft`, then replay_to(**kwargs). ReplayError (MethodsUnavailable when no
    method can run) says why not."""
    import torch

    try:
        names = method_list(methods)
        for flag in ("max_steps", "max_episodes"):
            if kwargs.get(flag) is not None and kwargs[flag] < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
        settings = load_settings(config)
    except (ValueError, FileNotFoundError) as err:  # ParameterError is a ValueError
        raise ReplayError(str(err)) from err
    if threads > 0:
        torch.set_num_threads(threads)
    spec = PolicySpec.from_params(settings.inference, checkpoint=str(checkpoint))
    try:
        policies = MethodPolicies.build(spec, names, draft)
    except (ValueError, OSError, PolicyBuildError) as err:  # CheckpointError is a ValueError
        raise ReplayError(f"cannot load checkpoint {str(checkpoint)!r}: {err}") from err
    try:
        return replay_to(bag, policies, names, out_dir, settings=settings, **kwargs)
    except MethodsUnavailable:
        raise
    except (BagError, FileExistsError) as err:
        raise ReplayError(str(err)) from err
