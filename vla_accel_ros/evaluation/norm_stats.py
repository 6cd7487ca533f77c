"""Normalization statistics of a user's bag, and how well a checkpoint's statistics fit it.

A token-domain policy maps each action dimension's [q01, q99] onto its 256 bins and clips outside,
and normalizes proprioception with a mean and std (policy/config.py). A policy trained on other data
silently clips or crushes the actions of a new robot; `check()` says per dimension how much.

Verdicts (per dimension; the overall verdict is the worst):
- actions: `mismatch` when more than CLIP_MISMATCH of the bag's actions lie outside the checkpoint's
  [q01, q99] (they would be clipped to the edge bins); `warn` above CLIP_WARN (data matching the
  checkpoint give about 2 %, by the definition of q01/q99), or when the bag spans less than
  NARROW_WARN of the checkpoint's range (few bins used: coarse actions, or other units); else `ok`.
- proprioception: `mismatch` when the bag's mean is more than SHIFT_MISMATCH checkpoint stds away
  from the checkpoint's mean or its std is more than SCALE_MISMATCH times larger; `warn` from
  SHIFT_WARN stds, or a std ratio outside [1/SCALE_WARN, SCALE_WARN]; else `ok`.
- a different number of dimensions is a `mismatch`.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vla_accel_ros.data.bag_io import (
    ACTION_TYPES,
    JOINT_STATE,
    BagError,
    action_values,
    deserialize,
    open_reader,
    select_joints,
)

CLIP_WARN = 0.03
CLIP_MISMATCH = 0.10
NARROW_WARN = 0.25
SHIFT_WARN = 1.0
SHIFT_MISMATCH = 3.0
SCALE_WARN = 3.0
SCALE_MISMATCH = 10.0
VERDICTS = ("ok", "warn", "mismatch")
ACTION_NAMES = {4: ["dx", "dy", "dz", "gripper"], 7: ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]}


def summarize(values: np.ndarray) -> dict[str, Any]:
    """Per-column q01, q99, mean, std, min, max and count of an (N, D) array."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "q01": np.quantile(v, 0.01, axis=0).tolist(),
        "q99": np.quantile(v, 0.99, axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "count": int(v.shape[0]),
    }


