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
GRASP_CANDIDATES = 24
GRIPPER_SPAN = 0.07  # m: objects wider than this both ways are taken by the rim
MIN_RIM_HEIGHT = 0.03  # m: lower wide objects (a 2 cm plate) slip out of a rim grasp
RIM_INSET = 0.015  # m from the outer edge to the grasp point on a rim
RIM_DEPTH = 0.025  # m below the top edge
HAND_CLEARANCE = 0.01  # m between the open hand (at the grasp and on the way down to it) and any neighbour
DESCENT_LIFTS = (0.0, 0.04, 0.08, 0.12)  # m above the grasp pose where the hand's clearance is checked too
PATH_MARGIN = 0.05  # m: fixtures this near the carry's straight line are passed over
STALL_STEPS = 6  # descending steps without 2 mm of progress: the hand is blocked, try another grasp
# Where the open fingertips are, in the hand's frame about the grip point, when the hand's geometry is not
# given (hand z points down from the grip point).
FINGERTIPS = np.array([[0.0, -0.042, 0.012], [0.0, 0.042, 0.012]])
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


def _box_grid(center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """3x3x3 points over a box (corners, edge and face centres, centre): a coarse stand-in for its volume."""
    steps = np.array([-1.0, 0.0, 1.0])
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    return center + grid * half


def graspable(box: Box) -> bool:
    """Whether the expert can pick up an object of this shape: narrow enough for the open gripper, or
    tall enough (MIN_RIM_HEIGHT) to be taken by its rim. A plate is neither; it would have to be pushed."""
    return min(box.widths) <= GRIPPER_SPAN or box.hi[2] - box.lo[2] >= MIN_RIM_HEIGHT


def hand_points(model: mujoco.MjModel, data: mujoco.MjData, hand: int, grip: np.ndarray) -> np.ndarray:
    """Points over the hand's and fingers' collision geoms, in the hand's frame about the grip point `grip`.

    Taken with the fingers as they are now (open, at an episode's start), so that a candidate grasp can
    be checked for where the open hand would be before the hand goes there.
    """
    rot = data.xmat[hand].reshape(3, 3)
    pts = []
    for g in _subtree_geoms(model, hand):
        local = _box_grid(model.geom_aabb[g, :3], model.geom_aabb[g, 3:])
        pts.append((data.geom_xpos[g] + local @ data.geom_xmat[g].reshape(3, 3).T - grip) @ rot)
    return np.concatenate(pts)


@dataclass(frozen=True)
class Solids:
    """Oriented boxes (each collision geom's own bounding box) of the bodies the hand must not touch.

    Per geom rather than per body: a cabinet's bounding box covers its open drawer and what is in it,
    while its panels leave room for the hand.
    """

    center: np.ndarray  # (G, 3) world centre of each geom's box
    rot: np.ndarray  # (G, 3, 3) geom frame -> world
    half: np.ndarray  # (G, 3) half sizes in the geom frame

    @classmethod
    def of(cls, model: mujoco.MjModel, data: mujoco.MjData, bodies: list[int]) -> Solids:
        geoms = np.concatenate([_subtree_geoms(model, b) for b in bodies]) if bodies else np.zeros(0, int)
        rot = data.geom_xmat[geoms].reshape(-1, 3, 3)
        center = data.geom_xpos[geoms] + np.einsum("gij,gj->gi", rot, model.geom_aabb[geoms, :3])
        return cls(center, rot, model.geom_aabb[geoms, 3:].copy())

    def distance(self, points: np.ndarray) -> float:
        """The smallest distance from any of `points` (N, 3) to any box (0 when one is inside a box)."""
        if not len(self.center) or not len(points):
            return 1.0
        rel = np.einsum("ngi,gij->ngj", points[:, None, :] - self.center[None], self.rot)
        gap = np.maximum(np.abs(rel) - self.half[None], 0.0)
        return float(np.linalg.norm(gap, axis=2).min())


def _segment_to_box_2d(start: np.ndarray, end: np.ndarray, box: Box, samples: int = 21) -> float:
    """Horizontal distance from the segment start-end (xy) to `box`'s footprint (0 where it crosses it)."""
    pts = start + np.linspace(0.0, 1.0, samples)[:, None] * (end - start)
    gap = np.maximum(np.maximum(box.lo[:2] - pts, pts - box.hi[:2]), 0.0)
    return float(np.hypot(gap[:, 0], gap[:, 1]).min())


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
        place: int | None,
        relation: str,
        obstacles: list[int],
        rng: np.random.Generator,
        hand: int | None = None,
        fixtures: tuple[int, ...] = (),
        place_site: int | None = None,
    ) -> None:
        """`place`: the destination body (the fixture that owns `place_site`, when one is given);
        `place_site`: a region's site ("on the stove's cook region"), whose position is the destination;
        `obstacles`: the movable objects; `fixtures`: bodies such as a cabinet that the hand must avoid
        when it grasps (their panels, not their bounding boxes, see `Solids`) and pass over when it carries;
        `hand`: the hand's body, whose geometry the grasp check uses (fingertips only when None)."""
        if relation not in ("in", "on"):
            raise ValueError(f"relation must be 'in' or 'on', got {relation!r}")
        self.pick, self.place, self.relation = pick, place, relation
        self.place_site = place_site
        self.obstacles = [b for b in obstacles if b != pick]
        self.fixtures = tuple(b for b in fixtures if b not in (pick, place))
        if place is None and place_site is None:
            raise ValueError("a destination needs a body or a site")
        self.hand = hand
        self._hand_points: np.ndarray | None = None
        self._last_z = np.inf
        self._stalled = 0
        self._redraw = False  # draw a new grasp on the next action (after a slip or a blocked descent)
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
        self._last_z, self._stalled = np.inf, 0

    def _choose_grasp(
        self, model: mujoco.MjModel, data: mujoco.MjData, box: Box, eef_rot: np.ndarray, grasp_z: float
    ) -> tuple[float, np.ndarray]:
        """Grasp yaw and point: random ones, unless the open hand would then touch a neighbour.

        Candidates vary the yaw (see the module docstring) and slide the grasp point along the
        object's long side; an object too wide for the open gripper (a bowl) is taken by its rim, at a
        random point of it, the fingers closing across the rim. The first (random) candidate is kept
        when the open hand, at the grasp and at DESCENT_LIFTS above it, clears every other object and
        fixture by HAND_CLEARANCE, else the candidate with the most clearance.
        """
        k = int(np.argmin(box.widths))
        narrow, long_axis = box.axes[k], box.axes[1 - k]
        spread = np.pi / 2 if max(box.widths) < ROUND_WIDTH else YAW_JITTER
        slide = max(0.0, box.widths[1 - k] / 2 - 0.02)
        current = _closing_yaw(eef_rot[:, 1])
        solids = Solids.of(model, data, [*self.obstacles, *self._place_bodies, *self.fixtures])
        hand = self._hand_points if self._hand_points is not None else FINGERTIPS
        lifts = np.array([[0.0, 0.0, dz] for dz in DESCENT_LIFTS])
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
            at_grasp = np.array([*point, grasp_z]) + hand @ (_rot_z(yaw) @ DOWN).T
            clear = solids.distance((at_grasp[None] + lifts[:, None]).reshape(-1, 3))
            if i == 0 and clear > HAND_CLEARANCE:
                return yaw, point
            if best is None or clear > best[0]:
                best = (clear, yaw, point)
        assert best is not None
        return best[1], best[2]

    def _clearance(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """Height that the held object's bottom must clear to pass over everything on the way.

        Every object counts, and every fixture whose footprint comes within PATH_MARGIN of the straight
        line from the object to its destination (a cabinet beside the path does not raise the carry).
        """
        start = body_box(model, data, self.pick).center[:2]
        end = self._destination(model, data)
        tops = [body_box(model, data, b).hi[2] for b in (*self.obstacles, *self._place_bodies)]
        for b in self.fixtures:
            box = body_box(model, data, b)
            if _segment_to_box_2d(start, end, box) < PATH_MARGIN:
                tops.append(box.hi[2])
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
        if self._hand_points is None and self.hand is not None:
            self._hand_points = hand_points(model, data, self.hand, eef_pos)
        if self._yaw is None or self._redraw:
            self._redraw = False
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
            self._stalled = self._stalled + 1 if self._last_z - eef_pos[2] < 0.002 else 0
            self._last_z = float(eef_pos[2])
            blocked = self._stalled >= STALL_STEPS and eef_pos[2] - grasp_z > 0.015
            if blocked and self._regrasps < MAX_REGRASPS:
                return self._retry(eef_pos)  # the hand sits on something: another grasp
            if np.linalg.norm(target - eef_pos) < 0.008 or n > 40 or blocked:
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
        dest = self._destination_box(model, data)
        if self.relation == "in" and self.place_site is None:
            # The held object's centre over the container's; released just above its rim.
            over = dest.center[:2] + (eef_pos[:2] - obj.center[:2])
            release_z = dest.hi[2] + 0.02 + hang
        else:
            # LIBERO's "On" wants the two bodies' origins within 3 cm (or the object's origin in the
            # site's region); the object is lowered until it rests on the surface below it, since one
            # dropped from higher (a bowl held by its rim hangs tilted) lands on an edge and slides.
            over = self._destination(model, data) + (eef_pos[:2] - data.xpos[self.pick][:2])
            release_z = self._surface_below(model, data, obj, dest) + hang - 0.005
        if self.phase == "lift":
            target = np.array([*self._grasp_xy, carry_z])
            if n > 8 and obj.lo[2] < self._lift_start_z + 0.01 and self._regrasps < MAX_REGRASPS:
                a = self._retry(eef_pos)  # slipped out: open and try again
                return float(a[6]), eef_pos + a[:3] * POS_SCALE
            if abs(target[2] - eef_pos[2]) < 0.02 or n > 40:
                self._goto("carry")
            return 1.0, target
        if self.phase == "carry":
            target = np.array([*over, carry_z])
            if np.linalg.norm(target[:2] - eef_pos[:2]) < 0.01 or n > 80:
                self._goto("lower")
            return 1.0, target
        if self.phase == "lower":
            target = np.array([*over, release_z])
            self._stalled = self._stalled + 1 if self._last_z - eef_pos[2] < 0.001 else 0
            self._last_z = float(eef_pos[2])
            if abs(target[2] - eef_pos[2]) < 0.005 or n > 30 or (n > 5 and self._stalled >= 3):
                self._goto("release")
            return 1.0, target
        if self.phase == "release":
            if n >= RELEASE_STEPS:
                self._goto("retreat")
            return -1.0, eef_pos.copy()
        return -1.0, eef_pos + np.array([0.0, 0.0, 0.03])  # retreat: straight up, out of the way

    @property
    def _place_bodies(self) -> tuple[int, ...]:
        return () if self.place is None else (self.place,)

    def _destination_box(self, model: mujoco.MjModel, data: mujoco.MjData) -> Box:
        """The destination body's `Box`, or a point at the site for a region of the table."""
        if self.place is not None:
            return body_box(model, data, self.place)
        assert self.place_site is not None
        at = np.array(data.site_xpos[self.place_site])
        axes = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        return Box(at, at, axes, (0.0, 0.0))

    def _destination(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Where the held object's origin should end (xy): the site's, or the destination body's origin."""
        if self.place_site is not None:
            return np.array(data.site_xpos[self.place_site][:2])
        assert self.place is not None
        if self.relation == "in":
            return body_box(model, data, self.place).center[:2]
        return np.array(data.xpos[self.place][:2])

    def _surface_below(self, model: mujoco.MjModel, data: mujoco.MjData, obj: Box, dest: Box) -> float:
        """Height of what lies under the held object's centre (the destination's top where nothing is)."""
        start = np.array([*obj.center[:2], obj.lo[2] - 0.002])
        geom = np.array([-1], dtype=np.int32)
        dist = mujoco.mj_ray(model, data, start, np.array([0.0, 0.0, -1.0]), None, 1, self.pick, geom)
        return float(start[2] - dist) if 0 <= dist < 0.5 else float(dest.hi[2])

    def _retry(self, eef_pos: np.ndarray) -> np.ndarray:
        """Open, rise and start again with a newly drawn grasp (the last one slipped or was blocked)."""
        self._regrasps += 1
        self._redraw = True
        self._goto("approach")
        a = np.zeros(7)
        a[2], a[6] = 0.4, -1.0  # 2 cm up
        return a

    def _target_rot(self) -> np.ndarray:
        assert self._yaw is not None
        return _rot_z(self._yaw) @ DOWN
