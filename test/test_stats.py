"""`vla-accel stats`: per-dimension statistics with provenance, topic mapping, and checkpoint checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin

from vla_accel_ros.cli import main
from vla_accel_ros.data.bag_io import typestore, write_episodes
from vla_accel_ros.data.episodes import Episode, sim_stamps
from vla_accel_ros.policy.config import VlaConfig

JOINTS = [f"right_j{i}" for i in range(7)] + ["r_close", "l_close"]
TS = typestore()
T = TS.types


def demo_bag(path: Path, scale: np.ndarray | None = None, joint_shift: float = 0.0, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(2):
        t = 40
        actions = rng.uniform(-0.95, 0.95, (t, 4)).astype(np.float32)
        if scale is not None:
            actions *= scale.astype(np.float32)
        joints = rng.normal(size=(t, 9)).astype(np.float32)
        joints[:, 3] += joint_shift
        eps.append(
            Episode(
                task="reach-v3",
                seed=i,
                instruction="reach",
                success=True,
                images={"corner": np.zeros((t, 8, 8, 3), np.uint8)},
                joint_positions=joints,
                actions=actions,
                stamps_ns=sim_stamps(i, t, 80.0),
                joint_names=list(JOINTS),
            )
        )
    write_episodes(path, eps)
    return np.concatenate([e.actions for e in eps]), np.concatenate([e.joint_positions for e in eps])


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """Only config.json: the check reads the statistics, never the weights."""
    cfg = VlaConfig(action_q01=[-1.0] * 4, action_q99=[1.0] * 4, state_mean=[0.0] * 9, state_std=[1.0] * 9)
    path = tmp_path / "ck"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    return path


def test_statistics_with_provenance(tmp_path, capsys):
    actions, joints = demo_bag(tmp_path / "bag")
    out = tmp_path / "stats.json"
    assert main(["stats", str(tmp_path / "bag"), "--out", str(out), "--quiet"]) == 0
    stats = json.loads(out.read_text())
    prov = stats["provenance"]
    assert prov["action_topic"] == "/expert_action" and prov["state_topic"] == "/joint_states"
    assert prov["message_counts"] == {"/expert_action": 80, "/joint_states": 80}
    assert prov["bag"].endswith("bag") and prov["created"][:2] == "20"
    a, s = stats["action"], stats["state"]
    assert a["count"] == 80 and a["names"] == ["dx", "dy", "dz", "gripper"] and s["names"] == JOINTS
    np.testing.assert_allclose(a["q01"], np.quantile(actions.astype(np.float64), 0.01, axis=0), rtol=1e-6)
    np.testing.assert_allclose(a["q99"], np.quantile(actions.astype(np.float64), 0.99, axis=0), rtol=1e-6)
    np.testing.assert_allclose(a["mean"], actions.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(a["std"], actions.std(axis=0), rtol=1e-5)
    np.testing.assert_allclose(a["min"], actions.min(axis=0))
    np.testing.assert_allclose(a["max"], actions.max(axis=0))
    np.testing.assert_allclose(s["mean"], joints.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert "check" not in stats and "wrote" in capsys.readouterr().out


def test_json_goes_to_stdout_without_out(tmp_path, capsys):
    demo_bag(tmp_path / "bag")
    assert main(["stats", str(tmp_path / "bag"), "--quiet", "--state-topic", "none"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert "state" not in stats and stats["action"]["count"] == 80


def foreign_bag(path: Path, n: int = 30) -> np.ndarray:
    """A robot's bag: Float64MultiArray commands on /robot/cmd, joint states on /robot/joints."""
    rng = np.random.default_rng(1)
    acts = rng.uniform(-0.5, 0.5, (n, 7))
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3)
    writer.open()
    cmd = writer.add_connection("/robot/cmd", "std_msgs/msg/Float64MultiArray", typestore=TS)
    js = writer.add_connection("/robot/joints", "sensor_msgs/msg/JointState", typestore=TS)
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    for i in range(n):
        stamp = (i + 1) * 10**7
        header = T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=stamp), frame_id=""
        )
        msg = T["sensor_msgs/msg/JointState"](
            header=header,
            name=["b", "a", "c"],
            position=np.array([i, -i, 2.0 * i], np.float64),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        writer.write(js, stamp, TS.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
        arr = T["std_msgs/msg/Float64MultiArray"](layout=layout, data=acts[i])
        writer.write(cmd, stamp + 1, TS.serialize_cdr(arr, "std_msgs/msg/Float64MultiArray"))
    writer.close()
    return acts


def stats_of_foreign_bag(bag: Path, *flags: str) -> int:
    """`vla-accel stats` on a foreign_bag, its topics named by the mapping flags, quietly."""
    topics = ["--action-topic", "/robot/cmd", "--state-topic", "/robot/joints"]
    return main(["stats", str(bag), *topics, "--quiet", *flags])


def test_other_topic_names_through_the_mapping_flags(tmp_path, capsys):
    acts = foreign_bag(tmp_path / "robot")
    rc = main(["stats", str(tmp_path / "robot"), "--quiet"])
    assert rc == 2 and "no action topic '/expert_action'" in capsys.readouterr().err
    out = tmp_path / "s.json"
    rc = stats_of_foreign_bag(tmp_path / "robot", "--joint-names", "a,c", "--out", str(out))
    assert rc == 0, capsys.readouterr().err
    stats = json.loads(out.read_text())
    assert stats["action"]["names"][3] == "droll" and stats["action"]["count"] == 30
    np.testing.assert_allclose(stats["action"]["max"], acts.max(axis=0))
    assert stats["state"]["names"] == ["a", "c"]
    np.testing.assert_allclose(stats["state"]["min"], [-29.0, 0.0])
    np.testing.assert_allclose(stats["state"]["max"], [0.0, 58.0])


def test_wrong_topic_type_is_named(tmp_path, capsys):
    foreign_bag(tmp_path / "robot")
    rc = main(["stats", str(tmp_path / "robot"), "--action-topic", "/robot/joints", "--state-topic", "none"])
    assert rc == 2 and "has type sensor_msgs/msg/JointState, expected one of" in capsys.readouterr().err


def test_check_ok_when_the_bag_fits_the_checkpoint(tmp_path, checkpoint, capsys):
    demo_bag(tmp_path / "bag")
    out = tmp_path / "stats.json"
    rc = main(["stats", str(tmp_path / "bag"), "--check", str(checkpoint), "--out", str(out), "--quiet"])
    assert rc == 0
    result = json.loads(out.read_text())["check"]
    assert result["verdict"] == "ok" and result["problems"] == []
    assert all(d["clip_fraction"] == 0.0 for d in result["action"]["dims"])
    plots = [Path(p) for p in result["plots"]]
    assert [p.name for p in plots] == ["stats_check.png", "stats_check_state.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)
    assert "check against" in capsys.readouterr().out


def test_actions_beyond_the_checkpoint_range_give_a_mismatch_naming_the_dims(tmp_path, checkpoint, capsys):
    demo_bag(tmp_path / "bag", scale=np.array([3.0, 1.0, 2.0, 1.0]))
    out = tmp_path / "stats.json"
    plot = tmp_path / "fig.png"
    rc = main(
        [
            "stats",
            str(tmp_path / "bag"),
            "--check",
            str(checkpoint),
            "--out",
            str(out),
            "--plot",
            str(plot),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 1
    result = json.loads(out.read_text())["check"]
    assert result["verdict"] == "mismatch" and plot.is_file()
    verdicts = {d["name"]: d["verdict"] for d in result["action"]["dims"]}
    assert verdicts == {"dx": "mismatch", "dy": "ok", "dz": "mismatch", "gripper": "ok"}
    assert any(p.startswith("action dim 0 (dx): mismatch") for p in result["problems"])
    assert any(p.startswith("action dim 2 (dz): mismatch") for p in result["problems"])
    assert "action dim 0 (dx)" in printed and "action dim 1" not in printed
    dx = result["action"]["dims"][0]
    assert 0.5 < dx["clip_fraction"] < 0.8 and dx["below_q01"] > 0 and dx["above_q99"] > 0


def test_narrow_actions_and_shifted_joints_warn_or_mismatch(tmp_path, checkpoint, capsys):
    demo_bag(tmp_path / "bag", scale=np.array([0.1, 1.0, 1.0, 1.0]), joint_shift=5.0)
    rc = main(
        [
            "stats",
            str(tmp_path / "bag"),
            "--check",
            str(checkpoint),
            "--quiet",
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert rc == 1
    result = json.loads(capsys.readouterr().out)["check"]
    assert result["action"]["dims"][0]["verdict"] == "warn" and result["action"]["verdict"] == "warn"
    joint = {d["name"]: d["verdict"] for d in result["state"]["dims"]}
    assert joint["right_j3"] == "mismatch" and joint["right_j0"] == "ok"
    assert any("state dim 3 (right_j3): mismatch" in p for p in result["problems"])


def test_dimension_count_mismatch(tmp_path, checkpoint, capsys):
    foreign_bag(tmp_path / "robot")
    rc = stats_of_foreign_bag(
        tmp_path / "robot", "--check", str(checkpoint), "--plot", str(tmp_path / "p.png")
    )
    assert rc == 1
    problems = json.loads(capsys.readouterr().out)["check"]["problems"]
    assert "actions have 7 dimensions, the checkpoint 4" in problems
    assert "joint states have 3 positions, the checkpoint expects 9" in problems


def test_bad_bags_and_checkpoints(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope")]) == 2
    assert "bag not found" in capsys.readouterr().err
    demo_bag(tmp_path / "bag")
    assert main(["stats", str(tmp_path / "bag"), "--check", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def _stats_file(path: Path, n_action: int, n_state: int, lo: float = -2.0, hi: float = 2.0) -> Path:
    stats = {
        "action": {"q01": [lo] * n_action, "q99": [hi] * n_action},
        "state": {"mean": [0.5] * n_state, "std": [2.0] * n_state},
    }
    path.write_text(json.dumps(stats))
    return path


def test_inference_node_takes_the_robots_statistics_file(tmp_path):
    """norm_stats_file replaces the checkpoint's action range and proprio statistics (the speculative
    decoders included); a file of other dimensions stops the model load with the reason."""
    from vla_accel_ros.params import InferenceParams
    from vla_accel_ros.policy.runtime import PolicyInput
    from vla_accel_ros.ros.inference_node import load_policy

    good = _stats_file(tmp_path / "good.json", 4, 9)
    policy, _ = load_policy(InferenceParams.from_mapping({"norm_stats_file": str(good), "num_threads": 1}))
    assert np.allclose(policy.actions.q01, -2.0) and np.allclose(policy.actions.q99, 2.0)
    assert np.allclose(policy._state_mean.numpy(), 0.5)
    inp = PolicyInput(
        images={c: np.zeros((64, 64, 3), np.uint8) for c in policy.cameras},
        joint_positions=np.zeros(9, np.float32),
        instruction="reach the goal",
    )
    result = policy.act(inp, decoding="ar")
    # actions are bin centres of the new range, which reaches beyond the checkpoint's [-1, 1]
    assert np.allclose(result.action, policy.actions.decode(result.token_ids))
    kerv = policy.act(inp, decoding="kerv")
    assert kerv.decoding == "kerv" and not kerv.fallback and np.isfinite(kerv.action).all()
    for name, n_action, n_state, words in (
        ("actions7.json", 7, 9, "7 action dimensions"),
        ("state3.json", 4, 3, "3 state dimensions"),
    ):
        bad = _stats_file(tmp_path / name, n_action, n_state)
        with pytest.raises(RuntimeError, match=words):
            load_policy(InferenceParams.from_mapping({"norm_stats_file": str(bad), "num_threads": 1}))
    with pytest.raises(RuntimeError, match="norm_stats_file"):
        load_policy(InferenceParams.from_mapping({"norm_stats_file": str(tmp_path / "missing.json")}))
