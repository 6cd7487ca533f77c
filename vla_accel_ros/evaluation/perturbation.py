"""DyQ perturbation study: how far one low-precision control step moves the rest of a rollout.

For a layout, a reference rollout runs every step in the top mode. For each probe step t, the same
rollout runs again with the low mode at step t alone (the simulator and the policy are deterministic, so
everything before t is identical), then the top mode for `horizon` more steps. The sensitivity of step t
is the distance between the two hands at t + horizon. The proxies of step t are what the controller
would have seen when it chose that step's precision: M~, J~ and S after the actions executed before t.

Their correlation with the sensitivity says whether the proxies track it (DyQ-VLA reports r = 0.90 and
0.87), and the probes place the precision table: the top threshold is the lowest S above which one
low-precision step moves the hand more than `tolerance`, on average.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vla_accel_ros.evaluation.reporting import fan_out, split_jobs
from vla_accel_ros.kinematics.proxies import KinematicProxies, ProxyCalibration, ProxyValues
from vla_accel_ros.params.tables import ControllerParams, InferenceParams
from vla_accel_ros.policy.builder import PolicySpec


@dataclass
class Probe:
    """One perturbation measurement: how far a step's precision moved the hand, and the proxies before it.

    Pairs of (sensitivity, proxies) are what the DyQ calibration fits its thresholds on.
    """

    task: str
    seed: int
    step: int
    sensitivity: float  # hand distance (m) at step + horizon between perturbed and reference rollouts
    fineness: float  # M~ seen before the step
    jerk: float  # J~ seen before the step
    score: float  # S seen before the step


def _rollout(policy, arm, seed: int, steps: int, mode_at: Callable[[int], str]) -> tuple[np.ndarray, list]:
    """Hand positions after each step and the executed actions of one rollout of `steps` steps."""
    from vla_accel_ros.policy.runtime import PolicyInput

    obs = arm.reset(seed)
    hands, actions = [], []
    for t in range(steps):
        if arm.done:
            break
        out = policy.act(PolicyInput(obs.images, obs.joint_positions, arm.instruction), precision=mode_at(t))
        action = np.clip(out.action, -1.0, 1.0)
        obs = arm.step(out.action)
        hands.append(np.asarray(obs.state[:3], dtype=np.float64))
        actions.append(action)
    return np.asarray(hands), actions


def _proxies_before(actions: Sequence[np.ndarray], cal: ProxyCalibration) -> list[ProxyValues | None]:
    """Proxy values known before each step (None before the first executed action)."""
    prox = KinematicProxies(cal, len(actions[0]))
    seen: list[ProxyValues | None] = [None]
    for a in actions:
        seen.append(prox.update(a))
    return seen


def probe_layout(
    policy,
    task: str,
    seed: int,
    cal: ProxyCalibration,
    low: str,
    top: str,
    probe_every: int = 5,
    horizon: int = 10,
    max_steps: int = 120,
    image_size: int = 64,
) -> list[Probe]:
    """Every probe of one layout (task, seed)."""
    from vla_accel_ros.sim.metaworld_arm import SimArm

    arm = SimArm(task, image_size=image_size, cameras=policy.cameras, max_steps=max_steps)
    try:
        ref_hands, ref_actions = _rollout(policy, arm, seed, max_steps, lambda _t: top)
        seen = _proxies_before(ref_actions, cal)
        probes = []
        for t in range(probe_every, len(ref_actions) - horizon, probe_every):
            end = t + horizon
            hands, _ = _rollout(policy, arm, seed, end + 1, lambda i, t=t: low if i == t else top)
            if len(hands) <= end:
                continue  # the episode ended (success) before the horizon
            p = seen[t]
            assert p is not None
            sens = float(np.linalg.norm(hands[end] - ref_hands[end]))
            probes.append(Probe(task, seed, t, sens, p.motion_fineness, p.angular_jerk, p.sensitivity))
        return probes
    finally:
        arm.close()


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    rank = lambda v: np.argsort(np.argsort(np.asarray(v)))  # noqa: E731 (ties are rare for floats)
    return pearson(rank(x), rank(y))


def summarize(
    probes: list[Probe], modes: Sequence[str], tolerance: float | None = None, bins: int = 5
) -> dict:
    """Correlations of each proxy with the sensitivity, and the precision table the probes support.

    tolerance (m): the mean hand deviation one low-precision step may cause (None: the median
    sensitivity; `vla-accel calibrate-dyq` uses 1 mm).
    The probes are cut into `bins` quantile bins of S; the top threshold is the lower edge of the lowest
    bin from which on every bin's mean sensitivity exceeds the tolerance (no such bin: the highest S seen,
    i.e. the top mode only where S is above everything measured). Below it, [0, top] is split evenly over
    the lower modes, cheapest first.
    """
    if not probes:
        raise ValueError("no probes: episodes ended before the first probe step + horizon")
    sens = [p.sensitivity for p in probes]
    tol = float(np.median(sens)) if tolerance is None else tolerance
    scores = np.array([p.score for p in probes])
    edges = np.quantile(scores, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    means = [
        float(np.mean([s for s, i in zip(sens, idx, strict=True) if i == b] or [np.nan])) for b in range(bins)
    ]
    top = float(edges[-1])
    for b in range(bins - 1, -1, -1):
        if not means[b] > tol:
            break
        top = float(edges[b])
    lower = list(modes[:-1])
    bounds = [round(top * (i + 1) / len(lower), 6) for i in range(len(lower))]
    return {
        "probes": len(probes),
        "tolerance_m": tol,
        "correlation": {
            name: {"pearson": pearson(vals, sens), "spearman": spearman(vals, sens)}
            for name, vals in (
                ("fineness_M", [p.fineness for p in probes]),
                ("jerk_J", [p.jerk for p in probes]),
                ("score_S", [p.score for p in probes]),
            )
        },
        "score_bins": [
            {"S_from": float(edges[b]), "S_to": float(edges[b + 1]), "mean_sensitivity_m": means[b]}
            for b in range(bins)
        ],
        "table": {
            "top_threshold": round(top, 6),
            "precision_modes": list(modes),
            "precision_table_bounds": bounds,
            "precision_table_modes": lower,
        },
        "sensitivity_m": {"median": float(np.median(sens)), "p95": float(np.quantile(sens, 0.95))},
    }


def probes_as_dicts(probes: list[Probe]) -> list[dict]:
    return [asdict(p) for p in probes]


@dataclass(frozen=True)
class Study:
    """One perturbation study: the laddered policy (`spec`, built in each worker), the proxies'
    calibration (the kinematics node's table) and how the layouts are probed."""

    spec: PolicySpec
    calibration: ProxyCalibration
    low: str
    probe_every: int = 5
    horizon: int = 10
    max_steps: int = 120

    def settings(self) -> dict[str, Any]:
        """What the report records of the study (the ladder's group size included)."""
        return {
            "low": self.low,
            "probe_every": self.probe_every,
            "horizon": self.horizon,
            "max_steps": self.max_steps,
            "group": self.spec.quant_group_size,
        }


def _probe_jobs(args: tuple[Study, list[tuple[str, int]]]) -> list[dict]:
    """A worker: build the study's policy once, probe its share of the (task, seed) layouts."""
    import torch

    from vla_accel_ros.policy.builder import build_policy

    study, jobs = args
    torch.set_num_threads(1)
    policy = build_policy(study.spec)
    top = policy.precisions[-1]
    out: list[dict] = []
    for task, seed in jobs:
        probes = probe_layout(
            policy,
            task,
            seed,
            study.calibration,
            study.low,
            top,
            study.probe_every,
            study.horizon,
            study.max_steps,
            policy.config.image_size,
        )
        out.extend(probes_as_dicts(probes))
    return out


def run_study(study: Study, jobs: list[tuple[str, int]], workers: int = 1) -> list[Probe]:
    """Every probe of the (task, seed) layouts `jobs`, spread over `workers` spawned processes."""
    parts = fan_out(_probe_jobs, [(study, c) for c in split_jobs(jobs, workers)], workers)
    return [Probe(**d) for part in parts for d in part]


def dyq_overlay(summary: dict, group: int) -> dict[str, dict[str, Any]]:
    """config/dyq.yaml's sections: the inference node on the int4 ladder at `group`, the controller
    switching with the table `summary` (of `summarize`) placed."""
    return {
        InferenceParams.NODE: {"precision_ladder": "int4", "quant_group_size": group},
        ControllerParams.NODE: {"precision_switching": True, **summary["table"]},
    }
