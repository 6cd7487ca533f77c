"""`vla-accel bench-decoding`: autoregressive, strict speculative, Spec-VLA and KERV decoding side by side.

Open loop: the held-out demonstration episodes (the target's validation episodes) are replayed in order;
every method decodes every frame, methods rotating within a frame so load drifts hit them alike, and each
method's AccelLoop (the graph's kinematics + controller logic) sees the recorded executed actions and its
own fills. Closed loop (--closed-loop): every method runs the same held-out seeds in the simulator.
Realistic size (--realistic-frames): the first open-loop frames again, on the SmolLM2-135M-decoder model,
each row replaying the built-in's acceptance pattern of that frame (evaluation.spec_scale).
Writes docs/results/decoding.json and the results block of docs/DECODING.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

HELP = "benchmark AR / strict SD / Spec-VLA / KERV (+DyQ) decoding side by side (docs/DECODING.md)"
DEFAULT_METHODS = "ar,spec,specvla,kerv,kerv-verify,kerv-loosen,ar-bf16,ar@w4a16,kerv@w4a16,kerv+dyq"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint with a draft/ folder")
    parser.add_argument("--data", type=Path, default=Path("data/demos"), help="demonstration bags")
    parser.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated rows; '<method>@<mode>': on the int4 ladder",
    )
    parser.add_argument("--frames", type=int, default=600, help="held-out frames replayed (open loop)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--closed-loop", action="store_true", help="also closed-loop success on held-out seeds"
    )
    parser.add_argument("--episodes", type=int, default=10, help="closed-loop episodes per task")
    parser.add_argument("--closed-loop-methods", default="", help="rows run in closed loop (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="closed-loop processes (1 torch thread each)")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument(
        "--realistic-frames",
        type=int,
        default=0,
        help="also decode this many open-loop frames at the realistic size, acceptance replayed",
    )
    parser.add_argument(
        "--realistic-layers", type=int, default=0, help="decoder layers there (0: all 30; else random)"
    )
    parser.add_argument("--json", type=Path, default=Path("docs/results/decoding.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/DECODING.md"))
    parser.add_argument("--no-progress", action="store_true")


# -- the methods ---------------------------------------------------------------------------------------
class Controlled:
    """A policy whose act() keywords come from an AccelLoop; doubles as run_episode's StepController.

    Before each step it feeds the loop the actions executed since the last call, each with the fill the
    policy reported for it, exactly as the kinematics node does with `VlaAction.kalman_filled`.
    """

    def __init__(self, name: str, policy, loop, decoding: str | None = None) -> None:
        self.name, self.policy, self.loop, self.decoding = name, policy, loop, decoding
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
        kw = self.loop.act_kwargs()
        if self.decoding:
            kw["decoding"] = self.decoding
        return kw

    def act(self, inp, **kw):
        log = getattr(self.policy, "proposal_log", None)
        if log is not None:
            log.take()
        result = self.policy.act(inp, **kw)
        if log is not None:
            self.last_rejected = log.rejected(result.token_ids.tolist())
        self._pending = list(result.kalman_filled)
        self.results.append(result)
        return result


def _bf16_policy(policy):
    """The same model cast to bf16 (a policy over a copy when `policy` must stay as it is)."""
    import torch

    from vla_accel_ros.policy.runtime import Policy

    class Bf16Policy(Policy):
        """Weights and activations in bf16 (the baseline DyQ-VLA's speed-ups are quoted against)."""

        def preprocess(self, inp):
            images, state, prompt = super().preprocess(inp)
            return {k: v.bfloat16() for k, v in images.items()}, state.bfloat16(), prompt

        @property
        def precisions(self) -> list[str]:
            return ["bf16"]  # what it runs: the step records and precision shares say so

    return Bf16Policy(policy.model.to(torch.bfloat16))


def _dyq_policy(policy):
    """`policy` moved onto DyQ's int4 ladder (decoder linears only: the draft's shared embedding and LM
    head stay fp32)."""
    from vla_accel_ros.quant import quantize_model

    policy.enable_ladder(quantize_model(policy.model))
    return policy


def _logged(policy):
    """Record where the policy's draft is rejected (for the realistic-size replay)."""
    from vla_accel_ros.evaluation.spec_scale import ProposalLog

    if policy.draft is not None:
        policy.proposal_log = ProposalLog(policy.draft)
    return policy


def build_methods(names: list[str], checkpoint: str, params: dict, notes: list[str]) -> list[Controlled]:
    from vla_accel_ros.evaluation.methods import add_kerv_verify, build_loop, ladder_settings
    from vla_accel_ros.policy.runtime import Policy

    policy = _logged(Policy.load(checkpoint))
    if policy.draft is None:
        raise SystemExit(f"{checkpoint}: {policy.draft_error}; run `vla-accel train-draft` first")
    add_kerv_verify(policy)
    a = policy.action_dim
    rows = []
    quantized = None
    for name in names:
        try:
            if "@" in name:  # "<method>@<mode>": the method on the int4 ladder, held at one mode
                base, mode = name.split("@", 1)
                quantized = quantized or _logged(_dyq_policy(Policy.load(checkpoint)))
                if mode not in quantized.precisions:
                    raise ValueError(f"mode {mode!r} not in the ladder {quantized.precisions}")
                rows.append(Controlled(name, quantized, build_loop(base, a, [mode], params)))
            elif name == "ar-bf16":
                bf16 = _bf16_policy(Policy.load(checkpoint))
                rows.append(Controlled(name, bf16, build_loop("ar", a, bf16.precisions, params)))
            elif name in ("dyq", "kerv+dyq"):
                quantized = quantized or _logged(_dyq_policy(Policy.load(checkpoint)))
                dyq_params, note = ladder_settings(params, quantized.precisions)
                notes.extend([note] if note else [])
                loop = build_loop(name, a, quantized.precisions, dyq_params)
                rows.append(Controlled(name, quantized, loop))
            elif name == "kerv-verify":
                rows.append(Controlled(name, policy, build_loop("kerv", a, policy.precisions, params), name))
            else:
                rows.append(Controlled(name, policy, build_loop(name, a, policy.precisions, params)))
        except (ImportError, ValueError, RuntimeError) as err:
            notes.append(f"row '{name}' left out: {type(err).__name__}: {err}")
    return rows


def settings(data: Path, notes: list[str]) -> dict:
    """Node parameters as the graph loads them; the calibration from the demos if none was written."""
    from vla_accel_ros.evaluation.methods import load_settings

    params = load_settings()
    if "mu95" not in params.get("kinematics_node", {}):
        from vla_accel_ros.data.bag_io import read_episodes
        from vla_accel_ros.kinematics.calibration import calibrate
        from vla_accel_ros.kinematics.config_io import calibration_to_params
        from vla_accel_ros.training.dataset import bag_dirs

        actions = [e.actions for d in bag_dirs(data) for e in read_episodes(d)]
        cal = calibration_to_params(calibrate(actions, source=str(data)))
        for node, values in cal.items():
            params.setdefault(node, {}).update(values["ros__parameters"])
        notes.append("config/calibration.yaml missing: calibrated in-process from the demonstrations")
    return params


# -- open loop -----------------------------------------------------------------------------------------
def held_out_episodes(policy, data: Path, max_frames: int) -> list[tuple[str, list]]:
    """(instruction, [(images, joints, executed action), ...]) of the target's validation episodes."""
    from vla_accel_ros.training.dataset import load_frames
    from vla_accel_ros.training.train import _split

    frames = load_frames(data, policy.cameras)
    _, val = _split(frames, 2)
    episodes, total = [], 0
    for e in np.unique(frames.episode_index[val]):
        idx = val[frames.episode_index[val] == e]
        steps = [
            ({c: frames.images[c][i] for c in policy.cameras}, frames.joints[i], frames.actions[i])
            for i in idx
        ]
        episodes.append((frames.instructions[idx[0]], steps))
        total += len(steps)
    # Whole episodes (the filters need each episode's history), alternating tasks, until max_frames.
    order = sorted(range(len(episodes)), key=lambda i: (i % 2, i))
    chosen, n = [], 0
    for ep in (episodes[i] for i in order):
        if n >= max_frames:
            break
        chosen.append(ep)
        n += len(ep[1])
    return chosen


def replay(rows: list[Controlled], episodes: list, warmup: int, progress: bool) -> dict[str, list[dict]]:
    from tqdm import tqdm

    from vla_accel_ros.policy.runtime import PolicyInput

    out: dict[str, list[dict]] = {r.name: [] for r in rows}
    total = sum(len(s) for _, s in episodes)
    bar = tqdm(total=total, desc="open loop", unit="frame", disable=not progress)
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
                    out[row.name].append(_record(res, ms, action, row.last_rejected))
            executed.append(action)
            k += 1
            bar.update(1)
    bar.close()
    if "ar" in out:  # every method decoded the same frames in the same order
        for recs in out.values():
            for rec, ar in zip(recs, out["ar"], strict=True):
                rec["bins_from_ar"] = np.abs(np.array(rec["ids"]) - np.array(ar["ids"])).tolist()
    return out


def _record(res, ms: float, expert: np.ndarray | None = None, rejected: list[int] | None = None) -> dict:
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


def summarize_rows(recs: list[dict], action_dim: int) -> dict:
    from vla_accel_ros.evaluation.stats import percentiles

    n = len(recs)
    ms = [r["ms"] for r in recs]
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
        "latency_ms": {**percentiles(ms), "mean": float(np.mean(ms))},
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


def speedups(table: dict[str, dict], base: str, key: str) -> None:
    if base not in table:
        return
    ref = table[base]["latency_ms"]
    for row in table.values():
        row.setdefault("speedup", {})[f"vs_{base}_{key}"] = ref[key] / row["latency_ms"][key]


# -- draft cost ----------------------------------------------------------------------------------------
def draft_cost(policy, episodes: list, repeats: int = 200) -> dict:
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
                "draft_step_fast": partial(_draft_round, variants["fast"], ctx, 1),
            }
            calls.update({f"draft_round_{k}": partial(_draft_round, d, ctx, n) for k, d in variants.items()})
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