def read_series(
    bag: Path,
    action_topic: str | None,
    state_topic: str | None,
    joint_names: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """All actions (N, A) and joint positions (M, J) of the bag, with joint names and message counts."""
    from tqdm import tqdm

    if not action_topic and not state_topic:
        raise ValueError("give an action topic, a state topic, or both")
    bag = Path(bag)
    reader = open_reader(bag)
    try:
        if reader.message_count == 0:
            raise BagError(f"bag {bag} is empty (0 messages)")
        present = ", ".join(f"{n} [{i.msgtype}]" for n, i in sorted(reader.topics.items()))
        wanted = {}
        for topic, allowed, role in (
            (action_topic, ACTION_TYPES, "action"),
            (state_topic, (JOINT_STATE,), "joint state"),
        ):
            if not topic:
                continue
            info = reader.topics.get(topic)
            if info is None:
                raise BagError(f"bag {bag} has no {role} topic {topic!r}; topics in the bag: {present}")
            if info.msgtype not in allowed:
                raise BagError(
                    f"topic {topic!r} ({role}) in bag {bag} has type {info.msgtype}, expected one of "
                    f"{', '.join(allowed)}"
                )
            if info.msgcount == 0:
                raise BagError(f"{role} topic {topic!r} in bag {bag} has no messages")
            wanted[topic] = info.msgtype
        conns = [c for c in reader.connections if c.topic in wanted]
        actions: list[np.ndarray] = []
        states: list[np.ndarray] = []
        names: list[str] = []
        total = sum(reader.topics[t].msgcount for t in wanted)
        try:
            for conn, stamp, raw in tqdm(
                reader.messages(connections=conns),
                total=total,
                desc=f"stats {bag.name}",
                unit="msg",
                disable=not progress,
            ):
                try:
                    msg = deserialize(raw, wanted[conn.topic])
                except Exception as exc:
                    raise BagError(f"corrupt message on {conn.topic} at {stamp} ns in {bag}: {exc}") from exc
                if conn.topic == action_topic:
                    actions.append(action_values(msg, wanted[conn.topic]))
                else:
                    pos = np.asarray(msg.position, dtype=np.float64)
                    states.append(select_joints(list(msg.name), pos, joint_names, conn.topic))
                    names = list(joint_names) if joint_names else list(msg.name)
        except BagError:
            raise
        except (Exception, sqlite3.Error, struct.error) as exc:
            raise BagError(f"corrupt or truncated bag {bag}: {type(exc).__name__}: {exc}") from exc
    finally:
        reader.close()
    return {
        "actions": _stack(actions, action_topic, bag),
        "states": _stack(states, state_topic, bag),
        "joint_names": names,
        "message_counts": {
            t: len(actions) if t == action_topic else len(states) for t in (action_topic, state_topic) if t
        },
    }


def _stack(rows: list[np.ndarray], topic: str | None, bag: Path) -> np.ndarray | None:
    if not topic:
        return None
    sizes = sorted({r.size for r in rows})
    if len(sizes) != 1:
        raise BagError(f"messages on {topic} in {bag} change their length: {sizes}")
    out = np.stack(rows)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise BagError(f"{bad} messages on {topic} in {bag} contain NaN or inf")
    return out


def bag_stats(
    bag: Path,
    action_topic: str | None,
    state_topic: str | None,
    joint_names: list[str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-ready statistics with provenance, the raw series for checks and plots)."""
    series = read_series(bag, action_topic, state_topic, joint_names, progress)
    stats: dict[str, Any] = {
        "provenance": {
            "bag": str(Path(bag).resolve()),
            "action_topic": action_topic,
            "state_topic": state_topic,
            "message_counts": series["message_counts"],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tool": "vla-accel stats",
        }
    }
    if series["actions"] is not None:
        stats["action"] = summarize(series["actions"])
        stats["action"]["names"] = dim_names(series["actions"].shape[1])
    if series["states"] is not None:
        stats["state"] = summarize(series["states"])
        stats["state"]["names"] = series["joint_names"]
    return stats, series


def dim_names(n: int) -> list[str]:
    return ACTION_NAMES.get(n, [f"dim {i}" for i in range(n)])


def load_checkpoint_stats(checkpoint: str | Path) -> dict[str, Any]:
    """action_q01/q99 and state_mean/std from a checkpoint's config.json (weights are not loaded)."""
    from vla_accel_ros.policy.builtin import resolve_checkpoint
    from vla_accel_ros.policy.config import VlaConfig

    path = resolve_checkpoint(checkpoint)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} has no config.json (a vla_accel_ros checkpoint folder is expected)")
    cfg = VlaConfig.from_dict(json.loads(config_path.read_text()))
    if not cfg.action_q01 or not cfg.state_mean:
        raise ValueError(f"{config_path} holds no normalization statistics")
    return {
        "checkpoint": str(path),
        "action_q01": list(cfg.action_q01),
        "action_q99": list(cfg.action_q99),
        "state_mean": list(cfg.state_mean),
        "state_std": list(cfg.state_std),
    }


def _worst(verdicts: list[str]) -> str:
    return max(verdicts, key=VERDICTS.index) if verdicts else "ok"


def check(stats: dict[str, Any], series: dict[str, Any], ck: dict[str, Any]) -> dict[str, Any]:
    """Per-dimension verdicts of the checkpoint's statistics against the bag's (see module doc)."""
    out: dict[str, Any] = {"checkpoint": ck["checkpoint"], "thresholds": _thresholds(), "problems": []}
    actions = series.get("actions")
    if actions is not None:
        out["action"] = _check_actions(actions, stats["action"], ck, out["problems"])
    states = series.get("states")
    if states is not None:
        out["state"] = _check_states(stats["state"], ck, out["problems"])
    parts = [out[k]["verdict"] for k in ("action", "state") if k in out]
    out["verdict"] = _worst(parts)
    return out


def _thresholds() -> dict[str, float]:
    return {
        "clip_warn": CLIP_WARN,
        "clip_mismatch": CLIP_MISMATCH,
        "narrow_warn": NARROW_WARN,
        "shift_warn_std": SHIFT_WARN,
        "shift_mismatch_std": SHIFT_MISMATCH,
        "scale_warn": SCALE_WARN,
        "scale_mismatch": SCALE_MISMATCH,
    }


def _check_actions(actions: np.ndarray, s: dict, ck: dict, problems: list[str]) -> dict[str, Any]:
    lo, hi = np.asarray(ck["action_q01"]), np.asarray(ck["action_q99"])
    if actions.shape[1] != lo.size:
        problems.append(f"actions have {actions.shape[1]} dimensions, the checkpoint {lo.size}")
        return {"verdict": "mismatch", "dims": []}
    names = s["names"]
    below = (actions < lo).mean(axis=0)
    above = (actions > hi).mean(axis=0)
    width_ck = hi - lo
    width_bag = np.asarray(s["q99"]) - np.asarray(s["q01"])
    dims = []
    for d in range(lo.size):
        clip = float(below[d] + above[d])
        ratio = float(width_bag[d] / width_ck[d]) if width_ck[d] > 0 else float("inf")
        verdict, why = "ok", ""
        if clip > CLIP_MISMATCH:
            verdict, why = (
                "mismatch",
                f"{clip:.1%} of the bag's actions are outside [{lo[d]:.3g}, {hi[d]:.3g}]",
            )
        elif clip > CLIP_WARN:
            verdict, why = "warn", f"{clip:.1%} of the bag's actions are outside [{lo[d]:.3g}, {hi[d]:.3g}]"
        elif width_bag[d] <= 0:
            verdict, why = "warn", f"constant in the bag ({s['min'][d]:.3g}): nothing to compare"
        elif ratio < NARROW_WARN:
            verdict, why = "warn", f"the bag spans {ratio:.0%} of the checkpoint's range (few bins used)"
        if why:
            problems.append(f"action dim {d} ({names[d]}): {verdict}: {why}")
        dims.append(
            {
                "name": names[d],
                "verdict": verdict,
                "clip_fraction": clip,
                "below_q01": float(below[d]),
                "above_q99": float(above[d]),
                "range_ratio": ratio,
                "checkpoint_q01": float(lo[d]),
                "checkpoint_q99": float(hi[d]),
            }
        )
    return {"verdict": _worst([x["verdict"] for x in dims]), "dims": dims}


def _check_states(s: dict, ck: dict, problems: list[str]) -> dict[str, Any]:
    mean_ck, std_ck = np.asarray(ck["state_mean"]), np.maximum(np.asarray(ck["state_std"]), 1e-6)
    mean, std = np.asarray(s["mean"]), np.asarray(s["std"])
    if mean.size != mean_ck.size:
        problems.append(f"joint states have {mean.size} positions, the checkpoint expects {mean_ck.size}")
        return {"verdict": "mismatch", "dims": []}
    names = s["names"] if len(s["names"]) == mean.size else [f"joint {i}" for i in range(mean.size)]
    dims = []
    for d in range(mean.size):
        shift = float(abs(mean[d] - mean_ck[d]) / std_ck[d])
        scale = float(std[d] / std_ck[d])
        verdict, why = "ok", ""
        if shift > SHIFT_MISMATCH or scale > SCALE_MISMATCH:
            verdict = "mismatch"
        elif shift > SHIFT_WARN or not (1 / SCALE_WARN <= scale <= SCALE_WARN):
            verdict = "warn"
        if verdict != "ok":
            why = f"mean {shift:.1f} checkpoint stds away, std x{scale:.2g}"
            problems.append(f"state dim {d} ({names[d]}): {verdict}: {why}")
        dims.append({"name": names[d], "verdict": verdict, "mean_shift_std": shift, "std_ratio": scale})
    return {"verdict": _worst([x["verdict"] for x in dims]), "dims": dims}


def check_plots(series: dict[str, Any], stats: dict[str, Any], ck: dict[str, Any], path: Path) -> list[Path]:
    """Histograms per action dimension with the checkpoint's q01/q99 (and per joint, mean +- std)."""
    from vla_accel_ros.evaluation.plots import dimension_histograms

    paths = []
    actions, states = series.get("actions"), series.get("states")
    if actions is not None and actions.shape[1] == len(ck["action_q01"]):
        paths.append(
            dimension_histograms(
                actions,
                stats["action"]["names"],
                path,
                ck["action_q01"],
                ck["action_q99"],
                title=f"actions in {Path(stats['provenance']['bag']).name} vs {ck['checkpoint']}",
            )
        )
    if states is not None and states.shape[1] == len(ck["state_mean"]):
        mean, std = np.asarray(ck["state_mean"]), np.asarray(ck["state_std"])
        state_path = path.with_name(path.stem + "_state" + path.suffix)
        paths.append(
            dimension_histograms(
                states,
                stats["state"]["names"],
                state_path,
                (mean - std).tolist(),
                (mean + std).tolist(),
                title="joint positions",
                marker_label="checkpoint mean ± std",
            )
        )
    return paths
