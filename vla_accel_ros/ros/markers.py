"""/vla/markers for RViz or Foxglove: commanded motion, Kalman prediction, and a text panel.

The arrows start at the marker frame's origin (the end effector's frame on a robot whose TF provides
it, or the base frame): they show the direction and size of the commanded delta, scaled by
`marker_scale` metres per action unit.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from vla_accel_ros.ros.convert import header

NAMESPACE = "vla"
COMMAND_ID, PREDICTION_ID, TEXT_ID = 0, 1, 2
_LIFETIME = Duration(sec=2)


def _arrow(
    marker_id: int, xyz: np.ndarray, scale: float, color: ColorRGBA, stamp_ns: int, frame: str
) -> Marker:
    m = Marker(
        header=header(stamp_ns, frame), ns=NAMESPACE, id=marker_id, type=Marker.ARROW, action=Marker.ADD
    )
    tip = np.asarray(xyz[:3], dtype=np.float64) * scale
    m.points = [Point(x=0.0, y=0.0, z=0.0), Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2]))]
    m.scale.x, m.scale.y, m.scale.z = 0.01, 0.02, 0.02  # shaft diameter, head diameter, head length
    m.pose.orientation.w = 1.0
    m.color = color
    m.lifetime = _LIFETIME
    return m


def _delete(marker_id: int, stamp_ns: int, frame: str) -> Marker:
    return Marker(header=header(stamp_ns, frame), ns=NAMESPACE, id=marker_id, action=Marker.DELETE)


def status_text(
    precision: str, decoding: str, threshold: float, accepted: int, drafted: int, latency_ms: float, mode: str
) -> str:
    accept = f"{accepted}/{drafted} accepted" if drafted else "no draft"
    return f"{precision} {decoding} r={threshold:.1f}\n{accept}  {latency_ms:.1f} ms  [{mode}]"


def build_markers(
    action: np.ndarray | None,
    prediction: np.ndarray | None,
    text: str,
    frame_id: str,
    stamp_ns: int,
    scale: float,
) -> MarkerArray:
    """Command arrow (green), prediction arrow (blue; deleted when there is none), text panel."""
    markers = []
    if action is not None:
        markers.append(
            _arrow(COMMAND_ID, action, scale, ColorRGBA(r=0.1, g=0.9, b=0.2, a=1.0), stamp_ns, frame_id)
        )
    else:
        markers.append(_delete(COMMAND_ID, stamp_ns, frame_id))
    if prediction is not None:
        blue = ColorRGBA(r=0.2, g=0.4, b=1.0, a=0.8)
        markers.append(_arrow(PREDICTION_ID, prediction, scale, blue, stamp_ns, frame_id))
    else:
        markers.append(_delete(PREDICTION_ID, stamp_ns, frame_id))
    panel = Marker(
        header=header(stamp_ns, frame_id),
        ns=NAMESPACE,
        id=TEXT_ID,
        type=Marker.TEXT_VIEW_FACING,
        action=Marker.ADD,
    )
    panel.pose.position.z = 0.3
    panel.pose.orientation.w = 1.0
    panel.scale.z = 0.04  # text height (m)
    panel.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    panel.text = text
    panel.lifetime = _LIFETIME
    markers.append(panel)
    return MarkerArray(markers=markers)
