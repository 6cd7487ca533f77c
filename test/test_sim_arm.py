"""The simulated Meta-World arm: per-seed layouts, upright non-blank cameras, expert, joint states."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from vla_accel_ros.sim.metaworld_arm import CAMERAS, JOINT_NAMES, SimArm
from vla_accel_ros.sim.tasks import EVAL_SEED_BASE, TASKS, expert_policy, parse_task_list, resolve_task


@pytest.fixture(scope="module")
def arm():
    with SimArm("reach", image_size=64, max_steps=200) as a:
        yield a


def test_tasks_and_experts_exist() -> None:
    assert len(TASKS) == 6 and EVAL_SEED_BASE == 1_000_000
    for task in TASKS:
        assert task.endswith("-v3") and TASKS[task]
        assert hasattr(expert_policy(task), "get_action")
    assert resolve_task("button-press-topdown") == "button-press-topdown-v3"
    assert parse_task_list("push,reach-v3,push") == ["push-v3", "reach-v3"]
    with pytest.raises(ValueError, match="known tasks"):
        resolve_task("fly")


def test_layouts_differ_per_seed_and_repeat_per_seed(arm: SimArm) -> None:
    obs1 = arm.reset(1)
    layout1 = arm.layout()
    obs2 = arm.reset(2)
    layout2 = arm.layout()
    obs1b = arm.reset(1)
    assert not np.allclose(layout1, layout2)
    assert not np.allclose(obs1.state[-3:], obs2.state[-3:])  # the goal moved
    np.testing.assert_array_equal(layout1, arm.layout())
    np.testing.assert_array_equal(obs1.state, obs1b.state)
    for cam in obs1.images:
        np.testing.assert_array_equal(obs1.images[cam], obs1b.images[cam])
    # Eval seeds are layouts of their own, too.
    arm.reset(EVAL_SEED_BASE)
    assert not np.allclose(arm.layout(), layout1) and not np.allclose(arm.layout(), layout2)


def _upright_pixel(arm: SimArm, camera: str, point: np.ndarray) -> np.ndarray:
    """(row, col) where an upright, non-mirrored pinhole camera at this camera's pose sees `point`.

    Upright: world up (+z) points to the image top; for a camera looking straight down, the far side
    of the table (+y, away from the robot) does. Right = forward x up (a camera, not a mirror).
    """
    model, data = arm.env.model, arm.env.data
    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS[camera])
    forward = -data.cam_xmat[cid].reshape(3, 3)[:, 2]
    ref = np.array([0.0, 1.0, 0.0]) if abs(forward[2]) > 0.9 else np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, ref)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = point - data.cam_xpos[cid]
    depth = rel @ forward
    size = arm.image_size
    focal = (size / 2) / np.tan(np.deg2rad(model.cam_fovy[cid]) / 2)
    # Pixel centres sit at index + 0.5.
    row = size / 2 - focal * (rel @ up) / depth - 0.5
    col = size / 2 + focal * (rel @ right) / depth - 0.5
    return np.array([row, col])


@pytest.mark.parametrize("camera", ["corner", "wrist"])
def test_frames_are_upright_and_not_mirrored(arm: SimArm, camera: str) -> None:
    arm.reset(0)
    model, data = arm.env.model, arm.env.data
    geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "objGeom")
    # Put the puck (free joint "objjoint") off both image centre lines of both cameras, so that a
    # row flip, a column flip or a half turn of the image would each move it by > 6 px.
    hand = data.body("hand").xpos
    adr = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "objjoint")]
    data.qpos[adr : adr + 3] = [hand[0] - 0.12, hand[1] + 0.12, 0.02]
    mujoco.mj_forward(model, data)
    expected = _upright_pixel(arm, camera, data.geom_xpos[geom])
    assert np.all(np.abs(expected - (arm.image_size - 1 - expected)) > 6), expected
    original = model.geom_rgba[geom].copy()
    try:  # find the puck's pixels by recolouring it between two renders
        model.geom_rgba[geom] = [1, 0, 0, 1]
        a = arm.render(camera).astype(int)
        model.geom_rgba[geom] = [0, 0, 1, 1]
        b = arm.render(camera).astype(int)
    finally:
        model.geom_rgba[geom] = original
    rows, cols = np.nonzero(np.abs(a - b).sum(axis=2) > 60)
    assert rows.size >= 3, "puck not visible"
    found = np.array([rows.mean(), cols.mean()])
    assert np.abs(found - expected).max() < 2.5, (found, expected)


def test_images_non_blank_and_corner_matches_env_render(arm: SimArm) -> None:
    obs = arm.reset(3)
    for cam in ("corner", "wrist"):
        img = obs.images[cam]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    assert not np.array_equal(obs.images["corner"], obs.images["wrist"])
    # One renderer switching cameras gives what Meta-World's own renderer gives (turned upright).
    reference = arm.env.render()
    np.testing.assert_array_equal(obs.images["corner"], reference[::-1, ::-1])


def test_joint_states(arm: SimArm) -> None:
    obs = arm.reset(4)
    obs = arm.step(np.array([0.5, 0.0, 0.0, 1.0]))
    assert obs.joint_names == list(JOINT_NAMES) and len(JOINT_NAMES) == 9
    for values in (obs.joint_positions, obs.joint_velocities):
        assert values.shape == (9,) and values.dtype == np.float64 and np.all(np.isfinite(values))
    assert np.any(obs.joint_velocities != 0)
    assert obs.state.shape == (39,)


def test_expert_solves_reach(arm: SimArm) -> None:
    arm.reset(5)
    while not arm.done:
        action = arm.expert_action()
        assert action.shape == (4,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        obs = arm.step(action)
    assert arm.success and obs.success and arm.steps < arm.max_steps


def test_actions_are_clipped_and_nan_rejected(arm: SimArm) -> None:
    arm.reset(6)
    clipped = arm.step(np.array([5.0, -3.0, 2.0, 9.0])).joint_positions
    arm.reset(6)
    unit = arm.step(np.array([1.0, -1.0, 1.0, 1.0])).joint_positions
    np.testing.assert_array_equal(clipped, unit)
    steps = arm.steps
    with pytest.raises(ValueError, match="NaN"):
        arm.step(np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="4 values"):
        arm.step(np.zeros(3))
    assert arm.steps == steps  # nothing was executed


def test_done_at_max_steps() -> None:
    with SimArm("push", cameras=("corner",), max_steps=3) as short:
        obs = short.reset(0)
        assert list(obs.images) == ["corner"]
        for _ in range(3):
            assert not short.done
            short.step(np.zeros(4))
        assert short.done and not short.success
        with pytest.raises(RuntimeError, match="reset"):
            short.step(np.zeros(4))


def test_demo_task_keeps_only_successes(tmp_path) -> None:
    from vla_accel_ros.data.bag_io import read_episodes
    from vla_accel_ros.sim.demos import DemoConfig, generate_task

    # 5 steps are too few for the expert: every episode fails, and the task gives up after 3 tries.
    res = generate_task("reach-v3", tmp_path, DemoConfig(episodes_per_task=1, seed_start=7, max_steps=5))
    assert res.seeds == [] and res.failed_seeds == [7, 8, 9] and "gave up" in res.error
    assert (tmp_path / "reach-v3" / "metadata.yaml").exists() and not (tmp_path / ".partial").exists()

    res = generate_task("reach-v3", tmp_path, DemoConfig(episodes_per_task=2, seed_start=3, image_size=32))
    assert res.error is None and res.seeds == [3, 4] and res.failed_seeds == []
    episodes = read_episodes(tmp_path / "reach-v3")
    want = TASKS["reach-v3"]
    assert [(e.seed, e.success, e.instruction) for e in episodes] == [(3, True, want), (4, True, want)]
    assert sum(len(e) for e in episodes) == res.frames
    with SimArm("reach-v3", image_size=32) as fresh:  # the bag holds what the sim showed before each step
        obs = fresh.reset(3)
        first = episodes[0]
        for cam in ("corner", "wrist"):
            np.testing.assert_array_equal(first.images[cam][0], obs.images[cam])
        np.testing.assert_array_equal(first.actions[0], fresh.expert_action())
        np.testing.assert_array_equal(first.joint_positions[0], obs.joint_positions.astype(np.float32))
        obs = fresh.step(first.actions[0])
        np.testing.assert_array_equal(first.images["corner"][1], obs.images["corner"])


def test_demos_command(tmp_path, capsys) -> None:
    import json

    from vla_accel_ros.cli import main

    argv = [
        "collect-demos",
        "--out",
        str(tmp_path),
        "--tasks",
        "reach",
        "--episodes-per-task",
        "1",
        "--workers",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 episodes kept, 0 failed" in out and "sim steps/s" in out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tasks"]["reach-v3"]["seeds"] == [0] and manifest["image_size"] == 64
    assert set(manifest["cameras"]) == {"corner", "wrist"} and manifest["total_frames"] > 0
    assert main(argv) == 2  # refuses to overwrite without --overwrite
    assert main(["collect-demos", "--out", str(tmp_path), "--seed-start", str(EVAL_SEED_BASE)]) == 2


def test_dagger_round_records_expert_labels_along_the_drivers_path(tmp_path) -> None:
    import torch

    from vla_accel_ros.data.bag_io import read_episodes
    from vla_accel_ros.policy.checkpoint import save_checkpoint
    from vla_accel_ros.policy.config import tiny_config
    from vla_accel_ros.policy.model import VlaModel
    from vla_accel_ros.policy.runtime import Policy, PolicyInput
    from vla_accel_ros.sim.demos import DemoConfig, generate_task

    torch.manual_seed(0)
    ckpt = tmp_path / "driver"
    save_checkpoint(VlaModel(tiny_config([TASKS["reach-v3"]], image_size=32)).eval(), ckpt)
    cfg = DemoConfig(episodes_per_task=2, seed_start=11, max_steps=6, image_size=32, driver=str(ckpt))
    res = generate_task("reach-v3", tmp_path / "bags", cfg)
    # A random driver never reaches the goal in 6 steps; its failures are kept all the same.
    assert res.error is None and res.seeds == [11, 12] and res.failed_seeds == []
    assert res.driver_successes == 0
    episodes = read_episodes(tmp_path / "bags" / "reach-v3")
    assert [(e.seed, e.success, len(e)) for e in episodes] == [(11, False, 6), (12, False, 6)]

    driver = Policy.load(str(ckpt))
    with SimArm("reach-v3", image_size=32) as fresh:
        obs = fresh.reset(11)
        for t in range(6):
            np.testing.assert_array_equal(episodes[0].images["corner"][t], obs.images["corner"])
            np.testing.assert_array_equal(episodes[0].actions[t], fresh.expert_action())  # the label
            moved = driver.act(PolicyInput(obs.images, obs.joint_positions, fresh.instruction)).action
            assert not np.allclose(moved, episodes[0].actions[t])  # the arm follows the driver instead
            obs = fresh.step(moved)

    with pytest.raises(ValueError, match="32 px"):
        generate_task("reach-v3", tmp_path / "other", DemoConfig(episodes_per_task=1, driver=str(ckpt)))
