"""`vla-accel bench-openvla`: every method per action on an OpenVLA-format checkpoint, CPU, one run.

The measurements are evaluation.openvla_bench; the page is evaluation.openvla_report.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "OpenVLA-format checkpoint: fp32/bf16 AR vs int4, dyq, spec, kerv per action, memory (docs/OPENVLA.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.params.tables import QUANT_GROUP_SIZE

    add = parser.add_argument
    add("--checkpoint", type=Path, help="an OpenVLA directory (default: generate one with random weights)")
    add("--tiny", action="store_true", help="generate the unit tests' tiny checkpoint instead")
    add("--decoder-layers", type=int, default=2, help="Llama layers of the generated OpenVLA-7B layout")
    add("--frames", type=int, default=6, help="timed actions per method")
    add("--warmup", type=int, default=1, help="untimed actions per method first")
    add("--draft", type=Path, help="a trained draft folder (default: the checkpoint's, else untrained)")
    add("--ladder", choices=("int4", "int4-whole"), default="int4")
    add("--group", type=int, default=QUANT_GROUP_SIZE, help="int4 group size")
    add("--unnorm-key", help="the dataset statistics (a generated checkpoint: bridge_tiny)")
    add("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: also bitsandbytes NF4 (quant.nf4)")
    add("--threads", type=int, default=0, help="torch threads (0: every core this process may use)")
    add("--json", type=Path, help="default docs/results/openvla_bench.json (--tiny: openvla_bench_tiny.json)")
    add("--markdown", type=Path, default=Path("docs/OPENVLA.md"))
    add("--no-write", action="store_true", help="print the page only; write neither file")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.latency import machine_line
    from vla_accel_ros.evaluation.openvla_bench import OPENVLA_TITLE, OpenVlaBenchOptions, run_openvla_bench
    from vla_accel_ros.evaluation.openvla_report import page
    from vla_accel_ros.evaluation.reporting import (
        command_line,
        machine_info,
        section_name,
        write_machine_section,
    )
    from vla_accel_ros.policy.threads import use_threads

    use_threads(args.threads)
    load_before = os.getloadavg()[0]
    opts = OpenVlaBenchOptions(
        checkpoint=args.checkpoint,
        tiny=args.tiny,
        decoder_layers=args.decoder_layers,
        frames=args.frames,
        warmup=args.warmup,
        draft=args.draft,
        ladder=args.ladder,
        group=args.group,
        unnorm_key=args.unnorm_key,
        device=args.device,
    )
    report = run_openvla_bench(opts)
    cmd = command_line("bench-openvla")
    info = machine_info()
    machine = machine_line(info, load_before, os.getloadavg()[0])
    text = page(cmd, machine, report)
    print(text)
    if args.no_write:
        return 0
    suffix = "_tiny" if args.tiny else ""
    out = args.json or Path(f"docs/results/openvla_bench{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": cmd, "machine": machine, "machine_info": info, **report}, indent=1))
    name = section_name(
        "bench-openvla" + ("-tiny" if args.tiny else "") + ("-cuda" if args.device != "cpu" else ""),
        args.threads,
    )
    write_machine_section(args.markdown, name, text, OPENVLA_TITLE, info)
    print(f"wrote {out} and {args.markdown}")
    return 0