def _draft_round(draft, ctx, n: int):
    draft.reset()
    return draft.propose(ctx, n)


# -- realistic size ------------------------------------------------------------------------------------
def _variant_of(name: str) -> str:
    if name == "ar-bf16":
        return "bf16"
    return "ladder" if "@" in name or name in ("dyq", "kerv+dyq") else "fp32"


def realistic_rows(names: list[str], layers: int) -> list:
    """One ScaledRow per built-in row, on the realistic-size model in the row's format (fp32, bf16, or
    on the int4 ladder), each speculative one over a ScriptedDraft of that model's shape."""
    import copy

    from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft
    from vla_accel_ros.evaluation.spec_scale import ScaledRow, attach_scripted_draft
    from vla_accel_ros.policy.realistic import build_realistic_model
    from vla_accel_ros.policy.runtime import Policy

    fp32 = build_realistic_model(pretrained=not layers, **({"num_layers": layers} if layers else {}))

    def untrained_draft(model):
        draft = EagleDraft(DraftConfig.for_target(model), model).eval()
        draft.freeze()  # fold the shared embedding and head before the ladder may replace them
        return draft

    variants: dict[str, tuple] = {}
    rows = []
    for name in names:
        kind = _variant_of(name)
        if kind not in variants:
            if kind == "bf16":  # its only row decodes autoregressively
                policy, draft = _bf16_policy(Policy(copy.deepcopy(fp32))), None
            else:
                policy = Policy(fp32 if kind == "fp32" else copy.deepcopy(fp32))
                draft = attach_scripted_draft(policy, untrained_draft)
                if kind == "ladder":
                    _dyq_policy(policy)
            variants[kind] = (policy, draft, {})
        policy, draft, greedy = variants[kind]
        rows.append(ScaledRow(name, policy, draft, greedy))
    return rows


