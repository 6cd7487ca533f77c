"""The dense prefill from the one int4 copy (quant/unpack_kernel.py): the C kernel's unpacked weights, the
ladder's choice between it and the int4 kernel, its buffer in the memory account, torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch

from vla_accel_ros.policy.config import tiny_config
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.tokenizer import PromptTokenizer
from vla_accel_ros.quant import quantize_model
from vla_accel_ros.quant import unpack_kernel as uk
from vla_accel_ros.quant.int4 import int4_matmul, pack, quantize_int4, unpack_cpu

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not uk.available(), reason="no C compiler or no known CPU int4 packing here"),
]
GROUP = 32


def weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 0.05


def exact_weight(q) -> torch.Tensor:
    """(code - 8) * scale + zero in fp32 from the quantizer's own tensors, the bf16 scales as stored."""
    n, k = q.codes.shape
    s = q.scales.to(torch.bfloat16).float().repeat_interleave(GROUP, dim=1)
    z = q.zeros.to(torch.bfloat16).float().repeat_interleave(GROUP, dim=1)
    return (q.codes.float() - 8) * s + z


def pack_rows(codes: torch.Tensor, block: int) -> torch.Tensor:
    """The CPU kernel's packed order for a row block of `block` (unpack_cpu's inverse), built here so the
    kernel's other path (32-row blocks, AVX2 builds) is checked on every machine."""
    n, k = codes.shape
    b = codes.to(torch.uint8).view(n // block, 2, block // 2, k).transpose(2, 3)  # (blocks, half, K, rows)
    return (b[:, 0] | (b[:, 1] << 4)).contiguous().view(n, k // 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block", [None, 32, 64])
def test_unpacked_weights_are_the_int4_copys_values(dtype: torch.dtype, block: int | None) -> None:
    n, k = 192, 128
    q = quantize_int4(weight(n, k), GROUP)
    packed, sz = pack(q)
    if block is not None:
        packed = pack_rows(q.codes, block)
        assert torch.equal(unpack_cpu(packed, n, k, block), q.codes.to(torch.uint8))
    got = uk.unpack_t(packed, sz, GROUP, n, k, dtype, block=block).t().float()
    want = exact_weight(q)
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    else:  # one rounding to nearest bf16
        torch.testing.assert_close(got, want.to(torch.bfloat16).float(), rtol=2**-8, atol=1e-7)
        assert (got - want).abs().max() <= want.abs().max() * 2**-8


@pytest.mark.parametrize("march", ["haswell", "x86-64"])  # the AVX2 path, the plain C loop
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block", [32, 64])
def test_every_code_path_unpacks_the_same_weights(march: str, dtype: torch.dtype, block: int) -> None:
    if march == "haswell" and not {"avx2", "fma"} <= uk._cpu_flags():
        pytest.skip("this CPU cannot run AVX2 code")
    n, k = 128, 96
    q = quantize_int4(weight(n, k, 3), GROUP)
    packed, sz = pack_rows(q.codes, block), pack(q)[1]
    want = uk.unpack_t(packed, sz, GROUP, n, k, dtype, block=block).clone()
    got = uk.unpack_t(packed, sz, GROUP, n, k, dtype, block=block, lib=uk.build_library(march))
    assert torch.equal(got, want)


def test_bad_shapes_are_refused_not_read_past() -> None:
    packed, sz = pack(quantize_int4(weight(128, 128), GROUP))
    with pytest.raises(ValueError, match="packed codes"):
        uk.unpack_t(packed, sz, GROUP, 128, 256, torch.float32)
    with pytest.raises(ValueError, match="scales_and_zeros"):
        uk.unpack_t(packed, sz[:1], GROUP, 128, 128, torch.float32)
    with pytest.raises(ValueError, match="rejected"):
        uk.unpack_t(pack_rows(torch.zeros(96, 128, dtype=torch.uint8), 32), sz[:, :96], GROUP, 96, 128,
                    torch.float32, block=64)  # fmt: skip
    with pytest.raises(ValueError, match="bf16 or fp32"):
        uk.unpack_t(packed, sz, GROUP, 128, 128, torch.float16)


def test_dense_matmul_matches_the_int4_kernel() -> None:
    n, k = 256, 192
    packed, sz = pack(quantize_int4(weight(n, k, 1), GROUP))
    x = torch.randn(uk.MIN_ROWS + 5, k).bfloat16()
    want = int4_matmul(x, packed, sz, GROUP).float()
    got = uk.dense_matmul(x, packed, sz, GROUP).float()
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert float((got - want).norm() / want.norm()) < 1e-2


def fusable_model() -> VlaModel:
    torch.manual_seed(0)
    words = PromptTokenizer.from_texts(["reach the red goal"]).vocab[4:]
    cfg = tiny_config(words, hidden_size=128, num_heads=2, num_kv_heads=1, intermediate_size=192)
    return VlaModel(cfg).eval()


def test_the_ladder_prefills_dense_and_decodes_on_int4(monkeypatch: pytest.MonkeyPatch) -> None:
    model = fusable_model()
    ladder = quantize_model(model, group=GROUP)
    calls: list[int] = []
    real = uk.dense_matmul
    monkeypatch.setattr(uk, "dense_matmul", lambda x, *a: calls.append(x.shape[0]) or real(x, *a))
    layer = ladder.layers["layers.0.mlp.down_proj"]
    x = torch.randn(uk.MIN_ROWS, layer.in_features)
    dense = layer(x)
    assert calls == [uk.MIN_ROWS]
    with uk.dense_prefill(False):
        int4 = layer(x)
    assert layer(x[:1]).shape == (1, layer.out_features) and calls == [uk.MIN_ROWS]  # one row: int4
    assert float((dense - int4).norm() / int4.norm()) < 1e-2
    assert not torch.equal(dense, int4)  # two kernels, really both run


def test_the_transient_buffer_is_the_largest_fused_matmul() -> None:
    model = fusable_model()
    ladder = quantize_model(copy.deepcopy(model), group=GROUP)
    shapes = ladder.matmul_shapes()
    assert (2 * 192, 128) in shapes and (128 + 2 * 64, 128) in shapes  # gate/up and q/k/v, each one matmul
    size = torch.empty((), dtype=uk.dense_dtype()).element_size()
    assert ladder.transient_bytes() == max(n * k for n, k in shapes) * size
    assert ladder.transient_bytes() < ladder.held_bytes()


def test_compiled_graphs_take_the_dense_path_without_a_break() -> None:
    n, k = 128, 128
    packed, sz = pack(quantize_int4(weight(n, k, 2), GROUP))
    x = torch.randn(uk.MIN_ROWS, k).bfloat16()
    run = lambda t: uk.dense_matmul(t, packed, sz, GROUP)  # noqa: E731
    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), uk.dense_matmul(x, packed, sz, GROUP), rtol=0, atol=0)
