"""`vla-accel replay`: output bags (rosbags and rclpy), metrics, unavailable methods, and bad bags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin

from vla_accel_ros.cli import main
from vla_accel_ros.data.bag_io import typestore, write_episodes
from vla_accel_ros.data.episodes import Episode, sim_stamps
from vla_accel_ros.evaluation.methods import load_settings
from vla_accel_ros.evaluation.replay import OUTPUT_TOPICS, partial_dir, replay_to
from vla_accel_ros.policy import config as config_module
from vla_accel_ros.policy.checkpoint import load_checkpoint, save_checkpoint
from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.runtime import Policy

INSTRUCTION = "reach the red goal"
JOINTS = [f"right_j{i}" for i in range(7)] + ["r_close", "l_close"]
TS = typestore()
T = TS.types


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**kw) -> VlaConfig:
    return config_module.tiny_config([INSTRUCTION], **{"image_size": 16, **kw})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny"
    save_checkpoint(VlaModel(tiny_config()).eval(), path)
    return path


@pytest.fixture(scope="module")
def draft_checkpoint(tmp_path_factory, checkpoint) -> Path:
    from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft, save_draft

    path = tmp_path_factory.mktemp("ckd") / "tiny"
    model = load_checkpoint(checkpoint)
    save_checkpoint(model, path)
    torch.manual_seed(1)
    save_draft(EagleDraft(DraftConfig.for_target(model), model).eval(), path / "draft")
    return path


def episodes(n: int = 2, steps: int = 5, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            task="reach-v3",
            seed=i,
            instruction=INSTRUCTION,
            success=True,
            images={c: rng.integers(0, 256, (steps, 16, 16, 3), dtype=np.uint8) for c in ("corner", "wrist")},
            joint_positions=rng.normal(size=(steps, 9)).astype(np.float32),
            actions=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
            stamps_ns=sim_stamps(i, steps, 80.0),
            joint_names=list(JOINTS),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def demo_bag(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / f"demo_{request.param}"
    write_episodes(path, episodes(), storage=request.param)
    return path


def read_topics(bag: Path) -> dict[str, list[tuple[int, bytes, str]]]:
    out: dict[str, list] = {}
    with Reader(bag) as reader:
        for conn, stamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((stamp, raw, conn.msgtype))
    return out


def replay(bag: Path, checkpoint: Path, out: Path, *flags: str) -> int:
    """`replay BAG --checkpoint CKPT --out OUT --quiet FLAGS`: each test spells only what it varies."""
    return main(["replay", str(bag), "--checkpoint", str(checkpoint), "--out", str(out), "--quiet", *flags])


def test_replay_writes_bags_metrics_and_plots(demo_bag, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = replay(demo_bag, checkpoint, out, "--methods", "ar,kerv,dyq", "--warmup", "2")
    assert rc == 0, capsys.readouterr().err
    assert not partial_dir(out).exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["episodes"] == 2
    ar = metrics["methods"]["ar"]
    assert ar["available"] and ar["steps"] == 10 and ar["reference_steps"] == 10
    assert ar["latency_ms"]["warmup_steps"] == 2 and ar["latency_ms"]["measured_steps"] == 8
    assert ar["latency_ms"]["p50"] <= ar["latency_ms"]["p95"] and ar["steps_per_s"] > 0
    assert len(ar["action_mae"]) == 4 and len(ar["token_bin_error"]) == 4
    assert ar["precision_counts"] == {"fp32": 10} and ar["timeline"]["threshold"] == [0.0] * 10
    assert ar["target_passes"]["per_step"] == 3.0  # 4 tokens: the prefill gives the first
    # Not silently swapped for ar: reported with the reason.
    assert metrics["methods"]["kerv"] == {"available": False, "reason": metrics["methods"]["kerv"]["reason"]}
    assert "draft" in metrics["methods"]["kerv"]["reason"]
    # the graph's int4 group (32) fits the tiny model: DyQ runs on its ladder copy
    dyq = metrics["methods"]["dyq"]
    assert dyq["available"] and dyq["policy"] == "int4 ladder"
    assert set(dyq["precision_counts"]) <= {"w4a4-emu", "w4a8-emu", "w4a16"}
    assert "skipped" in capsys.readouterr().out
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["action_error.png", "latency_hist.png", "timeline_ar.png", "timeline_dyq.png"]
    assert all((out / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)

    # The output bag: every topic once per step, readable by rosbags and by rclpy.
    from rclpy.serialization import deserialize_message
    from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction

    topics = read_topics(out / ar["bag"])
    assert sorted(topics) == sorted(t for t, _ in OUTPUT_TOPICS.values())
    assert all(len(v) == 10 for v in topics.values())
    classes = {
        "/vla/accel_config": AccelConfig,
        "/vla/kalman_prediction": KalmanPrediction,
        "/vla/action_raw": VlaAction,
        "/vla/kinematics": KinematicState,
    }
    ref = np.concatenate([e.actions for e in episodes()])
    for i, (stamp, raw, msgtype) in enumerate(topics["/vla/action_raw"]):
        ours, theirs = TS.deserialize_cdr(raw, msgtype), deserialize_message(raw, VlaAction)
        assert ours.header.stamp.sec * 10**9 + ours.header.stamp.nanosec == stamp
        np.testing.assert_allclose(ours.action, theirs.action)
        assert theirs.precision == "fp32" and theirs.decoding == "ar" and len(theirs.token_ids) == 4
        kin = deserialize_message(topics["/vla/kinematics"][i][1], KinematicState)
        # The loop is fed the bag's executed (reference) action, not the policy's.
        assert kin.translation_speed == pytest.approx(float(np.linalg.norm(ref[i, :3])), rel=1e-5)
    for topic, cls in classes.items():
        for _, raw, msgtype in topics[topic]:
            deserialize_message(raw, cls)
            TS.deserialize_cdr(raw, msgtype)
    first = deserialize_message(topics["/vla/kalman_prediction"][0][1], KalmanPrediction)
    assert first.history_length == 0 and not first.valid


def test_speculative_methods_with_a_draft(draft_checkpoint, tmp_path, capsys):
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=1, steps=8))
    out = tmp_path / "out"
    rc = replay(bag, draft_checkpoint, out, "--methods", "spec,kerv", "--no-plots")
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())["methods"]
    for name in ("spec", "kerv"):
        assert m[name]["available"] and m[name]["fallback"]["steps"] == 0
        assert m[name]["acceptance"]["draft_tokens"] > 0
    assert m["spec"]["kalman_fill_rate"] == 0.0
    ctrl = load_settings().controller
    assert all(ctrl.r_min <= r <= ctrl.r_max for r in m["kerv"]["timeline"]["threshold"])
    topics = read_topics(out / m["kerv"]["bag"])
    decodings = {TS.deserialize_cdr(raw, t).decoding for _, raw, t in topics["/vla/accel_config"]}
    assert decodings == {"kerv"}
    valid = [TS.deserialize_cdr(raw, t).valid for _, raw, t in topics["/vla/kalman_prediction"]]
    assert not valid[0] and any(valid)  # the filter warms up, then predicts


@pytest.fixture(scope="module")
def ladder_checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint the int4 ladder can quantize (64-wide linears), with a draft beside it."""
    from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft, save_draft

    torch.manual_seed(0)
    model = VlaModel(tiny_config(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)).eval()
    path = tmp_path_factory.mktemp("ckl") / "tiny"
    save_checkpoint(model, path)
    torch.manual_seed(1)
    save_draft(EagleDraft(DraftConfig.for_target(model), model).eval(), path / "draft")
    return path


