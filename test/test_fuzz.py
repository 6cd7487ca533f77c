"""Bad data into every subscription callback of every node: no crash, no command from bad data.

CI runs a sample of a few hundred messages (seconds); `vla-accel fuzz` runs >= 10,000 and writes
docs/RELIABILITY.md. A mutation check makes sure the oracle bites: with the controller's image-age check
switched off, the same sample must report commands from bad data.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import pytest
from rclpy.serialization import deserialize_message, serialize_message
from ros_fixtures import unique_domain_id
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction

from vla_accel_ros.evaluation.fuzz_report import FuzzReport
from vla_accel_ros.evaluation.fuzzing import BadMessages, png, truncated_png
from vla_accel_ros.evaluation.reliability import write_doc_section
from vla_accel_ros.ros import convert

SAMPLE = 300
TYPES = [Image, CompressedImage, JointState, String, AccelConfig, KalmanPrediction, VlaAction, KinematicState]


@pytest.fixture
def fuzz_env(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("VLA_ACCEL_FUZZ_DOMAIN", str(unique_domain_id()))
    return os.environ.get("VLA_ACCEL_TEST_MODEL")


def _now() -> int:
    return 1_700_000_000 * 10**9


def test_generator_is_seeded_and_every_message_survives_the_wire():
    labels = []
    for _ in range(2):
        gen = BadMessages(seed=7, now_ns=_now)
        run = []
        for i in range(400):
            cls = TYPES[i % len(TYPES)]
            case = gen.make(cls, "sim/episode" if cls is String and (i // len(TYPES)) % 2 else "instruction")
            assert type(case.msg) is cls
            run.append(case.label)
            try:
                deserialize_message(serialize_message(case.msg), cls)
            except UnicodeEncodeError:
                pass  # the driver counts these as unsendable
        labels.append(run)
    assert labels[0] == labels[1]
    kinds = Counter(label.split(".")[0] for label in labels[0])
    assert set(kinds) >= {"image", "compressed", "joint_state", "instruction", "episode", "accel_config"}
    assert set(kinds) >= {"kalman_prediction", "vla_action", "kinematic_state"}


def test_image_and_joint_defects_are_refused_where_the_nodes_convert_them():
    """Content defects die in convert; stamp defects are the nodes' job (covered by the run below)."""
    gen = BadMessages(seed=3, now_ns=_now)
    refused = Counter()
    for i in range(600):
        cls = (Image, CompressedImage, JointState)[i % 3]
        case = gen.make(cls)
        assert case.must_refuse
        msg = deserialize_message(serialize_message(case.msg), cls)
        defect = case.label.split(".", 1)[1]
        if "stamp" in defect or defect in ("too_small", "wrong_length"):
            continue  # stamps: the nodes; too small or another joint count: the policy runtime
        with pytest.raises(convert.ConversionError):
            if cls is Image:
                convert.image_to_numpy(msg)
            elif cls is CompressedImage:
                convert.compressed_to_numpy(msg)
            else:
                convert.joint_state_to_arrays(msg, [f"joint_{i}" for i in range(9)])
        refused[case.label] += 1
    assert refused["compressed.decompression_bomb"] > 0 and refused["joint_state.huge"] > 0


def test_png_helpers():
    ok = CompressedImage(format="png", data=png(16, 16))
    assert convert.compressed_to_numpy(ok).shape == (16, 16, 3)
    import random

    rng = random.Random(0)
    for _ in range(20):
        with pytest.raises(convert.ConversionError):
            convert.compressed_to_numpy(CompressedImage(format="png", data=truncated_png(rng)))


def test_stamp_problem():
    now = _now()
    assert convert.stamp_problem(now, now, None, 0.5) is None
    assert convert.stamp_problem(now + 10**8, now, now, 0.5) is None  # a little ahead: clock skew
    assert "back" in convert.stamp_problem(now - 1, now, now, 0.5)
    assert "future" in convert.stamp_problem(now + 10**9, now, None, 0.5)


def test_report_and_doc_sections(tmp_path):
    report = FuzzReport(seed=1, messages=3)
    report.per_topic["n /t"] += 3
    report.responsive = {"n": True}
    assert report.ok and "**3** bad messages" in report.markdown()
    report.crash("n", "/t", "image.empty", ValueError("boom"))
    assert not report.ok and json.loads(json.dumps(report.to_dict()))["crash_count"] == 1
    doc = tmp_path / "R.md"
    write_doc_section(doc, "fuzz", "Fuzz", "body-1")
    write_doc_section(doc, "soak", "Soak", "body-2")
    write_doc_section(doc, "fuzz", "Fuzz", "body-3")
    text = doc.read_text()
    assert "body-3" in text and "body-1" not in text and "body-2" in text and text.count("## Fuzz") == 1
    assert text.startswith("# Reliability") and text.index("## Fuzz") < text.index("## Soak")


def test_every_callback_survives_a_fuzz_sample_and_no_bad_data_reaches_the_arm(fuzz_env, tmp_path):
    from vla_accel_ros.cli import main

    out, doc = tmp_path / "fuzz.json", tmp_path / "RELIABILITY.md"
    argv = ["fuzz", "--messages", str(SAMPLE), "--seed", "11", "--json", str(out), "--doc", str(doc)]
    if fuzz_env:
        argv += ["--checkpoint", fuzz_env]
    rc = main(argv)
    data = json.loads(out.read_text())
    assert data["crash_count"] == 0, data["crashes"]
    assert data["commands_from_bad_data_count"] == 0, data["commands_from_bad_data"]
    assert data["non_finite_outputs"] == []
    assert all(data["responsive"].values()) and len(data["responsive"]) == 7, data["responsive"]
    assert rc == 0 and data["ok"]
    assert data["messages"] + data["unsendable"] == SAMPLE
    # Every subscription of every node got bad data (25 callbacks), plus the mixed steps.
    plain = [k for k in data["per_topic"] if "among good inputs" not in k]
    assert len(plain) == 25, sorted(plain)
    assert data["mixed_steps"] == int(SAMPLE * 0.2)
    assert "Bad data (fuzz)" in doc.read_text()


def test_the_oracle_catches_a_controller_that_trusts_stale_actions(fuzz_env, monkeypatch):
    from vla_accel_ros.control.command_gate import CommandGate
    from vla_accel_ros.ros.fuzz_driver import run_fuzz

    monkeypatch.setattr(CommandGate, "image_problem", lambda *a: None)
    report = run_fuzz(SAMPLE, seed=11, model=fuzz_env, log=lambda _s: None)
    assert not report.crashes
    bad = [c for c in report.commands_from_bad_data if "image_" in c and "stamp" in c]
    assert bad, report.commands_from_bad_data
    assert not report.ok and math.isfinite(report.duration_s)
