"""What every simulated arm returns per step, and the camera-orientation rule they share.

Kept apart from the simulators so that the Meta-World and the LIBERO arm return the same type
without one importing the other's simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORLD_UP = np.array([0.0, 0.0, 1.0])


@dataclass
class SimObservation:
    """One simulator observation in the package's conventions (upright RGB, joint state, success)."""

    images: dict[str, np.ndarray]  # camera -> HxWx3 uint8, upright
    joint_names: list[str]
    joint_positions: np.ndarray  # float64 (9,)
    joint_velocities: np.ndarray  # float64 (9,)
    state: np.ndarray  # privileged simulator state (for the scripted expert); state[:3] is the hand
    success: bool


def needs_half_turn(cam_xmat: np.ndarray, far: np.ndarray) -> bool:
    """True when a camera's image-up axis points against the world's up, so its image is upside down.

    MuJoCo renders a camera's +y axis as image-up. For a camera looking (nearly) straight down, like a
    wrist camera, "up" in the image is taken as `far`, the horizontal direction pointing away from the
    robot's base across the table, as a person looking down at the table from the robot would see it.
    """
    axes = np.asarray(cam_xmat, dtype=np.float64).reshape(3, 3)
    cam_up, forward = axes[:, 1], -axes[:, 2]
    ref_up = np.asarray(far, dtype=np.float64) if abs(forward[2]) > 0.9 else WORLD_UP
    return float(cam_up @ ref_up) < 0.0
