"""Parameter tables: descriptors, the YAML, and loud failure on bad values (start-up and run time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_fixtures import ros_harness, ros_test_env, unique_domain_id

from vla_accel_ros import params as P
from vla_accel_ros.ros.launcher import parse_set
from vla_accel_ros.ros.params import ROS_TYPES, declare_params, descriptor

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"


@pytest.fixture
def ros(monkeypatch):
    with ros_harness(monkeypatch) as harness:
        yield harness


def _bare_node(ros, cls, overrides=()):
    """A plain Node named like the real one, declaring the table (no subscriptions, no threads)."""
    node = Node(cls.NODE, context=ros.context, parameter_overrides=list(overrides))
    ros.add(node)
    return node


def test_every_parameter_has_a_description_and_a_matching_descriptor():
    for cls in P.NODE_PARAMS.values():
        for info in cls.infos():
            d = descriptor(info)
            assert d.description.strip(), f"{cls.NODE}.{info.name} has no description"
            assert d.type == ROS_TYPES[info.kind].value
            assert d.read_only == info.meta.read_only
            if info.kind is P.Kind.FLOAT and info.meta.range:
                assert d.floating_point_range[0].from_value == info.meta.range[0]
                assert d.floating_point_range[0].to_value == info.meta.range[1]
            if info.kind is P.Kind.INT and info.meta.range:
                assert d.integer_range[0].to_value == info.meta.range[1]
            if info.meta.choices:
                assert all(c in d.additional_constraints for c in info.meta.choices)


def test_defaults_are_valid_and_required_parameters_exist():
    names = {node: set(cls.names()) for node, cls in P.NODE_PARAMS.items()}
    assert {
        "model_path",
        "control_rate_hz",
        "camera_topics",
        "camera_names",
        "default_precision",
        "default_decoding",
        "max_image_age_s",
        "device",
        "trigger",
    } <= names["inference_node"]
    assert {
        "mu95",
        "nu95",
        "window_m",
        "window_j",
        "weight",
        "kalman_q",
        "kalman_r",
        "history_length",
        "cooldown_steps",
    } <= names["kinematics_node"]
    assert {
        "dry_run",
        "output_type",
        "action_min",
        "action_max",
        "max_translation",
        "max_gripper_change",
        "watchdog_timeout_s",
        "max_rate_hz",
        "precision_modes",
        "top_threshold",
        "downgrade_after",
        "r_min",
        "r_max",
        "threshold_direction",
        "fluctuation_lo",
        "fluctuation_hi",
        "action_names",
        "action_kinds",
        "action_units",
        "action_scales",
        "action_frame",
        "gripper_open_value",
        "gripper_closed_value",
        "joint_names",
        "control_rate_hz",
        "max_joint_delta",
        "workspace_min",
        "workspace_max",
    } <= names["controller_node"]
    assert {
        "task",
        "seed_start",
        "image_size",
        "control_rate_hz",
        "lockstep",
        "max_steps",
        "episodes",
    } <= names["sim_arm_node"]
    for cls in P.NODE_PARAMS.values():
        cls()  # raises if a default breaks a rule
    assert P.ControllerParams().dry_run is True


def test_config_yaml_keys_equal_declared_names_for_every_node():
    data = yaml.safe_load((CONFIG / "vla_accel.yaml").read_text())
    assert set(data) == {f"/**/{node}" for node in P.NODE_PARAMS}
    for node, cls in P.NODE_PARAMS.items():
        values = data[f"/**/{node}"]["ros__parameters"]
        assert set(values) == set(cls.names()), f"{node}: YAML and table differ"
        cls.from_mapping(values)  # every value passes validation
    assert data["/**/controller_node"]["ros__parameters"]["dry_run"] is True


def test_sim_yaml_overrides_known_parameters_and_arms_the_sim():
    sections = P.read_params_files([str(CONFIG / "vla_accel.yaml"), str(CONFIG / "sim.yaml")])
    tables = P.validate_sections(sections)
    assert tables["controller_node"].dry_run is False
    assert tables["sim_arm_node"].lockstep is True
    assert tables["inference_node"].trigger == "image"


LIBERO_FILES = ["vla_accel.yaml", "calibration_libero.yaml", "sim.yaml", "libero.yaml"]


@pytest.mark.parametrize("output", ["vla_action", "twist"])
def test_libero_overlay_declares_the_7d_space_and_its_twist_scales_agree(output):
    from vla_accel_ros.control.action_space import LIBERO
    from vla_accel_ros.ros import convert

    sections = P.read_params_files([str(CONFIG / f) for f in LIBERO_FILES])
    sections["controller_node"]["output_type"] = output
    sections["sim_arm_node"]["command_type"] = output
    tables = P.validate_sections(sections)
    ctl, kin, sim = tables["controller_node"], tables["kinematics_node"], tables["sim_arm_node"]
    assert ctl.action_space() == LIBERO and ctl.dry_run is False
    assert len(kin.kalman_q) == len(kin.kalman_r) == len(kin.kalman_damping) == 7
    assert kin.compensator(7).kalman.damping.tolist() == [0.75, 0.75, 0.5, 0.9, 0.9, 0.9, 0.0]
    # What the controller sends as a twist, the simulated arm turns back into the same action.
    action = np.array([0.4, -0.2, 0.1, 0.3, -0.6, 0.05, 1.0])
    twist = convert.twist_for_space(action, LIBERO, ctl.control_rate_hz, 0)
    back = convert.action_from_twist(twist, sim.twist_linear_scale, 1.0, sim.twist_angular_scale)
    assert back == pytest.approx(action.astype(np.float32))


@pytest.mark.parametrize("name", ["calibration", "calibration_libero"])
def test_calibration_files_are_what_their_reports_give(tmp_path, name):
    # config/<name>.yaml is `vla-accel calibrate`'s output: rewritten from its stored report, it is the same.
    import argparse

    from vla_accel_ros.commands import calibrate

    out = tmp_path / f"{name}.yaml"
    report = ROOT / "docs" / "results" / f"{name}.json"
    args = argparse.Namespace(data=None, out=out, report=None, from_report=report)
    assert calibrate.run(args) == 0
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((CONFIG / f"{name}.yaml").read_text())


def test_nodes_declare_exactly_the_table_and_rcl_reads_the_yaml(ros):
    # The YAML goes through rcl's own parser (as --params-file), then the declared values must equal it.
    context = Context()
    args = [
        "--ros-args",
        "--params-file",
        str(CONFIG / "vla_accel.yaml"),
        "--params-file",
        str(CONFIG / "sim.yaml"),
    ]
    rclpy.init(args=args, context=context, domain_id=ros.domain_id)
    try:
        expected = P.validate_sections(
            P.read_params_files([str(CONFIG / "vla_accel.yaml"), str(CONFIG / "sim.yaml")])
        )
        for node_name, cls in P.NODE_PARAMS.items():
            node = Node(node_name, context=context)
            handle = declare_params(node, cls)
            declared = set(node.list_parameters([], 0).names) - P.BUILTIN_PARAMETERS
            assert declared == set(cls.names())
            assert handle.values == expected[node_name]
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_default_yaml_is_what_config_holds():
    assert yaml.safe_load(P.default_yaml()) == yaml.safe_load((CONFIG / "vla_accel.yaml").read_text())


@pytest.mark.parametrize(
    "cls,name,value,fragment",
    [
        (P.InferenceParams, "control_rate_hz", 0.0, "control_rate_hz"),
        (P.ControllerParams, "watchdog_timeout_s", -1.0, "watchdog_timeout_s"),
        (P.KinematicsParams, "history_length", 1, "history_length"),
        (P.InferenceParams, "trigger", "sometimes", "trigger"),
        (P.ControllerParams, "output_type", "servo", "output_type"),
        (P.ControllerParams, "output_type", "joint_trajectory", "output_type: 'joint_trajectory' cannot"),
        (P.ControllerParams, "action_units", ["m", "m", "m"], "action_units: 3 values, action_names has 4"),
        (P.ControllerParams, "action_kinds", ["translation"] * 3 + ["grip"], "action_kinds"),
        (P.ControllerParams, "action_min", [-1.0] * 7, "action_min: 7 values, action_names has 4"),
        (P.ControllerParams, "workspace_min", [0.0, 0.0, 0.0], "workspace_max"),
        (P.ControllerParams, "r_min", 20.0, "r_min"),
        (P.SimArmParams, "task", "juggle", "task"),
    ],
)
def test_bad_start_up_value_fails_loudly_naming_the_parameter(ros, cls, name, value, fragment):
    node = Node(cls.NODE, context=ros.context, parameter_overrides=[Parameter(name, value=value)])
    try:
        with pytest.raises(P.ParameterError, match=fragment):
            declare_params(node, cls)
    finally:
        node.destroy_node()


def test_wrong_type_at_start_up_names_the_parameter(ros):
    node = Node(
        "controller_node", context=ros.context, parameter_overrides=[Parameter("max_rate_hz", value=20)]
    )
    try:
        with pytest.raises(P.ParameterError, match="max_rate_hz"):
            declare_params(node, P.ControllerParams)
    finally:
        node.destroy_node()


def test_node_process_exits_with_a_clear_error_on_a_bad_value():
    env = ros_test_env(unique_domain_id())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla_accel_ros.ros.controller_node",
            "--ros-args",
            "-p",
            "watchdog_timeout_s:=-1.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "watchdog_timeout_s" in proc.stderr + proc.stdout


def test_run_time_changes_are_validated_and_bad_ones_refused(ros):
    node = _bare_node(ros, P.ControllerParams)
    handle = declare_params(node, P.ControllerParams)
    seen = []
    handle.on_change(lambda old, new: seen.append((old.r_max, new.r_max)))

    ok = node.set_parameters([Parameter("r_max", value=12.0)])[0]
    assert ok.successful and handle.values.r_max == 12.0 and seen == [(15.0, 12.0)]

    for param, fragment in [
        (Parameter("decoding", value="beam"), "decoding"),  # unknown choice
        (Parameter("watchdog_timeout_s", value=0.0), "watchdog_timeout_s"),  # out of range
        (Parameter("r_min", value=13.0), "r_min"),  # crosses r_max
        (Parameter("output_type", value="twist"), "read-only"),
    ]:
        result = node.set_parameters([param])[0]
        assert not result.successful, param.name
        assert fragment in result.reason
    assert handle.values.decoding == "ar"
    assert node.get_parameter("decoding").value == "ar"
    assert handle.values.r_min == 5.0 and handle.values.output_type == "vla_action"
    assert len(seen) == 1


def test_array_parameters_keep_their_element_rules(ros):
    node = _bare_node(ros, P.ControllerParams)
    handle = declare_params(node, P.ControllerParams)
    bad = node.set_parameters([Parameter("action_max", value=[1.0, 1.0, 1.0])])[0]
    assert not bad.successful and "action_m" in bad.reason
    good = node.set_parameters([Parameter("action_max", value=[0.5, 0.5, 0.5, 1.0])])[0]
    assert good.successful and handle.values.action_max == (0.5, 0.5, 0.5, 1.0)
    assert node.describe_parameter("action_min").type == ParameterType.PARAMETER_DOUBLE_ARRAY


def test_empty_arrays_mean_off_through_rcl_and_the_table(ros, tmp_path):
    """rclpy cannot type `[]`: an optional array is declared by type alone, and rcl's `[]` reads as off."""
    assert P.ControllerParams().workspace_min == () and P.ControllerParams().joint_names == ()
    with pytest.raises(P.ParameterError, match="action_names: must not be empty"):
        P.ControllerParams(action_names=())
    box = tmp_path / "box.yaml"
    box.write_text(
        "/**/controller_node:\n  ros__parameters:\n    workspace_min: [0.2, -0.5, 0.0]\n"
        "    workspace_max: [0.8, 0.5, 0.6]\n    joint_names: []\n"
    )
    context = Context()
    rclpy.init(args=["--ros-args", "--params-file", str(box)], context=context, domain_id=ros.domain_id)
    try:
        node = Node("controller_node", context=context)
        handle = declare_params(node, P.ControllerParams)
        assert handle.values.workspace_min == (0.2, -0.5, 0.0) and handle.values.joint_names == ()
        assert node.describe_parameter("joint_names").type == ParameterType.PARAMETER_STRING_ARRAY
        moved = node.set_parameters([Parameter("workspace_max", value=[0.9, 0.5, 0.6])])[0]
        assert not moved.successful and "read-only" in moved.reason  # ee_pose is subscribed at start-up
        node.destroy_node()
    finally:
        context.try_shutdown()
    assert parse_set(["controller_node.workspace_min=[]"]) == {"controller_node": {"workspace_min": ()}}
    with pytest.raises(P.ParameterError, match="workspace_min must be <= workspace_max"):
        P.ControllerParams(workspace_min=(0.2, 0.0, 0.0), workspace_max=(0.1, 1.0, 1.0))


