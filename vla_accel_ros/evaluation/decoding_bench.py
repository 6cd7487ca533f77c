"""`vla-accel bench-decoding`'s measurements: every decoding method on the same frames and seeds.

Open loop: the held-out demonstration episodes (the target's validation episodes) are replayed in order;
every method decodes every frame, methods rotating within a frame so load drifts hit them alike, and each
method's AccelLoop (the graph's kinematics + controller logic, from `GraphSettings`) sees the recorded
executed actions and its own fills. Closed loop: every method runs the same held-out seeds in the
simulator. The policies come from `MethodPolicies.build` (the one policy builder: the int4 ladder at the
inference node's group size), so each row runs the model and makes the decisions the graph would.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from vla_accel_ros.evaluation.methods import (
    MethodPolicies,
    build_loop,
    expand,
    ladder_settings,
    load_settings,
    parse_method,
)
from vla_accel_ros.evaluation.reporting import fan_out, fastest_baseline, latency_summary, split_jobs
from vla_accel_ros.evaluation.spec_scale import ProposalLog
from vla_accel_ros.evaluation.stats import wilson_interval
from vla_accel_ros.params.settings import CALIBRATION_FILE, GraphSettings
from vla_accel_ros.policy.builder import PolicySpec

# The rows `vla-accel bench-decoding` compares by default (method grammar: evaluation.methods).
DEFAULT_METHODS = "ar,spec,specvla,kerv,kerv-verify,kerv-loosen,ar@bf16,ar@w4a16,kerv@w4a16,kerv+dyq"
BASELINES = ("ar", "ar@bf16", "specvla")  # the rows speed-ups are also quoted against
FULL_PRECISION_ROWS = {"ar": "fp32", "ar@bf16": "bf16"}  # the candidates for "the baseline"


class NoDraftError(RuntimeError):
    """The checkpoint has no draft: the speculative rows and the draft cost cannot be measured."""


class Controlled:
    """A policy whose act() keywords come from an AccelLoop; doubles as run_episode's StepController.

    Before each step it feeds the loop the actions executed since the last call, each with the fill the
    policy reported for it, exactly as the kinematics node does with `VlaAction.kalman_filled`.
    """

    def __init__(self, name: str, policy: Any, loop: Any) -> None:
        self.name, self.policy, self.loop = name, policy, loop
        self.results: list = []
        self.last_rejected: list[int] = []  # positions where the draft was rejected in the last act()
        self._seen = 0
        self._pending: list[int] | None = None

    @property
    def cameras(self) -> list[str]:
        return self.policy.cameras

    def __call__(self, executed: list[np.ndarray]) -> dict:
        if not executed or len(executed) < self._seen:
            self.loop.reset()
            self._seen, self._pending = 0, None
        for action in executed[self._seen :]:
            self.loop.observe(np.asarray(action, dtype=np.float64), self._pending)
            self._pending = None
        self._seen = len(executed)
        return self.loop.act_kwargs()

    def act(self, inp: Any, **kw: Any) -> Any:
        log = getattr(self.policy, "proposal_log", None)
        if log is not None:
            log.take()
        result = self.policy.act(inp, **kw)
        if log is not None:
            self.last_rejected = log.rejected(result.token_ids.tolist())
        self._pending = list(result.kalman_filled)
        self.results.append(result)
        return result


def logged(policy: Any) -> Any:
    """Record where the policy's draft is rejected (for the realistic-size replay)."""
    if policy is not None and policy.draft is not None and getattr(policy, "proposal_log", None) is None:
        policy.proposal_log = ProposalLog(policy.draft)
    return policy


def build_rows(
    names: list[str], checkpoint: str, settings: GraphSettings, notes: list[str]
) -> tuple[list[Controlled], MethodPolicies]:
    """One Controlled row per method name (rows that cannot be built are a note); NoDraftError when the
    checkpoint has no draft."""
    names = expand(names)
    spec = PolicySpec.from_params(settings.inference, checkpoint=checkpoint)
    policies = MethodPolicies.build(spec, names)
    if policies.full.draft is None:
        raise NoDraftError(f"{checkpoint}: {policies.full.draft_error}; run `vla-accel train-draft` first")
    for p in (policies.full, policies.ladder):
        logged(p)
    a = policies.full.action_dim
    rows = []
    for name in names:
        try:
            policy, why = policies.for_method(name)
            if policy is None:
                raise ValueError(why)
            m = parse_method(name)
            row_settings = settings
            if m.precision == "dyq":
                row_settings, note = ladder_settings(settings, policy.precisions)
                notes.extend([note] if note and note not in notes else [])
            elif m.precision is not None and m.precision not in policy.precisions:
                raise ValueError(f"mode {m.precision!r} not in the policy's {policy.precisions}")
            rows.append(Controlled(name, policy, build_loop(name, a, policy.precisions, row_settings)))
        except (ImportError, ValueError, RuntimeError) as err:
            notes.append(f"row '{name}' left out: {type(err).__name__}: {err}")
    if policies.ladder is not None and any(r.policy is policies.ladder for r in rows):
        notes.append(f"int4 ladder rows: {spec.with_ladder().describe()} (the inference node's settings)")
    return rows, policies