def replay_realistic(
    rows: list, episodes: list, recs: dict[str, list[dict]], frames: int, warmup: int, progress: bool
) -> dict[str, list[dict]]:
    """`frames` recorded open-loop frames, spread evenly over them, again: each row as its built-in twin
    decoded the frame."""
    from tqdm import tqdm

    from vla_accel_ros.evaluation.spec_scale import replay_record, same_pattern
    from vla_accel_ros.policy.runtime import PolicyInput

    inputs = [PolicyInput(images, joints, inst) for inst, steps in episodes for images, joints, _ in steps]
    inputs = inputs[warmup:]  # the records start after the open loop's warm-up frames
    total = min(len(inputs), *(len(recs[r.name]) for r in rows))
    chosen = sorted({int(i) for i in np.linspace(0, total - 1, min(frames, total))})
    for row in rows:  # one untimed action per row: lazy initialisation stays out of the timings
        replay_record(row, chosen[0], inputs[chosen[0]], recs[row.name][chosen[0]])
    out: dict[str, list[dict]] = {r.name: [] for r in rows}
    for k, j in enumerate(tqdm(chosen, desc="realistic size", unit="frame", disable=not progress)):
        for i in range(len(rows)):
            row = rows[(i + k) % len(rows)]
            rec = recs[row.name][j]
            res, ms = replay_record(row, j, inputs[j], rec)
            rec_out = {**_record(res, ms), "same_pattern": same_pattern(res, rec), "stages": res.timings_ms}
            out[row.name].append(rec_out)
    return out


