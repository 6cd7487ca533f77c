"""docs/PRECISION.md from the JSON `vla-accel bench-precision` writes: every number comes from that run."""

from __future__ import annotations

from vla_accel_ros.evaluation.reporting import baseline_sentence, fastest_baseline
from vla_accel_ros.quant import unpack_kernel

PRECISION_TITLE = (
    "# DyQ-VLA precision ladder\n\nWritten by `vla-accel bench-precision`: one section per CPU kernel "
    "class (AVX2, AVX-512, AMX), because the ratios differ in kind between them. A run replaces only its "
    "own class's section.\n"
)
TARGET_MEMORY = 0.31  # of the same decoder in bf16 (DyQ-VLA: 4.7 / 15.2 GB)
TARGET_SWITCH_MS = 1.0
TARGET_LIMIT_RATIO = 2.0  # a decode pass within 2x of bytes read / measured read bandwidth
TARGET_SPEEDUP = 1.5  # per action, vs the faster of fp32 and bf16 on the machine


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


# row -> its format (the eager twins of a --compile run read what their compiled rows read)
FULL_PRECISION_ROWS = {"fp32": "fp32", "bf16": "bf16", "fp32 (eager)": "fp32", "bf16 (eager)": "bf16"}


def full_precision_ms(section: dict) -> dict[str, float]:
    """Per-action median of every full-precision row measured (compiled and eager in a --compile run)."""
    lat = section["latency"]
    return {k: lat[k]["action"]["median_ms"] for k in FULL_PRECISION_ROWS if k in lat}


def ladder_entry(section: dict, name: str = "int4-master") -> dict:
    return next(s for s in section["strategies"] if s["strategy"] == name)


def whole_entry(section: dict) -> dict | None:
    return next((s for s in section["strategies"] if s["strategy"] == "int4-whole"), None)


def derived(section: dict) -> dict:
    """The figures the targets are judged on."""
    lad = ladder_entry(section)
    lat, mem = section["latency"], section["memory"]
    top = list(lad["modes"])[-1]
    top_lat = lad["modes"][top]
    bf16, fp32 = lat["bf16"]["action"]["median_ms"], lat["fp32"]["action"]["median_ms"]
    base_name, base = fastest_baseline(full_precision_ms(section))
    return {
        "top": top,
        "baseline": base_name,
        "speedup_vs_baseline": {m: base / v["action"]["median_ms"] for m, v in lad["modes"].items()},
        "memory_linears": mem["ladder_linears"] / mem["bf16_decoder_linears"],
        "memory_linears_with_buffer": (mem["ladder_linears"] + mem.get("prefill_buffer", 0))
        / mem["bf16_decoder_linears"],
        "memory_decoder": mem["ladder_decoder"] / mem["bf16_decoder"],
        "memory_decoder_other_bf16": mem["ladder_decoder_other_bf16"] / mem["bf16_decoder"],
        "switch_median_ms": lad["switch"]["median_ms"],
        "switch_p95_ms": lad["switch"]["p95_ms"],
        "switch_max_ms": lad["switch"]["max_ms"],
        "speedup_vs_bf16": {m: bf16 / v["action"]["median_ms"] for m, v in lad["modes"].items()},
        "speedup_vs_fp32": {m: fp32 / v["action"]["median_ms"] for m, v in lad["modes"].items()},
        "prefill_share": top_lat["prefill"]["median_ms"] / top_lat["action"]["median_ms"],
        **_whole(section, top),
    }


def _whole(section: dict, top: str) -> dict:
    """int4-whole's figures: the whole decoder against bf16, speed against bf16 with and without the
    same action-bins head (so the head's saving is not credited to quantization)."""
    whole = whole_entry(section)
    lat, mem = section["latency"], section["memory"]
    if whole is None or "bf16-action-head" not in lat:
        return {}
    action = whole["modes"][top]["action"]["median_ms"]
    return {
        "whole_memory_decoder": whole["decoder_bytes"] / mem["bf16_decoder"],
        "whole_memory_model": whole["model_bytes"] / mem["bf16_model"],
        "whole_speedup_vs_bf16": lat["bf16"]["action"]["median_ms"] / action,
        "whole_speedup_vs_baseline": fastest_baseline(full_precision_ms(section))[1] / action,
        "whole_speedup_vs_bf16_action_head": lat["bf16-action-head"]["action"]["median_ms"] / action,
    }


