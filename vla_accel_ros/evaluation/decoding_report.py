"""The markdown of a bench-decoding report (docs/DECODING.md's results block), from its JSON alone."""

from __future__ import annotations

import numpy as np


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _paired(row: dict) -> str:
    p = row.get("paired_vs_ar")
    return "-" if p is None else f"{p['only_this']} / {p['only_ar']}"


def _baseline(name: str | None) -> str:
    label = {"ar": "ar (fp32)", "ar@bf16": "ar@bf16"}.get(name or "", "-")
    return (
        f"Baseline: **{label}**, the faster (p50) of the full-precision autoregressive rows in this run."
        if name
        else "No full-precision autoregressive row ran: speed-ups against a baseline are not shown."
    )


def markdown(report: dict) -> str:
    """The results block of docs/DECODING.md: open loop, the pieces' cost, realistic size, closed loop."""
    ol = report["open_loop"]
    lines = [
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['machine']}; torch threads {report['threads']}; "
        f"checkpoint `{report['checkpoint']}`.",
        "",
        f"### Open loop: {report['open_loop_frames']} held-out frames "
        f"({report['open_loop_episodes']} demonstration episodes never trained on), "
        "every method on every frame",
        "",
        _baseline(report.get("open_loop_baseline")),
        "",
        "| method | target passes / action | acceptance rate | mean accepted length | tokens / target pass "
        "| Kalman fill rate | mean r (bins) | latency p50 / p95 ms | speed-up vs baseline (p50 / mean) "
        "| vs ar, fp32 (p50) | vs specvla (p50) | same action as ar | MAE vs expert |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in ol.items():
        sp = r.get("speedup", {})
        lines.append(
            f"| {name} | {r['target_passes_per_action']:.2f} | {_f(r['acceptance_rate'])} "
            f"| {_f(r['mean_accepted_length'])} | {_f(r['tokens_per_target_pass'])} "
            f"| {r['kalman_fill_rate']:.3f} | {r['mean_threshold']:.1f} "
            f"| {r['latency_ms']['p50']:.2f} / {r['latency_ms']['p95']:.2f} "
            f"| {_f(sp.get('vs_baseline_p50'))}x / {_f(sp.get('vs_baseline_mean'))}x "
            f"| {_f(sp.get('vs_ar_p50'))}x | {_f(sp.get('vs_specvla_p50'))}x "
            f"| {_f(r.get('same_action_as_ar'))} | {_f(float(np.mean(r['mae_vs_expert'])), '{:.4f}')} |"
        )
    dc = report.get("draft_cost")
    if dc:
        m, r = dc["median_ms"], dc["over_target_pass"]
        cols = [
            "target_pass",
            "verify_pass",
            "draft_step_fast",
            "draft_round_fast",
            "draft_round_recomputed",
            "draft_round_cached",
        ]
        lines += [
            "",
            "### Cost of the pieces (median ms, and x one target pass; a round drafts "
            f"{dc['draft_tokens_per_round']} tokens)",
            "",
            "| target pass, 1 token | verify pass | draft, 1 token (fast) | draft round (fast) "
            "| draft round, transformers layer recomputed | same, own KV cache |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(f"{m[c]:.3f} ({r[c]:.2f}x)" for c in cols) + " |",
            "",
            f"Draft: {dc['draft_parameters'] / 1e6:.3f} M parameters of its own (target decoder "
            f"{dc['target_decoder_parameters'] / 1e6:.3f} M; embedding and LM head shared).",
        ]
    lines += _realistic_markdown(report.get("realistic"))
    cl = report.get("closed_loop")
    if cl:
        first = next(iter(cl.values()))
        lines += [
            "",
            f"### Closed loop: {first['episodes']} episodes per method on held-out seeds "
            f"({report['closed_loop_setup']}), same seeds for every method",
            "",
            _baseline(first.get("baseline")),
            "",
            "| method | success | 95 % CI | seeds won / lost vs ar | target passes / action "
            "| Kalman fill rate | latency p50 / p95 ms | speed-up vs baseline (p50) | vs ar, fp32 (p50) "
            "| precision shares |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in cl.items():
            sp = r.get("speedup", {})
            shares = ", ".join(f"{p} {v * 100:.0f} %" for p, v in r.get("precision_shares", {}).items())
            lines.append(
                f"| {name} | {r['success_rate'] * 100:.1f} % "
                f"| {r['ci95'][0] * 100:.1f}-{r['ci95'][1] * 100:.1f} % "
                f"| {_paired(r)} | {r['target_passes_per_action']:.2f} | {r['kalman_fill_rate']:.2f} "
                f"| {r['latency_ms']['p50']:.2f} / {r['latency_ms']['p95']:.2f} "
                f"| {_f(sp.get('vs_baseline_p50'))}x | {_f(sp.get('vs_ar_p50'))}x | {shares or '-'} |"
            )
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _limit(row: dict) -> str:
    """A row's median one-token decode pass against its bytes / measured bandwidth."""
    lim = row.get("decode_limit")
    if not lim:
        return "-"
    if lim.get("pass_ms") is None:  # a speculative row whose actions all ran without a 1-token pass
        return f"- / {lim['limit_ms']:.1f}"
    return f"{lim['pass_ms']:.1f} / {lim['limit_ms']:.1f} ({lim['pass_ms'] / lim['limit_ms']:.1f}x)"


def _realistic_markdown(rs: dict | None) -> list[str]:
    if not rs:
        return []
    lines = [
        "",
        f"### Realistic size: {rs['frames']} of those frames (evenly spaced), the built-in's acceptance "
        "replayed (emulated)",
        "",
        f"{rs['model']}; {rs['decoder_parameters'] / 1e6:.1f} M decoder parameters"
        + ("; every format's decoder torch.compiled" if rs.get("compiled") else "; eager PyTorch")
        + f". Draft: {rs['draft']}. "
        "Each row decodes each frame with the built-in row's method, precision, threshold and rejected "
        'positions; "pattern as built-in" is the share of frames with the same target passes, drafts, '
        "acceptances and fills.",
        "",
        _baseline(rs.get("baseline")),
        "",
        "| method | target passes / action | acceptance rate | Kalman fill rate | latency p50 / p95 ms "
        "| speed-up vs baseline (p50 / mean) | vs ar, fp32 (p50) | vs ar@bf16 (p50) | vs specvla (p50) "
        "| decode pass p50 / limit ms (x) | pattern as built-in |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rs["rows"].items():
        sp = r.get("speedup", {})
        lines.append(
            f"| {name} | {r['target_passes_per_action']:.2f} | {_f(r['acceptance_rate'])} "
            f"| {r['kalman_fill_rate']:.3f} | {r['latency_ms']['p50']:.1f} / {r['latency_ms']['p95']:.1f} "
            f"| {_f(sp.get('vs_baseline_p50'))}x / {_f(sp.get('vs_baseline_mean'))}x "
            f"| {_f(sp.get('vs_ar_p50'))}x | {_f(sp.get('vs_ar@bf16_p50'))}x "
            f"| {_f(sp.get('vs_specvla_p50'))}x | {_limit(r)} | {r['pattern_reproduced']:.2f} |"
        )
    bw = rs.get("bandwidth")
    if bw:
        lines += [
            "",
            f"Decode limit: the bytes a one-token pass reads in the row's format (decoder layers as held, "
            f"the head's action rows, the KV cache) / the read bandwidth measured in this run, "
            f"{bw['gb_per_s']:.1f} GB/s ({bw['method']}).",
        ]
    pc = rs.get("pieces_ms", {})
    if pc.get("target_pass") and pc.get("verify_pass"):
        ratio = pc["verify_pass"] / pc["target_pass"]
        lines += [
            "",
            "Pieces at this size (median ms, from the rows' stage timings): "
            f"prefill {_f(pc['prefill'], '{:.1f}')}, one-token target pass {pc['target_pass']:.1f}, "
            f"verify pass over the drafted tokens {pc['verify_pass']:.1f} ({ratio:.2f}x a one-token pass), "
            f"draft round {_f(pc['draft_round'], '{:.1f}')}.",
        ]
    return lines