ALL = [
    "ar",
    "ar@w4a4-emu",
    "ar@w4a8-emu",
    "ar@w4a16",
    "dyq",
    "spec",
    "specvla",
    "kerv",
    "kerv+dyq",
]


def test_every_method_replays_a_small_bag(ladder_checkpoint, tmp_path, capsys):
    """The default method list: ar, the static int4 modes, DyQ, the three decoders and KERV+DyQ."""
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=2, steps=4))
    out = tmp_path / "out"
    rc = replay(bag, ladder_checkpoint, out, "--warmup", "1")
    assert rc == 0, capsys.readouterr().err
    assert "DyQ table" in capsys.readouterr().out  # the shipped params name no ladder mode: said so
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == ALL and metrics["steps"] == 8
    assert metrics["precisions"] == ["w4a4-emu", "w4a8-emu", "w4a16", "fp32"]
    for name, m in metrics["methods"].items():
        assert m["available"], (name, m.get("reason"))
        assert m["steps"] == 8 and m["reference_steps"] == 8 and m["fallback"]["steps"] == 0, name
        assert m["action_mae_mean"] >= 0 and m["latency_ms"]["p50"] > 0 and m["steps_per_s"] > 0
        assert 0 <= m["kalman_fill_rate"] <= 1 and abs(sum(m["precision_share"].values()) - 1) < 1e-9
        tl = m["timeline"]
        assert len(tl["precision"]) == len(tl["threshold"]) == len(tl["sensitivity"]) == 8
        topics = read_topics(out / m["bag"])  # readable with rosbags, every /vla topic once per step
        assert sorted(topics) == sorted(t for t, _ in OUTPUT_TOPICS.values())
        assert all(len(v) == 8 for v in topics.values())
        precisions = {TS.deserialize_cdr(raw, t).precision for _, raw, t in topics["/vla/action_raw"]}
        assert precisions == set(m["precision_counts"])
    m = metrics["methods"]
    assert m["ar"]["policy"] == "as loaded" and m["ar"]["precision_counts"] == {"fp32": 8}
    for mode in ("w4a4-emu", "w4a8-emu", "w4a16"):
        assert m[f"ar@{mode}"]["policy"] == "int4 ladder"
        assert m[f"ar@{mode}"]["precision_counts"] == {mode: 8}
        assert (out / "bags" / f"ar@{mode}" / "metadata.yaml").is_file()
    for name in ("dyq", "kerv+dyq"):
        assert set(m[name]["precision_counts"]) <= {"w4a4-emu", "w4a8-emu", "w4a16"}
        assert m[name]["timeline"]["precision"][0] == "w4a16"  # no kinematics yet: the top mode
    for name in ("spec", "specvla", "kerv", "kerv+dyq"):
        assert m[name]["acceptance"]["draft_tokens"] > 0 and m[name]["acceptance"]["rate"] is not None
    assert m["ar"]["acceptance"]["rate"] is None
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"latency_hist.png", "action_error.png", "timeline_dyq.png", "timeline_kerv+dyq.png"} <= plots
    assert "timeline_ar@w4a16.png" in plots
    assert len(plots) == len(ALL) + 2
    assert all((out / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_max_episodes_and_mode_shorthands(ladder_checkpoint, tmp_path, capsys):
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=3, steps=3))
    out = tmp_path / "out"
    rc = replay(
        bag, ladder_checkpoint, out, "--methods", "w4a16,fp32,ar@w4a16", "--max-episodes", "2", "--no-plots"
    )
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["ar@w4a16", "ar@fp32"]  # duplicates dropped
    assert metrics["episodes"] == 2 and metrics["steps"] == 6


