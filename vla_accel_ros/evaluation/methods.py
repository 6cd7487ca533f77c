"""The named decoding/precision methods every benchmark, replay and evaluation compares.

A method name resolves to an `AccelLoop` built from the same calibration and controller
settings the nodes load (config/calibration.yaml over config/vla_accel.yaml), so offline
rows decide each step exactly as the running graph would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.threshold_policy import ThresholdPolicy
from vla_accel_ros.kinematics.config_io import kalman_filter, load_params, proxy_calibration

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
# Where `vla-accel train-draft` puts the built-in checkpoint's draft (the packaged asset ships none).
SPECVLA_R = 9.0
FULL = "fp32"
# Every method replay and bench-replay compare; "static" stands for static:<mode> of each ladder mode.
ALL_METHODS = ("ar", "static", "dyq", "spec", "specvla", "kerv", "kerv+dyq")


def method(name: str, top_precision: str = "fp32") -> Method:
    """'ar', 'static:<mode>', 'dyq', 'spec', 'specvla', 'kerv', 'kerv+dyq'; 'kerv-loosen' is the ablation."""
    if name == "ar":
        return Method(name, precision=top_precision)
    if name.startswith("static:"):
        return Method(name, precision=name.split(":", 1)[1])
    table = {
        "dyq": Method(name, precision=None),
        "spec": Method(name, decoding="spec", precision=top_precision),
        "specvla": Method(name, decoding="specvla", precision=top_precision, threshold=SPECVLA_R),
        "kerv": Method(name, decoding="kerv", precision=top_precision, threshold=None, kalman=True),
        "kerv-loosen": Method(name, decoding="kerv", precision=top_precision, threshold=None, kalman=True),
        "kerv+dyq": Method(name, decoding="kerv", precision=None, threshold=None, kalman=True),
    }
    if name not in table:
        raise ValueError(f"unknown method {name!r}; known: ar, static:<mode>, {', '.join(table)}")
    return table[name]


def ladder_modes() -> list[str]:
    """The int4 ladder's mode names, cheapest first (known without building a ladder)."""
    from vla_accel_ros.quant.modes import DEFAULT_MODES

    return [m.name for m in DEFAULT_MODES]


def expand(names: list[str]) -> list[str]:
    """Method names with shorthands resolved: 'static' -> static:<mode> for every ladder mode, a bare
    mode name ('w4a16') -> 'static:w4a16'. Duplicates are dropped, order kept; unknown names raise."""
    modes = ladder_modes()
    out: list[str] = []
    for name in names:
        if name == "static":
            items = [f"static:{m}" for m in modes]
        elif name in modes or name == FULL:
            items = [f"static:{name}"]
        else:
            method(name)  # raises ValueError for an unknown name
            items = [name]
        out += [n for n in items if n not in out]
    return out


def needs_ladder(name: str, precisions: list[str]) -> bool:
    """Whether method `name` runs a precision that a policy serving `precisions` lacks (int4 modes, DyQ)."""
    m = method(name, top_precision=precisions[-1])
    return m.precision is None or m.precision not in precisions


def ladder_settings(params: dict, modes: list[str], dyq_file: Path | None = None) -> tuple[dict, str | None]:
    """`params` whose DyQ table names the policy's `modes`, and a note when it had to be changed.

    The shipped params describe an unquantized graph (precision_modes [fp32]); the ladder's table then
    comes from `config/dyq.yaml` (placed by `vla-accel calibrate-dyq`), as the graph gets it from that
    overlay, else [0, top_threshold] is split evenly over the lower modes (the top mode above it).
    """
    ctrl = params.get("controller_node", {})
    configured = list(ctrl.get("precision_modes", []))
    if configured and all(m in modes for m in configured) and len(configured) > 1:
        return params, None
    out = copy.deepcopy(params)
    dyq_file = CONFIG_DIR / "dyq.yaml" if dyq_file is None else dyq_file
    overlay = load_params(dyq_file).get("controller_node", {})
    if overlay.get("precision_modes") and all(m in modes for m in overlay["precision_modes"]):
        out.setdefault("controller_node", {}).update(overlay)
        c = out["controller_node"]
        return out, (
            f"DyQ table from {dyq_file.name}: bounds {c.get('precision_table_bounds')} -> "
            f"{c.get('precision_table_modes')}, else {c['precision_modes'][-1]} "
            f"(top_threshold {c.get('top_threshold')})"
        )
    top = float(ctrl.get("top_threshold", 0.5))
    lower = modes[:-1]
    bounds = [round(top * (i + 1) / len(lower), 6) for i in range(len(lower))]
    out.setdefault("controller_node", {}).update(
        precision_modes=list(modes), precision_table_bounds=bounds, precision_table_modes=list(lower)
    )
    table = ", ".join(f"S<={b:g}: {m}" for b, m in zip(bounds, lower, strict=True))
    note = (
        f"DyQ table: the configured precision_modes {configured} are not the ladder's {modes}; "
        f"used {table}, else {modes[-1]} (top_threshold {top:g})"
    )
    return out, note


