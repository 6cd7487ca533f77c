"""The named decoding/precision methods every benchmark, replay and evaluation compares: one grammar.

A method name says how each step decodes and at which precision:

    METHOD    := DECODING [ "-" VARIANT ] [ "@" PRECISION | "+dyq" ]   |   "dyq"
    DECODING  := ar | spec | specvla | kerv
    VARIANT   := verify | loosen              (kerv ablations, benchmarks only)
    PRECISION := fp32 | bf16 | a ladder mode (w4a16, w4a8-emu, w4a4-emu, ...)

`ar` runs the checkpoint as stored (fp32); `ar@bf16` its bf16 cast; `ar@w4a16` the int4 ladder held
at one mode; `kerv+dyq` KERV with DyQ choosing the mode each step (`dyq` is `ar+dyq`). In `--methods`
lists, `static` stands for `ar@<mode>` of every ladder mode and a bare mode name for `ar@<mode>`.

A name resolves to an `AccelLoop` built from `GraphSettings`, the typed tables of the params files the
graph loads (config/vla_accel.yaml, calibration.yaml and, for the ladder, dyq.yaml), and its policy
comes from `policy.builder.build_policy` with the inference node's ladder settings, so offline rows
decide each step, and run the model, as the graph does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vla_accel_ros.control.accel_decision import AccelDecider
from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.kinematics_step import KinematicsStep
from vla_accel_ros.params.files import config_dir
from vla_accel_ros.params.settings import DYQ_FILE, GraphSettings, default_files
from vla_accel_ros.params.tables import DECODINGS, FULL_PRECISION
from vla_accel_ros.params.yaml_io import read_params_file
from vla_accel_ros.policy.builder import PolicyBuildError, PolicySpec, build_policy

VARIANTS = {"kerv": ("verify", "loosen")}
DYQ = "dyq"
BF16 = "bf16"
# Every method replay and bench-replay compare; "static" stands for ar@<mode> of each ladder mode.
ALL_METHODS = ("ar", "static", "dyq", "spec", "specvla", "kerv", "kerv+dyq")


@dataclass(frozen=True)
class MethodName:
    """A parsed method name (see the module doc); `policy` says which policy serves it."""

    name: str
    decoding: str
    variant: str | None = None
    precision: str | None = None  # None: the full policy's top mode; "dyq": dynamic; else fixed

    @property
    def policy(self) -> str:
        """'full' (the checkpoint as stored), 'bf16' (its bf16 cast) or 'ladder' (the int4 copy)."""
        if self.precision == BF16:
            return "bf16"
        if self.precision is None or self.precision == FULL_PRECISION:
            return "full"
        return "ladder"

    @property
    def decoder(self) -> str:
        """The Policy.decoders key the method runs (the verify ablation has its own decoder)."""
        return "kerv-verify" if self.variant == "verify" else self.decoding


def parse_method(name: str) -> MethodName:
    """`name` per the grammar of the module doc; ValueError naming what is wrong."""
    text = name.strip()
    if text == DYQ:
        return MethodName(DYQ, "ar", precision=DYQ)
    base, precision = text, None
    if text.endswith("+" + DYQ):
        base, precision = text[: -len(DYQ) - 1], DYQ
    elif "@" in text:
        base, precision = text.split("@", 1)
        if not precision:
            raise ValueError(f"method {name!r}: nothing after '@' (e.g. ar@w4a16)")
    decoding, _, variant = base.partition("-")
    if decoding not in DECODINGS:
        raise ValueError(
            f"unknown method {name!r}: a method is DECODING[-VARIANT][@PRECISION|+dyq] with DECODING one "
            f"of {', '.join(DECODINGS)} (e.g. ar, ar@w4a16, ar@bf16, dyq, kerv, kerv+dyq)"
        )
    if variant and variant not in VARIANTS.get(decoding, ()):
        raise ValueError(f"method {name!r}: {decoding} has no variant {variant!r}")
    return MethodName(text, decoding, variant or None, precision)


def method(name: str, settings: GraphSettings, top_precision: str = FULL_PRECISION) -> Method:
    """The AccelLoop method of `name`: fixed or kinematic precision and threshold, from the controller's
    table (the fixed Spec-VLA threshold is `controller_node.specvla_threshold`, as in the graph)."""
    m = parse_method(name)
    precision = None if m.precision == DYQ else (m.precision or top_precision)
    threshold: float | None = 0.0
    if m.decoding == "specvla":
        threshold = settings.controller.specvla_threshold
    elif m.decoding == "kerv":
        threshold = None
    return Method(m.name, m.decoder, precision, threshold, kalman=m.decoding == "kerv")


def ladder_modes() -> list[str]:
    """The int4 ladder's mode names, cheapest first (known without building a ladder)."""
    from vla_accel_ros.quant.modes import DEFAULT_MODES

    return [m.name for m in DEFAULT_MODES]


