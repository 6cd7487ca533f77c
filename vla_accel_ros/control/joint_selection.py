"""The model's joint-state vector from joint_states messages, selected and ordered by joint name.

Why: a robot's joint_states rarely is the model's proprio vector position for position. The arm and the
gripper drivers publish separate JointState messages (joint_state_broadcaster per controller, a gripper
driver of its own), a driver lists its joints in its own order, and other joints (a head, a base) may be
on the same topic. Taking a message as it is then feeds the model 7 values one step and 2 the next, or
a gripper position where it expects a wrist joint. With `state_joint_names` configured, this keeps the
latest position of each named joint (with the stamp it came with) from any number of messages and gives
the vector in the configured order, or says which joint is missing or too old: the node then does not
act (the controller holds the arm) and its diagnostic names that joint.

Without names (the default), each message is taken as it is, whole, as before this selection existed.
Only selected joints are checked: a NaN position of a joint the model does not use (an effort-only
joint, another robot's) does not drop the message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class JointSelectionError(ValueError):
    """The vector cannot be built now; `key` is the diagnostic's summary, the message names the joint."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key = key


@dataclass(frozen=True)
class JointVector:
    """The positions in the configured order, with the oldest and newest stamp among them."""

    positions: np.ndarray  # float64
    stamp_ns: int  # the oldest joint's stamp: the vector is as stale as its stalest joint
    newest_ns: int  # the newest joint's stamp: when the vector last changed


class JointSelection:
    """Latest position and stamp per selected joint name (or the whole latest message, without names)."""

    def __init__(self, names: Sequence[str] = (), max_abs: float = math.inf) -> None:
        if len(set(names)) != len(names) or any(not n for n in names):
            raise ValueError(f"state_joint_names: names must be non-empty and distinct: {list(names)}")
        self.names = tuple(names)
        self.max_abs = float(max_abs)
        self._positions: dict[str, float] = {}
        self._stamps: dict[str, int] = {}
        self._whole: tuple[np.ndarray, int] | None = None  # without names: the latest message as it is

    @property
    def selecting(self) -> bool:
        """Whether joints are selected by name (else each message is taken whole)."""
        return bool(self.names)

    def copy(self) -> JointSelection:
        """A snapshot (the inference worker reads one while callbacks keep storing)."""
        out = JointSelection(self.names, self.max_abs)
        out._positions, out._stamps, out._whole = dict(self._positions), dict(self._stamps), self._whole
        return out

    def clear(self) -> None:
        """Forget every stored position (as if they had all gone stale)."""
        self._positions.clear()
        self._stamps.clear()
        self._whole = None

    def last_stamp_ns(self, names: Sequence[str]) -> int | None:
        """The newest stored stamp among the selected joints of a message with these names (without
        names: of the last message), for a node's "stamp goes back" check; None if none is stored."""
        if not self.selecting:
            return self._whole[1] if self._whole is not None else None
        stamps = [self._stamps[n] for n in names if n in self._stamps]
        return max(stamps) if stamps else None

    def observe(self, names: Sequence[str], positions: Sequence[float], stamp_ns: int) -> str | None:
        """Take one message's (names, positions) stamped stamp_ns; returns why it was not used, or None.
        A message without any selected joint is not used and is no problem (another driver's joints)."""
        values = np.asarray(positions, dtype=np.float64).reshape(-1)
        if not self.selecting:
            self._whole = (values, int(stamp_ns))
            return None
        if not names:
            return "joint_states without joint names: state_joint_names cannot select from it"
        if len(names) != values.size:
            return f"joint state has {len(names)} names but {values.size} positions"
        wanted = set(self.names)
        picked = {n: float(v) for n, v in zip(names, values, strict=True) if n in wanted}
        bad = [n for n, v in picked.items() if not math.isfinite(v)]
        if bad:
            return f"joint state position is NaN or inf for {', '.join(bad)}"
        far = [n for n, v in picked.items() if abs(v) > self.max_abs]
        if far:
            return f"joint state position of {', '.join(far)} is not physical (|q| > {self.max_abs:g})"
        self._positions.update(picked)
        self._stamps.update(dict.fromkeys(picked, int(stamp_ns)))
        return None

    @property
    def stamp_ns(self) -> int | None:
        """The oldest stamp of the vector, or None while a selected joint (or any message) is missing."""
        if not self.selecting:
            return self._whole[1] if self._whole is not None else None
        if any(n not in self._stamps for n in self.names):
            return None
        return min(self._stamps[n] for n in self.names)

    def vector(self, now_ns: int | None = None, max_age_s: float | None = None) -> JointVector:
        """The positions in the configured order; JointSelectionError names a joint never received, or
        the stalest joint older than max_age_s at now_ns (no age check without both)."""
        if not self.selecting:
            if self._whole is None:
                raise JointSelectionError("no joint state", "nothing received on 'joint_states' yet")
            values, stamp = self._whole
            self._check_age({"joint_states": stamp}, now_ns, max_age_s, whole=True)
            return JointVector(values, stamp, stamp)
        missing = [n for n in self.names if n not in self._stamps]
        if missing:
            have = sorted(self._stamps)
            raise JointSelectionError(
                "missing joint" if have else "no joint state",
                f"state_joint_names joint {', '.join(map(repr, missing))} not received on 'joint_states'"
                + (f" (received: {', '.join(have)})" if have else " (nothing received yet)"),
            )
        self._check_age(self._stamps, now_ns, max_age_s, whole=False)
        stamps = [self._stamps[n] for n in self.names]
        positions = np.array([self._positions[n] for n in self.names], dtype=np.float64)
        return JointVector(positions, min(stamps), max(stamps))

    def _check_age(
        self, stamps: dict[str, int], now_ns: int | None, max_age_s: float | None, whole: bool
    ) -> None:
        if now_ns is None or max_age_s is None:
            return
        name = min((n for n in stamps if whole or n in self.names), key=lambda n: stamps[n])
        age_s = (now_ns - stamps[name]) * 1e-9
        if age_s > max_age_s:
            what = "" if whole else f"joint {name!r} "
            raise JointSelectionError("stale joint state", f"{what}{age_s:.3f} s old (max {max_age_s})")