def test_method_names_expand_and_unknown_ones_fail(capsys, tmp_path):
    from vla_accel_ros.evaluation.methods import expand

    assert expand(["static"]) == ["ar@w4a4-emu", "ar@w4a8-emu", "ar@w4a16"]
    assert expand(["ar", "w4a8-emu", "kerv+dyq"]) == ["ar", "ar@w4a8-emu", "kerv+dyq"]
    with pytest.raises(ValueError, match="unknown method 'turbo'"):
        expand(["turbo"])
    with pytest.raises(ValueError, match="unknown method 'static:w4a16'"):  # the old spelling is gone
        expand(["static:w4a16"])
    rc = main(["replay", str(tmp_path), "--methods", "ar,turbo", "--out", str(tmp_path / "o")])
    assert rc == 2 and "unknown method 'turbo'" in capsys.readouterr().err


def test_ladder_settings_keep_a_served_table_and_replace_a_foreign_one(tmp_path):
    from vla_accel_ros.evaluation.methods import ladder_settings

    modes = ["w4a4-emu", "w4a8-emu", "w4a16"]
    settings = load_settings()
    # without a dyq overlay: [0, top_threshold] split evenly over the lower modes
    adapted, note = ladder_settings(settings, modes, tmp_path / "none.yaml")
    ctrl = adapted.controller
    assert list(ctrl.precision_modes) == modes and list(ctrl.precision_table_modes) == modes[:2]
    assert ctrl.precision_table_bounds[-1] == ctrl.top_threshold and "DyQ table" in note
    assert list(settings.controller.precision_modes) == ["fp32"]  # the caller's settings are untouched
    assert ladder_settings(adapted, modes) == (adapted, None)
    # with one (as calibrate-dyq writes it): its table
    overlay = tmp_path / "dyq.yaml"
    overlay.write_text(
        "/**/controller_node:\n  ros__parameters:\n    precision_modes: [w4a4-emu, w4a8-emu, w4a16]\n"
        "    top_threshold: 0.3\n    precision_table_bounds: [0.1, 0.3]\n"
        "    precision_table_modes: [w4a4-emu, w4a8-emu]\n"
    )
    adapted, note = ladder_settings(settings, modes, overlay)
    ctrl = adapted.controller
    assert ctrl.top_threshold == 0.3 and list(ctrl.precision_table_bounds) == [0.1, 0.3]
    assert "dyq.yaml" in note