def realistic_pieces(recs: dict[str, list[dict]]) -> dict[str, float | None]:
    """Median ms of the pieces at this size, from the rows' own stage timings: the prefill and a
    one-token pass (ar), a verify pass over all drafted tokens and a draft round (specvla, one pass)."""

    def median(row: str, stage: str, one_pass: bool = False) -> float | None:
        vals = [
            v
            for r in recs.get(row, [])
            if not one_pass or r["passes"] == 1
            for k, v in r["stages"].items()
            if k.startswith(stage)
        ]
        return float(np.median(vals)) if vals else None

    return {
        "prefill": median("ar", "prefill"),
        "target_pass": median("ar", "decode_"),
        "verify_pass": median("specvla", "verify", one_pass=True),
        "draft_round": median("specvla", "draft", one_pass=True),
    }


def realistic_section(rows: list, recs: dict[str, list[dict]], layers: int) -> dict:
    from vla_accel_ros.evaluation.spec_scale import SCRIPTED_LABEL
    from vla_accel_ros.policy.realistic import BACKBONE, REALISTIC_LABEL

    a = rows[0].policy.action_dim
    table = {}
    for name, r in recs.items():
        table[name] = summarize_rows(r, a)
        table[name]["pattern_reproduced"] = float(np.mean([x["same_pattern"] for x in r]))
    for key in ("p50", "mean"):
        for base in ("ar", "ar-bf16", "specvla"):
            speedups(table, base, key)
    model = rows[0].policy.model
    return {
        "model": f"VlaModel with a {model.config.num_layers}-layer {BACKBONE} decoder "
        f"({'pretrained' if not layers else 'random'} weights), {REALISTIC_LABEL}",
        "decoder_parameters": sum(p.numel() for p in model.llama.parameters()),
        "draft": "untrained EagleDraft of the same shape (one decoder layer); " + SCRIPTED_LABEL,
        "frames": len(next(iter(recs.values()))),
        "rows": table,
        "pieces_ms": realistic_pieces(recs),
    }