def graph_settings(data: Path, notes: list[str]) -> GraphSettings:
    """The graph's settings; the kinematic calibration from the demos when calibration.yaml is missing."""
    settings = load_settings()
    if any(p.name == CALIBRATION_FILE and p.is_file() for p in settings.files):
        return settings
    from vla_accel_ros.data.bag_io import read_episodes
    from vla_accel_ros.kinematics.calibration import calibrate
    from vla_accel_ros.kinematics.config_io import calibration_to_params
    from vla_accel_ros.training.dataset import bag_dirs

    actions = [e.actions for d in bag_dirs(data) for e in read_episodes(d)]
    cal = calibration_to_params(calibrate(actions, source=str(data)))
    overrides = {node.rsplit("/", 1)[-1]: v["ros__parameters"] for node, v in cal.items()}
    notes.append(f"{CALIBRATION_FILE} missing: calibrated in-process from the demonstrations")
    return GraphSettings.load(settings.files, overrides=overrides)


# -- open loop -----------------------------------------------------------------------------------------
Episode = tuple[str, list[tuple[dict, np.ndarray, np.ndarray]]]  # instruction, (images, joints, action)


def held_out_episodes(policy: Any, data: Path, max_frames: int) -> list[Episode]:
    """The target's validation episodes, whole (the filters need each episode's history), alternating
    tasks, until `max_frames`."""
    from vla_accel_ros.training.dataset import load_frames
    from vla_accel_ros.training.train import held_out_split

    frames = load_frames(data, policy.cameras)
    _, val = held_out_split(frames, 2)
    episodes = []
    for e in np.unique(frames.episode_index[val]):
        idx = val[frames.episode_index[val] == e]
        steps = [
            ({c: frames.images[c][i] for c in policy.cameras}, frames.joints[i], frames.actions[i])
            for i in idx
        ]
        episodes.append((frames.instructions[idx[0]], steps))
    order = sorted(range(len(episodes)), key=lambda i: (i % 2, i))
    chosen, n = [], 0
    for ep in (episodes[i] for i in order):
        if n >= max_frames:
            break
        chosen.append(ep)
        n += len(ep[1])
    return chosen


def record(res: Any, ms: float, expert: np.ndarray | None = None, rejected: list[int] | None = None) -> dict:
    """One decoded action as the summaries read it."""
    rec = {
        "ms": ms,
        "ids": res.token_ids.tolist(),
        "decoding": res.decoding,
        "rejected": list(rejected or []),
        "passes": res.target_passes,
        "drafted": res.draft_tokens,
        "accepted": res.accepted_tokens,
        "filled": list(res.kalman_filled),
        "threshold": res.threshold,
        "precision": res.precision,
        "fallback": res.fallback,
    }
    if expert is not None:
        rec["abs_err_expert"] = np.abs(np.asarray(res.action) - expert).tolist()
    return rec


def replay(rows: list[Controlled], episodes: list[Episode], warmup: int, progress: bool) -> dict[str, list]:
    """Every row on every frame (rows rotating per frame); records after `warmup` frames."""
    from tqdm import tqdm

    from vla_accel_ros.policy.runtime import PolicyInput

    out: dict[str, list[dict]] = {r.name: [] for r in rows}
    bar = tqdm(total=sum(len(s) for _, s in episodes), desc="open loop", unit="frame", disable=not progress)
    k = 0
    for instruction, steps in episodes:
        executed: list[np.ndarray] = []
        for images, joints, action in steps:
            inp = PolicyInput(images, joints, instruction)
            for j in range(len(rows)):
                row = rows[(j + k) % len(rows)]
                kw = row(executed)
                t0 = time.perf_counter()
                res = row.act(inp, **kw)
                ms = (time.perf_counter() - t0) * 1e3
                if k >= warmup:
                    out[row.name].append(record(res, ms, action, row.last_rejected))
            executed.append(action)
            k += 1
            bar.update(1)
    bar.close()
    if "ar" in out:  # every method decoded the same frames in the same order
        for recs in out.values():
            for rec, ar in zip(recs, out["ar"], strict=True):
                rec["bins_from_ar"] = np.abs(np.array(rec["ids"]) - np.array(ar["ids"])).tolist()
    return out


