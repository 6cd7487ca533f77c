"""PNG figures for replay metrics and normalization checks (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on robots and CI; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _nan(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def precision_timeline(name: str, m: dict, path: Path, modes: Sequence[str] = ()) -> Path:
    """Kinematic score S (and fluctuation F) over steps, the precision mode and threshold chosen from it."""
    tl = m["timeline"]
    steps = np.arange(len(tl["precision"]))
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True)
    axes[0].plot(steps, _nan(tl["sensitivity"]), label="sensitivity S", lw=1)
    axes[0].plot(steps, _nan(tl["fluctuation"]), label="fluctuation F", lw=1, alpha=0.7)
    axes[0].set_ylabel("kinematic score")
    axes[0].legend(loc="upper right", fontsize=8)
    order = [p for p in modes if p in set(tl["precision"])] or sorted(set(tl["precision"]))
    order += [p for p in sorted(set(tl["precision"])) if p not in order]
    index = {p: i for i, p in enumerate(order)}
    axes[1].step(steps, [index[p] for p in tl["precision"]], where="post", lw=1.2)
    axes[1].set_yticks(range(len(order)), order)
    axes[1].set_ylabel("precision")
    axes[2].step(steps, tl["threshold"], where="post", lw=1.2, color="tab:green")
    axes[2].set_ylabel("threshold (bins)")
    axes[2].set_xlabel("step")
    for boundary in np.flatnonzero(np.diff(np.asarray(tl["episode"])) != 0):
        for ax in axes:
            ax.axvline(boundary + 0.5, color="0.8", lw=0.8, zorder=0)
    fig.suptitle(f"{name}: precision and threshold against the kinematic score")
    fig.tight_layout()
    return _save(fig, path)


def latency_histogram(methods: dict[str, dict], warmup: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, m in methods.items():
        values = np.asarray(m["timeline"]["latency_ms"][warmup:], dtype=np.float64)
        if values.size:
            ax.hist(
                values, bins=40, histtype="step", lw=1.3, label=f"{name} (p50 {np.median(values):.1f} ms)"
            )
    ax.set_xlabel(f"latency per step (ms), first {warmup} warm-up steps excluded")
    ax.set_ylabel("steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def action_error(methods: dict[str, dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, m in methods.items():
        err = _nan(m["timeline"]["action_error"])
        ax.plot(np.arange(err.size), err, lw=1, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("mean |action - reference| (action units)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def replay_plots(report: dict, out_dir: Path) -> list[Path]:
    """All replay figures for the available methods; returns the files written."""
    methods = {n: m for n, m in report["methods"].items() if m.get("available")}
    if not methods:
        return []
    paths = [
        precision_timeline(
            n, m, out_dir / f"timeline_{n.replace(':', '_')}.png", report.get("precisions", ())
        )
        for n, m in methods.items()
    ]
    paths.append(latency_histogram(methods, int(report.get("warmup_steps", 0)), out_dir / "latency_hist.png"))
    if any(m.get("reference_steps") for m in methods.values()):
        paths.append(action_error(methods, out_dir / "action_error.png"))
    return paths


def dimension_histograms(
    values: np.ndarray,
    names: Sequence[str],
    path: Path,
    lows: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    title: str = "",
    marker_label: str = "checkpoint q01/q99",
) -> Path:
    """One histogram per column of `values` (N, D), with optional per-dimension range markers."""
    values = np.asarray(values, dtype=np.float64)
    dims = values.shape[1]
    cols = min(dims, 4)
    rows = (dims + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for d in range(rows * cols):
        ax = axes[d // cols][d % cols]
        if d >= dims:
            ax.axis("off")
            continue
        ax.hist(values[:, d], bins=50, color="tab:blue", alpha=0.8)
        if lows is not None and highs is not None:
            for x in (lows[d], highs[d]):
                ax.axvline(x, color="tab:red", ls="--", lw=1.2, label=marker_label if x == lows[d] else None)
        ax.set_title(names[d] if d < len(names) else f"dim {d}", fontsize=9)
        ax.tick_params(labelsize=7)
    if lows is not None:
        axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
