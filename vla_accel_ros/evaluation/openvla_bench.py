"""`vla-accel bench-openvla`: every method per action on an OpenVLA-format checkpoint, side by side, on CPU.

One run loads the checkpoint three times, one format at a time (peak memory stays near two copies): fp32
and bf16 for the autoregressive baselines (the faster is the baseline, as in every speed table), the
baseline's format again with a draft for `spec`, `specvla` and `kerv`, and that format on the int4
ladder (vision towers and projector stay in it) for every static mode, `dyq` and `kerv+dyq`. Every row
is measured by `latency.measure`: the AccelLoop the graph builds for the method decides each step (DyQ
picks the mode per frame from the kinematic proxies), exactly as in `bench-latency`.

Per row: p50 ms per action, the stage split (vision towers + projector, the Llama prefill, decoding), the
draft's acceptance, and the one-token pass beside its physical limit (bytes read / measured read
bandwidth); per format, every tensor held. With a generated checkpoint (random weights) the actions and
the acceptance mean nothing; latency and memory do.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_accel_ros.params.tables import QUANT_GROUP_SIZE

SPEC_METHODS = ("spec", "specvla", "kerv")
LADDER_METHODS = ("dyq", "kerv+dyq")  # after the static modes
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
INSTRUCTION = "pick up red cup"  # words the synthetic tokenizer knows
OPENVLA_TITLE = "# Running an OpenVLA checkpoint\n"


@dataclass(frozen=True)
class OpenVlaBenchOptions:
    """What one bench-openvla run measures: the command's flags, so tests call the run without the CLI."""

    checkpoint: Path | None = None  # None: generate one (openvla_7b_layout, or TINY with `tiny`)
    tiny: bool = False
    decoder_layers: int = 2
    frames: int = 6
    warmup: int = 1
    draft: Path | None = None  # None: the checkpoint's draft/ if it has one, else an untrained head
    ladder: str = "int4"  # or int4-whole (token table and head in the int4 copy too)
    group: int = QUANT_GROUP_SIZE
    unnorm_key: str | None = None
    instruction: str = INSTRUCTION
    device: str = "cpu"  # cuda: adds the bitsandbytes NF4 row (quant.nf4)


# -- the checkpoint, the policies, the draft -----------------------------------------------------------
@contextmanager
def checkpoint_dir(opts: OpenVlaBenchOptions, log: Callable[[str], None] = print) -> Iterator[Path]:
    """The given directory, or one generated into a temporary directory (deleted after)."""
    if opts.checkpoint is not None:
        yield Path(opts.checkpoint)
        return
    from vla_accel_ros.evaluation.openvla_synthetic import TINY, openvla_7b_layout, write_checkpoint

    shape = TINY if opts.tiny else openvla_7b_layout(decoder_layers=opts.decoder_layers)
    what = "tiny test layout" if opts.tiny else f"OpenVLA-7B layout, {opts.decoder_layers} decoder layers"
    with tempfile.TemporaryDirectory(prefix="openvla-bench-") as tmp:
        t0 = time.perf_counter()
        path = write_checkpoint(Path(tmp) / "ckpt", shape)
        log(f"generated {what} in {time.perf_counter() - t0:.0f} s")
        yield path


def load(path: Path, fmt: str, opts: OpenVlaBenchOptions) -> Any:
    from vla_accel_ros.policy.openvla import load_policy

    unnorm = opts.unnorm_key or ("bridge_tiny" if opts.checkpoint is None else None)
    return load_policy(path, unnorm_key=unnorm, dtype=DTYPES[fmt], device=opts.device)


def attach_draft(policy: Any, opts: OpenVlaBenchOptions) -> str:
    """Give `policy` the bench's draft and say which: `opts.draft`, the checkpoint's own, or an untrained
    head of the default shape (seeded: the same weights on every policy). Before quantizing: the ladder
    folds the draft's view of the dense table and head first."""
    from vla_accel_ros.decoding.draft import DraftConfig, EagleDraft, load_draft

    if opts.draft is not None:
        policy.attach_draft(load_draft(Path(opts.draft), policy.model))
        return f"trained draft {opts.draft}"
    if policy.draft is not None:
        return "the checkpoint's draft/"
    torch.manual_seed(0)
    model = policy.model
    draft = EagleDraft(DraftConfig.for_target(model), model).to(model.device, model.dtype).eval()
    policy.attach_draft(draft)
    return "untrained draft head (random init): acceptance not meaningful"


