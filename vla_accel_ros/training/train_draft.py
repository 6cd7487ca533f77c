"""Training of the EAGLE draft head against the frozen target (Spec-VLA / EAGLE recipe).

The target runs once over the demonstration frames and its greedy decoding is recorded (`Traces`): the hidden
state f_{i-1} that predicted each action token a_i, and its logits over the bins for the next one. The draft
learns, at the positions it proposes at run time (tokens 1 .. A-2; the last token is the verify pass's bonus):

    loss = 1.0 * SmoothL1(f^_i, f_i) + 0.1 * CE(softmax(target logits_i), draft logits_i)

twice per batch: teacher-forced (inputs f_{i-1} from the target, as after a verification) and rolled out
(inputs f^_{i-1} from the draft itself, as within one drafting round). Deterministic for a seed and a step
count without a time budget; a budget shortens the cosine schedule from the pace of the first steps
(re-checked a few times, as the machine is shared; the steps run are recorded).

Any checkpoint the package loads: the package's own (demonstration bags read whole) or an OpenVLA
directory (any bag, read through a topic map as replay reads it; `training.draft_sources`). A run saves
its state to `<out>/resume.pt` every `save_every` steps; `resume=True` continues from there (the traces
are kept beside it in `<out>/traces.pt`, so the target is not run again), with the same result as an
uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vla_accel_ros.data.bag_io import TopicMap
from vla_accel_ros.decoding.common import StageTimer, action_argmax
from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft, save_draft
from vla_accel_ros.decoding.speculative import SpecOutput, bins_within, speculate
from vla_accel_ros.policy.formats import is_openvla_checkpoint
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.training.draft_sources import PrefillInput, TraceSource, builtin_source, policy_source
from vla_accel_ros.training.train import FrameBatches

RESUME_FILE = "resume.pt"
TRACES_FILE = "traces.pt"


@dataclass
class DraftTrainConfig:
    """Every setting of one draft-head training run, stored beside the draft for repeatability."""

    checkpoint: Path
    data: Path
    out: Path
    epochs: int = 30
    steps: int = 0  # > 0: exactly this many optimizer steps (overrides epochs)
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    reg_weight: float = 1.0
    cls_weight: float = 0.1
    rollout: bool = True
    seed: int = 0
    time_budget_s: float = 0.0  # 0: no budget
    max_frames: int = 0  # 0: every training frame
    val_episodes_per_task: int = 2  # the target's held-out episodes (same rule as `vla-accel train`)
    eval_frames: int = 300
    threads: int = 0
    draft: dict = field(default_factory=dict)  # DraftConfig overrides
    progress: bool = True
    command: str = ""
    # OpenVLA directories only: how to load the target, and which topics of the bag hold what
    unnorm_key: str | None = None
    dtype: str = "bfloat16"  # the dtype the draft will serve beside (its traces come from it)
    device: str = "auto"
    topic_map: TopicMap | None = None
    resume: bool = False
    save_every: int = 100  # steps between two saves of <out>/resume.pt (0: never)


@dataclass
class Traces:
    """The target's greedy decoding of N frames (A = action tokens)."""

    feats: torch.Tensor  # (N, A, D): f_{i-1} for token i (f_{-1} = hidden at the last prefix position)
    tokens: torch.Tensor  # (N, A) greedy action ids
    logits: torch.Tensor  # (N, A-1, n_bins): target logits for token i+1, read at token i
    prefix: torch.Tensor | None = None  # (N, L, D) bf16: target hidden states over the prefix

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


@torch.no_grad()
def collect_traces(
    model: VlaModel,
    batches: FrameBatches,
    idx: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    prefix: bool = True,
) -> Traces:
    """The target's greedy decoding of frames idx (prefix states kept in bf16: 45 x D per frame)."""
    rng = np.random.default_rng(0)
    inputs = (batches.get(idx[s : s + batch_size], 0, rng)[:3] for s in range(0, len(idx), batch_size))
    return trace_inputs(model, inputs, progress, prefix, total=len(idx))


