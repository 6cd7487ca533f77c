"""q/k/v and gate/up sharing one int4 matmul (quant/fused.py): same bytes, same numbers, fewer calls."""

from __future__ import annotations

import copy

import pytest
import torch
from test_quant import GROUP, MODE_NAMES, decode_logits
from torch import nn

from vla_accel_ros.policy.config import tiny_config
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.tokenizer import PromptTokenizer
from vla_accel_ros.quant import Int4Linear, quantize_model
from vla_accel_ros.quant.int4 import int4_matmul

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WORDS = ["reach", "the", "red", "goal", "push", "puck"]


def fusable_model() -> VlaModel:
    """Every sibling a whole number of the CPU kernel's 64-row blocks (head_dim 64, one kv head)."""
    torch.manual_seed(0)
    words = PromptTokenizer.from_texts([" ".join(WORDS)]).vocab[4:]
    cfg = tiny_config(words, hidden_size=128, num_heads=2, num_kv_heads=1, intermediate_size=192)
    return VlaModel(cfg).eval()


def test_fused_siblings_hold_the_same_bytes_and_give_the_same_numbers_in_every_mode():
    base = fusable_model()
    fused, apart = copy.deepcopy(base), copy.deepcopy(base)
    lf, la = quantize_model(fused, group=GROUP), quantize_model(apart, group=GROUP, fuse=False)
    assert lf.names == la.names and list(lf.layers) == list(la.layers)
    shared = {n for n, layer in lf.layers.items() if layer.shares_matmul}
    assert shared == {
        n for n in lf.layers if n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
    }
    assert not any(layer.shares_matmul for layer in la.layers.values())
    assert lf.held_bytes() == la.held_bytes()  # the siblings' buffers are views into one copy
    for name in lf.layers:  # the same codes, scales and zeros, row for row
        for buf in ("packed", "scales_and_zeros"):
            assert torch.equal(getattr(lf.layers[name], buf), getattr(la.layers[name], buf)), (name, buf)
    for schedule in ([m] * 3 for m in MODE_NAMES):
        for got, want in zip(decode_logits(fused, schedule), decode_logits(apart, schedule), strict=True):
            assert torch.equal(got, want), schedule


def test_a_sibling_called_alone_or_out_of_order_computes_its_own_rows():
    model = fusable_model()
    quantize_model(model, group=GROUP)
    attn = model.llama.layers[0].self_attn
    assert attn.k_proj.shares_matmul
    x, other = torch.randn(3, 128), torch.randn(3, 128)
    alone = {n: getattr(attn, n).compute(x) for n in ("q_proj", "k_proj", "v_proj")}
    # k on another input between q and v: every result is still that of its own input
    q = attn.q_proj(x)
    k_other = attn.k_proj(other)
    v = attn.v_proj(x)
    k = attn.k_proj(x)
    assert (
        torch.equal(q, alone["q_proj"])
        and torch.equal(v, alone["v_proj"])
        and torch.equal(k, alone["k_proj"])
    )
    assert torch.equal(k_other, attn.k_proj.compute(other))
    # q twice on the same input: the second is computed again, not a stale or missing slice
    assert torch.equal(attn.q_proj(x), alone["q_proj"]) and torch.equal(attn.q_proj(x), alone["q_proj"])
    # and the separate kernel call agrees with the shared one's slice
    layer = attn.q_proj
    ref = int4_matmul(x.bfloat16(), layer.packed, layer.scales_and_zeros.contiguous(), layer.group)
    assert torch.equal(alone["q_proj"], ref.float())


def test_siblings_that_are_not_whole_row_blocks_stay_apart():
    torch.manual_seed(0)
    words = PromptTokenizer.from_texts([" ".join(WORDS)]).vocab[4:]
    # k/v of 32 rows each: not a whole 64-row block of the CPU kernel, so q/k/v stay three matmuls
    model = VlaModel(tiny_config(words, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128))
    ladder = quantize_model(model.eval(), group=GROUP)
    kinds = {n.rsplit(".", 1)[-1]: layer.shares_matmul for n, layer in ladder.layers.items()}
    assert kinds == {
        "q_proj": False,
        "k_proj": False,
        "v_proj": False,
        "o_proj": False,
        "gate_proj": True,
        "up_proj": True,
        "down_proj": False,
    }
    assert all(isinstance(layer, Int4Linear) for layer in ladder.layers.values())


def test_a_deep_copy_keeps_one_copy_of_the_shared_rows():
    model = fusable_model()
    quantize_model(model, group=GROUP)
    twin = copy.deepcopy(model)
    a, b = twin.llama.layers[0].self_attn.q_proj, twin.llama.layers[0].self_attn.v_proj
    assert a.packed.untyped_storage().data_ptr() == b.packed.untyped_storage().data_ptr()
    assert a.packed.untyped_storage().data_ptr() != model.llama.layers[0].self_attn.q_proj.packed.data_ptr()
    x = torch.randn(2, 128)
    assert torch.equal(twin.llama.layers[0].self_attn.v_proj(x), model.llama.layers[0].self_attn.v_proj(x))
    assert isinstance(twin.llama.layers[0].mlp.down_proj, Int4Linear)
    assert not isinstance(twin.llama.layers[0].mlp.down_proj, nn.Linear)


def test_the_cpu_packed_int4_copy_unpacks_to_its_codes_and_weights():
    """The just-in-time dequantization the kernel survey times reads the kernel's own packed bytes."""
    from vla_accel_ros.quant.int4 import cpu_row_block, dequantize_cpu, pack, quantize_int4, unpack_cpu

    block = cpu_row_block()  # 64 on AVX-512 builds, 32 on AVX2 ones
    assert block in (64, 32), "this CPU packs int4 in an order unpack_cpu does not read"
    torch.manual_seed(0)
    w = torch.randn(192, 96)
    q = quantize_int4(w, GROUP)
    packed, sz = pack(q)
    assert torch.equal(unpack_cpu(packed, 192, 96, block), q.codes)
    # bf16 arithmetic on the bf16 scale and zero: within one bf16 rounding of the fp32 reference
    ref = q.dequantize()
    got = dequantize_cpu(packed, sz, GROUP, 192, 96).float()
    assert torch.allclose(got, ref, rtol=2**-7, atol=2**-7 * float(ref.abs().max()))