# -- what one action costs ------------------------------------------------------------------------------
class VisionClock:
    """Times the vision towers + projector inside each prefill (hooks on the model), so the prefill stage
    splits into vision and the Llama's own prefill; remembers the patch-token count too."""

    def __init__(self, model: nn.Module) -> None:
        cuda = model.device.type == "cuda"  # as StageTimer: wait for the kernels before reading the clock
        self._sync = (lambda: torch.cuda.synchronize(model.device)) if cuda else (lambda: None)
        self.ms = 0.0
        self.tokens = 0
        self._t0 = 0.0
        self._handles = [
            model.vision_backbone.register_forward_pre_hook(self._start),
            model.projector.register_forward_hook(self._stop),
        ]

    def _start(self, *_: Any) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, _module: Any, _inputs: Any, output: torch.Tensor) -> None:
        self._sync()
        self.ms = (time.perf_counter() - self._t0) * 1e3
        self.tokens = int(output.shape[1])

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def measure_row(policy: Any, inputs: list, method: str, opts: OpenVlaBenchOptions, settings: Any) -> dict:
    """latency.measure's row of `method`, plus per steady step: vision / LLM prefill / decode ms, the
    one-token passes and the draft's tokens proposed and accepted."""
    from vla_accel_ros.evaluation.latency import measure

    clock = VisionClock(policy.model)
    steps: list[dict] = []

    def on_step(out: Any) -> None:
        t = out.timings_ms
        decode = sum(v for k, v in t.items() if k not in ("preprocess", "prefill"))
        passes = [v for k, v in t.items() if k.startswith("decode_")]
        steps.append(
            dict(
                vision=clock.ms,
                prefill=t.get("prefill", 0.0) - clock.ms,
                decode=decode,
                passes=passes,
                drafted=out.draft_tokens,
                accepted=out.accepted_tokens,
            )
        )

    try:
        row = measure(policy, inputs, method, warmup=opts.warmup, settings=settings, on_step=on_step)
    finally:
        clock.close()
    drafted = sum(s["drafted"] for s in steps)
    passes = [p for s in steps for p in s["passes"]]
    row.update(
        split_ms={k: float(np.median([s[k] for s in steps])) for k in ("vision", "prefill", "decode")},
        pass_ms=float(np.median(passes)) if passes else None,
        drafted=drafted,
        acceptance=sum(s["accepted"] for s in steps) / drafted if drafted else None,
        patch_tokens=clock.tokens,
    )
    return row


