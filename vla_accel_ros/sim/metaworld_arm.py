"""Meta-World Sawyer arm with per-seed held-out layouts and two upright camera images per step.

Why not `gym.make("Meta-World/MT1")`: it draws every reset from 50 pre-sampled layouts, so "new"
seeds repeat training layouts. Here the task class is built directly and its randomization is
unfrozen and driven by the env's own seeded generator, so a seed fixes exactly one layout.
"""

from __future__ import annotations

import os
import weakref
from functools import cache
from typing import Any

import numpy as np

# Headless rendering; must be decided before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import metaworld  # noqa: E402
import mujoco  # noqa: E402

from vla_accel_ros.sim.observation import SimObservation, needs_half_turn  # noqa: E402
from vla_accel_ros.sim.tasks import TASKS, expert_policy, resolve_task  # noqa: E402

# Project camera name -> Meta-World camera name.
CAMERAS: dict[str, str] = {"corner": "corner", "wrist": "gripperPOV"}
# Sawyer arm joints, then the two finger joints.
JOINT_NAMES: tuple[str, ...] = tuple(f"right_j{i}" for i in range(7)) + ("r_close", "l_close")
# Meta-World steps physics 5 x 2.5 ms per action.
CONTROL_HZ = 80.0


# Meta-World's Sawyer sits at world -y: "away from the base" for a downward camera is +y. (Its "corner"
# camera is mounted with image-up toward the floor, so its frames get a half turn.)
FAR_SIDE = np.array([0.0, 1.0, 0.0])


@cache
def _task_spec(task: str) -> Any:
    """Meta-World's fully observable task spec (goal in the state, which the experts need).

    Its pre-sampled layout is discarded: randomization is unfrozen. Cached because building the
    benchmark samples 50 layouts (~1.5 s).
    """
    return metaworld.MT1(task, seed=0).train_tasks[0]


class SimArm:
    """One Meta-World task; `reset(seed)` gives that seed's layout, `step(action)` one control step."""

    action_dim: int = 4

    def __init__(
        self,
        task: str,
        image_size: int = 64,
        cameras: tuple[str, ...] | list[str] = ("corner", "wrist"),
        max_steps: int = 200,
    ) -> None:
        self.task = resolve_task(task)
        self.instruction = TASKS[self.task]
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown or not cameras:
            raise ValueError(f"unknown camera(s) {unknown}; available: {list(CAMERAS)}")
        self.cameras = list(cameras)
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self.control_hz = CONTROL_HZ

        env_cls = metaworld.env_dict.ALL_V3_ENVIRONMENTS[self.task]
        self.env: Any = env_cls(
            render_mode="rgb_array", width=self.image_size, height=self.image_size, camera_name="corner"
        )
        self.env.set_task(_task_spec(self.task))
        self.env._freeze_rand_vec = False
        # Without this Meta-World samples layouts from the global numpy RNG and env.seed() has no effect.
        self.env.seeded_rand_vec = True
        # Our own step limit governs; keep Meta-World's from raising before it.
        self.env.max_path_length = max(self.env.max_path_length, self.max_steps + 1)

        model = self.env.model
        model.vis.quality.shadowsize = 0  # ~10x faster software rendering, no visible loss at 64 px
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.image_size)
        # One renderer for all cameras: scenes are switched by camera id (one GL context, one buffer).
        try:
            self._renderer: mujoco.Renderer | None = mujoco.Renderer(model, self.image_size, self.image_size)
        except Exception as exc:  # mujoco raises FatalError/RuntimeError/OSError depending on backend
            chosen = getattr(getattr(mujoco, "gl_context", None), "_MUJOCO_GL", "?")
            raise RuntimeError(
                f"cannot create an offscreen OpenGL context (mujoco was imported with MUJOCO_GL="
                f"{chosen!r}): {exc}. Headless machines need MUJOCO_GL=egl (or osmesa) in the "
                "environment before mujoco is first imported."
            ) from exc
        # Free the GL context before mujoco's EGL display is torn down at interpreter exit.
        self._finalizer = weakref.finalize(self, self._renderer.close)
        self._camera_ids = {
            c: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS[c]) for c in self.cameras
        }
        mujoco.mj_forward(model, self.env.data)
        self._rotate = {
            c: needs_half_turn(self.env.data.cam_xmat[i], FAR_SIDE) for c, i in self._camera_ids.items()
        }
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in JOINT_NAMES]
        if min(jids) < 0:
            raise RuntimeError(f"Meta-World model of {self.task} lacks a Sawyer joint of {JOINT_NAMES}")
        self._qpos_idx = np.array([model.jnt_qposadr[j] for j in jids])
        self._qvel_idx = np.array([model.jnt_dofadr[j] for j in jids])
        self.joint_names = list(JOINT_NAMES)

        self._policy = expert_policy(self.task)
        self._state: np.ndarray | None = None
        self.steps = 0
        self.success = False
        self.seed: int | None = None

    # -- episode ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> SimObservation:
        self.seed = int(seed)
        self.env.seed(self.seed)
        state, _ = self.env.reset()
        self._state = np.asarray(state, dtype=np.float64)
        self.steps = 0
        self.success = False
        return self._observe()

    def step(self, action: np.ndarray) -> SimObservation:
        if self._state is None:
            raise RuntimeError("SimArm.step() before reset()")
        if self.steps >= self.max_steps:
            raise RuntimeError(f"episode over after {self.steps} steps (max_steps); call reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.action_dim,):
            raise ValueError(f"action must have {self.action_dim} values, got shape {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        a = np.clip(a, -1.0, 1.0).astype(np.float32)
        state, _reward, _terminated, _truncated, info = self.env.step(a)
        self._state = np.asarray(state, dtype=np.float64)
        self.steps += 1
        self.success = bool(info.get("success", False))
        return self._observe()

    @property
    def done(self) -> bool:
        return self.success or self.steps >= self.max_steps

    def expert_action(self) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("SimArm.expert_action() before reset()")
        action = np.asarray(self._policy.get_action(self._state), dtype=np.float32)
        return np.clip(action, -1.0, 1.0)

    # -- sensing ---------------------------------------------------------------------------------
    def render(self, camera: str) -> np.ndarray:
        """Upright HxWx3 uint8 image of `camera` for the current state."""
        if self._renderer is None:
            raise RuntimeError("SimArm is closed")
        self._renderer.update_scene(self.env.data, camera=self._camera_ids[camera])
        img = self._renderer.render()
        if self._rotate[camera]:
            # A half turn, not a row flip: flipping rows alone would mirror the scene left-right.
            img = img[::-1, ::-1]
        return np.ascontiguousarray(img)

    def _observe(self) -> SimObservation:
        assert self._state is not None
        data = self.env.data
        return SimObservation(
            images={c: self.render(c) for c in self.cameras},
            joint_names=list(self.joint_names),
            joint_positions=np.array(data.qpos[self._qpos_idx], dtype=np.float64),
            joint_velocities=np.array(data.qvel[self._qvel_idx], dtype=np.float64),
            state=self._state.copy(),
            success=self.success,
        )

    def layout(self) -> np.ndarray:
        """The sampled object/goal positions of the current episode (identifies the layout)."""
        return np.array(self.env._last_rand_vec, dtype=np.float64)

    def close(self) -> None:
        if self._renderer is not None:
            self._finalizer()
            self._renderer = None
        self.env.close()

    def __enter__(self) -> SimArm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