def test_config_dir_gives_the_graphs_settings_to_every_method(ladder_checkpoint, tmp_path, capsys):
    """--config DIR: the tables come from DIR's params files (vla_accel.yaml, calibration.yaml), and the
    DyQ methods' table from DIR/dyq.yaml, as `vla-accel up` would load them: no default is re-spelled."""
    import shutil

    from vla_accel_ros.params import write_params_file
    from vla_accel_ros.params.files import config_dir

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    shutil.copy(config_dir() / "vla_accel.yaml", cfg / "vla_accel.yaml")
    write_params_file(cfg / "calibration.yaml", {"controller_node": {"specvla_threshold": 3.0}}, ["test"])
    table = {
        "precision_modes": ["w4a4-emu", "w4a8-emu", "w4a16"],
        "top_threshold": 0.375,
        "precision_table_bounds": [0.125, 0.375],
        "precision_table_modes": ["w4a4-emu", "w4a8-emu"],
    }
    write_params_file(cfg / "dyq.yaml", {"controller_node": table}, ["test"])
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=1, steps=4))
    out = tmp_path / "out"
    rc = replay(bag, ladder_checkpoint, out, "--methods", "specvla,dyq", "--config", str(cfg), "--no-plots")
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"]["specvla"]["timeline"]["threshold"] == [3.0] * 4  # not the table's 9
    assert any("dyq.yaml" in n and "top_threshold 0.375" in n for n in metrics["notes"])
    assert metrics["settings"] == "vla_accel.yaml + calibration.yaml"


def config_with(folder: Path, node: str, **values) -> Path:
    """A config dir: the shipped vla_accel.yaml with some of one node's parameters changed."""
    from vla_accel_ros.params import read_params_file, write_params_file
    from vla_accel_ros.params.files import config_dir

    sections = read_params_file(config_dir() / "vla_accel.yaml")
    sections[node].update(values)
    folder.mkdir(parents=True)
    write_params_file(folder / "vla_accel.yaml", sections, ["test config"])
    return folder


def test_the_ladders_group_size_comes_from_the_config(demo_bag, checkpoint, tmp_path, capsys):
    """inference_node.quant_group_size is the ladder's group offline too: at 64 the tiny model (32 wide)
    cannot be laddered, and the DyQ row says so instead of running another model."""
    cfg = config_with(tmp_path / "cfg", "inference_node", quant_group_size=64)
    out = tmp_path / "out"
    assert replay(demo_bag, checkpoint, out, "--methods", "ar,dyq", "--config", str(cfg), "--no-plots") == 0
    dyq = json.loads((out / "metrics.json").read_text())["methods"]["dyq"]
    assert not dyq["available"] and "precision ladder" in dyq["reason"] and "group 64" in dyq["reason"]


