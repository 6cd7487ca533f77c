"""A scripted pick-and-place expert for LIBERO from privileged object poses (no images).

It reads the objects' collision geometry from the MuJoCo model, so one script serves every "put A
in/on B" task: approach above A, turn the gripper so its fingers close across A's narrow side,
descend, grasp, lift above everything on the table, move over B, lower, release, retreat.

The grasp yaw is drawn per episode from the episode's generator (any yaw for an object narrow both
ways, within +-20 degrees of the narrow axis otherwise): LIBERO's objects start axis-aligned, and a
fixed grasp would leave the rotation dims of the demonstrations constant.

Actions follow the LIBERO arm's 7-D convention (vla_accel_ros.sim.libero_arm): OSC_POSE deltas in the
world frame, 1.0 = 5 cm or 0.5 rad, gripper -1 open / +1 closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

POS_SCALE = 0.05  # m per unit action (robosuite OSC_POSE output_max)
ROT_SCALE = 0.5  # rad per unit action
ROUND_WIDTH = 0.055  # m: objects narrower than this both ways are grasped at any yaw
YAW_JITTER = np.deg2rad(20.0)  # around the narrow axis otherwise
CLOSE_STEPS = 12  # the Panda's fingers take about this many 20 Hz steps to close
RELEASE_STEPS = 10
FINGERTIP_DEPTH = 0.017  # m the Panda's fingertips reach below its grip site
MAX_REGRASPS = 2
GRASP_CANDIDATES = 12
GRIPPER_SPAN = 0.07  # m: objects wider than this both ways are taken by the rim
RIM_INSET = 0.015  # m from the outer edge to the grasp point on a rim
RIM_DEPTH = 0.025  # m below the top edge
FINGER_REACH = 0.045  # m from the grip point to the outside of an open fingertip
FINGER_CLEARANCE = 0.015  # m between a fingertip's landing point and any neighbour
# Gripper pointing straight down (eef z = -world z) at yaw 0; its fingers close along eef y.
DOWN = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Box:
    """A body subtree's collision geometry: world bounds and the widths across its horizontal axes."""

    lo: np.ndarray  # (3,) world min corner
    hi: np.ndarray  # (3,) world max corner
    axes: tuple[np.ndarray, np.ndarray]  # horizontal unit vectors along the body's two non-vertical axes
    widths: tuple[float, float]  # extent of the geometry along each of `axes`

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2.0


def _subtree_geoms(model: mujoco.MjModel, root: int) -> np.ndarray:
    """Collision geoms of `root` and its descendants (all geoms if it has no colliding one)."""
    bodies = {root}
    for b in range(root + 1, model.nbody):  # children always have larger ids than their parents
        if int(model.body_parentid[b]) in bodies:
            bodies.add(b)
    in_tree = np.isin(model.geom_bodyid, list(bodies))
    colliding = in_tree & ((model.geom_contype | model.geom_conaffinity) != 0)
    return np.flatnonzero(colliding if colliding.any() else in_tree)