@torch.no_grad()
def trace_inputs(
    model: Any, inputs: Iterable[PrefillInput], progress: bool = False, prefix: bool = True, total: int = 0
) -> Traces:
    """The target's greedy decoding of prefill inputs (any batch size), kept on the CPU: features and
    logits in fp32 (what the draft trains in, whatever the target's dtype), prefix states in bf16."""
    a = model.config.action_dim
    first = model.action_first_id
    stop = first + model.config.n_bins
    feats, tokens, logits, prefixes = [], [], [], []
    bar = tqdm(total=total or None, desc="target traces", unit="frame", disable=not progress)
    for images, state, prompt in inputs:
        step = model.prefill(images, state, prompt)
        bar.update(int(prompt.shape[0]))
        if prefix:
            prefixes.append(step.hidden.to(torch.bfloat16).cpu())
        f, tok, lg = [step.hidden[:, -1]], [action_argmax(step.logits[:, -1], first)], []
        for _ in range(a - 1):
            step = model.extend(step.cache, tok[-1].unsqueeze(1))
            f.append(step.hidden[:, -1])
            lg.append(step.logits[:, -1, first:stop])
            tok.append(action_argmax(step.logits[:, -1], first))
        feats.append(torch.stack(f[:a], 1).float().cpu())
        tokens.append(torch.stack(tok, 1).cpu())
        logits.append(torch.stack(lg, 1).float().cpu())
    bar.close()
    return Traces(
        torch.cat(feats), torch.cat(tokens), torch.cat(logits), torch.cat(prefixes) if prefix else None
    )


def draft_positions(action_dim: int) -> int:
    """Positions the draft ever proposes from: tokens 1 .. A-2 (the last is the verify pass's bonus)."""
    if action_dim < 3:
        raise ValueError(f"action_dim {action_dim}: nothing to draft (the verify pass decides tokens 1..A-1)")
    return action_dim - 2