def attach_draft(policy: Any, checkpoint: str | Path | None, draft: Path | None = None) -> None:
    """Give `policy` the draft at `draft` when given; otherwise it keeps the one Policy.load found beside
    the checkpoint (the built-in checkpoint ships its own). Failures only set policy.draft_error."""
    from vla_accel_ros.decoding.draft import DraftLoadError, load_draft

    if draft is None:
        if policy.draft is None:
            policy.draft_error = f"{policy.draft_error} (train one with `vla-accel train-draft`)"
        return
    try:
        policy.attach_draft(load_draft(Path(draft), policy.model))
    except DraftLoadError as err:
        policy.draft, policy.draft_error = None, str(err)


@dataclass
class MethodPolicies:
    """The policies the methods run on: the checkpoint as it is (ar, the decoders) and, for precision
    methods, a copy on the int4 ladder (quantizing replaces the fp32 weights in place, so it cannot be
    the same object)."""

    full: Any
    ladder: Any | None = None
    ladder_error: str | None = None

    @classmethod
    def single(cls, policy: Any) -> MethodPolicies:
        """Every method on one given policy (its own ladder, if it has one)."""
        has = len(policy.precisions) > 1
        why = None if has else f"the policy serves only {policy.precisions} (no precision ladder)"
        return cls(policy, policy if has else None, why)

    def for_method(self, name: str) -> tuple[Any | None, str | None]:
        """(policy, None) for the policy that serves `name`, or (None, why not)."""
        if not needs_ladder(name, self.full.precisions):
            return self.full, None
        if self.ladder is None:
            return None, f"needs the int4 precision ladder: {self.ladder_error or 'not built'}"
        return self.ladder, None


def add_kerv_verify(policy: Any) -> None:
    """Register "kerv-verify" over the policy's draft: KERV taking the masked gripper from the verify
    pass instead of one more target pass (a benchmark row)."""
    from vla_accel_ros.decoding.speculative import speculative_decoders

    decoders = speculative_decoders(policy.model, policy.actions, policy.draft, masked="verify")
    policy.decoders["kerv-verify"] = decoders["kerv"]


def load_policies(
    checkpoint: str | Path | None, names: list[str], draft: Path | None = None
) -> MethodPolicies:
    """Load what `names` need: the checkpoint with its draft, plus a laddered copy (also with the draft,
    for kerv+dyq) when a precision method is asked for. A ladder that cannot be built is a reason."""
    from vla_accel_ros.policy.runtime import Policy
    from vla_accel_ros.quant import quantize_policy

    path = None if checkpoint in (None, "", "builtin") else checkpoint
    full = Policy.load(path)
    attach_draft(full, checkpoint, draft)
    out = MethodPolicies(full)
    if any(needs_ladder(n, full.precisions) for n in names):
        laddered = Policy.load(path)
        attach_draft(laddered, checkpoint, draft)
        try:
            quantize_policy(laddered)
            out.ladder = laddered
        except (ValueError, RuntimeError, NotImplementedError, AttributeError) as err:
            out.ladder_error = f"cannot quantize this checkpoint ({type(err).__name__}: {err})"
    return out


def load_settings(config_dir: Path | None = None) -> dict:
    """Node parameters from the params YAML, with the calibration file's values on top."""
    config_dir = config_dir or CONFIG_DIR
    params = load_params(config_dir / "vla_accel.yaml")
    for node, values in load_params(config_dir / "calibration.yaml").items():
        params.setdefault(node, {}).update(values)
    return params


def build_loop(name: str, action_dim: int, precisions: list[str], params: dict | None = None) -> AccelLoop:
    """An AccelLoop for method `name`; `precisions` are the policy's modes, cheapest first."""
    params = load_settings() if params is None else params
    ctrl = params.get("controller_node", {})
    kin = params.get("kinematics_node", {})
    m = method(name, top_precision=precisions[-1])
    precision_policy = None
    if m.precision is None:
        modes = list(ctrl.get("precision_modes", precisions))
        missing = [p for p in modes if p not in precisions]
        if missing:
            raise ValueError(f"method {name!r}: precision modes {missing} are not served by the policy")
        table = list(
            zip(ctrl.get("precision_table_bounds", []), ctrl.get("precision_table_modes", []), strict=True)
        )
        precision_policy = PrecisionPolicy(
            modes, ctrl.get("top_threshold", 0.5), table, int(ctrl.get("downgrade_after", 5))
        )
    threshold_policy = None
    if m.threshold is None:
        direction = (
            "loosen_on_fluctuation"
            if name == "kerv-loosen"
            else ctrl.get("threshold_direction", "tighten_on_fluctuation")
        )
        threshold_policy = ThresholdPolicy(
            ctrl.get("r_min", 5.0),
            ctrl.get("r_max", 15.0),
            ctrl.get("fluctuation_lo", 0.0),
            ctrl.get("fluctuation_hi", 1.0),
            direction,
        )
    kalman = kalman_filter(params, action_dim, int(kin.get("history_length", 10))) if m.kalman else None
    return AccelLoop(
        m,
        proxy_calibration(params),
        action_dim,
        precision_policy,
        threshold_policy,
        kalman,
        cooldown=int(kin.get("cooldown_steps", 4)),
    )
