"""LIBERO through the pipeline: collect-demos into a bag, train on it (7-D), eval with the LIBERO protocol.

Needs the optional LIBERO extra (VLA_ACCEL_EXTRAS=libero tools/setup_env.sh); skipped only when it is
not installed. One demonstration, a one-epoch model of a few thousand parameters and a 5-step episode
from one official init state keep the file to about a minute: they check the plumbing (shapes, names,
report structure), not a policy's skill.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip(
    "libero.libero", reason="LIBERO is an optional extra: VLA_ACCEL_EXTRAS=libero tools/setup_env.sh"
)

from vla_accel_ros.cli import main  # noqa: E402
from vla_accel_ros.data.bag_io import read_episodes  # noqa: E402
from vla_accel_ros.sim.tasks import parse_task_list, task_dirname  # noqa: E402

TASK = "libero_object:3"  # pick up the bbq sauce: the expert solves seed 0 in about 135 steps
TINY = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "num_kv_heads": 2,
    "intermediate_size": 64,
    "vision_channels": [8, 8, 8, 8],
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("libero_demos")
    argv = ["collect-demos", "--out", str(out), "--tasks", TASK, "--episodes-per-task", "1", "--workers", "1"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def checkpoint(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("libero_policy") / "ckpt"
    argv = ["train", "--data", str(demos), "--out", str(out), "--epochs", "1", "--batch-size", "32"]
    assert main([*argv, "--threads", "1", "--model", json.dumps(TINY)]) == 0
    return out


def test_libero_task_specs_parse() -> None:
    assert parse_task_list("libero_spatial:0,1,libero_object:03") == [
        "libero_spatial:0",
        "libero_spatial:1",
        "libero_object:3",
    ]
    assert parse_task_list("libero_object:all") == [f"libero_object:{i}" for i in range(10)]
    assert parse_task_list("reach,libero_goal:2") == ["reach-v3", "libero_goal:2"]
    assert task_dirname("libero_object:3") == "libero_object-3" and task_dirname("reach-v3") == "reach-v3"
    with pytest.raises(ValueError, match="names no task"):
        parse_task_list("libero_object:")


def test_collect_demos_refuses_mixed_simulators_and_unknown_libero_tasks(tmp_path, capsys) -> None:
    assert main(["collect-demos", "--out", str(tmp_path), "--tasks", "reach,libero_object:0"]) == 2
    assert "one simulator" in capsys.readouterr().out
    assert main(["collect-demos", "--out", str(tmp_path), "--tasks", "libero_object:10"]) == 2
    assert "no task '10' in libero_object" in capsys.readouterr().out


def test_collected_bag_has_7d_expert_actions_and_the_libero_instruction(demos) -> None:
    manifest = json.loads((demos / "manifest.json").read_text())
    entry = manifest["tasks"][TASK]
    assert manifest["simulator"] == "libero" and manifest["action_dim"] == 7
    assert entry["bag"] == "libero_object-3" and (demos / "libero_object-3").is_dir()
    assert (
        entry["suite"] == "libero_object" and entry["task_index"] == 3 and "bbq_sauce" in entry["task_name"]
    )
    assert "bbq sauce" in entry["instruction"]
    assert entry["seeds"] == [0] and entry["max_steps"] == manifest["max_steps"] == 280
    assert manifest["joint_names"][0] == "panda_joint1" and len(manifest["joint_names"]) == 9
    (ep,) = read_episodes(demos / "libero_object-3")
    assert ep.task == TASK and ep.seed == 0 and ep.success and ep.instruction == entry["instruction"]
    assert ep.actions.shape == (len(ep), 7) and np.all(np.abs(ep.actions) <= 1.0)
    assert np.ptp(ep.actions[:, 3:6]) > 0  # the rotation dims carry the randomized grasp yaw
    assert ep.joint_positions.shape == (len(ep), 9) and ep.joint_names == manifest["joint_names"]
    assert set(ep.images) == {"corner", "wrist"} and ep.images["corner"].shape[1:] == (64, 64, 3)


def test_train_builds_a_7d_policy_from_the_libero_bag(checkpoint) -> None:
    from vla_accel_ros.policy.checkpoint import load_checkpoint

    config = load_checkpoint(str(checkpoint)).config
    assert config.action_dim == 7 and len(config.action_q01) == len(config.action_q99) == 7
    assert config.state_dim == 9 and config.image_size == 64
    assert "bbq" in config.prompt_vocab and "basket" in config.prompt_vocab
    assert "LIBERO (7-D actions)" in (checkpoint / "card.md").read_text()


def test_train_fits_the_prompt_to_libero_spatials_long_instructions(tmp_path) -> None:
    from vla_accel_ros.data.bag_io import write_episodes
    from vla_accel_ros.data.episodes import Episode, sim_stamps
    from vla_accel_ros.training.train import TrainConfig, train

    words = "pick up the black bowl between the plate and the ramekin and place it on the plate"
    rng = np.random.default_rng(0)
    steps = 8
    episode = Episode(
        "libero_spatial:0",
        0,
        words,
        True,
        {c: rng.integers(0, 255, (steps, 32, 32, 3), dtype=np.uint8) for c in ("corner", "wrist")},
        rng.normal(size=(steps, 9)).astype(np.float32),
        rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
        sim_stamps(0, steps, 20.0),
    )
    write_episodes(tmp_path / "bags" / "libero_spatial-0", [episode])
    train(TrainConfig(data=tmp_path / "bags", out=tmp_path / "ckpt", epochs=1, batch_size=4, model=TINY))
    from vla_accel_ros.policy.checkpoint import load_checkpoint

    config = load_checkpoint(str(tmp_path / "ckpt")).config
    # 17 words + <bos> + <act>: truncated to the default 12 tokens, the instruction would lose its goal.
    assert (
        config.prompt_length == 19 and config.action_dim == 7 and config.max_positions >= 2 * 4 + 1 + 19 + 7
    )


def test_eval_follows_the_libero_protocol(checkpoint, tmp_path, capsys) -> None:
    report_path = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(checkpoint), "--tasks", TASK, "--episodes-per-task", "1"]
    assert main([*argv, "--max-steps", "5", "--workers", "1", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    task = report["tasks"][TASK]
    assert task["suite"] == "libero_object" and task["episodes"] == 1 and task["mean_steps"] <= 5
    assert 0.0 <= task["ci95"][0] <= task["success_rate"] <= task["ci95"][1] <= 1.0
    suite = report["suites"]["libero_object"]
    assert suite["tasks"] == 1 and suite["episodes"] == 1 and 0.0 <= suite["ci95"][0] <= suite["ci95"][1]
    assert report["init_states"] == [0] and report["seeds"] == [] and report["max_steps"] == {TASK: 5}
    assert report["overall"]["suite_mean_success"] == suite["task_mean_success"] == task["success_rate"]
    assert math.isfinite(report["overall"]["latency_ms"]["p50"])
    table = capsys.readouterr().out
    assert f"| {TASK} |" in table and "| **libero_object** (1 task) |" in table

    # A 4-D policy is refused on a 7-D arm before any episode runs.
    assert main(["eval", "--checkpoint", "builtin", "--tasks", TASK, "--json", str(report_path)]) == 2


def test_the_sim_arm_node_drives_a_libero_arm(monkeypatch) -> None:
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter
    from ros_fixtures import ros_harness
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from vla_accel_ros.msg import VlaAction

    from vla_accel_ros.ros import convert
    from vla_accel_ros.ros.qos import camera_qos, command_qos, instruction_qos, joint_states_qos, vla_qos
    from vla_accel_ros.ros.sim_arm_node import SimArmNode

    with ros_harness(monkeypatch) as ros:
        corner = ros.collect(Image, "camera/image_raw", camera_qos())
        wrist = ros.collect(Image, "wrist_camera/image_raw", camera_qos())
        joints = ros.collect(JointState, "joint_states", joint_states_qos())
        instruction = ros.collect(String, "instruction", instruction_qos())
        executed = ros.collect(VlaAction, "arm/executed_action", vla_qos())
        values = {"task": TASK, "image_size": 32, "max_steps": 3, "seed_start": 0}
        node = SimArmNode(
            context=ros.context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]
        )
        ros.add(node)
        assert ros.spin_until(lambda: corner and wrist and joints and instruction, 60.0)
        assert "bbq sauce" in instruction[0].data and corner[0].width == wrist[0].width == 32
        assert list(joints[0].name)[:2] == ["panda_joint1", "panda_joint2"] and len(joints[0].name) == 9
        cmd = ros.publisher(VlaAction, "arm/command", command_qos())
        action = [0.1, 0.0, 0.0, 0.0, 0.0, 0.2, -1.0]
        cmd.publish(VlaAction(image_stamp=convert.ns_to_stamp(node.observation_stamp_ns), action=action))
        assert ros.spin_until(lambda: executed, 30.0)
        assert list(executed[0].action) == pytest.approx(action)
