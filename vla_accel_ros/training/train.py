"""Behaviour cloning of the token-domain VLA: cross-entropy over the 256 action bins.

Deterministic for a given seed and data, resumable after any epoch (weights, optimizer
and RNG states are written as safetensors + JSON, never pickle).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from vla_accel_ros.policy.checkpoint import load_weights, save_checkpoint, stored_weights
from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.tokenizer import ActionTokenizer, PromptTokenizer
from vla_accel_ros.sim.libero_suites import is_libero_task
from vla_accel_ros.training.dataset import FrameSet, load_frames


@dataclass
class TrainConfig:
    """Every setting of one policy training run, stored with the checkpoint so a run can be repeated."""

    data: Path
    out: Path
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    shift_px: int = 4
    val_episodes_per_task: int = 2
    threads: int = 0  # 0 = torch default
    device: str = "cpu"  # "cuda" trains on a GPU; the checkpoint is written for CPU either way
    stop_after: int = 0  # > 0: stop after this many epochs in this call (resume later)
    model: dict = field(default_factory=dict)  # VlaConfig overrides (hidden_size, num_layers, ...)
    init: str | None = None  # fine-tune this checkpoint ("builtin" or a folder) instead of starting fresh
    backbone: str = "scratch"  # "smollm2": the pretrained SmolLM2-135M decoder (the realistic-size variant)
    vision_from: str | None = None  # start the camera encoders from this checkpoint's trained ones
    frames_per_epoch: int = 0  # > 0: each epoch is a fresh random subset of this many training frames
    val_frames: int = 0  # > 0: score held-out episodes on this many evenly spaced frames only
    command: str = ""


def _stats(frames: FrameSet) -> dict[str, list[float]]:
    return {
        "action_q01": np.quantile(frames.actions, 0.01, axis=0).tolist(),
        "action_q99": np.quantile(frames.actions, 0.99, axis=0).tolist(),
        "state_mean": frames.joints.mean(axis=0).tolist(),
        "state_std": (frames.joints.std(axis=0) + 1e-3).tolist(),
    }


def _fitted_shape(frames: FrameSet, base: VlaConfig, prompts: PromptTokenizer, overrides: dict) -> dict:
    """The sizes the data fixes: action and state dims (4 and 9 on Meta-World, 7 and 9 on LIBERO), a
    prompt long enough for the longest instruction (LIBERO-Spatial's run to 19 words, beyond the default
    12 tokens, and truncated they would no longer tell tasks apart) and room for the whole sequence.
    Sizes given as --model overrides are kept; the defaults only ever grow, so Meta-World keeps its own."""
    fitted: dict = {"action_dim": int(frames.actions.shape[1]), "state_dim": int(frames.joints.shape[1])}
    if "prompt_length" not in overrides:
        pad = prompts.index[prompts.PAD]
        longest = max(sum(i != pad for i in prompts.encode(s, 4096)) for s in set(frames.instructions))
        fitted["prompt_length"] = max(base.prompt_length, longest)
    if "max_positions" not in overrides:
        size = int(frames.images[base.cameras[0]].shape[1])
        tokens = len(base.cameras) * (size // 16) ** 2 + 1 + fitted.get("prompt_length", base.prompt_length)
        fitted["max_positions"] = max(base.max_positions, tokens + fitted["action_dim"])
    return fitted


def _shift(batch: torch.Tensor, px: int, rng: np.random.Generator) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1], randomly translated by up to px pixels.

    Edge padding, one offset per sample; done with tensor indexing so it runs on the training device.
    """
    n, h, w, _ = batch.shape
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    if px == 0:
        return x
    dy, dx = rng.integers(0, 2 * px + 1, size=(2, n))
    padded = F.pad(x, (px, px, px, px), mode="replicate")
    dev = batch.device
    rows = torch.as_tensor(dy, device=dev)[:, None] + torch.arange(h, device=dev)
    cols = torch.as_tensor(dx, device=dev)[:, None] + torch.arange(w, device=dev)
    n_idx = torch.arange(n, device=dev)[:, None, None, None]
    c_idx = torch.arange(3, device=dev)[None, :, None, None]
    return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


