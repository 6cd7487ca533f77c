"""The summary of `vla-accel demo`: what the monitor recorded of the closed loop (episode ends, actions,
arm commands, diagnostics) and the table printed at the end. ROS-free, so it is tested without a graph;
the monitor node that fills it is vla_accel_ros.ros.demo_monitor."""

from __future__ import annotations

import collections
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from vla_accel_ros.evaluation.stats import percentiles


@dataclass
class Observations:
    """What the demo monitor saw of the running graph (filled by vla_accel_ros.ros.demo_monitor)."""

    episodes: list[dict] = field(default_factory=list)  # "end" events + wall duration_s
    # image stamp -> (publish stamp, precision, decoding, policy ms, fallback reason or "")
    actions: dict[int, tuple[int, str, str, float, str]] = field(default_factory=dict)
    commands: dict[int, int] = field(default_factory=dict)  # image stamp -> arm command publish stamp
    images: int = 0
    diagnostics: dict[str, tuple[int, str]] = field(default_factory=dict)  # node -> (level, message)


def _pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure printed is a measured one)."""
    return percentiles(values, (q,), method="nearest")[f"p{int(q)}"]


def summarize(obs: Observations) -> str:
    """The demo's summary table: per-task success and steps, control rate, per-hop latency, modes."""
    lines = []
    by_task: dict[str, list[dict]] = collections.defaultdict(list)
    for ep in obs.episodes:
        by_task[ep["task"]].append(ep)
    lines.append(f"{'task':<26}{'episodes':>9}{'success':>9}{'steps mean':>12}{'steps min-max':>15}")
    for task, eps in by_task.items():
        steps = [int(e["steps"]) for e in eps]
        wins = sum(bool(e["success"]) for e in eps)
        lines.append(
            f"{task:<26}{len(eps):>9}{f'{wins}/{len(eps)}':>9}{statistics.mean(steps):>12.1f}"
            f"{f'{min(steps)}-{max(steps)}':>15}"
        )
    total_steps = sum(int(e["steps"]) for e in obs.episodes)
    total_time = sum(float(e.get("duration_s", 0.0)) for e in obs.episodes)
    wins = sum(bool(e["success"]) for e in obs.episodes)
    if obs.episodes:
        lines.append(f"{'all':<26}{len(obs.episodes):>9}{f'{wins}/{len(obs.episodes)}':>9}")
    rate = total_steps / total_time if total_time > 0 else 0.0
    lines.append("")
    lines.append(
        f"control rate: {rate:.1f} Hz ({total_steps} steps in {total_time:.1f} s, first command to end)"
    )
    hop1 = [(pub - img) * 1e-6 for img, (pub, *_rest) in obs.actions.items()]
    hop2 = [
        (obs.commands[img] - pub) * 1e-6 for img, (pub, *_rest) in obs.actions.items() if img in obs.commands
    ]
    total = [(cmd - img) * 1e-6 for img, cmd in obs.commands.items() if img > 0]
    policy_ms = [a[3] for a in obs.actions.values()]
    lines.append(f"{'latency (ms)':<30}{'median':>9}{'p95':>9}{'n':>7}")
    for name, values in (
        ("camera -> VlaAction", hop1),
        ("VlaAction -> arm command", hop2),
        ("camera -> arm command", total),
        ("  of which policy.act", policy_ms),
    ):
        if values:
            lines.append(
                f"{name:<30}{statistics.median(values):>9.1f}{_pct(values, 95):>9.1f}{len(values):>7}"
            )
        else:
            lines.append(f"{name:<30}{'-':>9}{'-':>9}{0:>7}")
    modes = collections.Counter(f"{a[1]}/{a[2]}" for a in obs.actions.values())
    lines.append(
        "modes (precision/decoding): " + (", ".join(f"{m} x{n}" for m, n in modes.most_common()) or "-")
    )
    fallbacks = collections.Counter(a[4] for a in obs.actions.values() if a[4])
    if fallbacks:
        reason, n = fallbacks.most_common(1)[0]
        lines.append(f"fallbacks: {sum(fallbacks.values())} action(s), most often: {reason} (x{n})")
    return "\n".join(lines)
