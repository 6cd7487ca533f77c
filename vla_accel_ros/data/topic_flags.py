"""Command-line flags that say which topics of a bag hold what, and the TopicMap they give.

Shared by `vla-accel replay` and the bag player node (vla_accel_ros.ros.bag_player), so both read a
robot's bag the same way. argparse only: ROS-free, beside TopicMap (vla_accel_ros.data.bag_io).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # bag_io imports rosbags: only when a map is built, not when a CLI is parsed
    from vla_accel_ros.data.bag_io import TopicMap

NONE = ("", "none", "-")  # flag values that mean "the bag has no such topic"


def add_topic_arguments(parser: argparse.ArgumentParser, actions: bool = True) -> None:
    """Topic mapping flags shared by replay and the bag player (defaults: demonstration bags)."""
    from vla_accel_ros.data.bag_io import TopicMap

    d = TopicMap()
    g = parser.add_argument_group("topic mapping ('none' for a topic the bag lacks)")
    g.add_argument("--camera-topic", default=None, help=f"main camera (default {d.camera})")
    g.add_argument("--wrist-topic", default=None, help=f"wrist camera (default {d.wrist_camera})")
    g.add_argument("--joint-topic", default=d.joint_states, help="sensor_msgs/JointState topic")
    g.add_argument("--instruction-topic", default=d.instruction, help="std_msgs/String instruction topic")
    if actions:
        g.add_argument(
            "--action-topic",
            default=d.action,
            help="reference (executed) actions: VlaAction or Float32/64MultiArray",
        )
    g.add_argument("--episode-topic", default=d.episode, help="episode start/end markers (JSON String)")
    g.add_argument(
        "--compressed",
        action="store_true",
        help="cameras are sensor_msgs/CompressedImage (default topics get a /compressed suffix)",
    )
    g.add_argument("--instruction", default="", help="instruction to use when the bag has none")
    g.add_argument("--joint-names", default=None, help="comma-separated joints to select, in order")


def _opt(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in NONE else value


def topic_map(args: argparse.Namespace) -> TopicMap:
    """TopicMap from add_topic_arguments' flags ('none', '-' or '' for a topic the bag lacks)."""
    from vla_accel_ros.data.bag_io import TopicMap

    d = TopicMap()
    suffix = "/compressed" if args.compressed else ""
    camera = args.camera_topic if args.camera_topic is not None else d.camera + suffix
    wrist = args.wrist_topic if args.wrist_topic is not None else (d.wrist_camera or "") + suffix
    if _opt(camera) is None:
        raise ValueError("--camera-topic cannot be 'none': the main camera defines the steps")
    return TopicMap(
        camera=camera,
        wrist_camera=_opt(wrist),
        joint_states=args.joint_topic,
        instruction=_opt(args.instruction_topic),
        action=_opt(getattr(args, "action_topic", None)),
        episode=_opt(args.episode_topic),
        image_format="compressed" if args.compressed else "auto",
        joint_names=[n.strip() for n in args.joint_names.split(",")] if args.joint_names else None,
        default_instruction=args.instruction,
    )