class FrameBatches:
    """Every training tensor, held once on the training device (images stay uint8 until a batch)."""

    def __init__(
        self,
        frames: FrameSet,
        config: VlaConfig,
        tok: ActionTokenizer,
        prompts: PromptTokenizer,
        device: torch.device,
    ):
        self.config = config
        self.device = device
        self.images = {c: torch.from_numpy(frames.images[c]).to(device) for c in config.cameras}
        self.action_ids = torch.from_numpy(tok.encode(frames.actions)).to(device)
        unique = sorted(set(frames.instructions))
        table = {s: prompts.encode(s, config.prompt_length) for s in unique}
        self.prompt_ids = torch.tensor([table[s] for s in frames.instructions], dtype=torch.long).to(device)
        mean = np.asarray(config.state_mean, dtype=np.float32)
        std = np.asarray(config.state_std, dtype=np.float32)
        self.states = torch.from_numpy((frames.joints - mean) / std).to(device)

    def get(self, idx: np.ndarray, shift_px: int, rng: np.random.Generator):
        t = torch.from_numpy(idx).to(self.device)
        images = {c: _shift(self.images[c][t], shift_px, rng) for c in self.config.cameras}
        return images, self.states[t], self.prompt_ids[t], self.action_ids[t]


def _init_from(cfg: TrainConfig) -> tuple[VlaModel, VlaConfig, PromptTokenizer, FrameSet]:
    """The checkpoint to fine-tune, with its own normalization and vocabulary kept.

    Re-deriving q01/q99 or the state statistics from the new data would silently change what every
    token and input means to the weights, so the data must fit the checkpoint instead.
    """
    from vla_accel_ros.policy.checkpoint import load_checkpoint

    if cfg.model:
        raise ValueError("--model overrides cannot change the architecture of an --init checkpoint")
    model = load_checkpoint(cfg.init)
    config = model.config
    frames = load_frames(cfg.data, list(config.cameras))
    size = frames.images[config.cameras[0]].shape[1]
    if size != config.image_size:
        raise ValueError(f"{cfg.data} has {size} px images; {cfg.init} was trained on {config.image_size} px")
    prompts = PromptTokenizer(config.prompt_vocab)
    words = PromptTokenizer.from_texts(sorted(set(frames.instructions))).vocab
    unknown = [w for w in words if w not in prompts.index]
    if unknown:
        raise ValueError(f"instruction words unknown to {cfg.init}: {unknown}")
    return model, config, prompts, frames


def _fresh(cfg: TrainConfig) -> tuple[VlaModel, VlaConfig, PromptTokenizer, FrameSet]:
    """A new model whose statistics, vocabulary and image size come from the data."""
    if cfg.backbone not in ("scratch", "smollm2"):
        raise ValueError(f"unknown backbone {cfg.backbone!r} (scratch or smollm2)")
    if cfg.backbone == "smollm2":
        from vla_accel_ros.policy.realistic import (
            build_realistic_model,
            realistic_config,
            require_pretrained_shape,
        )

        require_pretrained_shape(cfg.model)  # before the data loads, which takes minutes at full size
        base = realistic_config(**cfg.model)

        def build(fitted: dict) -> VlaModel:
            return build_realistic_model(pretrained=True, **cfg.model, **fitted)
    else:
        base = VlaConfig(**cfg.model)

        def build(fitted: dict) -> VlaModel:
            return VlaModel(VlaConfig(**{**base.to_dict(), **fitted}))

    frames = load_frames(cfg.data, base.cameras)
    prompts = PromptTokenizer.from_texts(sorted(set(frames.instructions)))
    model = build(
        {
            **_stats(frames),
            **_fitted_shape(frames, base, prompts, cfg.model),
            "prompt_vocab": prompts.vocab[4:],
            "image_size": frames.images[base.cameras[0]].shape[1],
        }
    )
    return model, model.config, prompts, frames


def _copy_vision(model: VlaModel, source: str) -> None:
    """Camera encoders from a trained checkpoint: a new decoder (e.g. the pretrained SmolLM2 one) then
    starts from image features that already mean something, which a CPU budget could not relearn."""
    from vla_accel_ros.policy.checkpoint import load_checkpoint

    donor = load_checkpoint(source)
    mine, theirs = model.config, donor.config
    if (theirs.cameras, theirs.vision_channels) != (mine.cameras, mine.vision_channels):
        raise ValueError(
            f"{source} has cameras {theirs.cameras} with channels {theirs.vision_channels}; "
            f"the model has {mine.cameras} with {mine.vision_channels}"
        )
    model.encoders.load_state_dict(donor.encoders.state_dict())


