"""LIBERO's Franka Panda behind the same interface as the Meta-World SimArm, with 7-D actions.

The benchmark comes from the optional extra (requirements/libero.txt, installed by
`VLA_ACCEL_EXTRAS=libero tools/setup_env.sh`); it is imported only when an arm is built, so the rest
of the package works without it.

Conventions:
- Tasks are named "<suite>:<index>" (e.g. "libero_object:3"), the index in the suite's standard order.
- Actions are 7-D OSC_POSE deltas in the world frame, each in [-1, 1]: dx, dy, dz (1.0 = 5 cm), droll,
  dpitch, dyaw (1.0 = 0.5 rad, axis-angle), gripper. The gripper keeps robosuite's sign, which is
  also the Meta-World arm's: -1 opens, +1 closes. (OpenVLA's LIBERO checkpoints output 0 = close,
  1 = open; a policy trained on this package's demonstrations uses -1/+1 as here.)
- Cameras keep the package's names: "corner" is LIBERO's agentview, "wrist" its robot0_eye_in_hand.
  They are rendered by MuJoCo's own renderer, which (unlike robosuite's) returns rows top-down; any
  camera whose image-up points down is turned half a turn, as for Meta-World.
- `reset(seed)` draws the layout with the environment's own placement samplers, seeded by us, over
  each object's whole BDDL region, objects on fixtures at their sites, a layout drawn again when an
  object slides or falls while it settles (see libero_placement): these layouts are for demonstrations.
  `reset_to_init_state(i)` loads the suite's official init state i,
  held out for evaluation (the LIBERO protocol).
"""

from __future__ import annotations

import atexit
import os
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must be decided before mujoco is first imported

import mujoco  # noqa: E402

from vla_accel_ros.sim.libero_expert import PickPlaceExpert, body_box, graspable  # noqa: E402
from vla_accel_ros.sim.libero_placement import fix_site_samplers, unsettled, widen_placement  # noqa: E402
from vla_accel_ros.sim.libero_suites import LIBERO_SUITES  # noqa: E402
from vla_accel_ros.sim.observation import SimObservation, needs_half_turn  # noqa: E402

SUITES: tuple[str, ...] = LIBERO_SUITES
# The LIBERO protocol's episode limits (as in OpenVLA's LIBERO evaluation).
MAX_STEPS: dict[str, int] = {
    "libero_object": 280,
    "libero_spatial": 220,
    "libero_goal": 300,
    "libero_10": 520,
}
CAMERAS: dict[str, str] = {"corner": "agentview", "wrist": "robot0_eye_in_hand"}
# Published names (franka_description's) -> robosuite's MJCF joint names.
JOINTS: dict[str, str] = {
    **{f"panda_joint{i}": f"robot0_joint{i}" for i in range(1, 8)},
    "panda_finger_joint1": "gripper0_finger_joint1",
    "panda_finger_joint2": "gripper0_finger_joint2",
}
JOINT_NAMES: tuple[str, ...] = tuple(JOINTS)
CONTROL_HZ = 20.0
ACTION_DIM = 7
# No-op steps after each reset so objects placed slightly above the table settle (LIBERO's own
# evaluations wait likewise); not counted as episode steps.
SETTLE_STEPS = 10
# A seeded layout in which an object slides or falls while settling is drawn again (from the seed and the
# attempt number) up to this many times; the last draw is kept.
LAYOUT_ATTEMPTS = 5
# The Panda sits at world -x: "away from the base" for a downward camera is +x.
FAR_SIDE = np.array([1.0, 0.0, 0.0])
EXTRA_HINT = "LIBERO is an optional extra: install it with `VLA_ACCEL_EXTRAS=libero tools/setup_env.sh`"


@dataclass(frozen=True)
class LiberoTask:
    """One task of one suite: where its BDDL file is and what it asks."""

    suite: str
    index: int
    name: str
    bddl_file: str

    @property
    def spec(self) -> str:
        return f"{self.suite}:{self.index}"


@cache
def _benchmark(suite: str) -> Any:
    """LIBERO's benchmark object for `suite` (its tasks in the standard order, its init states)."""
    if suite not in SUITES:
        raise ValueError(f"unknown LIBERO suite {suite!r}; known: {', '.join(SUITES)}")
    try:
        from libero.libero import benchmark
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"{exc}. {EXTRA_HINT}") from exc
    return benchmark.get_benchmark_dict()[suite]()


