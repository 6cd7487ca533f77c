"""Demonstration bags -> flat training arrays, cached as .npz so epochs skip bag decoding."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_accel_ros.data.bag_io import read_episodes
from vla_accel_ros.data.episodes import Episode


@dataclass
class FrameSet:
    """Episodes flattened into per-frame arrays, the form training batches are drawn from."""

    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8
    joints: np.ndarray  # (N, J) float32
    actions: np.ndarray  # (N, A) float32
    instructions: list[str]  # (N,) one per frame
    episode_index: np.ndarray  # (N,) int32
    tasks: list[str]  # per episode

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def frames_from_episodes(episodes: list[Episode], cameras: list[str]) -> FrameSet:
    if not episodes:
        raise ValueError("no demonstration episodes")
    images = {c: np.concatenate([e.images[c] for e in episodes]) for c in cameras}
    instructions = [e.instruction for e in episodes for _ in range(len(e.actions))]
    index = np.concatenate([np.full(len(e.actions), i, dtype=np.int32) for i, e in enumerate(episodes)])
    return FrameSet(
        images=images,
        joints=np.concatenate([e.joint_positions for e in episodes]).astype(np.float32),
        actions=np.concatenate([e.actions for e in episodes]).astype(np.float32),
        instructions=instructions,
        episode_index=index,
        tasks=[e.task for e in episodes],
    )


def bag_dirs(root: Path) -> list[Path]:
    """Every rosbag2 directory (holding metadata.yaml) under root, sorted for determinism."""
    return sorted(p.parent for p in root.rglob("metadata.yaml"))


def load_frames(root: Path, cameras: list[str], cache_dir: Path | None = None) -> FrameSet:
    dirs = bag_dirs(root)
    if not dirs:
        raise FileNotFoundError(f"no rosbag2 bags under {root}")
    key = hashlib.sha256(
        json.dumps([[str(d), (d / "metadata.yaml").stat().st_mtime_ns] for d in dirs] + cameras).encode()
    ).hexdigest()[:16]
    cache = (cache_dir or root) / f".frames-{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return FrameSet(
            images={c: z[f"img_{c}"] for c in cameras},
            joints=z["joints"],
            actions=z["actions"],
            instructions=[str(s) for s in z["instructions"]],
            episode_index=z["episode_index"],
            tasks=[str(s) for s in z["tasks"]],
        )
    episodes = [e for d in dirs for e in read_episodes(d)]
    frames = frames_from_episodes(episodes, cameras)
    np.savez(
        cache,
        **{f"img_{c}": v for c, v in frames.images.items()},
        joints=frames.joints,
        actions=frames.actions,
        instructions=np.array(frames.instructions),
        episode_index=frames.episode_index,
        tasks=np.array(frames.tasks),
    )
    return frames