# -- closed loop ---------------------------------------------------------------------------------------
def _run_jobs(
    rows: list[Controlled], jobs: list[tuple[str, int]], max_steps: int, image_size: int, progress: bool
) -> dict[str, list[tuple[dict, list[dict]]]]:
    """Every method on every (task, seed), methods rotating per job: (episode, per-step records)."""
    from dataclasses import asdict

    from tqdm import tqdm

    from vla_accel_ros.evaluation.closed_loop import run_episode

    out: dict[str, list] = {r.name: [] for r in rows}
    for k, (task, seed) in enumerate(tqdm(jobs, desc="closed loop", unit="episode", disable=not progress)):
        for j in range(len(rows)):
            row = rows[(j + k) % len(rows)]
            row.results = []
            ep = run_episode(row, task, seed, max_steps, image_size, controller=row)
            recs = [_record(res, ms) for res, ms in zip(row.results, ep.latency_ms, strict=False)]
            out[row.name].append((asdict(ep), recs))
    return out


def _worker(args: tuple) -> dict[str, list]:
    import torch

    names, checkpoint, params, jobs, max_steps, image_size = args
    torch.set_num_threads(1)
    return _run_jobs(build_methods(names, checkpoint, params, []), jobs, max_steps, image_size, False)


def closed_loop(
    rows: list[Controlled],
    checkpoint: str,
    params: dict,
    tasks: list[str],
    episodes: int,
    max_steps: int,
    image_size: int,
    workers: int,
    progress: bool,
) -> dict[str, dict]:
    """Success (Wilson 95 % CI), paired outcomes against ar on the same seeds, and per-step figures."""
    import multiprocessing as mp

    from vla_accel_ros.evaluation.stats import wilson_interval
    from vla_accel_ros.sim.tasks import EVAL_SEED_BASE

    jobs = [(t, EVAL_SEED_BASE + i) for t in tasks for i in range(episodes)]
    if workers <= 1:
        parts = [_run_jobs(rows, jobs, max_steps, image_size, progress)]
    else:
        names = [r.name for r in rows]
        chunks = [jobs[i::workers] for i in range(workers)]
        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_worker, [(names, checkpoint, params, c, max_steps, image_size) for c in chunks])
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
                t: float(np.mean([e["success"] for e, _ in eps if e["task"] == t])) for t in tasks
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
    return out


