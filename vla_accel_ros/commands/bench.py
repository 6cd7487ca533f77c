"""`vla-accel bench`: run the benchmarks (optionally) and assemble docs/BENCHMARKS.md from their output.

Every number in docs/ is written by a command; this one only gathers the tables the
benchmark commands wrote (each names the command that produced it) under one page with
the machine description, so nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

HELP = "run the benchmark commands (--run) and assemble docs/BENCHMARKS.md from their tables"

# (section title, markdown written by the command, the command that writes it)
SECTIONS = [
    (
        "Closed-loop success of the built-in policy",
        "docs/EVAL.md",
        "vla-accel eval --episodes 50 --markdown docs/EVAL.md",
    ),
    (
        "Closed-loop success of the realistic-size (SmolLM2-135M) policy",
        "docs/EVAL_REALISTIC.md",
        "vla-accel eval --checkpoint runs/realistic --markdown docs/EVAL_REALISTIC.md ...",
    ),
    ("Control-step latency per stage", "docs/LATENCY.md", "vla-accel bench-latency"),
    ("DyQ precision ladder", "docs/PRECISION.md", "vla-accel bench-precision"),
    (
        "DyQ in closed loop",
        "docs/DYQ.md",
        "vla-accel bench-decoding --methods ar@bf16,ar@w4a16,ar@w4a8-emu,ar@w4a4-emu,dyq --closed-loop ...",
    ),
    ("Speculative decoding and KERV", "docs/DECODING.md", "vla-accel bench-decoding"),
    (
        "Speculative decoding at the realistic size",
        "docs/DECODING_REALISTIC.md",
        "vla-accel bench-decoding --realistic-frames 30 --markdown docs/DECODING_REALISTIC.md ...",
    ),
    ("Offline replay of a demonstration bag", "docs/REPLAY.md", "vla-accel bench-replay"),
    ("Reliability: fuzz, load, soak", "docs/RELIABILITY.md", "vla-accel fuzz / vla-accel soak"),
]

BASELINE_NOTE = """## Which row is the baseline, and why

Every speed-up on these pages is per action, measured side by side in one run against **the faster of
fp32 and bf16 autoregressive decoding on that machine** (each table names the row it picked). That is the
model a user would run without this package: on an AVX2 CPU bf16 is emulated and about 3x slower than
fp32, so fp32 is the baseline there; with native bf16 (AVX-512-bf16, AMX) bf16 is faster and is the
baseline. Quoting "vs bf16" on an AVX2 machine would claim speed-ups the user never sees. Benchmarks use
every core the process may run on (`os.sched_getaffinity`) unless `--threads` says otherwise, and keep one
section per CPU kernel class (AVX2 / AVX-512 / AMX) so a run on one class never overwrites another's
figures. Each decode time stands beside its physical limit: the bytes the pass reads over the read
bandwidth measured in the same run.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        default="",
        help="comma-separated commands to run first, e.g. "
        "'bench-latency,bench-precision' (each with its default arguments)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros import cli
    from vla_accel_ros.evaluation.reporting import machine_summary

    for name in filter(None, args.run.split(",")):
        rc = cli.main([name.strip()])
        if rc:
            print(f"{name} failed with exit code {rc}")
            return rc
    parts = [
        "# Benchmarks",
        "",
        f"Assembled by `vla-accel bench` on {dt.date.today().isoformat()}. Machine: {machine_summary()}.",
        "These shared machines vary 20-50 % between runs: compare rows of one table (measured side by "
        "side in one run), not numbers across tables.",
        "",
        BASELINE_NOTE,
    ]
    for title, path, command in SECTIONS:
        parts.append(f"## {title}\n")
        p = Path(path)
        if p.is_file():
            body = p.read_text().strip()
            # demote the fragment's own headings below this section's
            body = "\n".join("##" + line if line.startswith("#") else line for line in body.splitlines())
            parts.append(body + "\n")
        else:
            parts.append(f"Not measured yet: run `{command}`.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")
    return 0