def _compile_line(report: dict, section: dict) -> list[str]:
    if not report["settings"].get("compile"):
        return ["Eager PyTorch (no torch.compile; `--compile` measures the compiled decoder)."]
    cold = {k: v["cold_action_ms"] / 1e3 for k, v in section["latency"].items() if "cold_action_ms" in v}
    modes = ladder_entry(section)["modes"]
    cold.update({m: v["cold_action_ms"] / 1e3 for m, v in modes.items() if "cold_action_ms" in v})
    return [
        "Every timed format's decoder compiled by torch.compile (Inductor, dynamic shapes; "
        "policy/compiled.py). Cold first action, compile included, kept out of the medians: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in cold.items())
        + "."
    ]


def _bandwidth_line(section: dict) -> list[str]:
    dl = section.get("decode_limit")
    if not dl:
        return []
    bw = dl["bandwidth"]
    return [
        f"Read bandwidth measured in the same run: {bw['gb_per_s']:.1f} GB/s ({bw['method']}). A decode "
        "pass's limit is the bytes it must read (decoder layers as held, the head's action rows, the KV "
        f"cache at {dl['context_tokens']} tokens) / that bandwidth."
    ]


def _limit_target_rows(section: dict, d: dict) -> list[str]:
    """The decode-pass target: within TARGET_LIMIT_RATIO of bytes read / measured read bandwidth."""
    dl = section.get("decode_limit")
    if not dl:
        return []
    limit = dl["formats"]["int4-master"]["limit_ms"]
    measured = ladder_entry(section)["modes"][d["top"]]["decode_token"]["median_ms"]
    ratio = measured / limit
    return [
        f"| a {d['top']} decode pass within {TARGET_LIMIT_RATIO:g}x of its bytes / measured bandwidth "
        f"({_mb(dl['formats']['int4-master']['bytes'])} MiB at {dl['bandwidth']['gb_per_s']:.1f} GB/s = "
        f"{_ms(limit)} ms) | {_ms(measured)} ms = {ratio:.1f}x | {_met(ratio <= TARGET_LIMIT_RATIO)} |"
    ]


def _latency_rows(section: dict) -> list[str]:
    lad = ladder_entry(section)
    lat = section["latency"]
    bf16, fp32 = lat["bf16"]["action"]["median_ms"], lat["fp32"]["action"]["median_ms"]
    base_name, base = fastest_baseline(full_precision_ms(section))
    rows = [
        "| format | what runs | per action median / p95 (ms) | prefill (ms) | decode / token (ms) "
        f"| decode limit: bytes / bandwidth (ms) | decode x limit | vs baseline ({base_name}) "
        "| vs fp32 | vs bf16 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    entries = [
        (name + (" (baseline)" if base_name == name else ""), f"unquantized {fmt}", fmt, lat[name])
        for name, fmt in FULL_PRECISION_ROWS.items()
        if name in lat
    ]
    entries += [(m, lad["modes_info"][m]["description"], "int4-master", v) for m, v in lad["modes"].items()]
    whole = whole_entry(section)
    if whole is not None and "bf16-action-head" in lat:
        entries.append(
            (
                "bf16, action-bins head",
                "unquantized bf16; the head scores the 256 action bins only",
                "bf16",
                lat["bf16-action-head"],
            )
        )
        entries += [
            (
                f"{m} (int4-whole)",
                whole["modes_info"][m]["description"] + "; int4 table and action head",
                "int4-whole",
                v,
            )
            for m, v in whole["modes"].items()
        ]
    formats = section.get("decode_limit", {}).get("formats", {})
    for name, what, fmt, v in entries:
        a, dec = v["action"]["median_ms"], v["decode_token"]["median_ms"]
        limit = formats.get(fmt, {}).get("limit_ms")
        rows.append(
            f"| {name} | {what} | {_ms(a)} / {_ms(v['action']['p95_ms'])} | "
            f"{_ms(v['prefill']['median_ms'])} | {_ms(dec)} | "
            + ("- | - |" if limit is None else f"{_ms(limit)} | {dec / limit:.1f}x |")
            + f" {base / a:.2f}x | {fp32 / a:.2f}x | {bf16 / a:.2f}x |"
        )
    return rows


