"""Episodes: the in-memory unit of demonstrations (one layout, one instruction, T control steps)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Each episode gets its own 1000 s slot of sim time in a bag, so stamps never collide and an episode's
# index can be read back from any of its stamps.
EPISODE_SLOT_NS = 1000 * 10**9


@dataclass
class Episode:
    """One demonstration or rollout as arrays: the unit bags are written from and training reads."""

    task: str
    seed: int
    instruction: str
    success: bool
    images: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    joint_positions: np.ndarray  # (T, J) float32
    actions: np.ndarray  # (T, A) float32 (expert / reference); A = 0 when the bag has no actions
    stamps_ns: np.ndarray  # (T,) int64
    joint_names: list[str] = field(default_factory=list)
    joint_velocities: np.ndarray | None = None  # (T, J) float32 when recorded

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])

    def validate(self) -> None:
        """Raise ValueError when the arrays disagree in length, shape or dtype."""
        t = len(self)
        if t == 0:
            raise ValueError(f"episode (task {self.task!r}, seed {self.seed}) has no steps")
        if not self.images:
            raise ValueError("episode has no camera images")
        for cam, img in self.images.items():
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != t or img.shape[3] != 3:
                raise ValueError(f"images[{cam!r}]: want (T={t}, H, W, 3) uint8, got {img.shape} {img.dtype}")
        if self.joint_positions.ndim != 2 or self.joint_positions.shape[0] != t:
            raise ValueError(f"joint_positions must be (T={t}, J), got {self.joint_positions.shape}")
        if self.joint_names and len(self.joint_names) != self.joint_positions.shape[1]:
            raise ValueError(
                f"{len(self.joint_names)} joint names for {self.joint_positions.shape[1]} joint positions"
            )
        if self.joint_velocities is not None and self.joint_velocities.shape != self.joint_positions.shape:
            raise ValueError("joint_velocities must have the shape of joint_positions")
        if self.actions.ndim != 2 or self.actions.shape[0] != t:
            raise ValueError(f"actions must be (T={t}, A), got {self.actions.shape}")
        stamps = np.asarray(self.stamps_ns)
        if stamps.ndim != 1 or (t > 1 and np.any(np.diff(stamps) <= 0)):
            raise ValueError("stamps_ns must be strictly increasing")


def sim_stamps(episode_index: int, n_steps: int, control_hz: float) -> np.ndarray:
    """Sim-time stamps of an episode: `episode_index * 1000 s + step / control_hz`."""
    if n_steps > control_hz * 999:
        raise ValueError(f"{n_steps} steps at {control_hz} Hz do not fit an episode's 1000 s slot")
    steps = np.arange(n_steps, dtype=np.int64)
    return episode_index * EPISODE_SLOT_NS + np.round(steps * (1e9 / control_hz)).astype(np.int64)


class EpisodeRecorder:
    """Collects one episode step by step (images from before the step, and the action then executed)."""

    def __init__(self, task: str, seed: int, instruction: str, joint_names: list[str]) -> None:
        self.task, self.seed, self.instruction = task, seed, instruction
        self.joint_names = list(joint_names)
        self._images: dict[str, list[np.ndarray]] = {}
        self._q: list[np.ndarray] = []
        self._dq: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []

    def add(
        self,
        images: dict[str, np.ndarray],
        joint_positions: np.ndarray,
        action: np.ndarray,
        joint_velocities: np.ndarray | None = None,
    ) -> None:
        for cam, img in images.items():
            self._images.setdefault(cam, []).append(img)
        self._q.append(np.asarray(joint_positions, dtype=np.float32))
        if joint_velocities is not None:
            self._dq.append(np.asarray(joint_velocities, dtype=np.float32))
        self._actions.append(np.asarray(action, dtype=np.float32))

    def __len__(self) -> int:
        return len(self._actions)

    def finish(self, success: bool, episode_index: int, control_hz: float) -> Episode:
        n = len(self._actions)
        return Episode(
            task=self.task,
            seed=self.seed,
            instruction=self.instruction,
            success=bool(success),
            images={cam: np.stack(frames) for cam, frames in self._images.items()},
            joint_positions=np.stack(self._q),
            actions=np.stack(self._actions),
            stamps_ns=sim_stamps(episode_index, n, control_hz),
            joint_names=list(self.joint_names),
            joint_velocities=np.stack(self._dq) if len(self._dq) == n else None,
        )
