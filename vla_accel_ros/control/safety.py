"""Last check on every action before it reaches the arm.

Policy (why: a hold costs one control step, a bad action can cost the arm):
- wrong length, non-numeric, NaN/inf -> not ok (hold);
- finite but outside [decoder_min, decoder_max] (what the policy's token decoder can emit, see
  control.decoder_range) -> not ok (hold): no decoder made it, so it is corrupt, not merely large;
- outside the per-dimension [clip_min, clip_max] -> clipped, still ok (the reason and `clipped` say which);
- on the clipped action: translation norm above max_translation, rotation norm above max_rotation, a joint
  delta above max_joint_delta, gripper change above max_gripper_change, or a move that leaves the workspace
  box -> not ok (hold), with each limit broken and by how much in `violations` (and the reason text).

Which dims are translation, rotation, joint or gripper comes from `kinds` (the declared action space,
vla_accel_ros.control.action_space); without it the built-in layouts apply: 4-D (dx, dy, dz, gripper) and
7-D (dx, dy, dz, droll, dpitch, dyaw, gripper).

The workspace check needs the current end-effector position (`ee_position`) and `translation_scale` (position
units per action unit and step, one value or one per axis, e.g. Meta-World moves 1/100 m per unit); it
predicts ee + scale * a^xyz. A move is
refused when that target lies outside the box, unless it brings an arm that is already outside closer to it
(so the arm can always recover). Without ee_position the workspace check is skipped. Every limit is optional.

A hold is zero motion with the gripper command unchanged (`hold_action`): a zero gripper command would
open a closed gripper halfway on most arms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from vla_accel_ros.control.action_space import KINDS

Violation = tuple[str, float, float]  # (limit name, value, limit)


def _opt_positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"SafetyLimits.{name} must be None or a finite number >= 0, got {value!r}")


def _opt_vector(name: str, value: Sequence[float] | None, size: int) -> np.ndarray | None:
    if value is None:
        return None
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (size,) or not np.isfinite(v).all():
        raise ValueError(f"SafetyLimits.{name} must be None or {size} finite numbers, got {value!r}")
    return v


@dataclass(frozen=True)
class SafetyLimits:
    """Limits in action units (the workspace box in the units of ee_position). None = limit off."""

    action_dim: int
    max_translation: float | None = None
    max_rotation: float | None = None
    clip_min: Sequence[float] | None = None
    clip_max: Sequence[float] | None = None
    max_gripper_change: float | None = None
    workspace_min: Sequence[float] | None = None
    workspace_max: Sequence[float] | None = None
    translation_scale: float | Sequence[float] = 1.0
    kinds: Sequence[str] | None = None  # per dim, from the action space; None: the 4-D / 7-D layout
    max_joint_delta: float | None = None
    decoder_min: Sequence[float] | None = None  # the decoder's range; None: no such check
    decoder_max: Sequence[float] | None = None
    _arrays: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_translation", "max_rotation", "max_gripper_change", "max_joint_delta"):
            _opt_positive(name, getattr(self, name))
        arr = self._arrays
        arr["workspace_min"] = _opt_vector("workspace_min", self.workspace_min, 3)
        arr["workspace_max"] = _opt_vector("workspace_max", self.workspace_max, 3)
        if (arr["workspace_min"] is None) != (arr["workspace_max"] is None):
            raise ValueError("SafetyLimits: give both workspace_min and workspace_max, or neither")
        if arr["workspace_min"] is not None and (arr["workspace_min"] > arr["workspace_max"]).any():
            raise ValueError("SafetyLimits: workspace_min must be <= workspace_max on every axis")
        arr["dims"] = self._layout()
        if self.max_rotation is not None and not arr["dims"]["rotation"]:
            raise ValueError("SafetyLimits.max_rotation applies to actions with rotation dims (7-D) only")
        if arr["workspace_min"] is not None and len(arr["dims"]["translation"]) != 3:
            raise ValueError("SafetyLimits: the workspace box needs 3 translation dims to predict the move")
        scale = np.broadcast_to(np.asarray(self.translation_scale, dtype=np.float64), (3,))
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"SafetyLimits.translation_scale must be > 0, got {self.translation_scale!r}")
        arr["translation_scale"] = scale
        arr["clip_min"] = _opt_vector("clip_min", self.clip_min, self.action_dim)
        arr["clip_max"] = _opt_vector("clip_max", self.clip_max, self.action_dim)
        if (
            arr["clip_min"] is not None
            and arr["clip_max"] is not None
            and (arr["clip_min"] > arr["clip_max"]).any()
        ):
            raise ValueError("SafetyLimits: clip_min must be <= clip_max in every dimension")
        arr["decoder_min"] = _opt_vector("decoder_min", self.decoder_min, self.action_dim)
        arr["decoder_max"] = _opt_vector("decoder_max", self.decoder_max, self.action_dim)
        if (arr["decoder_min"] is None) != (arr["decoder_max"] is None):
            raise ValueError("SafetyLimits: give both decoder_min and decoder_max, or neither")
        if arr["decoder_min"] is not None and (arr["decoder_min"] > arr["decoder_max"]).any():
            raise ValueError("SafetyLimits: decoder_min must be <= decoder_max in every dimension")

    def _layout(self) -> dict[str, list[int]]:
        """Dims of each kind: from `kinds`, else the built-in 4-D / 7-D layout (gripper last)."""
        if self.kinds is None:
            if self.action_dim not in (4, 7):
                raise ValueError(
                    f"SafetyLimits.action_dim must be 4 or 7 without kinds, got {self.action_dim!r}"
                )
            rot = [3, 4, 5] if self.action_dim == 7 else []
            return {"translation": [0, 1, 2], "rotation": rot, "joint": [], "gripper": [self.action_dim - 1]}
        kinds = list(self.kinds)
        if len(kinds) != self.action_dim or not set(kinds) <= set(KINDS):
            raise ValueError(
                f"SafetyLimits.kinds must be {self.action_dim} of {', '.join(KINDS)}, got {kinds}"
            )
        layout = {k: [i for i, x in enumerate(kinds) if x == k] for k in KINDS}
        if len(layout["gripper"]) > 1:
            raise ValueError("SafetyLimits.kinds: at most one gripper dim")
        return layout

    @property
    def gripper_dim(self) -> int | None:
        g = self._arrays["dims"]["gripper"]
        return g[0] if g else None

    @classmethod
    def from_dict(cls, data: dict) -> SafetyLimits:
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SafetyLimits: unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one action: pass it on (clipped), or refuse it naming every violation."""

    ok: bool
    action: np.ndarray | None  # the action to execute (clipped) when ok, else None: hold
    reason: str
    violations: list[Violation] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)


