"""Staleness watchdog (inference results, camera frames): expired when the last kick is too old.

Stamps are seconds on one clock (sim time or wall time). A kick older than the last accepted one is
rejected and counted (a clock jump or a reordered message must not make stale data look fresh); an equal
stamp is accepted. A query time before the last kick (the clock went back) or a non-finite one reads as
expired: when in doubt, the data is stale. `reset` after a deliberate clock reset (e.g. a new sim episode).
"""

from __future__ import annotations

import math


class Watchdog:
    """Says when the last fresh data is too old to act on (see the module docstring)."""

    def __init__(self, timeout_s: float) -> None:
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.last_kick: float | None = None
        self.rejected = 0
        self.last_error: str | None = None

    def reset(self) -> None:
        self.last_kick = None
        self.last_error = None

    def kick(self, stamp_s: float) -> bool:
        """Record fresh data at stamp_s; False (and `rejected` += 1, `last_error` set) if refused."""
        t = float(stamp_s)
        if not math.isfinite(t):
            self.last_error = f"non-finite stamp {stamp_s!r}"
        elif self.last_kick is not None and t < self.last_kick:
            self.last_error = f"stamp {t:.6f} s goes back from {self.last_kick:.6f} s"
        else:
            self.last_kick = t
            return True
        self.rejected += 1
        return False

    def age(self, now_s: float) -> float:
        """Seconds since the last kick; inf if never kicked or now_s is unusable (see module doc)."""
        now = float(now_s)
        if self.last_kick is None or not math.isfinite(now) or now < self.last_kick:
            return math.inf
        return now - self.last_kick

    def expired(self, now_s: float) -> bool:
        return self.age(now_s) > self.timeout_s

    def stale(self, now_s: float) -> bool:
        """Alias of `expired` (the name in docs/ARCHITECTURE.md)."""
        return self.expired(now_s)