def expand(names: list[str]) -> list[str]:
    """Method names with shorthands resolved: 'static' -> ar@<mode> for every ladder mode, a bare mode
    name ('w4a16', 'fp32', 'bf16') -> 'ar@<mode>'. Duplicates are dropped, order kept; unknown names raise."""
    modes = ladder_modes()
    out: list[str] = []
    for name in names:
        if name == "static":
            items = [f"ar@{m}" for m in modes]
        elif name in modes or name in (FULL_PRECISION, BF16):
            items = [f"ar@{name}"]
        else:
            parse_method(name)  # raises ValueError for an unknown name
            items = [name]
        out += [n for n in items if n not in out]
    return out


def load_settings(config: Path | None = None, dyq: bool = False) -> GraphSettings:
    """The graph's settings from config/ (vla_accel.yaml, calibration.yaml; dyq: and dyq.yaml)."""
    return GraphSettings.load(default_files(config, dyq=dyq))


def ladder_settings(
    settings: GraphSettings, modes: list[str], dyq_file: Path | None = None
) -> tuple[GraphSettings, str | None]:
    """`settings` whose DyQ table names the ladder's `modes`, and a note when it had to be changed.

    The shipped params describe an unquantized graph (precision_modes [fp32]); the ladder's table then
    comes from config/dyq.yaml (placed by `vla-accel calibrate-dyq`), as the graph gets it from that
    overlay, else [0, top_threshold] is split evenly over the lower modes (the top mode above it).
    """
    ctrl = settings.controller
    configured = list(ctrl.precision_modes)
    if len(configured) > 1 and all(m in modes for m in configured):
        return settings, None
    dyq_file = config_dir() / DYQ_FILE if dyq_file is None else dyq_file
    overlay = read_params_file(dyq_file, missing_ok=True).get("controller_node", {})
    if overlay.get("precision_modes") and all(m in modes for m in overlay["precision_modes"]):
        out = settings.with_values("controller_node", **_tuples(overlay))
        c = out.controller
        return out, (
            f"DyQ table from {dyq_file.name}: bounds {list(c.precision_table_bounds)} -> "
            f"{list(c.precision_table_modes)}, else {c.precision_modes[-1]} (top_threshold {c.top_threshold})"
        )
    top, lower = ctrl.top_threshold, modes[:-1]
    bounds = tuple(round(top * (i + 1) / len(lower), 6) for i in range(len(lower)))
    out = settings.with_values(
        "controller_node",
        precision_modes=tuple(modes),
        precision_table_bounds=bounds,
        precision_table_modes=tuple(lower),
    )
    table = ", ".join(f"S<={b:g}: {m}" for b, m in zip(bounds, lower, strict=True))
    note = (
        f"DyQ table: the configured precision_modes {configured} are not the ladder's {modes}; "
        f"used {table}, else {modes[-1]} (top_threshold {top:g})"
    )
    return out, note


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def attach_draft(policy: Any, draft: Path | None = None) -> None:
    """Give `policy` the draft at `draft` when given; otherwise it keeps the one its loader found beside
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


def add_kerv_verify(policy: Any) -> None:
    """Register "kerv-verify" over the policy's draft: KERV taking the masked gripper from the verify
    pass instead of one more target pass (a benchmark row)."""
    from vla_accel_ros.decoding.registry import speculative_decoders

    decoders = speculative_decoders(policy.model, policy.actions, policy.draft, masked="verify")
    policy.decoders["kerv-verify"] = decoders["kerv"]


@dataclass
class MethodPolicies:
    """The policies the methods run on: the checkpoint as it is (ar, the decoders), its bf16 cast, and
    for precision methods a copy on the int4 ladder (quantizing replaces the fp32 weights in place, so
    it cannot be the same object). Each is built by `build_policy` from one PolicySpec."""

    full: Any
    ladder: Any | None = None
    ladder_error: str | None = None
    bf16: Any | None = None
    bf16_error: str | None = None

    @classmethod
    def single(cls, policy: Any) -> MethodPolicies:
        """Every method on one given policy (its own ladder, if it has one)."""
        has = len(policy.precisions) > 1
        why = None if has else f"the policy serves only {policy.precisions} (no precision ladder)"
        return cls(policy, policy if has else None, why, None, "no bf16 copy was built")

    @classmethod
    def build(
        cls, spec: PolicySpec, names: list[str], draft: Path | None = None, ladder: str = "int4"
    ) -> MethodPolicies:
        """What `names` need from `spec`: the checkpoint with its draft, plus the bf16 cast and the
        laddered copy (with the draft too, for kerv+dyq) when a method asks for them. The ladder's group
        size is the spec's (the inference node's quant_group_size). A copy that cannot be built is a
        reason on the methods that need it."""
        parsed = [parse_method(n) for n in names]
        kinds = {m.policy for m in parsed}
        verify = any(m.variant == "verify" for m in parsed)
        full = build_policy(replace(spec, precision_ladder="none", full_format="fp32"))
        out = cls(full)
        if "ladder" in kinds:
            try:
                out.ladder = build_policy(spec.with_ladder(ladder))
            except PolicyBuildError as err:
                out.ladder_error = str(err)
        for policy in (out.full, out.ladder):
            if policy is not None:
                attach_draft(policy, draft)
                if verify and policy.draft is not None:
                    add_kerv_verify(policy)
        if "bf16" in kinds:
            try:
                out.bf16 = build_policy(replace(spec, precision_ladder="none", full_format="bf16"))
            except PolicyBuildError as err:
                out.bf16_error = str(err)
        return out

    def for_method(self, name: str) -> tuple[Any | None, str | None]:
        """(policy, None) for the policy that serves `name`, or (None, why not)."""
        kind = parse_method(name).policy
        if kind == "full" or (kind == "ladder" and self.ladder is self.full):
            return self.full, None
        if kind == "bf16":
            return (self.bf16, None) if self.bf16 is not None else (None, f"needs bf16: {self.bf16_error}")
        if self.ladder is None:
            return None, f"needs the int4 precision ladder: {self.ladder_error or 'not built'}"
        return self.ladder, None


def build_loop(name: str, action_dim: int, precisions: list[str], settings: GraphSettings) -> AccelLoop:
    """An AccelLoop for method `name` on a policy serving `precisions` (cheapest first): the kinematics
    node's `KinematicsStep` and the controller node's `AccelDecider`, built from the graph's tables, with
    the method's fixed choices in place of the controller's where the method fixes them."""
    ctrl, kin = settings.controller, settings.kinematics
    m = method(name, settings, top_precision=precisions[-1])
    if m.precision is None:
        missing = [p for p in ctrl.precision_modes if p not in precisions]
        if missing:
            raise ValueError(f"method {name!r}: precision modes {missing} are not served by the policy")
    if parse_method(name).variant == "loosen":
        ctrl = replace(ctrl, threshold_direction="loosen_on_fluctuation")
    decider = AccelDecider(
        m.decoding,
        ctrl.precision_policy() if m.precision is None else m.precision,
        ctrl.threshold_policy() if m.threshold is None else m.threshold,
    )
    step = KinematicsStep(kin.proxy_calibration(), kin.compensator if m.kalman else None, action_dim)
    return AccelLoop.from_parts(m, step, decider)