def _error_rows(section: dict) -> list[str]:
    rows = [
        "| format | observations | token agreement | mean / max abs bin error | mean abs action error "
        "| first-token logit rel. error |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in section["errors"].items():
        rows.append(
            f"| {name} | {e['observations']} | {_pct(e['token_agreement'])} | "
            f"{e['mean_abs_bin']:.2f} / {e['max_abs_bin']} | {e['mean_abs_action']:.4f} | "
            f"{e['first_token_logit_rel_error']:.4f} |"
        )
    return rows


def _reference(section: dict, s: dict) -> int:
    """bf16 bytes of what a strategy replaced (older reports: the decoder linears)."""
    return s.get("bf16_reference_bytes", section["memory"]["bf16_decoder_linears"])


def _strategy_rows(section: dict) -> list[str]:
    rows = [
        "| strategy | held bytes, all modes (MiB) | of the same tensors in bf16 "
        "| switch median / max (ms) | mode: prefill / decode per token (ms) |",
        "|---|---|---|---|---|",
    ]
    for s in section["strategies"]:
        modes = "; ".join(
            f"{m}: {_ms(v['prefill']['median_ms'])} / {_ms(v['decode_token']['median_ms'])}"
            for m, v in s["modes"].items()
        )
        rows.append(
            f"| {s['strategy']}: {s['description']} | {_mb(s['held_bytes'])} | "
            f"{_pct(s['held_bytes'] / _reference(section, s))} | {_ms(s['switch']['median_ms'])} / "
            f"{_ms(s['switch']['max_ms'])} | {modes} |"
        )
    return rows


def _kernel_rows(kernels: list[dict], tokens: int) -> list[str]:
    rows = [
        f"| kernel | decode, 1 row (ms) | prefill, {tokens} rows (ms) | rel. error vs fp32 | measured on |",
        "|---|---|---|---|---|",
    ]
    for k in kernels:
        if "error" in k:
            rows.append(f"| {k['kernel']} | - | - | - | failed: {k['error']} |")
        else:
            rows.append(
                f"| {k['kernel']} | {_ms(k['decode_ms'])} | {_ms(k['prefill_ms'])} | "
                f"{k['rel_error_vs_fp32']:.4f} | {k['measured_on']} |"
            )
    return rows


def _prefill_choice(kernels: list[dict], tokens: int) -> list[str]:
    """Which kernel the one int4 copy's prefill should run on, from the survey's candidates, and the one
    the ladder uses (quant/unpack_kernel.py: the C-unpack path wherever it could be built)."""
    timed = {k["kernel"]: k["prefill_ms"] for k in kernels if "prefill_ms" in k}

    def first(prefix: str) -> float | None:
        return next((v for n, v in timed.items() if n.startswith(prefix)), None)

    int4, dense = first("int4 weights x bf16"), first("bf16 dense")
    candidates = {
        "the int4 kernel": int4,
        "the bf16 GEMM on weights rebuilt per call by eager PyTorch ops": first("int4 copy dequantized"),
        "the dense GEMM on weights unpacked per call by the C kernel": first("int4 copy unpacked"),
    }
    timed_candidates = {name: ms for name, ms in candidates.items() if ms is not None}
    if int4 is None or len(timed_candidates) < 2:
        return []
    winner = min(timed_candidates, key=timed_candidates.__getitem__)
    used = (
        "the dense GEMM on weights unpacked by the C kernel"
        if candidates["the dense GEMM on weights unpacked per call by the C kernel"] is not None
        else "the int4 kernel (the C kernel could not be built)"
    )
    listed = ", ".join(f"{name} {_ms(ms)} ms" for name, ms in timed_candidates.items())
    gemm = f" The bf16 GEMM alone, on weights already in bf16: {_ms(dense)} ms." if dense is not None else ""
    return [
        f"- Prefill from the one int4 copy ({tokens} rows, every decoder linear): {listed}.{gemm} "
        f"Faster here: {winner}; the ladder's prefill (calls of {unpack_kernel.MIN_ROWS}+ rows) runs on "
        f"{used}, its decode passes and KERV's verify passes on the int4 kernel."
    ]


def _group_rows(section: dict) -> list[str]:
    rows = [
        "| group | held bytes of bf16 linears | token agreement | mean abs bin error "
        "| first-token logit rel. error |",
        "|---|---|---|---|---|",
    ]
    for r in section.get("group_sweep", []):
        if "not_applicable" in r:
            rows.append(f"| {r['group']} | - | - | - | not usable: {r['not_applicable']} |")
        else:
            e = r["errors"]
            rows.append(
                f"| {r['group']} | {_pct(r['fraction_of_bf16_linears'])} | "
                f"{_pct(e['token_agreement'])} | {e['mean_abs_bin']:.2f} | "
                f"{e['first_token_logit_rel_error']:.4f} |"
            )
    return rows


def _choice(section: dict) -> list[str]:
    ok = []
    lines = []
    for s in section["strategies"]:
        frac, sw = s["held_bytes"] / _reference(section, s), s["switch"]["p95_ms"]
        mem_ok, sw_ok = frac <= TARGET_MEMORY, sw < TARGET_SWITCH_MS
        if mem_ok and sw_ok:
            ok.append(s["strategy"])
        lines.append(
            f"- {s['strategy']}: {_pct(frac)} of the same tensors in bf16 "
            f"(memory target {_met(mem_ok)}), "
            f"switch p95 {_ms(sw)} ms, max {_ms(s['switch']['max_ms'])} ms "
            f"(switch target {_met(sw_ok)})."
        )
    if "int4-master" in ok:
        lines.append(
            f"- Strategies meeting both the memory and the switch target: {', '.join(ok)}. "
            "The ladder therefore keeps one int4 master and switches only the activations."
        )
    else:
        lines.append(
            f"- Strategies meeting both targets: {', '.join(ok) or 'none'}; the served ladder "
            "(int4-master) does not, see the figures above."
        )
    return lines


def _whole_target_rows(d: dict) -> list[str]:
    if "whole_memory_decoder" not in d:
        return []
    return [
        f"| memory <= {_pct(TARGET_MEMORY)} of bf16, whole decoder (embeddings, layers, norm, head), "
        f"int4-whole | {_pct(d['whole_memory_decoder'])} | "
        f"{_met(d['whole_memory_decoder'] <= TARGET_MEMORY)} |",
        f"| same, whole model (vision encoders and projector included, left fp32), int4-whole | "
        f"{_pct(d['whole_memory_model'])} | {_met(d['whole_memory_model'] <= TARGET_MEMORY)} |",
        f"| per-action speed-up >= {TARGET_SPEEDUP}x vs the baseline ({d['baseline']}), int4-whole "
        f"{d['top']} | {d['whole_speedup_vs_baseline']:.2f}x | "
        f"{_met(d['whole_speedup_vs_baseline'] >= TARGET_SPEEDUP)} |",
        f"| same, vs bf16 with the same action-bins head (the quantization's share alone) | "
        f"{d['whole_speedup_vs_bf16_action_head']:.2f}x | "
        f"{_met(d['whole_speedup_vs_bf16_action_head'] >= TARGET_SPEEDUP)} |",
    ]


def _memory_rows(real: dict) -> list[str]:
    mem = real["memory"]
    whole = whole_entry(real)
    extra = whole is not None and "decoder_bytes" in whole
    head = "| memory (MiB) | fp32 | bf16 | ladder |" + (" ladder, int4-whole |" if extra else "")
    rule = "|---|---|---|---|" + ("---|" if extra else "")

    def row(label: str, fp32: int, bf16: int, ladder: int, other: int | None) -> str:
        tail = f" {_mb(other)} |" if extra and other is not None else (" - |" if extra else "")
        return f"| {label} | {_mb(fp32)} | {_mb(bf16)} | {_mb(ladder)} |" + tail

    lin = mem["bf16_decoder_linears"]
    buffer = mem.get("prefill_buffer")  # absent from runs before the dense prefill existed
    return [
        head,
        rule,
        row("decoder linears", 2 * lin, lin, mem["ladder_linears"], None),
        *(
            [row("transient: the dense prefill's unpacked weight (one at a time)", 0, 0, buffer, None)]
            if buffer
            else []
        ),
        row(
            "decoder (embeddings, layers, norm, lm_head)",
            mem["fp32_decoder"],
            mem["bf16_decoder"],
            mem["ladder_decoder"],
            whole["decoder_bytes"] if extra else None,
        ),
        row(
            "whole model",
            mem["fp32_model"],
            mem["bf16_model"],
            mem["ladder_model"],
            whole["model_bytes"] if extra else None,
        ),
    ]


def render(report: dict) -> str:
    real = report["realistic"]
    d = derived(real)
    m = report["machine"]
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["isa"].items())
    tokens = real["model"]["prefill_tokens"]
    lad = ladder_entry(real)
    emulated = [x for x, info in lad["modes_info"].items() if info["emulated"]]
    lm = real["lm_head"]
    top_lat = lad["modes"][d["top"]]
    out = [
        f"Written by `{report['command']}` on {report['date']}. Do not edit by hand: rerun the command.",
        "",
        f"Model: {real['model']['description']} (**{real['model']['label']}**).",
        f"Machine: {m['cpu']}, {m.get('cores_available', m['logical_cpus'])} of {m['logical_cpus']} logical "
        f"CPUs available, torch {m['torch']} with "
        f"{m['torch_threads']} threads, kernel capability {m['torch_cpu_capability']} "
        f"({m.get('kernels', 'CPU flags not read')}); {isa}. "
        f"Load average at start {m['load_average_start'][0]:.2f}, at end {m['load_average_end'][0]:.2f}.",
        "Per action = prefill of the observation and prompt, then autoregressive decoding of "
        f"{real['model']['action_tokens']} action tokens (the first from the prefill's logits), as "
        "Policy.act runs it without image preprocessing; median and p95 over "
        f"{report['settings']['repeats']} rounds after {report['settings']['warmup']} warm-up rounds; each "
        "round times every format once (round-robin), so load from other processes falls on all alike."
        + (
            " Other processes were running (load average above): absolute times are inflated and p95 "
            "values show their interference; compare medians side by side."
            if max(m["load_average_start"][0], m["load_average_end"][0]) > 0.5 * m["logical_cpus"]
            else ""
        ),
        baseline_sentence(full_precision_ms(real)) + " Speed-ups are per action, against it.",
        *_bandwidth_line(real),
        *_compile_line(report, real),
        "",
        "### Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| memory <= {_pct(TARGET_MEMORY)} of bf16 (decoder linears, every tensor held, all modes) | "
        f"{_pct(d['memory_linears'])} | {_met(d['memory_linears'] <= TARGET_MEMORY)} |",
        f"| same, with the dense prefill's transient buffer | {_pct(d['memory_linears_with_buffer'])} | "
        f"{_met(d['memory_linears_with_buffer'] <= TARGET_MEMORY)} |",
        f"| same, whole decoder incl. the unquantized embeddings/lm_head/norms as held (fp32) | "
        f"{_pct(d['memory_decoder'])} | {_met(d['memory_decoder'] <= TARGET_MEMORY)} |",
        f"| same, were those unquantized parts held in bf16 | {_pct(d['memory_decoder_other_bf16'])} | "
        f"{_met(d['memory_decoder_other_bf16'] <= TARGET_MEMORY)} |",
        f"| switch < {TARGET_SWITCH_MS:g} ms (p95 over every ordered pair of modes) | median "
        f"{_ms(d['switch_median_ms'])} ms, p95 {_ms(d['switch_p95_ms'])} ms, "
        f"max {_ms(d['switch_max_ms'])} ms | "
        f"{_met(d['switch_p95_ms'] < TARGET_SWITCH_MS)} |",
        f"| per-action speed-up >= {TARGET_SPEEDUP}x vs the baseline ({d['baseline']}; {d['top']}, the "
        f"fastest real mode) | {d['speedup_vs_baseline'][d['top']]:.2f}x | "
        f"{_met(d['speedup_vs_baseline'][d['top']] >= TARGET_SPEEDUP)} |",
        f"| (not a target) the same vs fp32 / vs bf16 | {d['speedup_vs_fp32'][d['top']]:.2f}x / "
        f"{d['speedup_vs_bf16'][d['top']]:.2f}x | |",
        *_limit_target_rows(real, d),
        *_whole_target_rows(d),
        "",
        f"The emulated modes ({', '.join(emulated) or 'none'}) run on the {d['top']} kernel, so a DyQ "
        f"schedule that mixes modes cannot be faster per action than {d['top']} here.",
        "",
        "### Per-action latency and memory",
        "",
        *_latency_rows(real),
        "",
        *_memory_rows(real),
        "",
        "Quantized by the ladder (int4-master): the decoder's q/k/v/o and gate/up/down projections "
        f"(group-wise int4, group {report['settings']['group']}, bf16 scale and zero per group). Not "
        "quantized, kept at the model's full precision: token embeddings, lm_head (tied to them here), RMS "
        "norms, vision encoders and projector. int4-whole (`precision_ladder: int4-whole`) adds the token "
        "table (int4 rows, dequantized as gathered) and a head cut to the 256 action bins (int4, bf16 "
        "activations in every mode): the decoders only ever read the action-bin logits.",
        "",
        "### What limits the speed-up",
        "",
        f"- Prefill is {_pct(d['prefill_share'])} of a {d['top']} action "
        f"({_ms(top_lat['prefill']['median_ms'])} of {_ms(top_lat['action']['median_ms'])} ms).",
        f"- The unquantized lm_head alone ({real['model']['vocab_size']} x {real['model']['hidden_size']}) "
        f"costs {_ms(lm['fp32']['decode_ms'])} ms per scored position in fp32 "
        f"({_ms(lm['bf16']['decode_ms'])} in bf16) against {_ms(top_lat['decode_token']['median_ms'])} ms "
        f"for a whole {d['top']} decode pass. An action scores 4 positions (the prefill's last, then one "
        f"per decode pass); scoring all {tokens} prefill rows would cost {_ms(lm['fp32']['prefill_ms'])} ms "
        f"in fp32 ({_ms(lm['bf16']['prefill_ms'])} in bf16), which is why the prefill scores its last "
        "position only. int4-whole cuts the head to the 256 action bins.",
        "- Kernels (below): what sets speed is which kernel exists for a format on this CPU, not its bits.",
        *_prefill_choice(real["kernels"], tokens),
        "",
        f"### Kernels on this CPU (the realistic decoder's {real['decoder_linears']} linear layers, "
        "one pass)",
        "",
        *_kernel_rows(real["kernels"], tokens),
        "",
        "### Storage strategies (decoder linears; latency of the whole model per mode)",
        "",
        *_strategy_rows(real),
        "",
        "Why the ladder keeps one int4 master:",
        "",
        *_choice(real),
        "",
        "### Action error against the fp32 model",
        "",
        f"Realistic-size model, int4 group {report['settings']['group']}, {real['inputs']} "
        "(untrained, so this measures numerics, not task success):",
        "",
        *_error_rows(real),
        "",
    ]
    if real.get("group_sweep"):
        out += [
            f"Group size of the int4 copy ({d['top']} against fp32, same observations):",
            "",
            *_group_rows(real),
            "",
        ]
    builtin = report.get("builtin")
    if builtin:
        out += [
            f"Built-in policy ({builtin['checkpoint']}, int4 group {builtin['group']}), {builtin['inputs']}:",
            "",
            *_error_rows(builtin),
            "",
            "Built-in policy latency (small model: Python and launch overhead dominate every format):",
            "",
            *_latency_rows(builtin),
            "",
        ]
    else:
        out += [f"Built-in policy: {report.get('builtin_skipped', 'not measured')}.", ""]
    notes = real["model"].get("notes", [])
    if notes:
        out += ["### Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)
