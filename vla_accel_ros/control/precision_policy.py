"""DyQ-VLA precision switching: one precision mode per control step from the fused sensitivity S_t.

- S > top_threshold, or S not finite -> the top mode at once (a NaN means the proxies are broken: be safe).
- Otherwise the first table entry (upper_bound, mode) with S <= upper_bound gives the requested mode; an S
  above every bound (but <= top_threshold) asks for the top mode.
- Asymmetric hysteresis: a request at or above the current mode takes effect at once; a lower one only
  after `downgrade_after` (K) consecutive steps that all ask for a lower mode. The downgrade goes to the
  HIGHEST mode requested over those K steps (our choice: the most precise mode every one of those steps
  would accept, never lower than any of them asked for), and the count restarts after any mode change, so
  a further step down needs another K steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence


class PrecisionPolicy:
    """Stateful switcher; starts in the top mode."""

    def __init__(
        self,
        modes: Sequence[str],
        top_threshold: float,
        table: Sequence[tuple[float, str]],
        downgrade_after: int = 5,
    ) -> None:
        self.modes = list(modes)
        if not self.modes or len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes must be a non-empty list of distinct names, got {self.modes}")
        if not math.isfinite(_as_float(top_threshold)):
            raise ValueError(f"top_threshold must be a finite number, got {top_threshold!r}")
        if not (isinstance(downgrade_after, int) and downgrade_after >= 1):
            raise ValueError(f"downgrade_after must be an integer >= 1, got {downgrade_after!r}")
        self.top_threshold = float(top_threshold)
        self.downgrade_after = downgrade_after
        self._rank = {m: i for i, m in enumerate(self.modes)}
        self.table = self._validate(table)
        self.top = self.modes[-1]
        self._current = len(self.modes) - 1
        self._streak: list[int] = []

    def _validate(self, table: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for i, entry in enumerate(table):
            try:
                bound, mode = entry
                bound = float(bound)
            except (TypeError, ValueError):
                raise ValueError(f"table[{i}] = {entry!r}: expected (upper_bound, mode)") from None
            if mode not in self._rank:
                raise ValueError(f"table[{i}] = {entry!r}: unknown mode {mode!r}; modes are {self.modes}")
            if not math.isfinite(bound):
                raise ValueError(f"table[{i}] = {entry!r}: the bound must be finite")
            if bound > self.top_threshold:
                raise ValueError(
                    f"table[{i}] = {entry!r}: bound above top_threshold {self.top_threshold} is unreachable"
                )
            if out and bound <= out[-1][0]:
                raise ValueError(
                    f"table[{i}] = {entry!r}: bounds must increase strictly (previous {out[-1][0]})"
                )
            if out and self._rank[mode] < self._rank[out[-1][1]]:
                raise ValueError(
                    f"table[{i}] = {entry!r}: a higher S must not map to a cheaper mode than {out[-1][1]!r}"
                )
            out.append((bound, mode))
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PrecisionPolicy:
        """From config: {modes: [...], top_threshold: x, table: [[bound, mode], ...], downgrade_after: k}."""
        try:
            table = [tuple(e) for e in data["table"]]
            return cls(data["modes"], data["top_threshold"], table, int(data.get("downgrade_after", 5)))
        except KeyError as exc:
            raise ValueError(f"precision policy config lacks {exc.args[0]!r}") from None

    @property
    def mode(self) -> str:
        return self.modes[self._current]

    def reset(self) -> None:
        self._current = len(self.modes) - 1
        self._streak.clear()

    def requested(self, sensitivity: float) -> tuple[str, str]:
        """Stateless mapping S -> (mode, why), before hysteresis."""
        s = _as_float(sensitivity)
        if not math.isfinite(s):
            return self.top, f"S={sensitivity!r} invalid"
        if s > self.top_threshold:
            return self.top, f"S={s:.2f}>{self.top_threshold:.2f}"
        for bound, mode in self.table:
            if s <= bound:
                return mode, f"S={s:.2f}<={bound:.2f}"
        return self.top, f"S={s:.2f} above table"

    def decide(self, sensitivity: float) -> tuple[str, str]:
        """Mode for this step and a one-line reason, e.g. "S=0.71>0.50 -> bf16"."""
        mode, why = self.requested(sensitivity)
        rank = self._rank[mode]
        if rank >= self._current:
            self._streak.clear()
            self._current = rank
            return mode, f"{why} -> {mode}"
        self._streak.append(rank)
        k = self.downgrade_after
        if len(self._streak) < k:
            return self.mode, f"{why} asks {mode}; holding {self.mode} ({len(self._streak)}/{k})"
        self._current = max(self._streak[-k:])
        self._streak.clear()
        return self.mode, f"{why} -> {self.mode} (after {k} lower steps)"


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def decision_cost_ms(policy: PrecisionPolicy, sensitivities: Sequence[float]) -> float:
    """Mean wall time of one `decide` in ms over `sensitivities` (benchmark helper; resets the policy)."""
    if not sensitivities:
        raise ValueError("need at least one sensitivity value")
    policy.reset()
    start = time.perf_counter()
    for s in sensitivities:
        policy.decide(s)
    elapsed = time.perf_counter() - start
    policy.reset()
    return 1e3 * elapsed / len(sensitivities)
