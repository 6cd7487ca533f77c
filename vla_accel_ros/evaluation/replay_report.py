"""The docs/REPLAY.md block of a replay run: the table, the figures worth publishing, the JSON summary.

`vla-accel bench-replay` runs `evaluation.replay.run_replay` and hands the report here, so the command
only parses and reports; the shape of the published table lives beside the replay that fills it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vla_accel_ros.evaluation.replay import bag_dir_name

SUMMARY_PLOTS = ("latency_hist.png", "action_error.png")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _shares(m: dict, order: list[str]) -> str:
    share = m.get("precision_share", {})
    return ", ".join(f"{p} {share[p]:.0%}" for p in order if p in share) or "-"


def interesting_plots(report: dict) -> list[str]:
    """Figures worth publishing: the summaries, and timelines where precision or threshold moves."""
    names = [p for p in report.get("plots", []) if Path(p).name in SUMMARY_PLOTS]
    for name, m in report["methods"].items():
        if not m.get("available"):
            continue
        tl = m["timeline"]
        if len(set(tl["precision"])) > 1 or len(set(tl["threshold"])) > 1:
            names += [
                p for p in report.get("plots", []) if Path(p).name == f"timeline_{bag_dir_name(name)}.png"
            ]
    return names


def markdown(summary: dict, images: list[str]) -> str:
    """The results block of docs/REPLAY.md: one row per method, skipped ones with their reason."""
    order = summary["precisions"]
    lines = [
        f"Command: `{summary['command']}`  ",
        f"Date: {summary['date']}; machine: {summary['machine']}; torch threads {summary['threads']}; "
        f"checkpoint `{summary['checkpoint']}`.  ",
        f"Bag: `{summary['bag']}`, {summary['episodes']} episode(s), {summary['steps']} steps, every method "
        f"on every step in lockstep; timings leave out the first {summary['warmup_steps']} steps.",
        "",
        "| method | policy | steps/s | p50 ms | p95 ms | action MAE | token bin error | acceptance "
        "| Kalman fill rate | precision shares | fallbacks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    skipped = []
    for name, m in summary["methods"].items():
        if not m["available"]:
            skipped.append(f"- `{name}` skipped: {m['reason']}")
            continue
        lat = m["latency_ms"]
        lines.append(
            f"| `{name}` | {m['policy']} | {_fmt(m['steps_per_s'], '.1f')} | {_fmt(lat['p50'], '.1f')} "
            f"| {_fmt(lat['p95'], '.1f')} | {_fmt(m['action_mae_mean'], '.4f')} "
            f"| {_fmt(m['token_bin_error_mean'], '.2f')} | {_fmt(m['acceptance']['rate'], '.2f')} "
            f"| {_fmt(m['kalman_fill_rate'], '.2f')} | {_shares(m, order)} | {m['fallback']['steps']} |"
        )
    lines += [""] + skipped if skipped else []
    if summary["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in summary["notes"]]
    if images:
        lines += [""] + [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def without_timelines(report: dict) -> dict:
    """The metrics minus per-step timelines (those stay in the work folder's metrics.json)."""
    out = dict(report)
    out["methods"] = {
        n: {k: v for k, v in m.items() if k != "timeline"} for n, m in report["methods"].items()
    }
    return out


def publish_figures(report: dict, work: Path, img: Path, doc_dir: Path) -> list[str]:
    """Copy `interesting_plots` from the replay folder `work` to `img` (its old figures removed first:
    an earlier run's must not pass for this one's); their paths relative to `doc_dir`, for the page."""
    images = []
    for old in img.glob("*.png"):
        old.unlink()
    for rel in interesting_plots(report):
        img.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / rel, img / Path(rel).name)
        images.append(Path(os.path.relpath(img / Path(rel).name, doc_dir)).as_posix())
    return images
