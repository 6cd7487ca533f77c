"""Copy a rosbag2 bag under other topic names, optionally scaling the action topic.

A developer tool to make "someone else's robot" bags from demonstration bags, for trying
`vla-accel stats` / `replay` topic mapping and range checks:

    python tools/rewrite_bag.py data/demos/push-v3 /tmp/wide_bag --scale 1.6 \
        --rename /expert_action=/arm/cmd_delta --rename /joint_states=/robot/joint_states
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, Writer

from vla_accel_ros.data.bag_io import typestore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--rename", action="append", default=[], metavar="OLD=NEW")
    parser.add_argument("--action-topic", default="/expert_action", help="topic --scale multiplies")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--max-messages", type=int, default=0, help="stop after N messages (0 = all)")
    args = parser.parse_args()
    renames = dict(item.split("=", 1) for item in args.rename)
    ts = typestore()
    with Reader(args.src) as reader, Writer(args.dst, version=8) as writer:
        conns = {}
        for c in reader.connections:
            conns[c.id] = writer.add_connection(renames.get(c.topic, c.topic), c.msgtype, typestore=ts)
        for n, (c, stamp, raw) in enumerate(reader.messages()):
            if args.max_messages and n >= args.max_messages:
                break
            if c.topic == args.action_topic and args.scale != 1.0:
                msg = ts.deserialize_cdr(raw, c.msgtype)
                field = "action" if hasattr(msg, "action") else "data"
                setattr(msg, field, (np.asarray(getattr(msg, field)) * args.scale).astype(np.float32))
                raw = ts.serialize_cdr(msg, c.msgtype)
            writer.write(conns[c.id], stamp, raw)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
