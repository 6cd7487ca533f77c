"""The simulated LIBERO arm: tasks, seeded layouts, upright cameras, joint states, 7-D actions, expert.

Needs the optional LIBERO extra (VLA_ACCEL_EXTRAS=libero tools/setup_env.sh); skipped only when it is
not installed (a broken install fails instead).
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

pytest.importorskip(
    "libero.libero", reason="LIBERO is an optional extra: VLA_ACCEL_EXTRAS=libero tools/setup_env.sh"
)

from vla_accel_ros.sim.arms import is_libero_task, make_arm  # noqa: E402
from vla_accel_ros.sim.libero_arm import (  # noqa: E402
    CAMERAS,
    FAR_SIDE,
    JOINT_NAMES,
    SUITES,
    LiberoArm,
    libero_tasks,
    resolve_libero_task,
)
from vla_accel_ros.sim.libero_expert import body_box  # noqa: E402

SIZE = 128


@pytest.fixture(scope="module")
def arm():
    with LiberoArm("libero_object:0", image_size=SIZE) as a:
        yield a


def test_suites_and_task_names() -> None:
    for suite in SUITES:
        assert len(libero_tasks(suite)) == 10
    task = resolve_libero_task("libero_object:0")
    assert task.spec == "libero_object:0" and "alphabet_soup" in task.name
    assert resolve_libero_task(f"libero_object:{task.name}") == task
    with pytest.raises(ValueError, match="no task"):
        resolve_libero_task("libero_object:10")
    with pytest.raises(ValueError, match="unknown LIBERO suite"):
        resolve_libero_task("libero_kitchen:0")


def test_layouts_are_seeded_and_leave_numpy_alone(arm: LiberoArm) -> None:
    state = np.random.get_state()[1].copy()
    obs0 = arm.reset(0)
    layout0 = arm.layout()
    arm.reset(1)
    layout1 = arm.layout()
    obs0b = arm.reset(0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global generator is restored
    assert np.abs(layout0 - layout1).max() > 0.005  # objects moved by more than 5 mm
    np.testing.assert_array_equal(layout0, arm.layout())
    # Settling repeats to ~1e-11 m only (the solver's warm start survives a soft reset).
    np.testing.assert_allclose(obs0.state, obs0b.state, atol=1e-6)
    assert np.abs(obs0.images["corner"].astype(int) - obs0b.images["corner"]).mean() < 0.5
    assert arm.steps == 0 and not arm.success and arm.seed == 0


def test_official_init_states_are_a_separate_reset(arm: LiberoArm) -> None:
    assert arm.n_init_states == 50
    arm.reset_to_init_state(3)
    official = arm.layout()
    assert arm.init_state == 3 and arm.seed is None
    arm.reset(3)
    assert np.abs(official - arm.layout()).max() > 1e-4
    with pytest.raises(ValueError, match="out of range"):
        arm.reset_to_init_state(50)


def _upright_pixel(arm: LiberoArm, camera: str, point: np.ndarray) -> np.ndarray:
    """(row, col) where an upright, non-mirrored pinhole camera at this camera's pose sees `point`."""
    model, data = arm._model, arm._data
    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS[camera])
    forward = -data.cam_xmat[cid].reshape(3, 3)[:, 2]
    ref = FAR_SIDE if abs(forward[2]) > 0.9 else np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, ref)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = point - data.cam_xpos[cid]
    depth = rel @ forward
    focal = (SIZE / 2) / np.tan(np.deg2rad(model.cam_fovy[cid]) / 2)
    return np.array(
        [SIZE / 2 - focal * (rel @ up) / depth - 0.5, SIZE / 2 + focal * (rel @ right) / depth - 0.5]
    )


@pytest.mark.parametrize("camera", ["corner", "wrist"])
def test_cameras_are_upright_and_not_mirrored(arm: LiberoArm, camera: str) -> None:
    obs = arm.reset(0)
    img = obs.images[camera]
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8 and img.std() > 10
    model, data = arm._model, arm._data
    soup = arm._object_bodies["alphabet_soup_1"]
    # Put the can off both image centre lines, so that a row flip, a column flip or a half turn
    # would each move it by more than 12 px; then find its pixels by recolouring it between renders.
    hand = data.site_xpos[arm._eef_site]
    adr = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "alphabet_soup_1_joint0")]
    # Under the wrist camera, or near the front edge of the table for the agentview camera.
    data.qpos[adr : adr + 3] = (
        [hand[0] + 0.07, hand[1] + 0.06, 0.04] if camera == "wrist" else [0.15, 0.1, 0.04]
    )
    mujoco.mj_forward(model, data)
    expected = _upright_pixel(arm, camera, body_box(model, data, soup).center)
    assert np.all(np.abs(expected - (SIZE - 1 - expected)) > 12), expected
    geoms = np.flatnonzero(
        np.isin(model.geom_bodyid, [b for b in range(model.nbody) if model.body_rootid[b] == soup])
    )
    saved = model.geom_rgba[geoms].copy(), model.geom_matid[geoms].copy()
    try:
        model.geom_matid[geoms] = -1
        model.geom_rgba[geoms] = [1, 0, 0, 1]
        red = arm.render(camera).astype(int)
        model.geom_rgba[geoms] = [0, 0, 1, 1]
        blue = arm.render(camera).astype(int)
    finally:
        model.geom_rgba[geoms], model.geom_matid[geoms] = saved
    rows, cols = np.nonzero(np.abs(red - blue).sum(axis=2) > 60)
    assert rows.size >= 5, "can not visible"
    found = np.array([rows.mean(), cols.mean()])
    assert np.abs(found - expected).max() < 5, (found, expected)
    if camera == "corner":
        assert found[0] > SIZE / 2  # the table (and what stands on it) in the lower half
    arm.reset(0)  # undo the move