# -- report --------------------------------------------------------------------------------------------
def _f(v, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _paired(row: dict) -> str:
    p = row.get("paired_vs_ar")
    return "-" if p is None else f"{p['only_this']} / {p['only_ar']}"


def markdown(report: dict) -> str:
    ol = report["open_loop"]
    lines = [
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['machine']}; torch threads {report['threads']}; "
        f"checkpoint `{report['checkpoint']}`.",
        "",
        f"### Open loop: {report['open_loop_frames']} held-out frames "
        f"({report['open_loop_episodes']} demonstration episodes never trained on), "
        "every method on every frame",
        "",
        "| method | target passes / action | acceptance rate | mean accepted length | tokens / target pass "
        "| Kalman fill rate | mean r (bins) | latency p50 / p95 ms | speed-up vs ar (p50 / mean) "
        "| vs specvla (p50) | same action as ar | MAE vs expert |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in ol.items():
        sp = r.get("speedup", {})
        lines.append(
            f"| {name} | {r['target_passes_per_action']:.2f} | {_f(r['acceptance_rate'])} "
            f"| {_f(r['mean_accepted_length'])} | {_f(r['tokens_per_target_pass'])} "
            f"| {r['kalman_fill_rate']:.3f} | {r['mean_threshold']:.1f} "
            f"| {r['latency_ms']['p50']:.2f} / {r['latency_ms']['p95']:.2f} "
            f"| {_f(sp.get('vs_ar_p50'))}x / {_f(sp.get('vs_ar_mean'))}x | {_f(sp.get('vs_specvla_p50'))}x "
            f"| {_f(r.get('same_action_as_ar'))} | {_f(float(np.mean(r['mae_vs_expert'])), '{:.4f}')} |"
        )
    dc = report.get("draft_cost")
    if dc:
        m, r = dc["median_ms"], dc["over_target_pass"]
        cols = [
            "target_pass",
            "verify_pass",
            "draft_step_fast",
            "draft_round_fast",
            "draft_round_recomputed",
            "draft_round_cached",
        ]
        lines += [
            "",
            "### Cost of the pieces (median ms, and x one target pass; a round drafts "
            f"{dc['draft_tokens_per_round']} tokens)",
            "",
            "| target pass, 1 token | verify pass | draft, 1 token (fast) | draft round (fast) "
            "| draft round, transformers layer recomputed | same, own KV cache |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(f"{m[c]:.3f} ({r[c]:.2f}x)" for c in cols) + " |",
            "",
            f"Draft: {dc['draft_parameters'] / 1e6:.3f} M parameters of its own (target decoder "
            f"{dc['target_decoder_parameters'] / 1e6:.3f} M; embedding and LM head shared).",
        ]
    lines += _realistic_markdown(report.get("realistic"))
    cl = report.get("closed_loop")
    if cl:
        first = next(iter(cl.values()))
        lines += [
            "",
            f"### Closed loop: {first['episodes']} episodes per method on held-out seeds "
            f"({report['closed_loop_setup']}), same seeds for every method",
            "",
            "| method | success | 95 % CI | seeds won / lost vs ar | target passes / action "
            "| Kalman fill rate | latency p50 / p95 ms | speed-up vs ar (p50) | vs ar-bf16 (p50) "
            "| precision shares |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in cl.items():
            sp = r.get("speedup", {})
            shares = ", ".join(f"{p} {v * 100:.0f} %" for p, v in r.get("precision_shares", {}).items())
            lines.append(
                f"| {name} | {r['success_rate'] * 100:.1f} % "
                f"| {r['ci95'][0] * 100:.1f}-{r['ci95'][1] * 100:.1f} % "
                f"| {_paired(r)} | {r['target_passes_per_action']:.2f} | {r['kalman_fill_rate']:.2f} "
                f"| {r['latency_ms']['p50']:.2f} / {r['latency_ms']['p95']:.2f} "
                f"| {_f(sp.get('vs_ar_p50'))}x | {_f(sp.get('vs_ar-bf16_p50'))}x | {shares or '-'} |"
            )
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _realistic_markdown(rs: dict | None) -> list[str]:
    if not rs:
        return []
    lines = [
        "",
        f"### Realistic size: {rs['frames']} of those frames (evenly spaced), the built-in's acceptance "
        "replayed (emulated)",
        "",
        f"{rs['model']}; {rs['decoder_parameters'] / 1e6:.1f} M decoder parameters. Draft: {rs['draft']}. "
        "Each row decodes each frame with the built-in row's method, precision, threshold and rejected "
        'positions; "pattern as built-in" is the share of frames with the same target passes, drafts, '
        "acceptances and fills.",
        "",
        "| method | target passes / action | acceptance rate | Kalman fill rate | latency p50 / p95 ms "
        "| speed-up vs ar (p50 / mean) | vs specvla (p50) | vs ar-bf16 (p50) | pattern as built-in |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rs["rows"].items():
        sp = r.get("speedup", {})
        lines.append(
            f"| {name} | {r['target_passes_per_action']:.2f} | {_f(r['acceptance_rate'])} "
            f"| {r['kalman_fill_rate']:.3f} | {r['latency_ms']['p50']:.1f} / {r['latency_ms']['p95']:.1f} "
            f"| {_f(sp.get('vs_ar_p50'))}x / {_f(sp.get('vs_ar_mean'))}x | {_f(sp.get('vs_specvla_p50'))}x "
            f"| {_f(sp.get('vs_ar-bf16_p50'))}x | {r['pattern_reproduced']:.2f} |"
        )
    pc = rs.get("pieces_ms", {})
    if pc.get("target_pass") and pc.get("verify_pass"):
        ratio = pc["verify_pass"] / pc["target_pass"]
        lines += [
            "",
            "Pieces at this size (median ms, from the rows' stage timings): "
            f"prefill {_f(pc['prefill'], '{:.1f}')}, one-token target pass {pc['target_pass']:.1f}, "
            f"verify pass over the drafted tokens {pc['verify_pass']:.1f} ({ratio:.2f}x a one-token pass), "
            f"draft round {_f(pc['draft_round'], '{:.1f}')}.",
        ]
    return lines


def run(args: argparse.Namespace) -> int:
    import torch

    from vla_accel_ros.sim.tasks import parse_task_list

    torch.set_num_threads(args.threads)
    notes: list[str] = []
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    params = settings(args.data, notes)
    rows = build_methods(names, args.checkpoint, params, notes)
    if not rows:
        print("no method could be built", file=sys.stderr)
        return 2
    main = next(r.policy for r in rows if r.policy.draft is not None)
    episodes = held_out_episodes(main, args.data, args.frames)
    progress = not args.no_progress
    recs = replay(rows, episodes, args.warmup, progress)
    a = main.action_dim
    open_loop = {name: summarize_rows(r, a) for name, r in recs.items()}
    for key in ("p50", "mean"):
        speedups(open_loop, "ar", key)
        speedups(open_loop, "ar-bf16", key)
        speedups(open_loop, "specvla", key)
    report = {
        "command": "vla-accel bench-decoding " + shlex.join(sys.argv[2:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "threads": args.threads,
        "checkpoint": str(args.checkpoint),
        "draft": {"config": main.draft.config.to_dict()},
        "open_loop_frames": len(next(iter(recs.values()))),
        "open_loop_episodes": len(episodes),
        "open_loop": open_loop,
        "draft_cost": draft_cost(main, episodes),
        "notes": notes,
    }
    from vla_accel_ros.policy.checkpoint import BUILTIN

    root = BUILTIN if args.checkpoint in ("", "builtin") else Path(args.checkpoint)
    training = root / "draft" / "training.json"
    if training.is_file():
        info = json.loads(training.read_text())
        report["draft"]["training"] = {
            k: info.get(k)
            for k in ("training_frames", "steps", "train_seconds", "held_out_top1", "held_out_acceptance")
        }
    if args.realistic_frames > 0:
        scaled = realistic_rows(list(recs), args.realistic_layers)
        scaled_recs = replay_realistic(scaled, episodes, recs, args.realistic_frames, args.warmup, progress)
        report["realistic"] = realistic_section(scaled, scaled_recs, args.realistic_layers)
    if args.closed_loop:
        tasks = parse_task_list(args.tasks)
        wanted = [n.strip() for n in args.closed_loop_methods.split(",") if n.strip()]
        cl_rows = [r for r in rows if not wanted or r.name in wanted]
        cl = closed_loop(
            cl_rows,
            args.checkpoint,
            params,
            tasks,
            args.episodes,
            args.max_steps,
            main.config.image_size,
            args.workers,
            progress,
        )
        speedups(cl, "ar", "p50")
        speedups(cl, "ar-bf16", "p50")
        report["closed_loop"] = cl
        if args.workers > 1:
            notes.append(
                f"closed loop ran in {args.workers} processes at once: its latencies are not the "
                "reference (the open-loop table is)"
            )
        report["closed_loop_setup"] = (
            f"{args.episodes} per task x {len(tasks)} tasks, max {args.max_steps} steps"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    block = markdown(report)
    from vla_accel_ros.commands.bench import write_block

    write_block(args.markdown, "bench-decoding", block, "# Speculative decoding\n\n## Results\n\n")
    print(block)
    print(f"wrote {args.json} and {args.markdown}")
    return 0
