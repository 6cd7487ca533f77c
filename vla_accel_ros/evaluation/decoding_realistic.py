"""bench-decoding at the realistic size: the open-loop frames again on the SmolLM2-135M-decoder model,
each row replaying the built-in's acceptance pattern of that frame (see evaluation.spec_scale).

Each row runs the realistic model in the row's format: fp32, the bf16 cast, or the int4 ladder at the
graph's group size (the same `cast_bf16` and `quantize_policy` the policy builder applies), so its
milliseconds are those of the model the graph would run at this size.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from vla_accel_ros.evaluation.decoding_bench import Episode, record, speedups, summarize_rows
from vla_accel_ros.evaluation.methods import parse_method
from vla_accel_ros.evaluation.spec_scale import (
    SCRIPTED_LABEL,
    ScaledRow,
    attach_scripted_draft,
    replay_record,
    same_pattern,
)
from vla_accel_ros.params.tables import QUANT_GROUP_SIZE
from vla_accel_ros.quant.bandwidth import decode_pass_bytes, limit_ms, mean_decode_context, read_bandwidth


def _untrained_draft(model: Any) -> Any:
    from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft

    draft = EagleDraft(DraftConfig.for_target(model), model).eval()
    draft.freeze()  # fold the shared embedding and head before the ladder may replace them
    return draft


def realistic_rows(
    names: list[str], layers: int, group: int = QUANT_GROUP_SIZE, compile_models: bool = False
) -> list[ScaledRow]:
    """One ScaledRow per built-in row, on the realistic-size model in the row's format (fp32, bf16, or
    on the int4 ladder at `group`), each speculative one over a ScriptedDraft of that model's shape;
    with `compile_models`, every format's decoder torch.compiled (the baselines too)."""
    from vla_accel_ros.policy.bf16 import cast_bf16
    from vla_accel_ros.policy.compiled import compile_decoder
    from vla_accel_ros.policy.realistic import build_realistic_model
    from vla_accel_ros.policy.runtime import Policy
    from vla_accel_ros.quant import quantize_policy

    fp32 = build_realistic_model(pretrained=not layers, **({"num_layers": layers} if layers else {}))
    variants: dict[str, tuple] = {}
    rows = []
    for name in names:
        kind = parse_method(name).policy  # full, bf16 or ladder
        if kind not in variants:
            if kind == "bf16":  # its only row decodes autoregressively
                policy, draft = cast_bf16(Policy(copy.deepcopy(fp32))), None
            else:
                policy = Policy(fp32 if kind == "full" else copy.deepcopy(fp32))
                draft = attach_scripted_draft(policy, _untrained_draft)
                if kind == "ladder":
                    quantize_policy(policy, group=group)
            if compile_models:
                compile_decoder(policy.model)
            variants[kind] = (policy, draft, {})
        policy, draft, greedy = variants[kind]
        rows.append(ScaledRow(name, policy, draft, greedy))
    return rows


def replay_realistic(
    rows: list[ScaledRow],
    episodes: list[Episode],
    recs: dict[str, list[dict]],
    frames: int,
    warmup: int,
    progress: bool,
) -> dict[str, list[dict]]:
    """`frames` recorded open-loop frames, spread evenly over them, again: each row as its built-in twin
    decoded the frame."""
    from tqdm import tqdm

    from vla_accel_ros.policy.runtime import PolicyInput

    inputs = [PolicyInput(images, joints, inst) for inst, steps in episodes for images, joints, _ in steps]
    inputs = inputs[warmup:]  # the records start after the open loop's warm-up frames
    total = min(len(inputs), *(len(recs[r.name]) for r in rows))
    chosen = sorted({int(i) for i in np.linspace(0, total - 1, min(frames, total))})
    for row in rows:  # one untimed action per row: lazy initialisation stays out of the timings
        replay_record(row, chosen[0], inputs[chosen[0]], recs[row.name][chosen[0]])
    out: dict[str, list[dict]] = {r.name: [] for r in rows}
    for k, j in enumerate(tqdm(chosen, desc="realistic size", unit="frame", disable=not progress)):
        for i in range(len(rows)):
            row = rows[(i + k) % len(rows)]
            rec = recs[row.name][j]
            res, ms = replay_record(row, j, inputs[j], rec)
            out[row.name].append(
                {**record(res, ms), "same_pattern": same_pattern(res, rec), "stages": res.timings_ms}
            )
    return out


def realistic_pieces(recs: dict[str, list[dict]]) -> dict[str, float | None]:
    """Median ms of the pieces at this size, from the rows' own stage timings: the prefill and a
    one-token pass (ar), a verify pass over all drafted tokens and a draft round (specvla, one pass)."""

    def median(row: str, stage: str, one_pass: bool = False) -> float | None:
        vals = [
            v
            for r in recs.get(row, [])
            if not one_pass or r["passes"] == 1
            for k, v in r["stages"].items()
            if k.startswith(stage)
        ]
        return float(np.median(vals)) if vals else None

    return {
        "prefill": median("ar", "prefill"),
        "target_pass": median("ar", "decode_"),
        "verify_pass": median("specvla", "verify", one_pass=True),
        "draft_round": median("specvla", "draft", one_pass=True),
    }


def decode_limit(row: ScaledRow, recs: list[dict], bandwidth: dict) -> dict:
    """The row's median one-token pass (None if it never ran one) beside bytes read / bandwidth."""
    model = row.policy.model
    nbytes = decode_pass_bytes(model, mean_decode_context(model.config))
    passes = [v for r in recs for k, v in r["stages"].items() if k.startswith("decode_")]
    return {
        "bytes": nbytes,
        "limit_ms": limit_ms(nbytes, bandwidth),
        "pass_ms": float(np.median(passes)) if passes else None,
    }


def realistic_section(
    names: list[str],
    episodes: list[Episode],
    recs: dict[str, list[dict]],
    frames: int,
    layers: int,
    warmup: int,
    progress: bool,
    group: int = QUANT_GROUP_SIZE,
    compile_models: bool = False,
) -> dict:
    """The realistic-size section of the report: every built-in row's `frames` replayed at that size."""
    from vla_accel_ros.policy.realistic import BACKBONE, REALISTIC_LABEL

    rows = realistic_rows(names, layers, group, compile_models)
    scaled = replay_realistic(rows, episodes, recs, frames, warmup, progress)
    a = rows[0].policy.action_dim
    table = {}
    for name, r in scaled.items():
        table[name] = summarize_rows(r, a)
        table[name]["pattern_reproduced"] = float(np.mean([x["same_pattern"] for x in r]))
    baseline = speedups(table)
    bandwidth = read_bandwidth()
    for row in rows:
        table[row.name]["decode_limit"] = decode_limit(row, scaled[row.name], bandwidth)
    model = rows[0].policy.model
    has_ladder = any(parse_method(n).policy == "ladder" for n in names)
    return {
        "model": f"VlaModel with a {model.config.num_layers}-layer {BACKBONE} decoder "
        f"({'pretrained' if not layers else 'random'} weights), {REALISTIC_LABEL}"
        + (f"; int4 ladder rows at group {group}" if has_ladder else ""),
        "decoder_parameters": sum(p.numel() for p in model.llama.parameters()),
        "draft": "untrained EagleDraft of the same shape (one decoder layer); " + SCRIPTED_LABEL,
        "frames": len(next(iter(scaled.values()))),
        "compiled": compile_models,
        "rows": table,
        "baseline": baseline,
        "bandwidth": bandwidth,
        "pieces_ms": realistic_pieces(scaled),
    }