def test_set_overrides_are_typed_from_the_table():
    out = parse_set(
        [
            "controller_node.max_rate_hz=20",
            "controller_node.dry_run=false",
            "inference_node.model_path=on",
            "controller_node.action_min=[-1, -1, -1, -0.5]",
        ]
    )
    assert out["controller_node"] == {
        "max_rate_hz": 20.0,
        "dry_run": False,
        "action_min": (-1.0, -1.0, -1.0, -0.5),
    }
    assert out["inference_node"] == {"model_path": "on"}
    for bad in [
        "controller_node.dry_run=maybe",
        "nobody.x=1",
        "controller_node.nope=1",
        "controller_node.r_min",
    ]:
        with pytest.raises(P.ParameterError):
            parse_set([bad])


def test_replay_overrides_cannot_be_armed_by_set():
    """`up --replay` forces dry_run and the bag's episode resets over whatever --set asked for."""
    from vla_accel_ros.ros.launcher import with_replay_overrides

    asked = parse_set(["controller_node.dry_run=false", "controller_node.max_rate_hz=20"])
    out = with_replay_overrides(asked)
    assert out["controller_node"] == {"dry_run": True, "use_sim_episode": True, "max_rate_hz": 20.0}
    assert asked["controller_node"]["dry_run"] is False  # the caller's mapping is left alone


def test_yaml_scalars_read_the_same_in_pyyaml():
    for value in [1e-06, 2.5, 3, True, "y", "on", 'a"b', ("x", "y"), (1e-12, 0.5)]:
        text = P.yaml_scalar(value)
        back = yaml.safe_load(text)
        assert (tuple(back) if isinstance(back, list) else back) == value, text
