"""Per-stage latency of complete control steps, cold start counted apart from steady state.

A step is what the graph does between an image and an action: the controller's decision
(AccelLoop.decide), preprocessing, prefill, each decode/verify pass, and the Kalman update
with the executed action. The first `warmup` steps (allocator growth, lazy init, caches)
are reported separately instead of polluting p50/p95.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from vla_accel_ros.evaluation.stats import percentiles
from vla_accel_ros.params.settings import GraphSettings
from vla_accel_ros.params.tables import BUILTIN_CHECKPOINT
from vla_accel_ros.policy.builder import PolicySpec, build_policy
from vla_accel_ros.policy.runtime import ActionResult, Policy, PolicyInput

LATENCY_DTYPES = ("fp32", "bf16", "int4")


def runs_on(method: str, dtype: str) -> bool:
    """Whether `method` has a row on the `dtype` policy: methods on the int4 ladder (ar@w4a16, dyq,
    kerv+dyq) only on int4, the others (ar, kerv, ...) on fp32 and bf16, where they run in that format."""
    from vla_accel_ros.evaluation.methods import parse_method

    return (parse_method(method).policy == "ladder") == (dtype == "int4")


def inputs_from_bag(bag: Path, limit: int = 60) -> list[PolicyInput]:
    """Real observations of one demonstration episode (camera frames, joints, instruction)."""
    from vla_accel_ros.data.bag_io import read_episodes

    episode = read_episodes(bag)[0]
    n = min(limit, len(episode))
    return [
        PolicyInput(
            {c: episode.images[c][i] for c in episode.images}, episode.joint_positions[i], episode.instruction
        )
        for i in range(n)
    ]


def synthetic_inputs(policy: Policy, n: int, instruction: str, seed: int = 0) -> list[PolicyInput]:
    rng = np.random.default_rng(seed)
    size = policy.config.image_size
    return [
        PolicyInput(
            {c: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in policy.cameras},
            rng.normal(size=policy.config.state_dim).astype(np.float32),
            instruction,
        )
        for _ in range(n)
    ]


def latency_policies(
    model: str, dtypes: list[str], settings: GraphSettings, checkpoint: str = BUILTIN_CHECKPOINT
) -> Iterator[tuple[str, Policy]]:
    """(dtype, policy) for `model` ("builtin": `checkpoint` through the policy builder with the inference
    node's settings; "realistic": the SmolLM2-135M-decoder model) in each of `dtypes`: fp32, bf16, or
    int4 (the precision ladder at the graph's group size, for ar@w4a16, dyq, kerv+dyq). Each format is
    its own copy, so the order of `dtypes` does not matter."""
    unknown = set(dtypes) - set(LATENCY_DTYPES)
    if unknown:
        raise ValueError(f"dtypes {sorted(unknown)}: each one of {', '.join(LATENCY_DTYPES)}")
    if model == "builtin":
        spec = PolicySpec.from_params(settings.inference, checkpoint=checkpoint, precision_ladder="none")
        for dtype in dtypes:
            ladder = dtype == "int4"
            yield dtype, build_policy(spec.with_ladder() if ladder else replace(spec, full_format=dtype))
        return
    import copy

    from vla_accel_ros.policy.bf16 import cast_bf16
    from vla_accel_ros.policy.realistic import build_realistic_model
    from vla_accel_ros.quant import quantize_policy

    fp32 = build_realistic_model(pretrained=True)
    for dtype in dtypes:
        policy = Policy(copy.deepcopy(fp32))
        if dtype == "bf16":
            policy = cast_bf16(policy)
        elif dtype == "int4":
            quantize_policy(policy, group=settings.inference.quant_group_size)
        yield dtype, policy


def measure(
    policy: Policy,
    inputs: list[PolicyInput],
    method: str = "ar",
    warmup: int = 5,
    repeats: int = 1,
    settings: GraphSettings | None = None,
    on_step: Callable[[ActionResult], None] | None = None,
) -> dict:
    """Per-stage p50/p95 of `repeats` runs over `inputs` with `method`'s AccelLoop (the graph's settings:
    `settings`, default the params files of config/); the first `warmup` steps are the cold start.
    `on_step` sees each steady step's ActionResult (a caller's own figures: acceptance, stage sums)."""
    from vla_accel_ros.evaluation.methods import build_loop, ladder_settings, load_settings

    settings = load_settings() if settings is None else settings
    if len(policy.precisions) > 1:  # on the ladder: the DyQ table names its modes, as in the graph
        settings, _ = ladder_settings(settings, policy.precisions)
    loop = build_loop(method, policy.action_dim, policy.precisions, settings)
    stages: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    cold: list[float] = []
    passes: list[int] = []
    fallbacks: set[str] = set()
    precisions: dict[str, int] = defaultdict(int)
    step = 0
    for _ in range(repeats):
        loop.reset()
        for inp in inputs:
            t0 = time.perf_counter()
            kwargs = loop.act_kwargs()
            t1 = time.perf_counter()
            out = policy.act(inp, **kwargs)
            t2 = time.perf_counter()
            loop.observe(np.clip(out.action, -1.0, 1.0), out.kalman_filled)
            t3 = time.perf_counter()
            total = (t3 - t0) * 1e3
            if out.fallback:
                fallbacks.add(out.fallback)
            if step < warmup:
                cold.append(total)
            else:
                totals.append(total)
                passes.append(out.target_passes)
                precisions[out.precision] += 1
                if on_step is not None:
                    on_step(out)
                stages["controller"].append((t1 - t0) * 1e3)
                for name, ms in out.timings_ms.items():
                    stages[name].append(ms)
                stages["kalman+proxies"].append((t3 - t2) * 1e3)
            step += 1
    total = percentiles(totals)
    return {
        "method": method,
        "steps": len(totals),
        "warmup_steps": len(cold),
        "cold_start_ms": cold,
        "total_ms": total,
        "control_rate_hz": 1000.0 / total["p50"] if totals else float("nan"),
        "stages_ms": {name: percentiles(v) for name, v in stages.items()},
        "target_passes_mean": float(np.mean(passes)) if passes else float("nan"),
        "fallbacks": sorted(fallbacks),
        "precisions": dict(precisions),  # steps per precision the policy ran (DyQ's schedule)
    }


def baselines(rows: list[dict]) -> dict[str, tuple[str, float]]:
    """Per model, the faster (p50) of its fp32 and bf16 autoregressive rows: (dtype, ms)."""
    from vla_accel_ros.evaluation.reporting import fastest_baseline

    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        full = {
            r["dtype"]: r["total_ms"]["p50"]
            for r in rows
            if r["model"] == model and r["method"] == "ar" and r["dtype"] in ("fp32", "bf16")
        }
        if full:
            out[model] = fastest_baseline(full)
    return out


def _vs(row: dict, base: dict[str, tuple[str, float]]) -> str:
    if row["model"] not in base:
        return "-"
    dtype, ms = base[row["model"]]
    mark = " (baseline)" if (row["dtype"], row["method"]) == (dtype, "ar") else ""
    return f"{ms / row['total_ms']['p50']:.2f}x{mark}"


def markdown(rows: list[dict]) -> str:
    """One table: a row per (model, dtype, method), p50 / p95 per stage."""
    names: list[str] = []
    for r in rows:
        names += [n for n in r["stages_ms"] if n not in names]
    head = (
        "| model | dtype | method | total p50 / p95 ms | vs baseline | Hz | cold start ms | "
        + " | ".join(names)
        + " |"
    )
    lines = [head, "|" + "---|" * (7 + len(names))]
    base = baselines(rows)
    for r in rows:
        cells = []
        for n in names:
            v = r["stages_ms"].get(n)
            cells.append(f"{v['p50']:.2f} / {v['p95']:.2f}" if v else "-")
        cold = ", ".join(f"{c:.0f}" for c in r["cold_start_ms"][:3])
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['method']} | {r['total_ms']['p50']:.1f} / "
            f"{r['total_ms']['p95']:.1f} | {_vs(r, base)} | {r['control_rate_hz']:.1f} | {cold} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


LATENCY_NOTE = (
    "'realistic' = SmolLM2-135M decoder with untrained vision encoders: latency only, not a policy. "
    "Stages in ms, p50 / p95 over steady steps; the first warm-up steps are listed as cold start."
)


def machine_line(info: dict, load_before: float, load_after: float) -> str:
    """The machine and the load it ran under (other processes competing for the cores show here)."""
    from vla_accel_ros.evaluation.reporting import machine_summary

    return (
        f"{machine_summary(info)}; 1-min load average {load_before:.1f} at the start, {load_after:.1f} at "
        f"the end (on {info['cores_available']} cores: above that, other processes competed for the CPU)"
    )


LATENCY_TITLE = (
    "# Control-step latency\n\nOne section per CPU kernel class, written by `vla-accel bench-latency`.\n"
)


def page(command: str, machine: str, rows: list[dict]) -> str:
    """A section of docs/LATENCY.md: provenance, machine, what the columns mean, the table."""
    note = "'vs baseline': against the faster (p50) of the same model's fp32 and bf16 `ar` rows in this run."
    return f"Command: `{command}`\n\nMachine: {machine}\n\n{LATENCY_NOTE} {note}\n\n" + markdown(rows)