def summarize_rows(recs: list[dict], action_dim: int) -> dict:
    """A row's figures: passes, acceptance, fills, threshold, latency, precision shares, agreement."""
    n = len(recs)
    passes = sum(r["passes"] for r in recs)
    drafted = sum(r["drafted"] for r in recs)
    accepted = sum(r["accepted"] for r in recs)
    out = {
        "actions": n,
        "target_passes_per_action": passes / n,
        "acceptance_rate": accepted / drafted if drafted else None,
        "mean_accepted_length": (accepted + passes) / passes if passes else None,
        "tokens_per_target_pass": (action_dim - 1) * n / passes if passes else None,
        "kalman_fill_rate": float(np.mean([bool(r["filled"]) for r in recs])),
        "filled_dims_per_action": float(np.mean([len(r["filled"]) for r in recs])),
        "mean_threshold": float(np.mean([r["threshold"] for r in recs])),
        "latency_ms": latency_summary([r["ms"] for r in recs]),
        "fallbacks": sum(r["fallback"] is not None for r in recs),
        "precision_shares": {
            p: sum(r["precision"] == p for r in recs) / n for p in sorted({r["precision"] for r in recs})
        },
    }
    if "bins_from_ar" in recs[0]:
        diff = np.array([r["bins_from_ar"] for r in recs])
        out["same_action_as_ar"] = float(np.mean(diff.max(1) == 0))
        out["mean_bins_from_ar"] = diff.mean(0).round(3).tolist()
    if "abs_err_expert" in recs[0]:
        out["mae_vs_expert"] = np.array([r["abs_err_expert"] for r in recs]).mean(0).round(4).tolist()
    return out


def speedups(table: dict[str, dict], keys: tuple[str, ...] = ("p50", "mean")) -> str | None:
    """Each row's speed-up against each baseline row present (`speedup.vs_<base>_<key>`) and against
    the baseline, the faster (by p50) of the full-precision AR rows present (`vs_baseline_<key>`).
    Returns that row's name (None when no full-precision AR row ran)."""
    for key in keys:
        for base in BASELINES:
            if base in table:
                ref = table[base]["latency_ms"][key]
                for row in table.values():
                    row.setdefault("speedup", {})[f"vs_{base}_{key}"] = ref / row["latency_ms"][key]
    present = {name: table[name]["latency_ms"]["p50"] for name in FULL_PRECISION_ROWS if name in table}
    if not present:
        return None
    base_name, _ = fastest_baseline(present)
    for key in keys:
        ref = table[base_name]["latency_ms"][key]
        for row in table.values():
            row.setdefault("speedup", {})[f"vs_baseline_{key}"] = ref / row["latency_ms"][key]
    return base_name


