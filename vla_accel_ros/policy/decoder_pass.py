"""One pass of a transformers Llama decoder (LlamaModel) over new positions, without transformers'
per-layer Python machinery.

Why: a one-token decode pass of the realistic model runs 30 layers whose own arithmetic is small, and
transformers wraps each layer, attention and cache call in keyword checks, deprecation shims, output
capturing and an attention-interface lookup. Measured on the 2-core AVX-512 EPYC, side by side in one
process (SmolLM2-135M decoder, 47 cached positions): a w4a16 decode pass 13.6 ms through
`LlamaModel.forward`, 11.7 ms here; bf16 28.7 / 26.3 ms; fp32 44.6 / 42.3 ms. About 2 ms per pass for
every format, so every decoder (AR, speculative, KERV) and every precision gains it alike.

It is the same computation, not an approximation: the same modules (so the int4 ladder's fused q/k/v
and gate/up matmuls, `quant/fused.py`, see the same call order), the same norm modules, transformers' rotary
embedding and `scaled_dot_product_attention` arguments that transformers' sdpa path uses (no mask and
`enable_gqa` for one new token or a prefill from an empty cache, which is causal; an explicit causal
mask over the cache and repeated key/value heads for k > 1 new tokens after a cache).
test/test_decoder_pass.py checks the results bitwise against `LlamaModel.forward` for every format
and pass shape.

Anything else (another attention implementation, a decoder compiled by torch.compile, which traces
transformers' forward) goes through `LlamaModel.forward` unchanged.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaModel
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

# transformers 5.18 renamed the forward argument `past_key_values` to `cache`; a silently ignored
# keyword would decode without context, so pick the name this install uses.
CACHE_KW = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def decoder_hidden(llama: LlamaModel, embeds: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """Last hidden states (after the final norm) of `embeds` (B, k, D) placed after what `cache` holds;
    the cache grows by k positions."""
    if not lean_applies(llama):
        start = cache.get_seq_length()
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)
        positions = positions.unsqueeze(0).expand(embeds.shape[0], -1)
        out = llama(inputs_embeds=embeds, position_ids=positions, use_cache=True, **{CACHE_KW: cache})
        return out.last_hidden_state
    return _lean_pass(llama, embeds, cache)


def lean_applies(llama: LlamaModel) -> bool:
    """The lean pass reproduces transformers' sdpa attention only, and a compiled decoder (its forward
    replaced, policy/compiled.py) must keep running what Inductor compiled."""
    return llama.config._attn_implementation == "sdpa" and "forward" not in vars(llama)


def _lean_pass(llama: LlamaModel, embeds: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    b, k, _ = embeds.shape
    start = cache.get_seq_length()
    positions = (torch.arange(k, device=embeds.device) + start).unsqueeze(0)
    cos, sin = llama.rotary_emb(embeds, positions)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    mask = None
    if k > 1 and start > 0:  # new tokens see the whole cache and the new ones up to themselves
        rows = torch.arange(k, device=embeds.device)[:, None] + start
        mask = (rows >= torch.arange(start + k, device=embeds.device)[None, :]).view(1, 1, k, start + k)
    x = embeds
    for i, layer in enumerate(llama.layers[: llama.config.num_hidden_layers]):
        attn, mlp = layer.self_attn, layer.mlp
        h = layer.input_layernorm(x)
        shape = (b, k, -1, attn.head_dim)
        q = attn.q_proj(h).view(shape).transpose(1, 2)
        key = attn.k_proj(h).view(shape).transpose(1, 2)
        value = attn.v_proj(h).view(shape).transpose(1, 2)
        q = (q * cos) + (rotate_half(q) * sin)
        key = (key * cos) + (rotate_half(key) * sin)
        key, value = cache.update(key, value, i)
        if mask is None:
            o = F.scaled_dot_product_attention(
                q, key, value, dropout_p=0.0, scale=attn.scaling, is_causal=k > 1, enable_gqa=True
            )
        else:
            groups = attn.num_key_value_groups
            o = F.scaled_dot_product_attention(
                q,
                repeat_kv(key, groups),
                repeat_kv(value, groups),
                attn_mask=mask,
                dropout_p=0.0,
                scale=attn.scaling,
                is_causal=False,
            )
        o = o.transpose(1, 2).contiguous().reshape(b, k, -1).contiguous()
        x = x + attn.o_proj(o)
        h = layer.post_attention_layernorm(x)
        x = x + mlp.down_proj(mlp.act_fn(mlp.gate_proj(h)) * mlp.up_proj(h))
    return llama.norm(x)
