"""The speed tables' shared rules: the baseline is the faster full precision, every core by default,
one doc section per CPU kernel class, and the physical limit of a decode pass beside its time."""

from __future__ import annotations

import os

import pytest
import torch

from vla_accel_ros.evaluation.reporting import (
    baseline_sentence,
    capability_class,
    fastest_baseline,
    section_name,
    write_machine_section,
)
from vla_accel_ros.policy.config import tiny_config
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.threads import cores_available, resolve_threads, use_threads
from vla_accel_ros.quant import quantize_model
from vla_accel_ros.quant.bandwidth import decode_pass_bytes, limit_ms, mean_decode_context, read_bandwidth

INSTRUCTIONS = ["reach the goal", "push the puck"]


def test_the_baseline_is_the_faster_full_precision_and_says_so():
    assert fastest_baseline({"fp32": 300.0, "bf16": 210.0}) == ("bf16", 210.0)
    assert fastest_baseline({"fp32": 150.0, "bf16": 450.0}) == ("fp32", 150.0)  # AVX2: bf16 emulated
    assert fastest_baseline({"fp32": 150.0, "bf16": float("nan")}) == ("fp32", 150.0)
    with pytest.raises(ValueError):
        fastest_baseline({})
    text = baseline_sentence({"fp32": 300.0, "bf16": 210.0})
    assert "**bf16** (210.0 ms)" in text and "fp32 300.0 ms" in text


def test_threads_default_to_every_core_the_process_may_use():
    assert cores_available() == len(os.sched_getaffinity(0))
    assert resolve_threads(0) == cores_available() and resolve_threads(3) == 3
    with pytest.raises(ValueError):
        resolve_threads(-1)
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert section_name("bench-x", 0) == section_name("bench-x", cores_available()) == "bench-x"
    if cores_available() > 1:
        assert section_name("bench-x", 1) == "bench-x-1thread"


def test_each_kernel_class_keeps_its_own_doc_section(tmp_path):
    assert capability_class("AMX (bf16/int8)") == "amx"
    assert capability_class("AVX-512 (+bf16, VNNI)") == "avx512"
    assert capability_class("AVX2") == "avx2" and capability_class("unknown") == "other"
    page = tmp_path / "P.md"
    avx2 = {"kernels": "AVX2", "cpu": "EPYC"}
    amx = {"kernels": "AMX (bf16/int8)", "cpu": "Xeon"}
    write_machine_section(page, "bench", "first avx2\n", "# Title\n", avx2)
    write_machine_section(page, "bench", "amx run\n", "# Title\n", amx)
    write_machine_section(page, "bench", "second avx2\n", "# Title\n", avx2)
    text = page.read_text()
    assert text.startswith("# Title") and "amx run" in text and "second avx2" in text
    assert "first avx2" not in text and text.count("<!-- bench@avx2:begin -->") == 1
    assert "## AMX (bf16/int8): Xeon" in text and "## AVX2: EPYC" in text


def test_a_decode_pass_reads_what_its_format_holds():
    torch.manual_seed(0)
    cfg = tiny_config(INSTRUCTIONS, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)
    fp32 = VlaModel(cfg).eval()
    bf16 = VlaModel(cfg).eval().to(torch.bfloat16)
    int4 = VlaModel(cfg).eval()
    quantize_model(int4, group=32)
    ctx = mean_decode_context(cfg)
    assert ctx == len(cfg.cameras) * cfg.tokens_per_image + 1 + cfg.prompt_length + cfg.action_dim // 2
    sizes = [decode_pass_bytes(m, ctx) for m in (fp32, bf16, int4)]
    assert sizes[2] < sizes[1] < sizes[0]
    weights = sum(p.numel() for p in fp32.llama.layers.parameters()) + cfg.hidden_size  # + final norm
    head_rows = cfg.n_bins * cfg.hidden_size  # the action rows only: VlaModel.score reads no others
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * (cfg.hidden_size // cfg.num_heads) * ctx
    assert sizes[0] == 4 * (weights + head_rows + kv + cfg.hidden_size)  # + one embedding row
    # a longer cache is more to read; the limit is bytes over the measured bandwidth
    assert decode_pass_bytes(fp32, ctx + 10) > sizes[0]
    bw = read_bandwidth(mib=16, repeats=2)
    assert bw["gb_per_s"] > 0 and bw["bytes"] == 16 * 2**20
    assert limit_ms(int(bw["gb_per_s"] * 1e9), bw) == pytest.approx(1e3)


def test_a_compiled_decoder_decodes_the_same_actions():
    """torch.compile changes dispatch, not the model: the greedy actions match the eager model's."""
    import copy

    import numpy as np

    from vla_accel_ros.policy.compiled import compile_decoder, is_compiled, uncompile_decoder
    from vla_accel_ros.policy.runtime import Policy, PolicyInput

    torch.manual_seed(0)
    cfg = tiny_config(INSTRUCTIONS, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)
    eager = Policy(VlaModel(cfg).eval())
    compiled = Policy(copy.deepcopy(eager.model))
    compile_decoder(compiled.model)
    compile_decoder(compiled.model)  # idempotent
    assert is_compiled(compiled.model) and not is_compiled(eager.model)
    # a deep copy of a compiled model runs its own decoder, not the original's
    twin = copy.deepcopy(compiled.model)
    assert is_compiled(twin) and twin.llama.forward.__self__ is twin.llama
    uncompile_decoder(twin)
    assert not is_compiled(twin) and is_compiled(compiled.model)
    rng = np.random.default_rng(0)
    for _ in range(2):
        size = (cfg.image_size, cfg.image_size, 3)
        inp = PolicyInput(
            {c: rng.integers(0, 255, size, dtype=np.uint8) for c in cfg.cameras},
            rng.normal(size=cfg.state_dim),
            INSTRUCTIONS[0],
        )
        assert np.array_equal(eager.act(inp).token_ids, compiled.act(inp).token_ids)


def test_the_builder_compiles_when_the_parameter_asks():
    from vla_accel_ros.params.tables import InferenceParams
    from vla_accel_ros.policy.builder import PolicySpec, build_policy
    from vla_accel_ros.policy.compiled import is_compiled

    spec = PolicySpec.from_params(InferenceParams(compile_decoder=True), precision_ladder="int4")
    assert spec.compile_decoder and "compiled" in spec.describe()
    policy = build_policy(spec)  # compiling is lazy: the first action pays it, not the load
    assert is_compiled(policy.model) and not is_compiled(build_policy(PolicySpec()).model)


def test_bench_latency_quotes_the_faster_full_precision_and_runs_the_ladder(tmp_path):
    import json

    from vla_accel_ros.cli import main

    md, js = tmp_path / "L.md", tmp_path / "l.json"
    args = ["bench-latency", "--models", "builtin", "--steps", "3", "--warmup", "1"]
    args += ["--dtypes", "fp32,bf16,int4", "--methods", "ar,ar@w4a16,dyq", "--bag", str(tmp_path / "no-bag")]
    assert main([*args, "--json", str(js), "--markdown", str(md)]) == 0
    rows = json.loads(js.read_text())["rows"]
    # methods on the ladder run on the int4 policy only, the others in fp32 and bf16
    pairs = [(r["dtype"], r["method"]) for r in rows]
    assert pairs == [("fp32", "ar"), ("bf16", "ar"), ("int4", "ar@w4a16"), ("int4", "dyq")]
    assert {p for r in rows for p in r["precisions"]} >= {"w4a16"}
    text = md.read_text()
    assert text.count("(baseline)") == 1 and "<!-- bench-latency@" in text and "| vs baseline |" in text