def test_joint_states(arm: LiberoArm) -> None:
    obs = arm.reset(4)
    assert obs.joint_names == list(JOINT_NAMES) and len(JOINT_NAMES) == 9
    assert JOINT_NAMES[0] == "panda_joint1" and JOINT_NAMES[-1] == "panda_finger_joint2"
    for values in (obs.joint_positions, obs.joint_velocities):
        assert values.shape == (9,) and values.dtype == np.float64 and np.all(np.isfinite(values))
    assert np.abs(obs.joint_positions[7:]).min() > 0.03  # fingers open after reset


def _hand_yaw(arm: LiberoArm) -> float:
    rot = arm._data.xmat[arm._hand].reshape(3, 3)
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def test_seven_d_actions_move_the_hand_as_commanded(arm: LiberoArm) -> None:
    obs = arm.reset(5)
    for axis in range(3):
        start = obs.state[:3].copy()
        cmd = np.zeros(7)
        cmd[axis], cmd[6] = (1.0 if axis < 2 else -1.0), -1.0
        for _ in range(5):
            obs = arm.step(cmd)
        moved = obs.state[:3] - start
        sign = 1.0 if axis < 2 else -1.0
        assert sign * moved[axis] > 0.02, moved  # 5 full steps move the hand > 2 cm
        assert np.abs(np.delete(moved, axis)).max() < 0.5 * abs(moved[axis]), moved
    yaw = _hand_yaw(arm)
    for _ in range(5):
        obs = arm.step(np.array([0, 0, 0, 0, 0, 1.0, -1.0]))
    assert 0.1 < (_hand_yaw(arm) - yaw + np.pi) % (2 * np.pi) - np.pi < 1.5  # turned about +z
    fingers = np.abs(obs.joint_positions[7:]).sum()
    for _ in range(10):
        obs = arm.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))  # +1 closes
    assert np.abs(obs.joint_positions[7:]).sum() < fingers - 0.02
    with pytest.raises(ValueError, match="7 values"):
        arm.step(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        arm.step(np.full(7, np.nan))


def test_scripted_expert_puts_the_soup_in_the_basket(arm: LiberoArm) -> None:
    arm.reset(7)
    assert arm.has_expert
    actions = []
    while not arm.done:
        actions.append(arm.expert_action())
        arm.step(actions[-1])
    assert arm.success, f"expert failed after {arm.steps} steps"
    acts = np.array(actions)
    assert acts.shape[1] == 7 and np.abs(acts).max() <= 1.0
    assert np.abs(acts[:, 5]).max() > 0.1  # the grasp yaw is turned to: the rotation dims carry it
    assert set(np.unique(acts[:, 6])) == {-1.0, 1.0}


def test_seeded_layouts_put_objects_on_their_fixtures() -> None:
    """LIBERO's site samplers count a site's offset twice: the bowl "on the stove" fell to the floor."""
    with LiberoArm("libero_spatial:7", image_size=32, cameras=("corner",)) as spatial:
        model, data = spatial._model, spatial._data
        for seed in (0, 1):
            spatial.reset(seed)
            assert spatial.unsettled_objects() == []
            settled = spatial._object_poses().reshape(-1, 7)
            assert settled[:, 2].min() > 0.88  # every object on the table (its top is at 0.9 m) or above
            for name, site in (
                ("akita_black_bowl_1", "flat_stove_1_cook_region"),
                ("akita_black_bowl_2", "wooden_cabinet_1_top_side"),
            ):
                at = data.site_xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)]
                bowl = data.xpos[spatial._object_bodies[name]]
                near = np.linalg.norm(bowl[:2] - at[:2]) < 0.04 and abs(bowl[2] - at[2]) < 0.05
                assert near, (name, bowl, at)


def test_scripted_expert_takes_the_bowl_out_of_the_drawer() -> None:
    """The hand's own geometry is checked against the cabinet's panels: a grasp under its top is avoided."""
    with LiberoArm("libero_spatial:4", image_size=32, cameras=("corner",)) as spatial:
        spatial.reset(2)  # seed 2's first drawn rim grasp put the hand under the cabinet's frame
        while not spatial.done:
            spatial.step(spatial.expert_action())
        assert spatial.success, f"expert failed after {spatial.steps} steps"


@pytest.mark.parametrize("task", ["libero_goal:0", "libero_goal:5"])  # open a drawer; push a plate
def test_tasks_without_an_expert_say_so(task: str) -> None:
    with LiberoArm(task, image_size=32, cameras=("corner",)) as goal:
        assert not goal.has_expert
        goal.reset(0)
        with pytest.raises(NotImplementedError, match="no scripted expert"):
            goal.expert_action()


def test_scripted_expert_puts_the_bowl_on_the_stove() -> None:
    """A fixture's region as the destination: aimed at by its site."""
    with LiberoArm("libero_goal:1", image_size=32, cameras=("corner",)) as goal:
        assert goal.has_expert
        goal.reset(0)
        while not goal.done:
            goal.step(goal.expert_action())
        assert goal.success, f"expert failed after {goal.steps} steps"


def test_make_arm_dispatches_on_the_task_name() -> None:
    assert (
        is_libero_task("libero_10:9")
        and not is_libero_task("reach-v3")
        and not is_libero_task("libero_object")
    )
    with make_arm("libero_goal:0", image_size=32, cameras=("wrist",)) as goal:
        assert isinstance(goal, LiberoArm) and goal.action_dim == 7 and goal.max_steps == 300
        assert goal.reset(0).images["wrist"].shape == (32, 32, 3)
