"""The page of `vla-accel bench-openvla` (evaluation.openvla_bench): the per-action table with its
baseline sentence, and the memory table, for a machine-class section of docs/OPENVLA.md."""

from __future__ import annotations

from typing import Any

from vla_accel_ros.evaluation.reporting import baseline_sentence

MB = 1e6


def baseline_times(report: dict) -> dict[str, float]:
    """The full-precision AR rows' p50 ms, by row name (what baseline_sentence chooses between)."""
    full = ("fp32", "bf16")
    return {
        r["name"]: r["total_ms"]["p50"] for r in report["rows"] if r["method"] == "ar" and r["format"] in full
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def action_table(report: dict) -> str:
    """A row per method: p50 per action, vs the baseline, the stage split, acceptance, decode pass vs
    its limit, the modes DyQ ran and any fallback."""
    base = min(baseline_times(report).values())
    lines = [
        "| method | format | p50 ms / action | vs baseline | vision ms | LLM prefill ms | decode ms | "
        "acceptance | target passes | decode pass ms | pass limit ms (MB read) | modes run | fallback |",
        "|" + "---|" * 13,
    ]
    for r in report["rows"]:
        p50, s = r["total_ms"]["p50"], r["split_ms"]
        mark = " (baseline)" if r["name"] == report["baseline"] else ""
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.2f} of {r['drafted']}"
        ladder = r["format"].startswith("int4")  # an unladdered policy names its one mode fp32
        modes = ", ".join(f"{k} x{v}" for k, v in r["precisions"].items()) if ladder else "-"
        lines.append(
            f"| {r['name']} | {r['format']} | {p50:.1f} | {base / p50:.2f}x{mark} | {s['vision']:.1f} | "
            f"{s['prefill']:.1f} | {s['decode']:.1f} | {acc} | {r['target_passes_mean']:.1f} | "
            f"{_ms(r['pass_ms'])} | {r['pass_limit_ms']:.2f} ({r['pass_bytes'] / MB:.1f}) | {modes} | "
            f"{'; '.join(r['fallbacks']) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def memory_table(memory: dict[str, dict[str, int]]) -> str:
    """MB held per part and format, and each format's model and total against the bf16 model."""
    formats = list(memory)
    parts = list(next(iter(memory.values())))
    bf16 = memory.get("bf16", {}).get("model without draft")
    lines = ["| tensors held, MB | " + " | ".join(formats) + " |", "|---|" + "---|" * len(formats)]
    for part in parts:
        cells = [f"{memory[f][part] / MB:.1f}" for f in formats]
        name = f"**{part}**" if part == "total" else part
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key in ("model without draft", "total") if bf16 else ():
        cells = " | ".join(f"{memory[f][key] / bf16:.1%}" for f in formats)
        lines.append(f"| {key} vs the bf16 model | {cells} |")
    return "\n".join(lines) + "\n"


def page(command: str, machine: str, report: dict) -> str:
    """The section: provenance, what ran, the baseline sentence, the two tables."""
    bw = report["bandwidth"]
    ladder: dict[str, Any] = report["ladder"]
    shape = report["checkpoint"]["shape"]
    return (
        f"Command: `{command}`\n\nMachine: {machine}\n\n"
        f"Checkpoint: {report['checkpoint']['checkpoint']} (hidden {shape['hidden']}, "
        f"{shape['layers']} decoder layers, {shape['image']} px). "
        f"Draft: {report['draft']}. Ladder: {ladder['kind']}, group {ladder['group']}, vision towers and "
        f"projector in {ladder['format']}; `-emu` modes emulate low-bit activations (no faster kernel).\n\n"
        f"p50 over {report['frames']} synthetic frames per row after {report['warmup']} warm-up action(s). "
        "Vision = DINOv2 + SigLIP + projector; LLM prefill = the prefill stage without them; decode = every "
        "decode/draft/verify pass. Pass limit = the bytes one one-token pass reads (decoder weights as held, "
        "the head rows scored, KV cache at the mean context) / the measured read bandwidth "
        f"({bw['gb_per_s']:.1f} GB/s: {bw['method']}).\n\n"
        + baseline_sentence(baseline_times(report))
        + "\n\n"
        + action_table(report)
        + "\n"
        + memory_table(report["memory"])
        + cuda_peaks(report)
    )


def cuda_peaks(report: dict) -> str:
    """On CUDA, each row's torch.cuda.max_memory_allocated (weights, cache, activations) against bf16 AR's."""
    peaks = {r["name"]: r["cuda_peak_bytes"] for r in report["rows"] if r.get("cuda_peak_bytes")}
    if not peaks:
        return ""
    ref = peaks.get("bf16 AR")
    cells = [f"{n} {b / MB:.0f} MB" + (f" ({b / ref:.1%})" if ref else "") for n, b in peaks.items()]
    return "\nPeak CUDA memory allocated per row (vs bf16 AR): " + "; ".join(cells) + ".\n"