def describe(violations: Sequence[Violation]) -> str:
    """'limit value > bound (over by excess)' per violation: what /diagnostics shows of a refusal."""
    return "; ".join(
        f"{n} {v:.4g} > {b:.4g} (over by {v - b:.3g})" if math.isfinite(b) else f"{n} invalid"
        for n, v, b in violations
    )


def hold_action(
    action_dim: int, last_gripper: float | None = None, gripper_dim: int | None = -1
) -> np.ndarray:
    """Zero motion, gripper kept at the last command (0.0 when none is known yet)."""
    a = np.zeros(action_dim, dtype=np.float32)
    if gripper_dim is not None and last_gripper is not None and math.isfinite(last_gripper):
        a[gripper_dim] = last_gripper
    return a


def _beyond_decoder(a: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> list[Violation]:
    """('decoder_range[d]', distance beyond the range, 0) per dim outside it (with float32 slack)."""
    if lo is None or hi is None:
        return []
    slack = 1e-6 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    excess = np.maximum(lo - a, a - hi)
    return [(f"decoder_range[{int(d)}]", float(excess[d]), 0.0) for d in np.flatnonzero(excess > slack)]


def _outside(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Euclidean distance from p to the box (0 inside)."""
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(lo - p, p - hi))))


class SafetyGuard:
    """Stateful: remembers the last accepted gripper command for the rate limit and for holds.

    `evaluate` judges an action without changing that memory and `commit` records an action that was
    actually commanded, so a caller that may still drop an ok action (the rate limit of the CommandGate)
    never lets a dropped gripper value move the memory. `check` is both, for callers that command every
    ok action.
    """

    def __init__(self, limits: SafetyLimits, initial_gripper: float | None = None) -> None:
        self.limits = limits
        self.last_gripper = initial_gripper  # None: the first gripper change is not rate-checked

    def hold(self) -> np.ndarray:
        return hold_action(self.limits.action_dim, self.last_gripper, self.limits.gripper_dim)

    def reset(self, initial_gripper: float | None = None) -> None:
        self.last_gripper = initial_gripper

    def check(self, action: np.ndarray, ee_position: np.ndarray | None = None) -> Verdict:
        """Evaluate, and commit the action when it is ok."""
        verdict = self.evaluate(action, ee_position)
        self.commit(verdict)
        return verdict

    def commit(self, verdict: Verdict) -> None:
        """Record an ok verdict's action as commanded (its gripper value is the next change's reference)."""
        grip = self.limits.gripper_dim
        if verdict.ok and verdict.action is not None and grip is not None:
            self.last_gripper = float(verdict.action[grip])

    def evaluate(self, action: np.ndarray, ee_position: np.ndarray | None = None) -> Verdict:
        """The verdict on one action; the guard's memory is not changed (see `commit`)."""
        lim = self.limits
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            return Verdict(False, None, "hold: action is not numeric", [("numeric", math.nan, math.nan)])
        if a.shape != (lim.action_dim,):
            n = float(a.size)
            return Verdict(
                False,
                None,
                f"hold: action shape {a.shape}, expected ({lim.action_dim},)",
                [("length", n, float(lim.action_dim))],
            )
        bad = int((~np.isfinite(a)).sum())
        if bad:
            return Verdict(False, None, f"hold: {bad} non-finite value(s)", [("finite", float(bad), 0.0)])
        arr = lim._arrays
        beyond = _beyond_decoder(a, arr["decoder_min"], arr["decoder_max"])
        if beyond:
            return Verdict(False, None, f"hold: {describe(beyond)} (no decoder emits it)", beyond)
        lo = arr["clip_min"] if arr["clip_min"] is not None else -np.inf
        hi = arr["clip_max"] if arr["clip_max"] is not None else np.inf
        c64 = np.clip(a, lo, hi)
        clipped = np.flatnonzero(c64 != a).tolist()
        with np.errstate(over="ignore"):
            out = c64.astype(np.float32)  # the limits are checked on exactly what will be executed
        if not np.isfinite(out).all():
            return Verdict(False, None, "hold: value(s) beyond float32 range", [("finite", math.inf, 0.0)])
        c = out.astype(np.float64)
        dims = arr["dims"]
        grip = lim.gripper_dim
        measured = [
            ("max_translation", lim.max_translation, dims["translation"], np.linalg.norm),
            ("max_rotation", lim.max_rotation, dims["rotation"], np.linalg.norm),
            ("max_joint_delta", lim.max_joint_delta, dims["joint"], lambda x: np.max(np.abs(x))),
        ]
        violations: list[Violation] = []
        for name, bound, idx, measure in measured:
            if bound is not None and idx:
                v = float(measure(c[idx]))
                if v > bound:
                    violations.append((name, v, bound))
        if lim.max_gripper_change is not None and self.last_gripper is not None and grip is not None:
            v = abs(float(c[grip]) - self.last_gripper)
            if v > lim.max_gripper_change:
                violations.append(("max_gripper_change", v, lim.max_gripper_change))
        if ee_position is not None and arr["workspace_min"] is not None:
            violations.extend(self._workspace(ee_position, c[dims["translation"]]))
        if violations:
            return Verdict(False, None, f"hold: {describe(violations)}", violations, clipped)
        reason = f"ok; clipped dims {clipped}" if clipped else "ok"
        return Verdict(True, out, reason, [], clipped)

    def _workspace(self, ee_position: np.ndarray, xyz: np.ndarray) -> list[Violation]:
        lo, hi = self.limits._arrays["workspace_min"], self.limits._arrays["workspace_max"]
        try:
            p = np.asarray(ee_position, dtype=np.float64)
        except (TypeError, ValueError):
            p = np.full(1, np.nan)
        if p.shape != (3,) or not np.isfinite(p).all():
            return [("ee_position", math.nan, math.nan)]
        now = _outside(p, lo, hi)
        after = _outside(p + self.limits._arrays["translation_scale"] * xyz, lo, hi)
        if after > 0.0 and after >= now:
            return [("workspace", after, 0.0)]
        return []
