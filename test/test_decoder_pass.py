"""The lean decoder pass (policy/decoder_pass.py) computes what transformers' LlamaModel.forward does, bit
for bit, for every format the package runs and every pass shape the decoders use."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache

from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.decoder_pass import CACHE_KW, decoder_hidden, lean_applies
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.quant.ladder import quantize_model

# grouped-query attention (4 query heads on 2 key/value heads), as SmolLM2 and the realistic model have
CONFIG = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)


def _model(fmt: str) -> VlaModel:
    torch.manual_seed(0)
    model = VlaModel(VlaConfig(prompt_vocab=["reach", "push"], **CONFIG)).eval()
    if fmt == "bf16":
        return model.to(torch.bfloat16)
    if fmt != "fp32":
        quantize_model(model, group=32, vocab=fmt == "int4-whole").set("w4a16")
    return model


def _reference(model: VlaModel, embeds: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    start = cache.get_seq_length()
    positions = torch.arange(start, start + embeds.shape[1]).unsqueeze(0)
    out = model.llama(inputs_embeds=embeds, position_ids=positions, use_cache=True, **{CACHE_KW: cache})
    return out.last_hidden_state


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "w4a16", "int4-whole"])
def test_lean_pass_equals_transformers_bitwise(fmt):
    model = _model(fmt)
    assert lean_applies(model.llama)
    dtype = next(model.llama.layers[0].input_layernorm.parameters()).dtype
    torch.manual_seed(1)
    prefix = torch.randn(1, 20, CONFIG["hidden_size"], dtype=dtype)
    first = model.action_first_id
    ours, theirs = DynamicCache(), DynamicCache()
    with torch.inference_mode():
        # a prefill from the empty cache, one decode token, a 3-token verify pass, then a rollback and again
        for embeds in (
            prefix,
            model.llama.embed_tokens(torch.tensor([[first + 5]])),
            model.llama.embed_tokens(torch.tensor([[first + 9, first + 1, first + 200]])),
        ):
            a, b = decoder_hidden(model.llama, embeds, ours), _reference(model, embeds, theirs)
            assert torch.equal(a, b)
        VlaModel.rollback(ours, 21)
        VlaModel.rollback(theirs, 21)
        embeds = model.llama.embed_tokens(torch.tensor([[first + 3, first + 4]]))
        assert torch.equal(decoder_hidden(model.llama, embeds, ours), _reference(model, embeds, theirs))
    for layer in range(CONFIG["num_layers"]):
        assert torch.equal(ours.layers[layer].keys, theirs.layers[layer].keys)
        assert torch.equal(ours.layers[layer].values, theirs.layers[layer].values)


def test_other_attention_and_compiled_decoders_keep_transformers_forward():
    model = _model("fp32")
    eager = copy.deepcopy(model)
    eager.llama.config._attn_implementation = "eager"
    assert not lean_applies(eager.llama)
    model.llama.forward = model.llama.forward  # what policy/compiled.py installs: an own forward
    assert not lean_applies(model.llama)
    with torch.inference_mode():
        embeds = torch.randn(1, 6, CONFIG["hidden_size"])
        hidden = decoder_hidden(eager.llama, embeds, DynamicCache())
        assert hidden.shape == (1, 6, CONFIG["hidden_size"])
        assert torch.allclose(hidden, _reference(_model("fp32"), embeds, DynamicCache()), atol=1e-5)
