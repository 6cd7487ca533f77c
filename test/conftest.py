"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from vla_accel_ros.data.episodes import Episode, sim_stamps

# Headless rendering for any test that imports mujoco (must precede mujoco's first import).
os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With VLA_ACCEL_FAULT_REPORT=<json> (the fault measurement run of docs/RELIABILITY.md), the faults
    the tests recorded there are rendered into the document's faults section."""
    from pathlib import Path

    path = os.environ.get("VLA_ACCEL_FAULT_REPORT")
    if path and Path(path).is_file():
        from vla_accel_ros.evaluation.reliability import write_faults_section

        write_faults_section(Path(path), Path(os.environ.get("VLA_ACCEL_FAULT_DOC", "docs/RELIABILITY.md")))


SAWYER_JOINTS = [f"right_j{i}" for i in range(7)] + ["r_close", "l_close"]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of tiny models: a second OpenMP thread only adds spin-waiting on a
    shared, busy machine. A module opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch  # here, not at the top: most test modules never load torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_episodes() -> Callable[..., list[Episode]]:
    """Synthetic episodes with random content (no simulator): exact round trips need no physics."""

    def make(
        n: int = 2,
        steps: int = 5,
        size: int = 16,
        cameras: tuple[str, ...] = ("corner", "wrist"),
        seed: int = 0,
    ) -> list[Episode]:
        rng = np.random.default_rng(seed)
        episodes = []
        for i in range(n):
            t = steps + i  # different lengths catch off-by-one splits between episodes
            episodes.append(
                Episode(
                    task="reach-v3",
                    seed=100 + i,
                    instruction=f"reach the red goal {i}",
                    success=i % 2 == 0,
                    images={c: rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8) for c in cameras},
                    joint_positions=rng.normal(size=(t, 9)).astype(np.float32),
                    actions=rng.uniform(-1, 1, size=(t, 4)).astype(np.float32),
                    stamps_ns=sim_stamps(i, t, 80.0),
                    joint_names=list(SAWYER_JOINTS),
                    joint_velocities=rng.normal(size=(t, 9)).astype(np.float32),
                )
            )
        return episodes

    return make