def test_builtin_checkpoint_ships_its_draft_and_a_given_draft_replaces_it(tmp_path):
    """The packaged checkpoint carries draft/ (every speculative method runs on it); --draft overrides."""
    from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft, save_draft
    from vla_accel_ros.evaluation import methods

    policy = Policy.load(None)
    assert policy.draft is not None and {"spec", "specvla", "kerv"} <= set(policy.decoders)
    shipped = policy.draft
    torch.manual_seed(0)
    save_draft(EagleDraft(DraftConfig.for_target(policy.model), policy.model).eval(), tmp_path / "d")
    methods.attach_draft(policy, tmp_path / "d")
    assert policy.draft is not None and policy.draft is not shipped
    methods.attach_draft(policy, tmp_path / "missing")
    assert policy.draft is None and policy.draft_error


def test_without_reference_actions_the_loop_sees_the_policy_action(demo_bag, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = replay(demo_bag, checkpoint, out, "--methods", "ar", "--action-topic", "none", "--max-steps", "4")
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    ar = metrics["methods"]["ar"]
    assert metrics["steps"] == 4 and ar["reference_steps"] == 0 and ar["action_mae"] is None
    assert "action_error.png" not in {p.name for p in (out / "plots").iterdir()}
    topics = read_topics(out / ar["bag"])
    for (_, act, t1), (_, kin, t2) in zip(topics["/vla/action_raw"], topics["/vla/kinematics"], strict=True):
        a = TS.deserialize_cdr(act, t1).action
        assert TS.deserialize_cdr(kin, t2).translation_speed == pytest.approx(float(np.linalg.norm(a[:3])))


def test_precision_ladder_makes_dyq_available(tmp_path):
    from vla_accel_ros.params import QUANT_GROUP_SIZE
    from vla_accel_ros.quant import get_ladder, quantize_model

    torch.manual_seed(0)
    model = VlaModel(tiny_config(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)).eval()
    quantize_model(model, group=QUANT_GROUP_SIZE)
    policy = Policy(model)
    policy.enable_ladder(get_ladder(model))
    modes = tuple(policy.precisions)
    settings = load_settings().with_values(
        "controller_node",
        precision_modes=modes,
        precision_table_bounds=(0.2, 0.5),
        precision_table_modes=modes[:2],
    )
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=1, steps=8))
    report = replay_to(
        bag, policy, ["dyq", "ar"], tmp_path / "out", settings=settings, progress=False, plots=False
    )
    dyq = report["methods"]["dyq"]
    assert dyq["available"] and set(dyq["precision_counts"]) <= set(modes)
    assert dyq["timeline"]["precision"][0] == modes[-1]  # no kinematics yet: the top mode
    assert report["methods"]["ar"]["precision_counts"] == {modes[-1]: 8}


class FallingBack:
    """A policy whose runtime falls back on every other step (as a failing ladder mode would)."""

    def __init__(self, policy: Policy) -> None:
        self._p, self._n = policy, 0

    def __getattr__(self, name: str):
        return getattr(self._p, name)

    def act(self, *args, **kwargs):
        result = self._p.act(*args, **kwargs)
        self._n += 1
        if self._n % 2:
            result.fallback = "precision 'w4a4' failed (RuntimeError: boom), 'fp32' used"
        return result


def test_runtime_fallbacks_are_reported(checkpoint, tmp_path):
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=1, steps=4))
    policy = FallingBack(Policy.load(checkpoint))
    report = replay_to(bag, policy, ["ar"], tmp_path / "out", progress=False, plots=False)
    fb = report["methods"]["ar"]["fallback"]
    assert fb["steps"] == 2 and list(fb["reasons"].values()) == [2]
    topics = read_topics(tmp_path / "out" / report["methods"]["ar"]["bag"])
    flags = [TS.deserialize_cdr(raw, t).fallback for _, raw, t in topics["/vla/action_raw"]]
    assert flags == [True, False, True, False]


def test_no_servable_method_exits_1(demo_bag, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = replay(demo_bag, checkpoint, out, "--methods", "spec")
    assert rc == 1 and "spec: decoding 'spec' needs a draft" in capsys.readouterr().err
    assert not out.exists() and not partial_dir(out).exists()


# -- bad bags --------------------------------------------------------------------------------------
def _header(stamp: int) -> object:
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="f"
    )