def pass_bytes(policy: Any, patch_tokens: int, instruction: str) -> int:
    """Bytes of one decode pass (quant.bandwidth.decode_pass_bytes at the mean decode context). OpenVLA's
    dense head scores all `vocab_size` rows (OpenVlaModel.score), not only the bins that function counts."""
    from vla_accel_ros.quant.bandwidth import decode_pass_bytes

    model = policy.model
    prompt = int(policy.prompt_ids(instruction).shape[-1])
    nbytes = decode_pass_bytes(model, prompt + patch_tokens + model.config.action_dim // 2)
    head = model.lm_head
    if isinstance(head, nn.Linear):
        counted = head.out_features - model.action_first_id
        nbytes += (model.config.vocab_size - counted) * head.in_features * head.weight.element_size()
    return nbytes


def memory(policy: Any) -> dict[str, int]:
    """Bytes of every tensor the policy holds, by part; `other` is what no part names (rotary tables)."""
    from vla_accel_ros.quant.memory import held_tensors, storage_bytes

    model = policy.model
    parts = {
        "vision towers": [model.vision_backbone],
        "projector": [model.projector],
        "decoder layers": [model.llama.layers, model.llama.norm],
        "token table": [model.llama.embed_tokens],
        "head": [model.lm_head],
    }
    out = {k: storage_bytes([t for m in mods for t in held_tensors(m)]) for k, mods in parts.items()}
    everything = list(held_tensors(model))
    target = storage_bytes(everything)
    if policy.draft is not None:
        everything += list(held_tensors(policy.draft))
    total = storage_bytes(everything)
    out["draft (own tensors)"] = total - target
    out["other"] = total - sum(out.values())
    out["total"] = total
    out["model without draft"] = target
    return out


def graph_settings() -> Any:
    """The graph's tables (config/vla_accel.yaml) without config/calibration.yaml: that calibration is
    the 4-D built-in model's, and OpenVLA's actions are 7-D (docs/OPENVLA.md says to leave it out)."""
    from vla_accel_ros.params.settings import GraphSettings, default_files

    return GraphSettings.load(default_files()[:1])


# -- the run --------------------------------------------------------------------------------------------
def run_openvla_bench(opts: OpenVlaBenchOptions, log: Callable[[str], None] = print) -> dict:
    """Every row and memory table (see the module doc); `log` gets a line per row as it is measured."""
    from vla_accel_ros.evaluation.latency import synthetic_inputs
    from vla_accel_ros.evaluation.reporting import fastest_baseline
    from vla_accel_ros.quant import quantize_policy
    from vla_accel_ros.quant.bandwidth import limit_ms, read_bandwidth

    settings = graph_settings()
    bandwidth = read_bandwidth() if opts.device == "cpu" else cuda_bandwidth(opts.device)
    rows: list[dict] = []
    mem: dict[str, dict[str, int]] = {}
    t_start = time.perf_counter()

    def run_rows(policy: Any, fmt: str, methods: list[str], labels: dict[str, str]) -> None:
        inputs = synthetic_inputs(policy, opts.warmup + opts.frames, opts.instruction)
        cuda = policy.model.device.type == "cuda"
        for method in methods:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            row = measure_row(policy, inputs, method, opts, settings)
            row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated() if cuda else None
            nbytes = pass_bytes(policy, row["patch_tokens"], opts.instruction)
            row.update(
                name=labels.get(method, method),
                format=fmt,
                pass_bytes=nbytes,
                pass_limit_ms=limit_ms(nbytes, bandwidth),
            )
            rows.append(row)
            acc = "" if row["acceptance"] is None else f", acceptance {row['acceptance']:.2f}"
            elapsed = time.perf_counter() - t_start
            log(f"{row['name']}: {row['total_ms']['p50']:.0f} ms p50{acc} ({elapsed:.0f} s)")

    with checkpoint_dir(opts, log) as path:
        for fmt in DTYPES:
            policy = load(path, fmt, opts)
            mem[fmt] = memory(policy)
            run_rows(policy, fmt, ["ar"], {"ar": f"{fmt} AR"})
            del policy
        if opts.device != "cpu":  # bitsandbytes' 4-bit format, as OpenVLA's load_in_4bit uses it
            from vla_accel_ros.quant.nf4 import quantize_nf4

            policy = load(path, "bf16", opts)
            quantize_nf4(policy.model)
            mem["nf4 (bitsandbytes)"] = memory(policy)
            run_rows(policy, "nf4 (bitsandbytes)", ["ar"], {"ar": "nf4 AR (bitsandbytes)"})
            del policy
        base_fmt = fastest_baseline(
            {r["format"]: r["total_ms"]["p50"] for r in rows if r["format"] in DTYPES}
        )[0]
        policy = load(path, base_fmt, opts)
        draft_label = attach_draft(policy, opts)
        mem[f"{base_fmt} + draft"] = memory(policy)
        run_rows(policy, base_fmt, list(SPEC_METHODS), {})
        del policy
        ladder = load(path, base_fmt, opts)
        attach_draft(ladder, opts)
        quantize_policy(ladder, group=opts.group, vocab=opts.ladder == "int4-whole")
        ladder_fmt = f"{opts.ladder} ({base_fmt} vision)"
        mem[ladder_fmt] = memory(ladder)
        static = [f"ar@{m}" for m in ladder.precisions]
        labels = {f"ar@{m}": m + (" (emulated)" if m.endswith("-emu") else "") for m in ladder.precisions}
        run_rows(ladder, ladder_fmt, static + list(LADDER_METHODS), labels)
        label = dict(checkpoint=path_label(opts), shape=checkpoint_shape(ladder))
        del ladder
    return dict(
        checkpoint=label,
        draft=draft_label,
        baseline=base_fmt + " AR",
        ladder=dict(kind=opts.ladder, group=opts.group, format=base_fmt),
        frames=opts.frames,
        warmup=opts.warmup,
        bandwidth=bandwidth,
        rows=rows,
        memory=mem,
        wall_s=time.perf_counter() - t_start,
    )


def cuda_bandwidth(device: str, mib: int = 1024, repeats: int = 5) -> dict[str, Any]:
    """quant.bandwidth.read_bandwidth on the GPU: the best of `repeats` reductions over `mib` MiB."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        x.sum()
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    nbytes = x.numel() * 4
    method = f"torch.sum over a {mib} MiB fp32 CUDA tensor, best of {repeats}"
    return {"gb_per_s": nbytes / best / 1e9, "bytes": nbytes, "method": method}


def path_label(opts: OpenVlaBenchOptions) -> str:
    if opts.checkpoint is not None:
        return str(opts.checkpoint)
    if opts.tiny:
        return "generated: tiny test layout (random weights: latency and memory only)"
    return (
        f"generated: OpenVLA-7B layout with {opts.decoder_layers} decoder layers "
        "(random weights: latency and memory only)"
    )


def checkpoint_shape(policy: Any) -> dict[str, int]:
    c = policy.model.config
    return dict(hidden=c.hidden_size, layers=c.num_layers, image=c.image_size, vocab=c.vocab_size)