def draft_loss(
    draft: EagleDraft,
    feats: torch.Tensor,
    tokens: torch.Tensor,
    logits: torch.Tensor,
    reg_weight: float = 1.0,
    cls_weight: float = 0.1,
    rollout: bool = True,
    prefix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss over positions 0..P-1 of a batch of traces (P = A-2) and the top-1 agreement with the target."""
    p = draft_positions(tokens.shape[1])
    f_in, f_true, tok, t_logits = feats[:, :p], feats[:, 1 : p + 1], tokens[:, :p], logits[:, :p]
    t_prob = F.softmax(t_logits, -1)
    prefix = None if prefix is None else prefix.float()
    runs = [draft(f_in, tok, prefix)]  # teacher-forced
    if rollout and p > 1:
        seq = f_in[:, :1]
        outs = []
        for i in range(p):
            h = draft(seq, tok[:, : i + 1], prefix)[:, -1:]
            outs.append(h)
            seq = torch.cat([seq, h], 1)
        runs.append(torch.cat(outs, 1))
    total, stats = 0.0, {}
    for name, h in zip(("tf", "rollout"), runs, strict=False):
        reg = F.smooth_l1_loss(h, f_true)
        d_logits = draft.bin_logits(h)
        cls = -(t_prob * F.log_softmax(d_logits, -1)).sum(-1).mean()
        total = total + reg_weight * reg + cls_weight * cls
        stats[f"{name}_reg"] = reg.item()
        stats[f"{name}_cls"] = cls.item()
        stats[f"{name}_top1"] = (d_logits.argmax(-1) == t_logits.argmax(-1)).float().mean().item()
    return total / len(runs), stats


@torch.inference_mode()
def acceptance_report(
    model: VlaModel, batches: FrameBatches, idx: np.ndarray, draft: EagleDraft, relaxed_r: float = 9.0
) -> dict:
    """Run strict and relaxed (r bins) speculative decoding on frames: acceptance and target passes."""
    rng = np.random.default_rng(0)
    inputs = (batches.get(np.array([i]), 0, rng)[:3] for i in idx)
    return acceptance_of(model, inputs, draft, relaxed_r)


@torch.inference_mode()
def acceptance_of(
    model: Any, inputs: Iterable[PrefillInput], draft: EagleDraft, relaxed_r: float = 9.0
) -> dict:
    """acceptance_report over prefill inputs of one frame each."""
    a = model.config.action_dim
    rows: dict[str, list[SpecOutput]] = {"strict": [], f"r{relaxed_r:g}": []}
    exact_relaxed = 0
    n = 0
    for images, state, prompt in inputs:
        n += 1
        prefill = model.prefill(images, state, prompt)
        strict = speculate(model, prefill, a, draft, StageTimer())
        VlaModel.rollback(prefill.cache, prefill.length)
        relaxed = speculate(
            model, prefill, a, draft, StageTimer(), accept=bins_within(relaxed_r), threshold=relaxed_r
        )
        rows["strict"].append(strict)
        rows[f"r{relaxed_r:g}"].append(relaxed)
        exact_relaxed += int(torch.equal(strict.token_ids, relaxed.token_ids))
    out: dict = {"frames": n}
    for name, outs in rows.items():
        drafted = sum(o.draft_tokens for o in outs)
        acc = sum(o.accepted_tokens for o in outs)
        passes = sum(o.target_passes for o in outs)
        out[name] = {
            "acceptance_rate": acc / drafted if drafted else float("nan"),
            "first_round_all_accepted": float(np.mean([o.target_passes == 1 for o in outs])),
            "target_passes_per_action": passes / len(outs),
            "tokens_per_pass": (a - 1) / (passes / len(outs)),
        }
    out[f"r{relaxed_r:g}"]["same_action_as_ar"] = exact_relaxed / max(1, n)
    return out


def _lr(step: int, total: int, base: float, warmup: int = 20) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def trace_source(cfg: DraftTrainConfig) -> TraceSource:
    """The frozen target of `cfg.checkpoint` and the frames of `cfg.data`, in the checkpoint's format."""
    if is_openvla_checkpoint(cfg.checkpoint):
        from vla_accel_ros.policy.openvla import load_policy

        policy = load_policy(cfg.checkpoint, unnorm_key=cfg.unnorm_key, dtype=cfg.dtype, device=cfg.device)
        return policy_source(policy, cfg.data, cfg.topic_map, cfg.val_episodes_per_task)
    return builtin_source(cfg.checkpoint, cfg.data, cfg.val_episodes_per_task)


def _traces(cfg: DraftTrainConfig, source: TraceSource, train_idx: np.ndarray, prefix: bool):
    """Training and held-out traces, read back from <out>/traces.pt when resuming."""
    path = Path(cfg.out) / TRACES_FILE
    if cfg.resume and path.is_file():
        saved = torch.load(path, weights_only=True)
        return Traces(**saved["train"]), (Traces(**saved["val"]) if saved["val"] else None)
    batch = 256
    train = trace_inputs(
        source.model, source.inputs(train_idx, batch), cfg.progress, prefix, total=len(train_idx)
    )
    val = None
    if len(source.val_idx):
        val = trace_inputs(source.model, source.inputs(source.val_idx, batch), False, prefix)
    if cfg.save_every:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"train": vars(train), "val": vars(val) if val else None}, path)
    return train, val


def _save_state(path: Path, draft: EagleDraft, opt, step: int, total: int, order, rng, history) -> None:
    state = {
        "draft": draft.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "total": total,
        "order": torch.from_numpy(order),
        "rng": json.dumps(rng.bit_generator.state),
        "history": json.dumps(history),
    }
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # a crash mid-write leaves the previous state