def held_out_split(frames: FrameSet, per_task: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the last `per_task` episodes of every task (whole episodes, no frame leakage), but never a
    task's only episodes (a smoke run on one demonstration still trains); public so that benchmarks
    replay exactly the episodes training never saw."""
    val_eps: set[int] = set()
    for task in sorted(set(frames.tasks)):
        eps = [i for i, t in enumerate(frames.tasks) if t == task]
        held = min(per_task, len(eps) - 1)
        val_eps.update(eps[-held:] if held > 0 else [])
    is_val = np.isin(frames.episode_index, sorted(val_eps))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _evaluate(model: VlaModel, batches: FrameBatches, idx: np.ndarray, bs: int) -> dict[str, float]:
    if len(idx) == 0:
        return {}
    model.eval()
    loss_sum, exact, near, n = 0.0, 0, 0, 0
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for s in range(0, len(idx), bs):
            images, state, prompt, ids = batches.get(idx[s : s + bs], 0, rng)
            logits = model.forward_train(images, state, prompt, ids)
            target = ids - model.action_first_id
            loss_sum += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum").item()
            pred = logits.argmax(-1)
            exact += (pred == target).sum().item()
            near += ((pred - target).abs() <= 2).sum().item()
            n += target.numel()
    model.train()
    return {"val_loss": loss_sum / n, "val_token_acc": exact / n, "val_within2": near / n}


def _save_state(path: Path, model: VlaModel, opt: torch.optim.Optimizer, sched, info: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in stored_weights(model).items()}, str(path / "model.safetensors"))
    opt_tensors: dict[str, torch.Tensor] = {"torch_rng": torch.get_rng_state()}
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            opt_tensors[f"{i}.{k}"] = torch.as_tensor(v).cpu().contiguous()
    save_file(opt_tensors, str(path / "optimizer.safetensors"))
    # param_groups carry the scheduled lr and (one-cycle) momentum of the next step
    groups = opt.state_dict()["param_groups"]
    state = {**info, "scheduler": sched.state_dict(), "param_groups": groups}
    (path / "state.json").write_text(json.dumps(state, indent=1))


def _load_state(path: Path, model: VlaModel, opt: torch.optim.Optimizer, sched, device: torch.device) -> dict:
    load_weights(model, load_file(str(path / "model.safetensors")))
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("torch_rng"))
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v if k == "step" else v.to(device)
    info = json.loads((path / "state.json").read_text())
    sd["state"] = state
    sd["param_groups"] = info.pop("param_groups")
    opt.load_state_dict(sd)
    sched.load_state_dict(info.pop("scheduler"))
    return info


def train(cfg: TrainConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, config, prompts, frames = _init_from(cfg) if cfg.init else _fresh(cfg)
    if cfg.vision_from:
        _copy_vision(model, cfg.vision_from)
    tok = ActionTokenizer(config.action_q01, config.action_q99, config.vocab_size, config.n_bins)
    device = torch.device(cfg.device)
    model = model.to(device)
    batches = FrameBatches(frames, config, tok, prompts, device)
    train_idx, val_idx = held_out_split(frames, cfg.val_episodes_per_task)
    if cfg.val_frames and len(val_idx) > cfg.val_frames:
        val_idx = val_idx[np.linspace(0, len(val_idx) - 1, cfg.val_frames).round().astype(int)]
    per_epoch = min(len(train_idx), cfg.frames_per_epoch or len(train_idx))
    steps_per_epoch = max(1, per_epoch // cfg.batch_size)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1
    )
    state_dir = cfg.out / "train_state"
    start_epoch, elapsed, history = 0, 0.0, []
    if (state_dir / "state.json").is_file():
        info = _load_state(state_dir, model, opt, sched, device)
        start_epoch, elapsed, history = info["epoch"], info["elapsed_s"], info["history"]
        print(f"resuming after epoch {start_epoch}")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{len(frames)} frames ({len(train_idx)} train, {len(val_idx)} val), {n_params / 1e6:.2f} M params")
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        order = rng.permutation(train_idx)[:per_epoch]
        total = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for s in bar:
            images, state, prompt, ids = batches.get(
                order[s * cfg.batch_size : (s + 1) * cfg.batch_size], cfg.shift_px, rng
            )
            logits = model.forward_train(images, state, prompt, ids)
            loss = F.cross_entropy(logits.flatten(0, 1), (ids - model.action_first_id).flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (s + 1):.3f}")
        elapsed += time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_loss": total / steps_per_epoch,
            **_evaluate(model, batches, val_idx, 256),
        }
        history.append(record)
        print(json.dumps(record))
        _save_state(
            state_dir, model, opt, sched, {"epoch": epoch + 1, "elapsed_s": elapsed, "history": history}
        )
        if cfg.stop_after and epoch + 1 - start_epoch >= cfg.stop_after and epoch + 1 < cfg.epochs:
            print(f"stopping after epoch {epoch + 1} of {cfg.epochs}; run again to resume")
            return {"stopped_after_epoch": epoch + 1, "history": history}
    summary = {
        "frames": len(frames),
        "episodes": len(frames.tasks),
        "tasks": sorted(set(frames.tasks)),
        "parameters": n_params,
        "train_seconds": round(elapsed, 1),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "this CPU",
        "history": history,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    }
    save_checkpoint(model.cpu().eval(), cfg.out, card=_card(summary))
    (cfg.out / "training.json").write_text(json.dumps(summary, indent=1))
    return summary


def _card(summary: dict) -> str:
    last = summary["history"][-1] if summary["history"] else {}
    cfg = summary["config"]
    nan = float("nan")
    manifest = Path(cfg["data"]) / "manifest.json"
    seeds = None
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        per_task = {t: v.get("seeds", []) for t, v in info.get("tasks", {}).items()}
        spans = {f"{min(v)}-{max(v)}" for v in per_task.values() if v}
        held_out = (
            "evaluation starts from the suites' official init states (never trained on)"
            if info.get("simulator") == "libero"
            else f"evaluation uses seeds from {info.get('eval_seed_base', '?')} on (never trained on)"
        )
        seeds = (
            f"- demonstration seeds per task: {', '.join(sorted(spans))} (expert failures dropped); "
            f"{held_out}; demos made by `{info.get('command', '?')}`"
        )
    backbone = cfg.get("backbone", "scratch")
    libero = any(is_libero_task(t) for t in summary["tasks"])
    lines = [
        "# vla_accel_ros built-in policy" if backbone == "scratch" else f"# vla_accel_ros {backbone} policy",
        "",
        "Token-domain VLA (CNN encoders for the corner and wrist cameras, MLP projector, Llama decoder,",
        "one token per action dimension over 256 bins) trained by behaviour cloning on "
        + ("LIBERO (7-D actions)" if libero else "Meta-World"),
        "scripted-expert demonstrations generated here.",
        "",
        f"- tasks: {', '.join(summary['tasks'])}",
        f"- demonstrations: {summary['episodes']} episodes, {summary['frames']} frames ({cfg['data']})",
        seeds,
        f"- parameters: {summary['parameters'] / 1e6:.2f} M",
        f"- training: {len(summary['history'])} epochs, {summary['train_seconds'] / 60:.1f} min on "
        f"{summary.get('device_name', 'this CPU')}",
        f"- seed {cfg['seed']}; final train loss {last.get('train_loss', nan):.3f}; on held-out episodes "
        f"token accuracy {last.get('val_token_acc', nan):.3f}, "
        f"within 2 bins {last.get('val_within2', nan):.3f}",
        f"- fine-tuned from: {cfg['init']}" if cfg.get("init") else None,
        f"- decoder: pretrained {backbone} backbone" if backbone != "scratch" else None,
        f"- camera encoders started from: {cfg['vision_from']}" if cfg.get("vision_from") else None,
        f"- {cfg['frames_per_epoch']} random frames per epoch" if cfg.get("frames_per_epoch") else None,
        f"- command: `{cfg['command']}`",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)
