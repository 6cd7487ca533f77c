"""Measurements behind `vla-accel bench-precision`: kernels, storage strategies, latency, memory and
action error of the precision ladder next to the unquantized model, all in one run on this machine."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_accel_ros.decoding.autoregressive import decode_autoregressive
from vla_accel_ros.decoding.common import StageTimer
from vla_accel_ros.evaluation.stats import percentiles
from vla_accel_ros.params.tables import QUANT_GROUP_SIZE
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.runtime import Policy, PolicyInput
from vla_accel_ros.policy.tokenizer import ActionTokenizer
from vla_accel_ros.quant import unpack_kernel
from vla_accel_ros.quant.activation import quantize_per_token
from vla_accel_ros.quant.bandwidth import decode_pass_bytes, limit_ms, mean_decode_context, read_bandwidth
from vla_accel_ros.quant.int4 import dequantize_cpu, int4_matmul, pack, quantize_int4
from vla_accel_ros.quant.ladder import DECODER_LINEARS, find_linears
from vla_accel_ros.quant.memory import held_tensors, storage_bytes
from vla_accel_ros.quant.strategies import int8_matmul, int8_per_channel
from vla_accel_ros.quant.vocab import restrict_head

Inputs = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]


# -- timing ----------------------------------------------------------------------------------------
def summarize(samples_ms: list[float]) -> dict:
    """Median, p95 and count of timing samples, under the keys docs/results/precision.json has."""
    p = percentiles(samples_ms, count=True)
    return {"median_ms": p["p50"], "p95_ms": p["p95"], "n": p["n"]}


def repeat_ms(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


# -- kernels on the decoder's own matrices ----------------------------------------------------------
@dataclass
class Kernel:
    """One matmul implementation to time on the decoder's own weights: prepare once, run per call."""

    name: str
    prepare: Callable[[torch.Tensor], object]
    run: Callable[[torch.Tensor, object], torch.Tensor]
    act_dtype: torch.dtype