def train_draft(cfg: DraftTrainConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    source = trace_source(cfg)
    target = source.model
    for p in target.parameters():
        p.requires_grad_(False)
    train_idx, val_idx = source.train_idx, source.val_idx
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_frames and len(train_idx) > cfg.max_frames:
        train_idx = np.sort(rng.choice(train_idx, cfg.max_frames, replace=False))
    overrides = dict(cfg.draft)
    notes = []
    if len(source.prefix_lengths) > 1 and overrides.get("attend_prefix", True):
        # The draft attends the prefix as one batch tensor: prompts of different lengths cannot share it.
        overrides["attend_prefix"] = False
        notes.append(f"prompts of {len(source.prefix_lengths)} lengths: the draft does not attend the prefix")
        print(f"note: {notes[-1]}")
    device = next(target.parameters()).device
    draft = EagleDraft(DraftConfig.for_target(target, **overrides), target).to(device)
    use_prefix = draft.config.attend_prefix
    t0 = time.perf_counter()
    traces, val_traces = _traces(cfg, source, train_idx, use_prefix)
    trace_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in draft.parameters())
    opt = torch.optim.AdamW(draft.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = max(1, len(traces) // cfg.batch_size)
    total = cfg.steps or cfg.epochs * per_epoch
    step, history, budget_cut = 0, [], False
    order = np.empty(0, dtype=np.int64)
    resume_path = Path(cfg.out) / RESUME_FILE
    if cfg.resume and resume_path.is_file():
        state = torch.load(resume_path, weights_only=True)
        draft.load_state_dict(state["draft"])
        opt.load_state_dict(state["opt"])
        step, total, order = int(state["step"]), int(state["total"]), state["order"].numpy()
        rng.bit_generator.state = json.loads(state["rng"])
        history = json.loads(state["history"])
        print(f"resumed {resume_path} at step {step} of {total}")
    print(
        f"{len(traces)} training frames, {0 if val_traces is None else len(val_traces)} held-out; draft "
        f"{n_params / 1e6:.3f} M parameters; {total} steps planned; traces took {trace_s:.0f} s"
    )
    draft.train()
    t_start = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="draft", unit="step", disable=not cfg.progress)
    while step < total:
        if len(order) < cfg.batch_size:
            order = np.concatenate([order, rng.permutation(len(traces))])
        b, order = torch.from_numpy(order[: cfg.batch_size]), order[cfg.batch_size :]
        for g in opt.param_groups:
            g["lr"] = _lr(step, total, cfg.lr)
        loss, stats = draft_loss(
            draft,
            traces.feats[b].to(device),
            traces.tokens[b].to(device),
            traces.logits[b].to(device),
            cfg.reg_weight,
            cfg.cls_weight,
            cfg.rollout,
            None if traces.prefix is None else traces.prefix[b].to(device),
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", top1=f"{stats['tf_top1']:.2f}")
        if cfg.time_budget_s and not cfg.steps and step in (10, 50, 200, 500, 1000, 2000):
            # Fit the schedule into the budget from the pace so far (re-checked: the machine is shared).
            elapsed = time.perf_counter() - t_start
            fit = step + int((cfg.time_budget_s - elapsed) / (elapsed / step))
            if fit < total:
                total, budget_cut = max(step + 1, fit), True
                bar.total = total
                print(f"time budget {cfg.time_budget_s:g} s: {total} steps")
        if step % per_epoch == 0 or step == total:
            history.append({"step": step, "loss": loss.item(), **stats})
        if cfg.save_every and step % cfg.save_every == 0 and step < total:
            resume_path.parent.mkdir(parents=True, exist_ok=True)
            _save_state(resume_path, draft, opt, step, total, order, rng, history)
    bar.close()
    train_s = time.perf_counter() - t_start
    draft.eval()
    report: dict = {}
    if val_traces is not None:
        with torch.no_grad():
            _, val_stats = draft_loss(
                draft,
                val_traces.feats.to(device),
                val_traces.tokens.to(device),
                val_traces.logits.to(device),
                prefix=None if val_traces.prefix is None else val_traces.prefix.to(device),
            )
        report["held_out_top1"] = {k: v for k, v in val_stats.items() if k.endswith("top1")}
        pick = np.sort(np.random.default_rng(1).choice(val_idx, min(cfg.eval_frames, len(val_idx)), False))
        report["held_out_acceptance"] = acceptance_of(target, source.inputs(pick, 1), draft)
    summary = {
        "training_frames": len(traces),
        "held_out_frames": int(len(val_idx)),
        "parameters": n_params,
        "steps": step,
        "time_budget_cut": budget_cut,
        "trace_seconds": round(trace_s, 1),
        "train_seconds": round(train_s, 1),
        "history": history,
        "notes": notes,
        **report,
        "config": jsonable_config(cfg),
    }
    save_draft(draft, cfg.out, info=summary)
    for leftover in (resume_path, Path(cfg.out) / TRACES_FILE):  # finished: nothing left to resume
        leftover.unlink(missing_ok=True)
    return summary


def jsonable_config(cfg: DraftTrainConfig) -> dict:
    """The run's settings as training.json stores them (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