def _image(stamp: int, encoding: str = "rgb8") -> object:
    img = np.zeros((16, 16, 3), np.uint8)
    return T["sensor_msgs/msg/Image"](
        header=_header(stamp),
        height=16,
        width=16,
        encoding=encoding,
        is_bigendian=0,
        step=48,
        data=img.reshape(-1),
    )


def _joints(stamp: int, n: int = 9) -> object:
    return T["sensor_msgs/msg/JointState"](
        header=_header(stamp), name=JOINTS[:n], position=np.zeros(n), velocity=np.zeros(0), effort=np.zeros(0)
    )


def write_bag(
    path: Path,
    steps: int = 4,
    skip: tuple[str, ...] = (),
    swap: dict | None = None,
    encoding_at: dict[int, str] | None = None,
    n_joints: int = 9,
    empty: bool = False,
) -> Path:
    """A small bag in demo layout; `skip` drops topics, `swap` {topic: (msgtype, factory)} retypes one."""
    swap = swap or {}
    encoding_at = encoding_at or {}
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conns: dict[str, object] = {}

    def put(topic: str, msgtype: str, msg: object, stamp: int) -> None:
        if topic in skip:
            return
        if topic in swap:
            msgtype, factory = swap[topic]
            msg = factory(stamp)
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
        if not empty:
            writer.write(conns[topic], stamp, TS.serialize_cdr(msg, msgtype))

    put("/instruction", "std_msgs/msg/String", T["std_msgs/msg/String"](data=INSTRUCTION), 1)
    for i in range(steps):
        stamp = (i + 1) * 10**8
        put("/joint_states", "sensor_msgs/msg/JointState", _joints(stamp, n_joints), stamp)
        put("/wrist_camera/image_raw", "sensor_msgs/msg/Image", _image(stamp), stamp)
        put("/camera/image_raw", "sensor_msgs/msg/Image", _image(stamp, encoding_at.get(i, "rgb8")), stamp)
        act = T["std_msgs/msg/Float32MultiArray"](
            layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=np.zeros(4, np.float32)
        )
        put("/expert_action", "std_msgs/msg/Float32MultiArray", act, stamp + 1)
    writer.close()
    return path


def _string(stamp: int) -> object:
    return T["std_msgs/msg/String"](data="x")


def _unknown_type_bag(path: Path) -> Path:
    """The camera topic carries a type no ROS distribution defines (its definition is in the bag only)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("uint32 seq\nuint8[] pixels", "acme_msgs/msg/Frame"))
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection("/camera/image_raw", "acme_msgs/msg/Frame", typestore=store)
    frame = store.types["acme_msgs/msg/Frame"](seq=1, pixels=np.zeros(4, np.uint8))
    writer.write(conn, 10, store.serialize_cdr(frame, "acme_msgs/msg/Frame"))
    writer.close()
    return path


def _truncated(path: Path) -> Path:
    write_bag(path)
    mcap = next(path.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    return path


def _garbage(path: Path) -> Path:
    write_bag(path)
    mcap = next(path.glob("*.mcap"))
    mcap.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 8)
    return path


BAD_BAGS = {
    "missing topic": (lambda p: write_bag(p, skip=("/wrist_camera/image_raw",)), "no wrist camera topic"),
    "mismatched type": (
        lambda p: write_bag(p, swap={"/joint_states": ("std_msgs/msg/String", _string)}),
        "has type std_msgs/msg/String, expected",
    ),
    "unknown action type": (
        lambda p: write_bag(p, swap={"/expert_action": ("std_msgs/msg/String", _string)}),
        "reference action",
    ),
    "unknown camera type": (_unknown_type_bag, "has type acme_msgs/msg/Frame, expected"),
    "truncated file": (_truncated, "corrupt or truncated"),
    "corrupt file": (_garbage, "corrupt or truncated"),
    "empty bag": (lambda p: write_bag(p, empty=True), "is empty"),
    "unexpected image encoding": (lambda p: write_bag(p, encoding_at={0: "16UC1"}), "encoding '16UC1'"),
    "bad encoding part-way": (lambda p: write_bag(p, encoding_at={2: "bayer_rggb8"}), "bayer_rggb8"),
    "joint count": (lambda p: write_bag(p, n_joints=7), "have 7 positions"),
    "not a bag": (lambda p: (p.mkdir(), (p / "x.txt").write_text("hi"), p)[-1], "no metadata.yaml"),
}


@pytest.mark.parametrize("case", list(BAD_BAGS))
def test_bad_bags_fail_clearly_and_leave_no_output(case, checkpoint, tmp_path, capsys):
    make, expected = BAD_BAGS[case]
    bag = make(tmp_path / "bag")
    out = tmp_path / "out"
    rc = replay(bag, checkpoint, out, "--methods", "ar", "--action-topic", "/expert_action")
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and err.startswith("error: ")
    assert not out.exists() and not partial_dir(out).exists()


def test_a_good_bag_of_the_same_layout_replays(checkpoint, tmp_path, capsys):
    """The bad-bag builder's unmodified bag works: each failure above is the named defect alone."""
    bag = write_bag(tmp_path / "bag")
    rc = replay(bag, checkpoint, tmp_path / "out", "--methods", "ar", "--no-plots")
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 4