def _int_mm_prepare(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    codes, scales = int8_per_channel(w)
    return codes.t().contiguous(), scales.float()


def _int_mm_run(x: torch.Tensor, prepared: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    codes_t, w_scales = prepared
    x_codes, x_scales = quantize_per_token(x, 8)
    return torch._int_mm(x_codes.to(torch.int8), codes_t).float() * x_scales * w_scales


def _dyn4_prepare(w: torch.Tensor, group: int) -> tuple[torch.Tensor, int, int, int]:
    n, k = w.shape
    g = w.float().reshape(n, k // group, group)
    scales = (g.abs().amax(-1) / 7).clamp_min(1e-12)
    codes = (torch.round(g / scales.unsqueeze(-1)).clamp(-8, 7) + 8).to(torch.uint8).reshape(n, k)
    nibbles = (codes[:, 1::2] << 4) | codes[:, ::2]
    packed = torch.ops.aten._dyn_quant_pack_4bit_weight(nibbles, scales.to(torch.bfloat16), None, group, k, n)
    return packed, group, k, n


def _dyn4_run(x: torch.Tensor, prepared: tuple[torch.Tensor, int, int, int]) -> torch.Tensor:
    packed, group, k, n = prepared
    return torch.ops.aten._dyn_quant_matmul_4bit(x, packed, group, k, n)


def _jit_bf16_prepare(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    return (*pack(quantize_int4(w, group)), group, *w.shape)


def _jit_bf16_run(
    x: torch.Tensor, prepared: tuple[torch.Tensor, torch.Tensor, int, int, int]
) -> torch.Tensor:
    """A prefill from the one int4 copy on the bf16 GEMM: each weight rebuilt in bf16 just before use."""
    return F.linear(x, dequantize_cpu(*prepared))


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]


def _c_unpack_prepare(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not unpack_kernel.available():
        raise RuntimeError("the C unpack kernel could not be built here (no compiler?)")
    if not unpack_kernel.use_dense(unpack_kernel.MIN_ROWS, w.shape[0]):
        raise NotImplementedError(f"{w.shape[0]} rows are not whole blocks of the CPU int4 packing")
    return pack(quantize_int4(w, group))


def kernels(group: int) -> list[Kernel]:
    bf16, fp32 = torch.bfloat16, torch.float32
    return [
        Kernel("fp32 dense (F.linear)", lambda w: w.float().contiguous(), lambda x, w: F.linear(x, w), fp32),
        Kernel("bf16 dense (F.linear)", lambda w: w.to(bf16).contiguous(), lambda x, w: F.linear(x, w), bf16),
        Kernel(
            "int4 weights x bf16 act (aten._weight_int4pack_mm_for_cpu)",
            lambda w: pack(quantize_int4(w, group)),
            lambda x, p: int4_matmul(x, *p, group),
            bf16,
        ),
        Kernel(
            "int8 weights x bf16 act (aten._weight_int8pack_mm)",
            int8_per_channel,
            lambda x, p: int8_matmul(x, *p),
            bf16,
        ),
        Kernel(
            "int4 copy dequantized to bf16 per call (eager PyTorch) + bf16 dense",
            lambda w: _jit_bf16_prepare(w, group),
            _jit_bf16_run,
            bf16,
        ),
        Kernel(
            "int4 copy unpacked per call (C kernel, quant/unpack_kernel.py) + "
            f"{_dtype_name(unpack_kernel.dense_dtype())} dense",
            lambda w: _c_unpack_prepare(w, group),
            lambda x, p: unpack_kernel.dense_matmul(x, *p, group),
            bf16,
        ),
        Kernel("int8 x int8, dynamic per-token act (torch._int_mm)", _int_mm_prepare, _int_mm_run, fp32),
        Kernel(
            "int4 weights x dynamic int8 act (aten._dyn_quant_matmul_4bit)",
            lambda w: _dyn4_prepare(w, group),
            _dyn4_run,
            fp32,
        ),
    ]


def kernel_survey(
    weights: list[torch.Tensor], tokens: int, group: int, repeats: int, budget_s: float = 10.0
) -> list[dict]:
    """Time every kernel over the decoder's linears at 1 row (decode) and `tokens` rows (prefill).

    Kernels are timed round-robin, like the models. A kernel whose passes over all matrices would exceed
    the budget is timed on the first decoder layer's matrices and scaled by the element count (the
    table says so).
    """
    total = sum(w.numel() for w in weights)
    g = torch.Generator().manual_seed(0)
    xs = {k: torch.randn(tokens, k, generator=g) for k in sorted({w.shape[1] for w in weights})}
    probe = weights[: len(DECODER_LINEARS)]
    rows, plans = [], []
    for kernel in kernels(group):
        entry: dict = {"kernel": kernel.name}
        rows.append(entry)
        try:
            prepared = [kernel.prepare(w) for w in probe]
            first = kernel.run(xs[probe[0].shape[1]][:1].to(kernel.act_dtype), prepared[0]).float()
            ref = F.linear(xs[probe[0].shape[1]][:1], probe[0].float())
            entry["rel_error_vs_fp32"] = float((first - ref).norm() / ref.norm())
            est = _pass_ms(kernel, prepared, probe, xs, tokens) * total / sum(w.numel() for w in probe)
            subset = weights if est * repeats / 1e3 < budget_s else probe
            if subset is weights:
                prepared = [kernel.prepare(w) for w in weights]
            scale = total / sum(w.numel() for w in subset)
            entry["measured_on"] = f"{len(subset)} of {len(weights)} matrices" + (
                "" if subset is weights else f", scaled x{scale:.1f}"
            )
            plans.append((entry, kernel, subset, prepared, scale))
        except (RuntimeError, NotImplementedError) as err:
            entry["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    samples: list[dict[int, list[float]]] = [{1: [], tokens: []} for _ in plans]
    for r in range(1 + repeats):  # the first round warms up
        for i, (_, kernel, subset, prepared, scale) in enumerate(plans):
            for n_rows in (1, tokens):
                ms = _pass_ms(kernel, prepared, subset, xs, n_rows) * scale
                if r:
                    samples[i][n_rows].append(ms)
    for (entry, *_), sample in zip(plans, samples, strict=True):
        entry["decode_ms"] = float(np.median(sample[1]))
        entry["prefill_ms"] = float(np.median(sample[tokens]))
    return rows


def _pass(kernel: Kernel, prepared: list, weights: list[torch.Tensor], xs: dict, rows: int) -> None:
    for w, p in zip(weights, prepared, strict=True):
        kernel.run(xs[w.shape[1]][:rows].to(kernel.act_dtype), p)


def _pass_ms(kernel: Kernel, prepared: list, weights: list[torch.Tensor], xs: dict, rows: int) -> float:
    t0 = time.perf_counter()
    _pass(kernel, prepared, weights, xs, rows)
    return (time.perf_counter() - t0) * 1e3


def decoder_weights(model: nn.Module) -> list[torch.Tensor]:
    return [linear.weight.detach() for *_, linear in find_linears(model, DECODER_LINEARS)]


# -- whole-model latency and predictions ------------------------------------------------------------
def cast_inputs(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    images, state, prompt = inputs
    return {c: v.to(dtype) for c, v in images.items()}, state.to(dtype), prompt


@torch.inference_mode()
def one_action_ms(model: VlaModel, inputs: Inputs) -> tuple[float, float, float]:
    """(whole action, prefill, mean one-token decode pass) in ms. An action is the prefill plus greedy
    decoding of action_dim tokens: what Policy.act runs, without image preprocessing."""
    timer = StageTimer()
    t0 = time.perf_counter()
    with timer.stage("prefill"):
        step = model.prefill(*inputs)
    decode_autoregressive(model, step, model.config.action_dim, timer)
    total = (time.perf_counter() - t0) * 1e3
    passes = [v for k, v in timer.ms.items() if k.startswith("decode_")]
    return total, timer.ms["prefill"], sum(passes) / max(len(passes), 1)


Run = tuple[str, Callable[[], None], VlaModel, Inputs]  # name, switch to it, model, inputs


def interleaved_latency(runs: list[Run], warmup: int, repeats: int) -> dict[str, dict]:
    """Time every format round-robin (each round measures each format once), so load from other
    processes on a shared machine falls on all formats alike instead of on whichever ran last."""
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name, *_ in runs}
    cold: dict[str, float] = {}
    for r in range(max(1, warmup) + repeats):
        for name, switch, model, inputs in runs:
            switch()
            timing = one_action_ms(model, inputs)
            if r == 0:  # the first action of each format: a compiled decoder's cold compile falls here
                cold[name] = timing[0]
            elif r >= max(1, warmup):
                samples[name].append(timing)
    return {
        name: {
            "cold_action_ms": cold[name],
            "action": summarize([t[0] for t in ts]),
            "prefill": summarize([t[1] for t in ts]),
            "decode_token": summarize([t[2] for t in ts]),
        }
        for name, ts in samples.items()
    }


@torch.inference_mode()
def predict(model: VlaModel, inputs: Inputs) -> tuple[np.ndarray, torch.Tensor]:
    """Greedy action ids and the first token's action logits (fp32)."""
    step = model.prefill(*inputs)
    logits = step.logits[0, -1, model.action_first_id :].float()
    out = decode_autoregressive(model, step, model.config.action_dim, StageTimer())
    return out.token_ids[0].numpy(), logits


def compare_predictions(
    reference: list[tuple[np.ndarray, torch.Tensor]],
    other: list[tuple[np.ndarray, torch.Tensor]],
    tokenizer: ActionTokenizer,
) -> dict:
    ids_ref = np.stack([r[0] for r in reference])
    ids = np.stack([o[0] for o in other])
    bins = np.abs(ids.astype(np.int64) - ids_ref.astype(np.int64))
    actions = np.abs(tokenizer.decode(ids) - tokenizer.decode(ids_ref))
    rel = [
        float((o[1] - r[1]).norm() / r[1].norm().clamp_min(1e-12))
        for r, o in zip(reference, other, strict=True)
    ]
    return {
        "observations": len(reference),
        "token_agreement": float((bins == 0).mean()),
        "mean_abs_bin": float(bins.mean()),
        "max_abs_bin": int(bins.max()),
        "mean_abs_action": float(actions.mean()),
        "first_token_logit_rel_error": float(np.mean(rel)),
    }


def random_observations(policy: Policy, n: int, seed: int = 0) -> list[Inputs]:
    from vla_accel_ros.sim.tasks import TASKS

    cfg, rng = policy.config, np.random.default_rng(seed)
    instructions = list(TASKS.values())
    out = []
    for i in range(n):
        size = (cfg.image_size, cfg.image_size, 3)
        images = {c: rng.integers(0, 256, size, dtype=np.uint8) for c in cfg.cameras}
        joints = rng.normal(size=cfg.state_dim) * np.asarray(cfg.state_std) + np.asarray(cfg.state_mean)
        out.append(policy.preprocess(PolicyInput(images, joints, instructions[i % len(instructions)])))
    return out


def demo_observations(policy: Policy, data_dir: Path, n: int, stride: int = 7) -> list[Inputs]:
    """Frames spread over the demonstration bags under data_dir (every `stride`-th step, tasks in turn)."""
    from vla_accel_ros.data.bag_io import iter_steps

    bags = sorted(p for p in data_dir.glob("*") if (p / "metadata.yaml").is_file())
    per_bag = -(-n // max(len(bags), 1))
    out: list[Inputs] = []
    for bag in bags:
        taken = 0
        for i, step in enumerate(iter_steps(bag)):
            if i % stride or not all(c in step.images for c in policy.cameras):
                continue
            out.append(policy.preprocess(PolicyInput(step.images, step.joint_positions, step.instruction)))
            taken += 1
            if taken >= per_bag or len(out) >= n:
                break
        if len(out) >= n:
            break
    return out


# -- memory ------------------------------------------------------------------------------------------
def decoder_tensors(model: VlaModel) -> list[torch.Tensor]:
    """The Llama decoder (embeddings, layers, final norm) and the lm_head."""
    return [t for _, t in held_tensors(model.llama)] + [t for _, t in held_tensors(model.lm_head)]


def bytes_of(tensors: Iterable[torch.Tensor]) -> int:
    return storage_bytes(list(tensors))


# -- switch cost ------------------------------------------------------------------------------------
def switch_cost(modes: list[str], switch: Callable[[str], None], repeats: int) -> dict:
    """Time switching from every mode to every other one (the switch alone, not the next pass)."""
    samples = []
    for _ in range(repeats):
        for a in modes:
            for b in modes:
                if a != b:
                    switch(a)
                    t0 = time.perf_counter()
                    switch(b)
                    samples.append((time.perf_counter() - t0) * 1e3)
    return summarize(samples) | {"max_ms": float(max(samples))}


# -- one model, every format -------------------------------------------------------------------------
@dataclass
class BenchSettings:
    """The knobs of one precision benchmark, kept together so a report states what it measured."""

    group: int = QUANT_GROUP_SIZE  # the graph's (inference_node.quant_group_size) unless a flag says
    warmup: int = 2
    repeats: int = 10
    strategies: tuple[str, ...] = ("int4-master",)
    sweep_groups: bool = False  # also measure the top mode's error at every other usable group size
    compile: bool = False  # torch.compile every timed model's decoder (policy/compiled.py)


def lm_head_latency(model: VlaModel, tokens: int, repeats: int) -> dict:
    """The vocabulary projection alone (left unquantized): prefill rows and one decode row."""
    weight = model.lm_head.weight.detach()
    h = torch.randn(tokens, weight.shape[1])
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        w, x = weight.to(dtype), h.to(dtype)
        prefill = functools.partial(F.linear, x, w)
        decode = functools.partial(F.linear, x[:1], w)
        out[name] = {
            "prefill_ms": float(np.median(repeat_ms(prefill, 1, repeats))),
            "decode_ms": float(np.median(repeat_ms(decode, 1, repeats))),
        }
    return out


def bench_model(
    fp32: VlaModel,
    latency_inputs: Inputs,
    observations: list[Inputs],
    settings: BenchSettings,
    tokenizer: ActionTokenizer,
    log: Callable[[str], None] = print,
) -> dict:
    """Latency, memory, switch cost and action error of fp32, bf16 and every strategy's modes."""
    import copy

    from vla_accel_ros.quant.ladder import set_precision
    from vla_accel_ros.quant.strategies import STRATEGIES, install_strategy

    fp32 = fp32.eval()
    s = settings
    bf16_linears = sum(2 * lin.weight.numel() for *_, lin in find_linears(fp32, DECODER_LINEARS))
    result: dict = {"latency": {}, "errors": {}, "strategies": [], "memory": {}}
    reference = [predict(fp32, x) for x in observations]
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    result["errors"]["bf16"] = compare_predictions(
        reference, [predict(bf16, cast_inputs(x, torch.bfloat16)) for x in observations], tokenizer
    )
    mem = result["memory"]
    for label, m in (("fp32", fp32), ("bf16", bf16)):
        mem[f"{label}_model"] = bytes_of(t for _, t in held_tensors(m))
        mem[f"{label}_decoder"] = bytes_of(decoder_tensors(m))
    mem["bf16_decoder_linears"] = bf16_linears
    context = mean_decode_context(fp32.config)
    pass_bytes = {"fp32": decode_pass_bytes(fp32, context), "bf16": decode_pass_bytes(bf16, context)}
    if s.compile:  # eager twins taken before anything is compiled
        fp32_eager, bf16_eager = copy.deepcopy(fp32), copy.deepcopy(bf16)
    runs: list[Run] = [
        ("fp32", lambda: None, fp32, latency_inputs),
        ("bf16", lambda: None, bf16, cast_inputs(latency_inputs, torch.bfloat16)),
    ]
    if "int4-whole" in s.strategies:  # its fair baseline: bf16 that also scores only the action bins
        bf16_cut = copy.deepcopy(bf16)
        restrict_head(bf16_cut)
        runs.append(("bf16-action-head", lambda: None, bf16_cut, cast_inputs(latency_inputs, torch.bfloat16)))
    entries = []
    for name in s.strategies:
        log(f"  strategy {name}: memory, switch cost" + (", action error" if name == "int4-master" else ""))
        model = copy.deepcopy(fp32)
        strategy = install_strategy(model, name, s.group)
        entry = {"strategy": name, "description": STRATEGIES[name], "modes": {}, "held_bytes_per_mode": {}}
        # what the replaced tensors take in bf16 (the linears; for int4-whole also the table and head)
        entry["bf16_reference_bytes"] = strategy.ladder.bf16_bytes if strategy.ladder else bf16_linears
        for mode in strategy.modes:
            strategy.set(mode)
            entry["held_bytes_per_mode"][mode] = strategy.held_bytes()
            if strategy.ladder is not None:
                predictions = [predict(model, x) for x in observations]
                key = mode if name == "int4-master" else f"{mode} ({name})"
                result["errors"][key] = compare_predictions(reference, predictions, tokenizer)
            runs.append((f"{name}:{mode}", functools.partial(strategy.set, mode), model, latency_inputs))
        pass_bytes[name] = decode_pass_bytes(model, context)
        entry["held_bytes"] = max(entry["held_bytes_per_mode"].values())
        entry["fraction_of_bf16_linears"] = entry["held_bytes"] / bf16_linears
        switch = functools.partial(set_precision, model) if strategy.ladder is not None else strategy.set
        t0 = time.perf_counter()
        switch(strategy.modes[0])
        slow = (time.perf_counter() - t0) > 0.01
        entry["switch"] = switch_cost(strategy.modes, switch, 2 if slow else 200)
        if strategy.ladder is not None:
            ladder = strategy.ladder
            entry["modes_info"] = {
                m: {
                    "emulated": ladder.modes[m].emulated,
                    "kernel": ladder.modes[m].kernel,
                    "description": ladder.modes[m].describe(),
                }
                for m in ladder.names
            }
            entry["model_bytes"] = bytes_of(t for _, t in held_tensors(model))
            entry["decoder_bytes"] = bytes_of(decoder_tensors(model))
        if name == "int4-master":
            mem["ladder_model"], mem["ladder_decoder"] = entry["model_bytes"], entry["decoder_bytes"]
            mem["ladder_linears"] = ladder.held_bytes()
            mem["prefill_buffer"] = ladder.transient_bytes()  # the dense prefill's unpacked weight
            # the same, were the unquantized decoder parts (embeddings, norms, head) held in bf16
            mem["ladder_decoder_other_bf16"] = ladder.held_bytes() + mem["bf16_decoder"] - bf16_linears
        entries.append(entry)
    if s.compile:  # every format compiled, and the eager baselines beside them: the faster counts
        from vla_accel_ros.policy.compiled import compile_decoder

        for model in {id(m): m for _, _, m, _ in runs}.values():
            compile_decoder(model)
        runs += [
            ("fp32 (eager)", lambda: None, fp32_eager, latency_inputs),
            ("bf16 (eager)", lambda: None, bf16_eager, cast_inputs(latency_inputs, torch.bfloat16)),
        ]
    log(f"  latency of {len(runs)} formats, round-robin, {s.warmup} + {s.repeats} rounds")
    latency = interleaved_latency(runs, s.warmup, s.repeats)
    if s.compile:  # the group sweep below deep-copies fp32: it measures the eager model's numerics
        from vla_accel_ros.policy.compiled import uncompile_decoder

        for _, _, model, _ in runs:
            uncompile_decoder(model)
    kept = ("fp32", "bf16", "bf16-action-head", "fp32 (eager)", "bf16 (eager)")
    result["latency"] = {k: latency[k] for k in kept if k in latency}
    bandwidth = read_bandwidth()
    result["decode_limit"] = {
        "bandwidth": bandwidth,
        "context_tokens": context,
        "formats": {k: {"bytes": b, "limit_ms": limit_ms(b, bandwidth)} for k, b in pass_bytes.items()},
    }
    for entry in entries:
        modes = entry["held_bytes_per_mode"]
        entry["modes"] = {mode: latency[f"{entry['strategy']}:{mode}"] for mode in modes}
    result["strategies"] = entries
    del runs, bf16
    if s.sweep_groups:
        result["group_sweep"] = group_sweep(fp32, observations, reference, tokenizer, s.group, result, log)
    return result


def group_sweep(
    fp32: VlaModel,
    observations: list[Inputs],
    reference: list,
    tokenizer: ActionTokenizer,
    group: int,
    result: dict,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Memory and top-mode error of the int4 copy at each group size the kernel takes for this model."""
    import copy

    from vla_accel_ros.quant.int4 import KERNEL_GROUP_SIZES
    from vla_accel_ros.quant.ladder import quantize_model

    bf16_linears = result["memory"]["bf16_decoder_linears"]
    rows = []
    for g in KERNEL_GROUP_SIZES:
        if g == group:
            ladder_entry = next(e for e in result["strategies"] if e["strategy"] == "int4-master")
            top = list(ladder_entry["modes"])[-1]
            fraction = result["memory"]["ladder_linears"] / bf16_linears
            rows.append({"group": g, "fraction_of_bf16_linears": fraction, "errors": result["errors"][top]})
            continue
        model = copy.deepcopy(fp32)
        try:
            ladder = quantize_model(model, group=g)
        except ValueError as err:
            rows.append({"group": g, "not_applicable": str(err)})
            continue
        log(f"  group {g}")
        predictions = [predict(model, x) for x in observations]
        rows.append(
            {
                "group": g,
                "fraction_of_bf16_linears": ladder.held_bytes() / bf16_linears,
                "errors": compare_predictions(reference, predictions, tokenizer),
            }
        )
        del model, ladder
    return rows


def prefill_tokens(model: VlaModel, inputs: Inputs) -> int:
    cfg = model.config
    return len(cfg.cameras) * cfg.tokens_per_image + 1 + inputs[2].shape[1]


def bench_section(
    fp32: VlaModel,
    observations: list[Inputs],
    settings: BenchSettings,
    tokenizer: ActionTokenizer,
    survey: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Everything measured on one model: kernels over its decoder linears (optional), the lm_head alone,
    then bench_model (baselines, strategies, switch cost, memory, action error)."""
    tokens = prefill_tokens(fp32, observations[0])
    kernels_out = []
    if survey:
        log("  kernel survey")
        repeats = max(3, settings.repeats // 2)
        kernels_out = kernel_survey(decoder_weights(fp32), tokens, settings.group, repeats)
    head = lm_head_latency(fp32, tokens, max(5, settings.repeats))
    section = bench_model(fp32, observations[0], observations, settings, tokenizer, log)
    section.update(
        kernels=kernels_out,
        lm_head=head,
        prefill_tokens=tokens,
        decoder_linears=len(find_linears(fp32, DECODER_LINEARS)),
    )
    return section
