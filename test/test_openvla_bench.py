"""`vla-accel bench-openvla --tiny`: every method row, the named baseline, a memory table that adds up.

No timing is asserted (the machine's speed is not the test's business); only what the page must say.
"""

from __future__ import annotations

import pytest
import torch

from vla_accel_ros.evaluation.openvla_bench import OpenVlaBenchOptions, run_openvla_bench
from vla_accel_ros.evaluation.openvla_report import page
from vla_accel_ros.quant import DEFAULT_MODES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = ["fp32 AR", "bf16 AR", "spec", "specvla", "kerv"]
METHODS += [m.name + (" (emulated)" if m.name.endswith("-emu") else "") for m in DEFAULT_MODES]
METHODS += ["dyq", "kerv+dyq"]


@pytest.fixture(scope="module")
def report() -> dict:
    return run_openvla_bench(OpenVlaBenchOptions(tiny=True, frames=2), log=lambda _: None)


def test_every_method_has_a_row_with_its_stage_split(report):
    assert [r["name"] for r in report["rows"]] == METHODS
    for r in report["rows"]:
        assert r["steps"] == 2 and not r["fallbacks"], r["name"]
        assert set(r["split_ms"]) == {"vision", "prefill", "decode"}
        assert r["split_ms"]["vision"] > 0 and r["patch_tokens"] > 0
        assert r["pass_bytes"] > 0 and r["pass_limit_ms"] > 0
        speculative = r["method"] in ("spec", "specvla", "kerv", "kerv+dyq")
        assert (r["acceptance"] is not None) == speculative, r["name"]
        if r["format"] not in ("fp32", "bf16"):  # on the ladder: every step in one of its modes
            assert sum(r["precisions"].values()) == 2
    assert "untrained" in report["draft"]


def test_page_names_the_baseline_and_every_row(report):
    text = page("vla-accel bench-openvla --tiny --frames 2 --no-write", "test machine", report)
    assert report["baseline"] in ("fp32 AR", "bf16 AR")
    assert f"Baseline: **{report['baseline']}**" in text and f"{report['baseline']} | " in text
    assert "(baseline)" in text and "random weights" in text
    for name in METHODS:
        assert f"| {name} |" in text, name


def test_memory_parts_add_up_and_the_ladder_holds_a_smaller_decoder(report):
    mem = report["memory"]
    base_fmt = report["ladder"]["format"]  # the faster of fp32 and bf16: the draft's and the ladder's
    assert list(mem) == ["fp32", "bf16", f"{base_fmt} + draft", f"int4 ({base_fmt} vision)"]
    for fmt, parts in mem.items():
        named = sum(v for k, v in parts.items() if k not in ("total", "model without draft"))
        assert named == parts["total"], fmt
        assert 0 <= parts["other"] < 0.05 * parts["total"], fmt
        assert parts["model without draft"] + parts["draft (own tensors)"] == parts["total"]
    assert mem["fp32"]["total"] == pytest.approx(2 * mem["bf16"]["total"], rel=0.05)
    assert mem["fp32"]["draft (own tensors)"] == 0 and mem["bf16"]["draft (own tensors)"] == 0
    ladder, base = mem[f"int4 ({base_fmt} vision)"], mem[base_fmt]
    assert ladder["decoder layers"] < base["decoder layers"] / 3
    assert ladder["vision towers"] == base["vision towers"]  # the towers stay in the baseline's format
    assert ladder["draft (own tensors)"] > 0


def test_nf4_refuses_a_cpu_model_without_importing_bitsandbytes():
    import sys

    from torch import nn

    from vla_accel_ros.quant.nf4 import nf4_unavailable, quantize_nf4

    model = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError, match="CUDA only"):
        quantize_nf4(model)
    assert "CUDA only" in nf4_unavailable("cpu")
    assert "bitsandbytes" not in sys.modules


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NF4 (bitsandbytes) needs a CUDA device")
def test_nf4_replaces_the_decoder_projections_and_keeps_the_action_on_cuda(tmp_path):
    from vla_accel_ros.evaluation.latency import synthetic_inputs
    from vla_accel_ros.evaluation.openvla_synthetic import write_checkpoint
    from vla_accel_ros.policy.openvla import load_policy
    from vla_accel_ros.quant.nf4 import nf4_unavailable, quantize_nf4

    if nf4_unavailable("cuda"):
        pytest.skip(nf4_unavailable("cuda"))
    from bitsandbytes.nn import Linear4bit

    path = write_checkpoint(tmp_path / "ckpt")
    policy = load_policy(path, unnorm_key="bridge_tiny", dtype="bfloat16", device="cuda")
    n = quantize_nf4(policy.model)
    assert n == 7 * policy.model.config.num_layers
    assert sum(isinstance(m, Linear4bit) for m in policy.model.modules()) == n
    out = policy.act(synthetic_inputs(policy, 1, "pick up red cup")[0])
    assert out.token_ids.shape == (7,) and (out.token_ids >= policy.model.action_first_id).all()