def test_existing_output_is_not_overwritten(demo_bag, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(
        ["replay", str(demo_bag), "--checkpoint", str(checkpoint), "--methods", "ar", "--out", str(out)]
    )
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


# -- bench-replay ----------------------------------------------------------------------------------
def _bench_argv(bag: Path, checkpoint: Path, tmp_path: Path) -> list[str]:
    return [
        "bench-replay",
        "--bag",
        str(bag),
        "--checkpoint",
        str(checkpoint),
        "--episodes",
        "1",
        "--max-steps",
        "5",
        "--methods",
        "ar,dyq,kerv,kerv+dyq",
        "--config",
        str(config_with(tmp_path / "cfg", "inference_node", quant_group_size=64)),  # no ladder for the model
        "--work",
        str(tmp_path / "work"),
        "--markdown",
        str(tmp_path / "docs" / "REPLAY.md"),
        "--json",
        str(tmp_path / "docs" / "results" / "replay.json"),
        "--img",
        str(tmp_path / "docs" / "img" / "replay"),
        "--no-progress",
    ]


def test_bench_replay_writes_the_table_json_and_figures(checkpoint, tmp_path, capsys):
    """The tiny checkpoint has no ladder and no draft: those rows are listed as skipped, with why."""
    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=2, steps=6))
    md = tmp_path / "docs" / "REPLAY.md"
    md.parent.mkdir(parents=True)
    md.write_text(
        "# Offline replay\n\nHand-written intro.\n\n"
        "<!-- bench-replay:begin -->\nold\n<!-- bench-replay:end -->\n"
    )
    stale = tmp_path / "docs" / "img" / "replay" / "timeline_old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    assert main(_bench_argv(bag, checkpoint, tmp_path)) == 0, capsys.readouterr().err
    text = md.read_text()
    assert "Hand-written intro." in text and "\nold\n" not in text
    assert "vla-accel bench-replay --bag" in text and "| `ar` | as loaded |" in text
    assert "`dyq` skipped: needs the int4 precision ladder" in text and "`kerv` skipped: decoding" in text
    assert "![latency_hist](img/replay/latency_hist.png)" in text
    data = json.loads((tmp_path / "docs" / "results" / "replay.json").read_text())
    assert data["steps"] == 5 and data["episodes"] == 1 and "machine" in data and "command" in data
    assert "timeline" not in data["methods"]["ar"] and data["methods"]["ar"]["steps_per_s"] > 0
    figures = {p.name for p in stale.parent.iterdir()}
    assert figures == {"latency_hist.png", "action_error.png"}  # ar's flat timeline is not published


def test_bench_replay_on_a_bad_bag_leaves_the_docs_alone(checkpoint, tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", empty=True)
    assert main(_bench_argv(bag, checkpoint, tmp_path)) == 2
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists() and not (tmp_path / "work").exists()


def test_bench_assembles_the_replay_section():
    from vla_accel_ros.commands.bench import SECTIONS

    assert ("docs/REPLAY.md", "vla-accel bench-replay") in [(p, c) for _, p, c in SECTIONS]