def body_box(model: mujoco.MjModel, data: mujoco.MjData, root: int) -> Box:
    """The current `Box` of body `root`'s subtree (from each geom's local bounding box)."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    points = []
    for g in _subtree_geoms(model, root):
        center, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        local = center + signs * half
        points.append(data.geom_xpos[g] + local @ data.geom_xmat[g].reshape(3, 3).T)
    pts = np.concatenate(points) if points else data.xpos[root][None]
    rot = data.xmat[root].reshape(3, 3)
    vertical = int(np.argmax(np.abs(rot[2, :])))
    axes, widths = [], []
    for k in (i for i in range(3) if i != vertical):
        a = rot[:, k].copy()
        a[2] = 0.0
        a /= max(np.linalg.norm(a), 1e-9)
        axes.append(a)
        widths.append(float(np.ptp(pts @ a)))
    return Box(pts.min(axis=0), pts.max(axis=0), (axes[0], axes[1]), (widths[0], widths[1]))


def _distance_2d(point: np.ndarray, box: Box) -> float:
    """Horizontal distance from `point` (xy) to `box`'s footprint (0 inside)."""
    gap = np.maximum(np.maximum(box.lo[:2] - point, point - box.hi[:2]), 0.0)
    return float(np.hypot(*gap))


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame axis-angle vector that turns `current` into `target` (what OSC_POSE's dims 3-5 take)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).reshape(-1))
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def _closing_yaw(direction: np.ndarray) -> float:
    """The gripper yaw at which its fingers close along the horizontal `direction`."""
    return float(np.arctan2(direction[0], -direction[1]))


def _nearest_equivalent(yaw: float, reference: float) -> float:
    """`yaw` + k*pi closest to `reference`: a parallel gripper is the same after a half turn."""
    return reference + (yaw - reference + np.pi / 2) % np.pi - np.pi / 2


class PickPlaceExpert:
    """Pick body `pick` and put it in (relation "in") or on ("on") body `place`; one instance per episode."""

    def __init__(
        self,
        pick: int,
        place: int,
        relation: str,
        obstacles: list[int],
        rng: np.random.Generator,
    ) -> None:
        if relation not in ("in", "on"):
            raise ValueError(f"relation must be 'in' or 'on', got {relation!r}")
        self.pick, self.place, self.relation = pick, place, relation
        self.obstacles = [b for b in obstacles if b != pick]
        self.rng = rng
        self.phase = "approach"
        self._phase_steps = 0
        self._regrasps = 0
        self._yaw: float | None = None
        self._grasp_offset = np.zeros(2)  # grasp point minus the object's centre (xy)
        self._grasp_xy: np.ndarray | None = None
        self.rim = False  # grasped by its rim (decided on the first action)
        self._lift_start_z = 0.0

    def _goto(self, phase: str) -> None:
        self.phase, self._phase_steps = phase, 0

    def _choose_grasp(
        self, model: mujoco.MjModel, data: mujoco.MjData, box: Box, eef_rot: np.ndarray, grasp_z: float
    ) -> tuple[float, np.ndarray]:
        """Grasp yaw and point: random ones, unless a finger would then land on a neighbour.

        Candidates vary the yaw (see the module docstring) and slide the grasp point along the
        object's long side; an object too wide for the open gripper (a bowl) is taken by its rim, at a
        random point of it, the fingers closing across the rim. The first (random) candidate is kept
        when both fingertips clear every neighbour taller than the fingertips' landing height by
        FINGER_CLEARANCE, else the candidate with the most clearance.
        """
        k = int(np.argmin(box.widths))
        narrow, long_axis = box.axes[k], box.axes[1 - k]
        spread = np.pi / 2 if max(box.widths) < ROUND_WIDTH else YAW_JITTER
        slide = max(0.0, box.widths[1 - k] / 2 - 0.02)
        current = _closing_yaw(eef_rot[:, 1])
        others = [body_box(model, data, b) for b in (*self.obstacles, self.place)]
        others = [o for o in others if o.hi[2] > grasp_z - FINGERTIP_DEPTH]
        best: tuple[float, float, np.ndarray] | None = None
        for i in range(GRASP_CANDIDATES):
            if self.rim:
                theta = float(self.rng.uniform(-np.pi, np.pi))
                radial = np.cos(theta) * narrow + np.sin(theta) * long_axis
                point = box.center[:2] + (box.widths[k] / 2 - RIM_INSET) * radial[:2]
                yaw = _closing_yaw(radial) + float(self.rng.uniform(-0.15, 0.15))
            else:
                offset = float(self.rng.uniform(-spread, spread))
                point = (
                    box.center[:2] + (float(self.rng.uniform(-slide, slide)) if i else 0.0) * long_axis[:2]
                )
                yaw = _closing_yaw(narrow) + offset
            yaw = _nearest_equivalent(yaw, current)
            closing = np.array([np.sin(yaw), -np.cos(yaw)])
            clear = min(
                (_distance_2d(point + sign * FINGER_REACH * closing, o) for o in others for sign in (-1, 1)),
                default=1.0,
            )
            if i == 0 and clear > FINGER_CLEARANCE:
                return yaw, point
            if best is None or clear > best[0]:
                best = (clear, yaw, point)
        assert best is not None
        return best[1], best[2]

    def _clearance(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """Height that the held object's bottom must clear to pass over everything on the table."""
        tops = [body_box(model, data, b).hi[2] for b in (*self.obstacles, self.place)]
        return max(tops) + 0.04

    def act(
        self, model: mujoco.MjModel, data: mujoco.MjData, eef_pos: np.ndarray, eef_rot: np.ndarray
    ) -> np.ndarray:
        """The 7-D action for the current state (advances the phase machine).

        `eef_pos` is the grip point between the fingertips; `eef_rot` the hand's frame, which is `DOWN`
        when the hand points down at yaw 0 with the fingers closing along world y.
        """
        obj = body_box(model, data, self.pick)
        if self._yaw is None:
            self.rim = min(obj.widths) > GRIPPER_SPAN
        height = obj.hi[2] - obj.lo[2]
        # Near the top of tall objects, mid-height of low ones, just below a rim; never so low that the
        # fingertips (which reach FINGERTIP_DEPTH below the grip point) hit what the object stands on.
        top = obj.hi[2] - (RIM_DEPTH if self.rim else 0.045)
        grasp_z = max(top, obj.lo[2] + (0.0 if self.rim else 0.5 * height), obj.lo[2] + FINGERTIP_DEPTH)
        if self._yaw is None:
            self._yaw, point = self._choose_grasp(model, data, obj, eef_rot, grasp_z)
            self._grasp_offset = point - obj.center[:2]
        grasp_xy = obj.center[:2] + self._grasp_offset
        gripper = -1.0
        self._phase_steps += 1
        n = self._phase_steps

        if self.phase == "approach":
            hover_z = max(grasp_z + 0.10, self._clearance(model, data) - 0.02)
            target = np.array([*grasp_xy, hover_z])
            err = target - eef_pos
            rot_err = np.linalg.norm(rotation_error(self._target_rot(), eef_rot))
            if (np.linalg.norm(err[:2]) < 0.01 and abs(err[2]) < 0.02 and rot_err < 0.08) or n > 100:
                self._goto("descend")
        elif self.phase == "descend":
            target = np.array([*grasp_xy, grasp_z])
            if np.linalg.norm(target - eef_pos) < 0.008 or n > 40:
                self._grasp_xy = eef_pos[:2].copy()
                self._goto("close")
        elif self.phase == "close":
            assert self._grasp_xy is not None
            target, gripper = np.array([*self._grasp_xy, grasp_z]), 1.0
            if n >= CLOSE_STEPS:
                self._lift_start_z = obj.lo[2]
                self._goto("lift")
        else:
            gripper, target = self._carry_phase(model, data, eef_pos, obj, n)

        a = np.zeros(7)
        a[:3] = np.clip((target - eef_pos) / POS_SCALE, -1.0, 1.0)
        a[3:6] = np.clip(0.8 * rotation_error(self._target_rot(), eef_rot) / ROT_SCALE, -1.0, 1.0)
        a[6] = gripper
        return a

    def _carry_phase(
        self, model: mujoco.MjModel, data: mujoco.MjData, eef_pos: np.ndarray, obj: Box, n: int
    ) -> tuple[float, np.ndarray]:
        """Gripper command and target position once the object is held (lift, carry, lower, release)."""
        assert self._grasp_xy is not None
        hang = eef_pos[2] - obj.lo[2]  # the held object's bottom below the hand
        carry_z = self._clearance(model, data) + hang
        dest = body_box(model, data, self.place)
        # Where the hand must be for the held object's centre to be over the destination's.
        over = dest.center[:2] + (eef_pos[:2] - obj.center[:2])
        margin = 0.02 if self.relation == "in" else 0.015
        if self.phase == "lift":
            target = np.array([*self._grasp_xy, carry_z])
            if n > 8 and obj.lo[2] < self._lift_start_z + 0.01 and self._regrasps < MAX_REGRASPS:
                self._regrasps += 1  # slipped out: open and try again
                self._goto("approach")
                return -1.0, eef_pos + np.array([0.0, 0.0, 0.02])
            if abs(target[2] - eef_pos[2]) < 0.02 or n > 40:
                self._goto("carry")
            return 1.0, target
        if self.phase == "carry":
            target = np.array([*over, carry_z])
            if np.linalg.norm(target[:2] - eef_pos[:2]) < 0.01 or n > 80:
                self._goto("lower")
            return 1.0, target
        if self.phase == "lower":
            target = np.array([*over, dest.hi[2] + margin + hang])
            if abs(target[2] - eef_pos[2]) < 0.01 or n > 30:
                self._goto("release")
            return 1.0, target
        if self.phase == "release":
            if n >= RELEASE_STEPS:
                self._goto("retreat")
            return -1.0, eef_pos.copy()
        return -1.0, eef_pos + np.array([0.0, 0.0, 0.03])  # retreat: straight up, out of the way

    def _target_rot(self) -> np.ndarray:
        assert self._yaw is not None
        return _rot_z(self._yaw) @ DOWN