def resolve_libero_task(spec: str) -> LiberoTask:
    """ "libero_object:3" (or "libero_object:<task name>") -> the task; ValueError names the choices."""
    suite, _, which = spec.strip().partition(":")
    bench = _benchmark(suite)
    from libero.libero import get_libero_path  # importable: _benchmark checked

    names = [bench.get_task(i).name for i in range(bench.n_tasks)]
    if which.isdigit() and int(which) < len(names):
        index = int(which)
    elif which in names:
        index = names.index(which)
    else:
        raise ValueError(f"no task {which!r} in {suite} (0..{len(names) - 1} or a name: {', '.join(names)})")
    task = bench.get_task(index)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    return LiberoTask(suite, index, task.name, bddl)


def libero_tasks(suite: str) -> list[str]:
    """The task specs of a suite, in its standard order."""
    return [f"{suite}:{i}" for i in range(_benchmark(suite).n_tasks)]


def _owner(target: str, bodies: dict[str, int]) -> int | None:
    """The body named `target`, or owning the region `target` ("basket_1_contain_region"), if any."""
    owners = [n for n in bodies if target == n or target.startswith(n + "_")]
    return bodies[max(owners, key=len)] if owners else None


class LiberoArm:
    """One LIBERO task; `reset(seed)` gives that seed's sampled layout, `step(action)` one 20 Hz step."""

    action_dim: int = ACTION_DIM

    def __init__(
        self,
        task: str,
        image_size: int = 128,
        cameras: tuple[str, ...] | list[str] = ("corner", "wrist"),
        max_steps: int | None = None,
    ) -> None:
        self.spec = resolve_libero_task(task)
        self.task = self.spec.spec
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown or not cameras:
            raise ValueError(f"unknown camera(s) {unknown}; available: {list(CAMERAS)}")
        self.max_steps = int(max_steps if max_steps is not None else MAX_STEPS[self.spec.suite])
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        self.cameras = list(cameras)
        self.image_size = int(image_size)
        self.control_hz = CONTROL_HZ

        from libero.libero.envs.env_wrapper import ControlEnv

        # Cameras are rendered here, not by robosuite (whose own offscreen context would be a second GL
        # context rendering every step). hard_reset=False keeps one model for every episode: 0.15 s
        # per reset instead of 3 s, and the renderer below stays valid (the samplers move bodies only).
        self._env = ControlEnv(
            bddl_file_name=self.spec.bddl_file,
            use_camera_obs=False,
            has_offscreen_renderer=False,
            hard_reset=False,
            ignore_done=True,
            horizon=self.max_steps + SETTLE_STEPS + 1,
        )
        self.instruction = str(self._env.language_instruction)
        self._inner: Any = self._env.env
        widen_placement(self._inner.placement_initializer)
        fix_site_samplers(self._inner)
        self._renderer: mujoco.Renderer | None = None
        self._build_renderer()
        m = self._model
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in JOINTS.values()]
        if min(jids) < 0:
            raise RuntimeError(f"LIBERO model of {self.task} lacks a Panda joint of {list(JOINTS.values())}")
        self._qpos_idx = np.array([m.jnt_qposadr[j] for j in jids])
        self._qvel_idx = np.array([m.jnt_dofadr[j] for j in jids])
        self._eef_site = mujoco.mj_name2id(
            m, mujoco.mjtObj.mjOBJ_SITE, self._inner.robots[0].gripper.important_sites["grip_site"]
        )
        # The hand's frame is the expert's: pointing down with yaw 0 it is diag(1, -1, -1), fingers
        # closing along its y axis (the grip site's frame is turned 90 degrees about z from it).
        self._hand = mujoco.mj_name2id(
            m, mujoco.mjtObj.mjOBJ_BODY, self._inner.robots[0].robot_model.eef_name
        )
        self._object_bodies = {
            name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, obj.root_body)
            for name, obj in self._inner.objects_dict.items()
        }
        # Fixtures (cabinet, stove, rack...): obstacles for the expert; the table is not one of them.
        self._fixture_bodies = {
            name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, obj.root_body)
            for name, obj in self._inner.fixtures_dict.items()
        }
        self.joint_names = list(JOINT_NAMES)
        self._expert: PickPlaceExpert | None = None
        self._layout = np.zeros(0)
        self._settled = np.zeros(0)
        self.layout_attempts = 0
        self._started = False
        self.steps = 0
        self.success = False
        self.seed: int | None = None
        self.init_state: int | None = None

    # -- set-up ----------------------------------------------------------------------------------
    @property
    def _model(self) -> mujoco.MjModel:
        return self._inner.sim.model._model

    @property
    def _data(self) -> mujoco.MjData:
        return self._inner.sim.data._data

    def _build_renderer(self) -> None:
        """One MuJoCo renderer for all cameras, multisampling, shadows and reflections off (2x faster)."""
        m = self._model
        m.vis.quality.offsamples = 0
        m.vis.global_.offwidth = max(m.vis.global_.offwidth, self.image_size)
        m.vis.global_.offheight = max(m.vis.global_.offheight, self.image_size)
        try:
            self._renderer = mujoco.Renderer(m, self.image_size, self.image_size)
        except Exception as exc:  # FatalError/RuntimeError/OSError depending on the GL backend
            raise RuntimeError(
                f"cannot create an offscreen OpenGL context: {exc}. Headless machines need MUJOCO_GL=egl "
                "(or osmesa) in the environment before mujoco is first imported."
            ) from exc
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            self._renderer.scene.flags[flag] = 0
        self._render_model = m
        # Free the GL context before mujoco's EGL display is torn down at interpreter exit: registered
        # with atexit too, after mujoco's own hook, since atexit runs last-in first-out and weakref's
        # exit hook may predate mujoco's (robosuite's imports create finalizers).
        self._finalizer = weakref.finalize(self, self._renderer.close)
        atexit.register(self._finalizer)
        self._camera_ids = {
            c: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS[c]) for c in self.cameras
        }
        mujoco.mj_forward(m, self._data)
        self._rotate = {
            c: needs_half_turn(self._data.cam_xmat[i], FAR_SIDE) for c, i in self._camera_ids.items()
        }

    # -- episode ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> SimObservation:
        """A layout drawn by the task's own placement samplers from `seed` (same seed, same layout)."""
        for attempt in range(LAYOUT_ATTEMPTS):
            saved = np.random.get_state()  # robosuite's samplers draw from numpy's global generator
            try:
                np.random.seed(int(seed) % 2**32 if attempt == 0 else [int(seed) % 2**32, attempt])
                self._env.reset()
            finally:
                np.random.set_state(saved)
            obs = self._start(seed=int(seed), init_state=None)
            self.layout_attempts = attempt + 1
            if not self.unsettled_objects():
                break
        return obs

    def unsettled_objects(self) -> list[str]:
        """The objects that slid or fell while this episode's layout settled (empty for a good layout)."""
        placed = self._layout.reshape(-1, 7)
        names = list(self._object_bodies)
        return [names[i] for i in unsettled(placed, self._settled.reshape(-1, 7))]

    @property
    def n_init_states(self) -> int:
        return len(self._init_states())

    def _init_states(self) -> np.ndarray:
        if not hasattr(self, "_official"):
            self._official = np.asarray(_benchmark(self.spec.suite).get_task_init_states(self.spec.index))
        return self._official

    def reset_to_init_state(self, i: int) -> SimObservation:
        """The suite's official init state `i` (held out for evaluation); the expert's yaw is seeded by i."""
        states = self._init_states()
        if not 0 <= i < len(states):
            raise ValueError(f"init state {i} out of range: {self.task} has {len(states)}")
        self._env.reset()
        self._env.set_init_state(states[i])
        return self._start(seed=None, init_state=int(i))

    def _start(self, seed: int | None, init_state: int | None) -> SimObservation:
        # robosuite's Panda gripper integrates its commands in `current_action`, which only a hard reset
        # (new gripper objects) clears: clear it here, or an episode would start from the last one's grip.
        for robot in self._inner.robots:
            robot.gripper.current_action = np.zeros_like(robot.gripper.current_action)
        if self._model is not self._render_model:  # robosuite rebuilt its model: render the new one
            self._finalizer()
            self._build_renderer()
        # The layout as placed, before settling: bit-exact per seed (settling is repeatable to ~1e-11 m
        # only, as MuJoCo's solver warm start survives a soft reset).
        self._layout = self._object_poses()
        settle = np.zeros(ACTION_DIM)
        settle[-1] = -1.0
        for _ in range(SETTLE_STEPS):
            self._env.step(settle)
        self._settled = self._object_poses()
        self.seed, self.init_state = seed, init_state
        self.steps = 0
        self.success = bool(self._env.check_success())
        # The expert's grasp yaw is part of the episode: drawn from the episode's own number.
        rng = np.random.default_rng(
            [seed if seed is not None else 0, 0 if init_state is None else 1 + init_state]
        )
        self._expert = self._make_expert(rng)
        self._started = True
        return self._observe()

    def step(self, action: np.ndarray) -> SimObservation:
        if not self._started:
            raise RuntimeError("LiberoArm.step() before reset()")
        if self.steps >= self.max_steps:
            raise RuntimeError(f"episode over after {self.steps} steps (max_steps); call reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"action must have {ACTION_DIM} values, got shape {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        _obs, _reward, done, _info = self._env.step(np.clip(a, -1.0, 1.0))
        self.steps += 1
        self.success = bool(done)
        return self._observe()

    @property
    def done(self) -> bool:
        return self.success or self.steps >= self.max_steps

    # -- scripted expert -------------------------------------------------------------------------
    def _make_expert(self, rng: np.random.Generator) -> PickPlaceExpert | None:
        """The pick-and-place expert when the task's goal is one "In"/"On" predicate it can reach, else None.

        The destination is an object ("on the plate"), an object's region (the basket's), or a region of
        a fixture or of the table ("on the stove", "on top of the cabinet"), aimed at by its site. "In"
        a fixture's region (a drawer) is left out: the drawer may have to be opened first; so is an object
        that the gripper cannot pick up (`graspable`).
        """
        goal = self._inner.parsed_problem["goal_state"]
        if len(goal) != 1 or len(goal[0]) != 3 or goal[0][0].lower() not in ("in", "on"):
            return None
        relation, obj, target = goal[0][0].lower(), goal[0][1], goal[0][2]
        if obj not in self._object_bodies or not graspable(
            body_box(self._model, self._data, self._object_bodies[obj])
        ):
            return None  # a plate to push "to the front of the stove" is not picked up
        place, site = _owner(target, self._object_bodies), None
        if place is None:
            site = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_SITE, target)
            place = _owner(target, self._fixture_bodies)
            if site < 0 or relation == "in" or (place is None and not target.startswith("main_table_")):
                return None
        return PickPlaceExpert(
            self._object_bodies[obj],
            place,
            relation,
            list(self._object_bodies.values()),
            rng,
            hand=self._hand,
            fixtures=tuple(self._fixture_bodies.values()),
            place_site=site,
        )

    @property
    def has_expert(self) -> bool:
        """Whether this task has a scripted expert (a single pick-and-place goal)."""
        return self._make_expert(np.random.default_rng(0)) is not None

    def expert_action(self) -> np.ndarray:
        if not self._started:
            raise RuntimeError("LiberoArm.expert_action() before reset()")
        if self._expert is None:
            raise NotImplementedError(f"no scripted expert for {self.task} ({self.instruction!r})")
        data = self._data
        pos = np.array(data.site_xpos[self._eef_site])
        rot = np.array(data.xmat[self._hand]).reshape(3, 3)
        return np.clip(self._expert.act(self._model, data, pos, rot), -1.0, 1.0).astype(np.float32)

    # -- sensing ---------------------------------------------------------------------------------
    def render(self, camera: str) -> np.ndarray:
        """Upright HxWx3 uint8 image of `camera` for the current state."""
        if self._renderer is None:
            raise RuntimeError("LiberoArm is closed")
        self._renderer.update_scene(self._data, camera=self._camera_ids[camera])
        img = self._renderer.render()
        if self._rotate[camera]:
            img = img[::-1, ::-1]  # a half turn: a row flip alone would mirror the scene
        return np.ascontiguousarray(img)

    def _object_poses(self) -> np.ndarray:
        data = self._data
        return np.concatenate([np.r_[data.xpos[b], data.xquat[b]] for b in self._object_bodies.values()])

    def _observe(self) -> SimObservation:
        data = self._data
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, np.array(data.site_xmat[self._eef_site]))
        # state: hand position (3), hand orientation (w, x, y, z), finger positions (2), then each
        # object's position and orientation (7 per object, in the task's object order).
        state = np.concatenate(
            [data.site_xpos[self._eef_site], quat, data.qpos[self._qpos_idx[7:]], self._object_poses()]
        )
        return SimObservation(
            images={c: self.render(c) for c in self.cameras},
            joint_names=list(self.joint_names),
            joint_positions=np.array(data.qpos[self._qpos_idx], dtype=np.float64),
            joint_velocities=np.array(data.qvel[self._qvel_idx], dtype=np.float64),
            state=np.asarray(state, dtype=np.float64),
            success=self.success,
        )

    def layout(self) -> np.ndarray:
        """Every object's pose as placed at the episode's start, before settling (identifies the layout)."""
        return self._layout.copy()

    def close(self) -> None:
        """Free the GL context and robosuite's simulation (idempotent)."""
        if self._renderer is None:
            return
        self._finalizer()
        self._renderer = None
        self._inner.close()

    def __enter__(self) -> LiberoArm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
