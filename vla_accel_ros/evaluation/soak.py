"""Load and soak bookkeeping: resident memory of processes, latency per time window, message counts, and
the reports (JSON + markdown) of `vla-accel soak`.

ROS-free: the driver (vla_accel_ros.ros.soak_run) runs a Plan and feeds what its robot saw (a RobotLog) in;
this module turns it into a RunReport, fits the trends and says whether memory is flat and latency does
not grow. Memory slopes are least-squares fits after a warm-up
share of the run, in MB per hour of *simulated* operation (the soak runs sim time faster than wall time;
leaks scale with the messages and steps processed, which follow sim time).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_accel_ros.evaluation import stats
from vla_accel_ros.evaluation.reliability import write_doc_section


@dataclass
class Plan:
    """One run: its kind, how long it measures and the rates the robot publishes at."""

    kind: str  # "load" (real time) or "soak" (sim time)
    duration_s: float  # measured time after the first command, in the run's own time
    camera_hz: float
    joint_hz: float
    control_hz: float
    speedup: float  # 1.0 for load
    image_size: int = 64

    @property
    def sim_time(self) -> bool:
        return self.kind == "soak"

    @property
    def window_s(self) -> float:
        return max(self.duration_s / 10.0, 1.0)

    def describe(self) -> str:
        if self.sim_time:
            return (
                f"Simulated operation: {self.duration_s / 60:.0f} min at {self.speedup:g}x wall speed "
                f"(nodes on /clock), cameras {self.camera_hz:g} Hz and joint states {self.joint_hz:g} Hz "
                f"in sim time, inference {self.control_hz:g} Hz; {self.image_size}-pixel square images."
            )
        return (
            f"Real time: cameras (two) {self.camera_hz:g} Hz, joint states {self.joint_hz:g} Hz, inference "
            f"{self.control_hz:g} Hz, {self.duration_s:g} s measured after the first arm command; "
            f"{self.image_size} x {self.image_size} images."
        )


@dataclass
class RobotLog:
    """What the soak's robot saw, stamped in the run's own clock (sim time for a soak)."""

    published: dict[str, int] = field(default_factory=lambda: {"camera frames": 0, "joint states": 0})
    published_at: list[tuple[int, int, int]] = field(default_factory=list)  # (stamp ns, frames, joints)
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (stamp ns at arrival, wall ms)
    commands: list[tuple[int, bool]] = field(default_factory=list)  # (stamp ns at arrival, is hold)
    diags: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)  # node -> samples

    def published_before(self, stamp: int) -> tuple[int, int] | None:
        """(frames, joint states) published by the last snapshot at or before `stamp`."""
        best = None
        for t, frames, joints in self.published_at:
            if t <= stamp:
                best = (frames, joints)
        return best


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_per_hour(t_s: list[float], y: list[float]) -> float:
    """Least-squares slope of y against t (seconds), per hour; NaN with fewer than 3 points."""
    if len(t_s) < 3 or max(t_s) - min(t_s) <= 0:
        return math.nan
    a = np.polyfit(np.asarray(t_s, dtype=float), np.asarray(y, dtype=float), 1)[0]
    return float(a * 3600.0)


def percentiles(values: list[float]) -> dict[str, float]:
    """n, p50, p95 and max of a latency window (NaN when empty)."""
    return stats.percentiles(values, count=True, maximum=True)


@dataclass
class Counts:
    """Messages one subscriber should have had and what it says it got (from its /diagnostics values)."""

    node: str
    topic: str
    published: int
    received: int

    @property
    def dropped(self) -> int:
        return max(0, self.published - self.received)

    @property
    def drop_rate(self) -> float:
        return self.dropped / self.published if self.published else math.nan


@dataclass
class Endpoint:
    """One publisher or subscription with its QoS, so the soak report shows where messages can queue."""

    node: str
    topic: str
    kind: str  # "publisher" or "subscription"
    history: str
    depth: int
    reliability: str


@dataclass
class RunReport:
    """One load or soak run."""

    kind: str  # "load" (real time) or "soak" (sim time faster than wall time)
    settings: dict[str, Any]
    wall_s: float = 0.0
    sim_s: float = 0.0
    published: dict[str, int] = field(default_factory=dict)
    achieved_hz: dict[str, float] = field(default_factory=dict)  # in the run's own time (sim for a soak)
    counts: list[Counts] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    commands: int = 0
    holds: int = 0
    control_hz: float = math.nan  # arm commands (not holds) per second of the run's own time
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> [(sim or wall s, MB)]
    latency_windows: list[dict[str, float]] = field(
        default_factory=list
    )  # camera frame -> arm command, wall ms
    notes: list[str] = field(default_factory=list)
    warmup_share: float = 0.2
    min_rate_share: float = 0.9  # the achieved control rate must reach this share of the configured one
    max_rss_slope_mb_per_hour: float = 10.0  # "flat memory" for a soak, after warm-up, in every node

    # -- trends ------------------------------------------------------------------------------------------
    def memory(self) -> dict[str, dict[str, float]]:
        out = {}
        for node, samples in self.rss.items():
            if not samples:
                continue
            cut = samples[int(len(samples) * self.warmup_share) :]
            t, mb = [s[0] for s in cut], [s[1] for s in cut]
            out[node] = {
                "start_mb": samples[0][1],
                "after_warmup_mb": cut[0][1] if cut else math.nan,
                "end_mb": samples[-1][1],
                "max_mb": max(s[1] for s in samples),
                "slope_mb_per_hour": slope_per_hour(t, mb),
            }
        return out

    def latency_trend(self) -> dict[str, float]:
        w = [x for x in self.latency_windows if x.get("n", 0) > 0]
        if len(w) < 2:
            return {"p50_first_ms": math.nan, "p50_last_ms": math.nan, "p50_slope_ms_per_hour": math.nan}
        return {
            "p50_first_ms": w[0]["p50"],
            "p50_last_ms": w[-1]["p50"],
            "p50_slope_ms_per_hour": slope_per_hour([x["t_end_s"] for x in w], [x["p50"] for x in w]),
        }

    def rate_met(self) -> bool:
        """The benchmark's check of the control rate (why not a test: it depends on the machine)."""
        configured = float(self.settings.get("control_hz", math.nan))
        return self.control_hz >= self.min_rate_share * configured

    def memory_flat(self) -> bool:
        """Every node's RSS slope after warm-up stays under the bound (a soak only; a load run is short)."""
        return self.kind != "soak" or all(
            abs(m["slope_mb_per_hour"]) <= self.max_rss_slope_mb_per_hour for m in self.memory().values()
        )

    def passed(self) -> bool:
        """What the command's exit code says: bounded queues, commands sent, the rate, flat memory."""
        return self.bounded_queues() and self.commands > 0 and self.rate_met() and self.memory_flat()

    def bounded_queues(self, max_depth: int = 1000) -> bool:
        """Every endpoint keeps the last N (never KEEP_ALL); rclpy's own /parameter_events keeps 1000."""
        return bool(self.endpoints) and all(
            e.history == "KEEP_LAST" and 0 < e.depth <= max_depth for e in self.endpoints
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = [{**asdict(c), "dropped": c.dropped, "drop_rate": c.drop_rate} for c in self.counts]
        data["memory"] = self.memory()
        data["latency_trend"] = self.latency_trend()
        data["bounded_queues"] = self.bounded_queues()
        data["rate_met"] = self.rate_met()
        data["memory_flat"] = self.memory_flat()
        return data

    # -- text --------------------------------------------------------------------------------------------
    def markdown(self) -> str:
        unit = "simulated" if self.kind == "soak" else "wall"
        lines = [
            f"- duration: {self.sim_s / 60:.1f} min of {unit} time"
            + (f" in {self.wall_s / 60:.1f} min of wall time" if self.kind == "soak" else ""),
            "- published: "
            + ", ".join(
                f"{k} {v} ({self.achieved_hz.get(k, math.nan):.1f} Hz)" for k, v in self.published.items()
            ),
            f"- control rate: **{self.control_hz:.2f} Hz** of arm commands "
            f"(configured {self.settings.get('control_hz')} Hz; "
            f"required >= {100 * self.min_rate_share:.0f} %: "
            f"**{'met' if self.rate_met() else 'missed'}**); {self.holds} watchdog holds",
            f"- queues bounded (every publisher and subscription of the three nodes KEEP_LAST): "
            f"**{self.bounded_queues()}**",
        ]
        graph = [e for e in self.endpoints if e.topic not in ("/rosout", "/parameter_events")]
        if graph:
            lines.append("")
            lines.append("| node | topic | endpoint | history | depth | reliability |")
            lines.append("|---|---|---|---|---:|---|")
            lines += [
                f"| {e.node} | {e.topic} | {e.kind} | {e.history} | {e.depth} | {e.reliability} |"
                for e in graph
            ]
        lines.append("")
        lines.append("| subscriber | topic | published | received | dropped | drop rate |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for c in self.counts:
            lines.append(
                f"| {c.node} | {c.topic} | {c.published} | {c.received} | {c.dropped} "
                f"| {100 * c.drop_rate:.2f} % |"
            )
        lines.append("")
        soak = self.kind == "soak"  # a slope over a short load run would mean nothing
        lines.append(
            "| process | RSS start MB | after warm-up | end | max |"
            + (f" slope (MB per {unit} hour) |" if soak else "")
        )
        lines.append("|---|---:|---:|---:|---:|" + ("---:|" if soak else ""))
        for node, m in self.memory().items():
            lines.append(
                f"| {node} | {m['start_mb']:.1f} | {m['after_warmup_mb']:.1f} | {m['end_mb']:.1f} | "
                f"{m['max_mb']:.1f} |" + (f" {m['slope_mb_per_hour']:+.2f} |" if soak else "")
            )
        if soak:
            lines.append("")
            lines.append(
                f"Memory flat (every node's RSS slope after warm-up within "
                f"+-{self.max_rss_slope_mb_per_hour:g} MB per {unit} hour): "
                f"**{'yes' if self.memory_flat() else 'no'}**."
            )
        if not soak:
            every = percentiles([w["p50"] for w in self.latency_windows if w.get("n", 0)])
            lines.append("")
            lines.append(
                f"Latency (camera frame published -> arm command received): median of the per-second p50s "
                f"{every['p50']:.1f} ms, worst per-second p95 "
                f"{max((w['p95'] for w in self.latency_windows if w.get('n', 0)), default=math.nan):.1f} ms."
            )
        elif self.latency_windows:
            lines.append("")
            lines.append(f"| window end ({unit} min) | frames | p50 ms | p95 ms | max ms |")
            lines.append("|---:|---:|---:|---:|---:|")
            for w in self.latency_windows:
                lines.append(
                    f"| {w['t_end_s'] / 60:.1f} | {w['n']} | {w['p50']:.1f} | {w['p95']:.1f} "
                    f"| {w['max']:.1f} |"
                )
            trend = self.latency_trend()
            lines.append("")
            lines.append(
                f"Latency (camera frame published -> arm command received, wall clock): p50 "
                f"{trend['p50_first_ms']:.1f} ms in the first window, {trend['p50_last_ms']:.1f} ms in the "
                "last; "
                f"fitted trend {trend['p50_slope_ms_per_hour']:+.2f} ms per {unit} hour."
            )
        lines += [f"- note: {n}" for n in self.notes]
        return "\n".join(lines)


COUNTED = {  # node -> (diagnostics key, what the robot publishes, topic)
    "inference_node": (
        ("received_frames", "camera frames", "camera/image_raw + wrist_camera/image_raw"),
        ("received_joint_states", "joint states", "joint_states"),
    ),
    "kinematics_node": (("received_joint_states", "joint states", "joint_states"),),
}


def subscriber_counts(log: RobotLog, start_ns: int) -> list[Counts]:
    """Received vs published per subscriber, between the first and last diagnostics after start_ns."""
    out = []
    for node, keys in COUNTED.items():
        for key, kind, topic in keys:
            samples = [(t, int(v[key])) for t, v in log.diags.get(node, []) if t >= start_ns and key in v]
            if len(samples) < 2:
                continue
            (t0, r0), (t1, r1) = samples[0], samples[-1]
            p0, p1 = log.published_before(t0), log.published_before(t1)
            if p0 is None or p1 is None:
                continue
            idx = 0 if kind == "camera frames" else 1
            out.append(Counts(node, topic, p1[idx] - p0[idx], r1 - r0))
    return out


def finish_report(
    report: RunReport, plan: Plan, log: RobotLog, start_ns: int, end_ns: int, wall_s: float
) -> RunReport:
    """Rates, commands, subscriber counts and latency windows of the measured span [start_ns, end_ns]."""
    duration = (end_ns - start_ns) * 1e-9
    report.sim_s, report.wall_s = duration, wall_s
    frames, joints = (
        log.published_at[-1][1] - log.published_at[0][1],
        log.published_at[-1][2] - log.published_at[0][2],
    )
    report.published = {"camera frames (two cameras)": frames, "joint states": joints}
    report.achieved_hz = {
        "camera frames (two cameras)": frames / 2 / duration,
        "joint states": joints / duration,
    }
    in_run = [(t, hold) for t, hold in log.commands if start_ns <= t <= end_ns]
    report.commands = sum(not hold for _, hold in in_run)
    report.holds = sum(hold for _, hold in in_run)
    report.control_hz = report.commands / duration
    report.counts = subscriber_counts(log, start_ns)
    edges = [start_ns + int(i * plan.window_s * 1e9) for i in range(int(plan.duration_s / plan.window_s) + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        window = [ms for t, ms in log.latencies if lo <= t < hi]
        report.latency_windows.append({"t_end_s": (hi - start_ns) * 1e-9, **percentiles(window)})
    if plan.sim_time:
        report.notes.append(
            f"achieved speed-up {duration / max(report.wall_s, 1e-9):.2f}x (asked {plan.speedup:g}x)"
        )
    return report


def write_run_results(
    report: RunReport, plan: Plan, text: str, argv: list[str], json_dir: Path, doc: Path
) -> Path:
    """docs/results/reliability_<kind>.json and the run's section of docs/RELIABILITY.md (`text` is the
    report's markdown, as printed; `argv` the command's arguments after `vla-accel`). Returns the JSON."""
    json_dir.mkdir(parents=True, exist_ok=True)
    path = json_dir / f"reliability_{plan.kind}.json"
    data = {**report.to_dict(), "command": " ".join(["vla-accel", *argv])}
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    title = "Load (real time)" if plan.kind == "load" else "Soak (sim time, accelerated)"
    body = f"`vla-accel {' '.join(argv) or 'soak'}`\n\n{plan.describe()}\n\n{text}"
    write_doc_section(doc, plan.kind, title, body)
    return path
