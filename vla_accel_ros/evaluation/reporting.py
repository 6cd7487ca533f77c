"""The benchmarks' reporting toolkit: one machine description, one percentile summary, one doc-block
writer and one process-pool fan-out, so every table in docs/ states the same facts the same way.

A benchmark figure only means something next to the machine that produced it: which CPU, which of its
kernels torch can use (AVX2, AVX-512 with bf16/VNNI, AMX), how many cores this process may actually run
on (a container or `taskset` gives fewer than the machine has) and how many threads torch used.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import platform
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vla_accel_ros.evaluation.stats import percentiles
from vla_accel_ros.policy.threads import cores_available

T = TypeVar("T")
R = TypeVar("R")

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


# -- the machine --------------------------------------------------------------------------------------
def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags (first processor; Linux), else what platform says."""
    cpu, flags = "", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return cpu or platform.processor() or platform.machine() or "unknown", flags


def kernel_capability(flags: Iterable[str]) -> str:
    """The best matrix kernels the flags allow, as the tables name them: AMX, AVX-512 (+bf16/VNNI), AVX2."""
    f = set(flags)
    if {"amx_bf16", "amx_int8"} & f:
        return "AMX (" + "/".join(x.split("_")[1] for x in ("amx_bf16", "amx_int8") if x in f) + ")"
    if "avx512f" in f:
        extra = [name for flag, name in (("avx512_bf16", "bf16"), ("avx512_vnni", "VNNI")) if flag in f]
        return "AVX-512" + (f" (+{', '.join(extra)})" if extra else "")
    if "avx2" in f:
        return "AVX2" + (" (+VNNI)" if "avx_vnni" in f else "")
    return "no AVX2" if f else "unknown"


def capability_class(kernels: str) -> str:
    """The doc-section key of a `kernel_capability` string: 'amx', 'avx512', 'avx2' or 'other'.

    Speed ratios differ in kind between these classes (bf16 is emulated and slow on AVX2, native on
    AVX-512-bf16 and AMX), so every speed table in docs/ keeps one section per class and a run only
    replaces its own class's section."""
    for prefix, key in (("AMX", "amx"), ("AVX-512", "avx512"), ("AVX2", "avx2")):
        if kernels.startswith(prefix):
            return key
    return "other"


def machine_info() -> dict[str, Any]:
    """The machine as every benchmark JSON records it (the load average at the start included)."""
    import torch

    cpu, flags = cpu_model_and_flags()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "cores_available": cores_available(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "kernels": kernel_capability(flags),
        "isa": {f: f in flags for f in ISA_FLAGS},
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": list(os.getloadavg()),
    }


def machine_summary(info: dict[str, Any] | None = None) -> str:
    """One line for a report's header: CPU, kernels, cores available, torch threads, versions, GPU."""
    m = machine_info() if info is None else info
    return (
        f"{m['cpu']} ({m['kernels']}), {m['cores_available']} of {m['logical_cpus']} cores available, "
        f"{m['torch_threads']} torch threads, Python {m['python']}, torch {m['torch']}, "
        + (f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    )


# -- figures ------------------------------------------------------------------------------------------
def fastest_baseline(times_ms: dict[str, float]) -> tuple[str, float]:
    """(name, ms) of the fastest of the full-precision rows present (the row speed-ups are quoted
    against: a user compares with the fastest unquantized model their machine runs, which is fp32 on
    AVX2 and bf16 where bf16 is native)."""
    present = {k: v for k, v in times_ms.items() if v == v}  # NaN: not measured
    if not present:
        raise ValueError("no full-precision baseline was measured")
    name = min(present, key=present.__getitem__)
    return name, present[name]


def baseline_sentence(times_ms: dict[str, float]) -> str:
    """The one sentence every speed table prints about its baseline row and why it is that one."""
    name, ms = fastest_baseline(times_ms)
    others = ", ".join(f"{k} {v:.1f} ms" for k, v in times_ms.items() if k != name)
    return f"Baseline: **{name}** ({ms:.1f} ms), the faster full precision on this machine" + (
        f" (against {others})." if others else "."
    )


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of latency samples (NaN when there are none)."""
    return percentiles(values_ms, mean=True)


def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """The command as the user typed it (`vla-accel <name> <args>`), for the report's provenance line."""
    args = sys.argv[2:] if argv is None else argv
    return f"vla-accel {name} {shlex.join(args)}".strip()


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# -- the doc-block writer -----------------------------------------------------------------------------
def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, block: str) -> str:
    """`text` with the block `name` (between its begin/end markers) replaced by `block`, or appended."""
    begin, end = markers(name)
    body = f"{begin}\n{block}{end}"
    if begin in text and end in text:
        return text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    return text.rstrip("\n") + "\n\n" + body + "\n"


def write_block(path: Path, name: str, block: str, title: str) -> None:
    """Put a command's results between `<!-- name:begin -->` and `<!-- name:end -->` in `path`, keeping
    the hand-written text around them (a new file starts with `title`)."""
    text = path.read_text() if path.is_file() else title
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_block(text, name, block))


def section_name(command: str, threads: int) -> str:
    """The doc-block name of a run: the command's own for every available core (the figures that
    count), `<command>-<n>thread` for a run restricted to fewer (kept beside it, not over it)."""
    return command if threads in (0, cores_available()) else f"{command}-{threads}thread"


def write_machine_section(path: Path, name: str, block: str, title: str, machine: dict[str, Any]) -> None:
    """`write_block` into the section of this machine's kernel class (`name@amx`, `name@avx512`, ...),
    under a heading naming the class and the CPU, so a run on one class never overwrites another's."""
    key = capability_class(machine.get("kernels", ""))
    heading = f"## {machine.get('kernels', 'unknown kernels')}: {machine.get('cpu', 'unknown CPU')}\n\n"
    write_block(path, f"{name}@{key}", heading + block, title)


# -- the process-pool fan-out -------------------------------------------------------------------------
def split_jobs(jobs: Sequence[T], workers: int) -> list[list[T]]:
    """`jobs` dealt round-robin into at most `workers` non-empty chunks (tasks stay mixed in each)."""
    chunks = [list(jobs[i :: max(1, workers)]) for i in range(max(1, workers))]
    return [c for c in chunks if c]


def fan_out(worker: Callable[[T], R], args: Sequence[T], workers: int) -> list[R]:
    """`worker` over `args` in `workers` spawned processes (a fresh interpreter each: torch and MuJoCo
    are not fork-safe), in order; in this process when there is one worker or one argument."""
    if workers <= 1 or len(args) <= 1:
        return [worker(a) for a in args]
    with mp.get_context("spawn").Pool(min(workers, len(args))) as pool:
        return pool.map(worker, args)
