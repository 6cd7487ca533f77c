"""Where a draft head's training frames come from, per checkpoint format.

The draft learns from the target's own greedy decoding of demonstration frames. Only how a frame becomes
the target's prefill input differs between formats, so that is all this module knows:
- the package's own checkpoints: demonstration bags read whole (`training.dataset.load_frames`), in
  batches, with the target's tokenizers (`FrameBatches`), held out by task as `vla-accel train` does;
- any other policy (an OpenVLA directory): any rosbag2 bag read step by step through a `TopicMap`, as
  `vla-accel replay` reads it, each frame through the policy's own `preprocess` (its image resize, its
  prompt), one at a time; the last episodes are held out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_accel_ros.data.bag_io import BagError, TopicMap, iter_steps
from vla_accel_ros.training.dataset import bag_dirs

PrefillInput = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]


@dataclass
class TraceSource:
    """The frozen target and its frames: `inputs(idx, batch)` yields prefill inputs of frames idx, in
    order, `batch` at a time where the format allows (frames of a policy go one by one)."""

    model: Any
    train_idx: np.ndarray
    val_idx: np.ndarray
    inputs: Callable[[np.ndarray, int], Iterator[PrefillInput]]
    prefix_lengths: set[int]  # distinct prefill lengths: a draft attends the prefix only if there is one


def builtin_source(checkpoint: Path, data: Path, val_episodes_per_task: int) -> TraceSource:
    """The package's own checkpoint over a folder of demonstration bags."""
    from vla_accel_ros.policy.checkpoint import load_checkpoint
    from vla_accel_ros.policy.tokenizer import ActionTokenizer, PromptTokenizer
    from vla_accel_ros.training.dataset import load_frames
    from vla_accel_ros.training.train import FrameBatches, held_out_split

    target = load_checkpoint(checkpoint).eval()
    tc = target.config
    frames = load_frames(data, tc.cameras)
    tok = ActionTokenizer(tc.action_q01, tc.action_q99, tc.vocab_size, tc.n_bins)
    batches = FrameBatches(frames, tc, tok, PromptTokenizer(tc.prompt_vocab), torch.device("cpu"))
    train_idx, val_idx = held_out_split(frames, val_episodes_per_task)
    rng = np.random.default_rng(0)

    def inputs(idx: np.ndarray, batch: int) -> Iterator[PrefillInput]:
        for s in range(0, len(idx), batch):
            images, state, prompt, _ = batches.get(idx[s : s + batch], 0, rng)
            yield images, state, prompt

    return TraceSource(target, train_idx, val_idx, inputs, {-1})  # one prompt length: padded


def bag_paths(data: Path) -> list[Path]:
    """`data` as bags: one bag (a rosbag2 directory, .mcap or .db3 file) or a folder of bag directories."""
    if data.is_file() or (data / "metadata.yaml").is_file():
        return [data]
    found = bag_dirs(data)
    if not found:
        raise FileNotFoundError(f"no rosbag2 bag at or under {data}")
    return found


def held_out_episodes(episodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the last `n` episodes (whole, no frame leakage), keeping at least one for training; a
    single episode gives its last fifth of frames instead (a bag of one demonstration is common)."""
    ids = sorted(set(episodes.tolist()))
    if len(ids) > 1:
        held = set(ids[-min(n, len(ids) - 1) :]) if n > 0 else set()
        is_val = np.isin(episodes, sorted(held))
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)
    cut = len(episodes) - (len(episodes) // 5 if n > 0 else 0)
    return np.arange(cut), np.arange(cut, len(episodes))


def policy_source(policy: Any, data: Path, topic_map: TopicMap | None, val_episodes: int) -> TraceSource:
    """A loaded policy (an OpenVLA directory's) over the frames of one or more bags."""
    from vla_accel_ros.policy.runtime import PolicyInput

    tm = topic_map or TopicMap()
    if "wrist" not in policy.cameras:  # OpenVLA sees one camera: a bag without a wrist topic is fine
        tm = replace(tm, wrist_camera=None)
    frames: list[PolicyInput] = []
    episodes: list[int] = []
    offset = 0
    for path in bag_paths(data):
        seen: set[int] = set()
        for step in iter_steps(path, tm):
            if step.episode < 0:
                continue  # between an episode's end and the next start
            missing = [c for c in policy.cameras if c not in step.images]
            if missing:
                raise BagError(
                    f"{path}: the policy needs camera(s) {missing}; the topic map gives {sorted(step.images)}"
                )
            images = {c: np.array(step.images[c]) for c in policy.cameras}  # bag buffers are read-only
            frames.append(PolicyInput(images, np.asarray(step.joint_positions), step.instruction))
            episodes.append(offset + step.episode)
            seen.add(step.episode)
        offset += max(seen, default=-1) + 1
    if not frames:
        raise BagError(f"{data}: no camera frame inside an episode")
    if not all(f.instruction and f.instruction.strip() for f in frames):
        raise BagError(f"{data}: frames without an instruction (map its topic, or give --instruction)")
    train_idx, val_idx = held_out_episodes(np.asarray(episodes), val_episodes)

    def inputs(idx: np.ndarray, _batch: int) -> Iterator[PrefillInput]:
        for i in idx:
            yield policy.preprocess(frames[int(i)])

    lengths = {int(policy.preprocess(f)[2].shape[1]) for f in {f.instruction: f for f in frames}.values()}
    return TraceSource(policy.model, train_idx, val_idx, inputs, lengths)