# -- draft cost ----------------------------------------------------------------------------------------
def draft_cost(policy: Any, episodes: list[Episode], repeats: int = 200) -> dict:
    """Median ms of one target pass (1 token) and of the draft's proposals, three ways, interleaved.

    fast: the folded inference path (what the decoders use); recomputed / cached: the transformers
    layer over the whole action sequence at every step, or with the draft's own KV cache.
    """
    import torch

    from vla_accel_ros.decoding.common import action_argmax
    from vla_accel_ros.decoding.draft import DraftContext, EagleDraft
    from vla_accel_ros.policy.runtime import PolicyInput

    model, draft = policy.model, policy.draft
    variants = {}
    for name, use_cache, fast in (
        ("fast", False, True),
        ("recomputed", False, False),
        ("cached", True, False),
    ):
        d = EagleDraft(type(draft.config)(**{**draft.config.to_dict(), "use_cache": use_cache}), model).eval()
        d.load_state_dict(draft.state_dict())
        d.fast = fast
        variants[name] = d
    n = policy.action_dim - 2
    frames = [(inst, s) for inst, steps in episodes for s in steps[:: max(1, len(steps) // 4)]]
    times: dict[str, list[float]] = {}
    with torch.inference_mode():
        for i in range(repeats):
            instruction, (images, joints, _) = frames[i % len(frames)]
            pre = model.prefill(*policy.preprocess(PolicyInput(images, joints, instruction)))
            tok = action_argmax(pre.logits[:, -1:], model.action_first_id)
            ctx = DraftContext(tok, pre.hidden[:, -1:], pre.cache, pre.length, pre.hidden)
            calls = {
                "target_pass": partial(model.extend, pre.cache, tok),
                "verify_pass": partial(model.extend, pre.cache, tok.repeat(1, n + 1)),
                "draft_step_fast": partial(draft_round, variants["fast"], ctx, 1),
            }
            calls.update({f"draft_round_{k}": partial(draft_round, d, ctx, n) for k, d in variants.items()})
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
                model.rollback(pre.cache, pre.length)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "median_ms": med,
        "over_target_pass": {k: v / med["target_pass"] for k, v in med.items()},
        "draft_tokens_per_round": n,
        "draft_parameters": sum(p.numel() for p in draft.parameters()),
        "target_decoder_parameters": sum(p.numel() for p in model.llama.parameters()),
    }


def draft_round(draft: Any, ctx: Any, n: int) -> Any:
    draft.reset()
    return draft.propose(ctx, n)


# -- closed loop ---------------------------------------------------------------------------------------
@dataclass
class ClosedLoopSetup:
    """What the closed loop runs: tasks x held-out seeds, each episode up to max_steps."""

    tasks: list[str]
    episodes: int
    max_steps: int = 200
    workers: int = 1
    jobs: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from vla_accel_ros.sim.tasks import EVAL_SEED_BASE

        self.jobs = self.jobs or [(t, EVAL_SEED_BASE + i) for t in self.tasks for i in range(self.episodes)]

    def describe(self) -> str:
        return f"{self.episodes} per task x {len(self.tasks)} tasks, max {self.max_steps} steps"


def run_jobs(
    rows: list[Controlled], jobs: list[tuple[str, int]], max_steps: int, image_size: int, progress: bool
) -> dict[str, list[tuple[dict, list[dict]]]]:
    """Every method on every (task, seed), methods rotating per job: (episode, per-step records)."""
    from tqdm import tqdm

    from vla_accel_ros.evaluation.closed_loop import run_episode

    out: dict[str, list] = {r.name: [] for r in rows}
    for k, (task, seed) in enumerate(tqdm(jobs, desc="closed loop", unit="episode", disable=not progress)):
        for j in range(len(rows)):
            row = rows[(j + k) % len(rows)]
            row.results = []
            ep = run_episode(row, task, seed, max_steps, image_size, controller=row)
            recs = [record(res, ms) for res, ms in zip(row.results, ep.latency_ms, strict=False)]
            out[row.name].append((asdict(ep), recs))
    return out


def closed_loop_worker(args: tuple) -> dict[str, list]:
    """One process of the closed-loop fan-out: its own rows (1 torch thread) over its share of jobs."""
    import torch

    names, checkpoint, settings, jobs, max_steps, image_size = args
    torch.set_num_threads(1)
    rows, _ = build_rows(names, checkpoint, settings, [])
    return run_jobs(rows, jobs, max_steps, image_size, False)


def closed_loop(
    rows: list[Controlled],
    checkpoint: str,
    settings: GraphSettings,
    setup: ClosedLoopSetup,
    image_size: int,
    progress: bool,
) -> dict[str, dict]:
    """Success (Wilson 95 % CI), paired outcomes against ar on the same seeds, and per-step figures."""
    if setup.workers <= 1:
        parts = [run_jobs(rows, setup.jobs, setup.max_steps, image_size, progress)]
    else:
        names = [r.name for r in rows]
        args = [
            (names, checkpoint, settings, c, setup.max_steps, image_size)
            for c in split_jobs(setup.jobs, setup.workers)
        ]
        parts = fan_out(closed_loop_worker, args, setup.workers)
    per = {r.name: [x for part in parts for x in part[r.name]] for r in rows}
    outcome = {name: {(e["task"], e["seed"]): e["success"] for e, _ in eps} for name, eps in per.items()}
    out = {}
    for name, eps in per.items():
        k = sum(e["success"] for e, _ in eps)
        lo, hi = wilson_interval(k, len(eps))
        row = {
            "episodes": len(eps),
            "successes": k,
            "success_rate": k / len(eps),
            "ci95": [lo, hi],
            "success_by_task": {
                t: float(np.mean([e["success"] for e, _ in eps if e["task"] == t])) for t in setup.tasks
            },
            "mean_steps": float(np.mean([e["steps"] for e, _ in eps])),
            **summarize_rows([r for _, recs in eps for r in recs], rows[0].policy.action_dim),
        }
        if "ar" in outcome:
            mine, ar = outcome[name], outcome["ar"]
            row["paired_vs_ar"] = {
                "only_this": sum(mine[j] and not ar[j] for j in mine),
                "only_ar": sum(ar[j] and not mine[j] for j in mine),
                "same_outcome": sum(mine[j] == ar[j] for j in mine),
            }
        out[name] = row
    baseline = speedups(out, ("p50",))
    for row in out.values():
        row["baseline"] = baseline
    return out
