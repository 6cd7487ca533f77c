"""OpenVLA-format checkpoints with random weights, written in the exact Hugging Face layout.

Two uses, one generator: the unit tests write a tiny one (`TINY`), and benchmarks write one with
OpenVLA-7B's real layer shapes (`openvla_7b_layout`: DINOv2-L/14 + SigLIP-So400m/14 at 224 px, 256 patch
tokens, 4096-wide Llama layers with an 11008 MLP and the 32,000-token vocabulary) but only a few decoder
layers, so it runs on a CPU. Random weights: such a checkpoint measures latency and memory only, and its
config.json says so (`synthetic`).

Every tensor name and shape is listed here by hand from timm's and transformers' naming, not from the
loader's modules (policy/openvla.py, policy/vit.py), so a loader that drifted from the real format fails
to load what this writes. The ViTs are shrunk through config.json's `timm_model_args` only when their
shapes differ from the real ones (real checkpoints have no such key).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vla_accel_ros.policy.vit import KNOWN_VITS

SYNTHETIC_LABEL = "random weights, OpenVLA layout: latency and memory only"
DINO_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_ID = "vit_so400m_patch14_siglip_224"
# The real backbones' sizes, from the architectures the loader knows (policy/vit.py), so the two agree.
_SIZES = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")
DINOV2_L = {k: KNOWN_VITS["vit_large_patch14_reg4_dinov2"][k] for k in _SIZES}
SIGLIP_SO400M = {k: KNOWN_VITS[SIGLIP_ID][k] for k in _SIZES}
# OpenVLA-7B's language model (Llama-2-7B), all but the number of layers.
LLAMA2_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=2048,
)
WORDS = [
    "In:",
    "What",
    "action",
    "should",
    "the",
    "robot",
    "take",
    "to",
    "pick",
    "up",
    "red",
    "cup?\nOut:",
    "open",
    "drawer?\nOut:",
]
BRIDGE = dict(
    q01=[-0.03, -0.04, -0.02, -0.1, -0.1, -0.2, 0.0],
    q99=[0.03, 0.04, 0.05, 0.1, 0.12, 0.2, 1.0],
    mask=[True] * 6 + [False],
)
FRACTAL = dict(q01=[-0.2] * 6 + [0.0], q99=[0.2] * 6 + [1.0], mask=[True] * 6 + [False])
SHARDS = (
    "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors",
)


@dataclass(frozen=True)
class SyntheticOpenVla:
    """The shape of a synthetic OpenVLA checkpoint: image size, vocabulary, the two ViTs and the Llama."""

    image: int = 28
    base_vocab: int = 320  # the tokenizer's vocabulary; <PAD> is added after it and the LM pads
    pad_to: int = 64
    text: dict[str, int] = field(
        default_factory=lambda: dict(
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
    )
    dino: dict[str, Any] = field(
        default_factory=lambda: dict(patch_size=7, embed_dim=32, depth=3, num_heads=4, mlp_ratio=2.0)
    )
    siglip: dict[str, Any] = field(
        default_factory=lambda: dict(patch_size=7, embed_dim=24, depth=3, num_heads=4, mlp_ratio=2.0)
    )

    @property
    def padded_vocab(self) -> int:
        """The LM's vocabulary: the tokenizer's plus <PAD>, rounded up to `pad_to` (32064 for OpenVLA-7B)."""
        return math.ceil((self.base_vocab + 1) / self.pad_to) * self.pad_to

    @property
    def first_action_id(self) -> int:
        return self.base_vocab - 256

    @property
    def timm_model_args(self) -> list[dict[str, Any]] | None:
        """The ViT shapes for config.json when they are not the real backbones' (None: they are)."""
        if self.dino == DINOV2_L and self.siglip == SIGLIP_SO400M:
            return None
        return [dict(self.dino), dict(self.siglip)]


TINY = SyntheticOpenVla()


def openvla_7b_layout(decoder_layers: int = 2, **changes: Any) -> SyntheticOpenVla:
    """OpenVLA-7B's layer shapes with `decoder_layers` Llama layers (the real model has 32); `changes`
    (SyntheticOpenVla fields) shrink it further, for a smoke test."""
    base = SyntheticOpenVla(
        image=224,
        base_vocab=32000,
        text=dict(LLAMA2_7B, num_hidden_layers=decoder_layers),
        dino=dict(DINOV2_L),
        siglip=dict(SIGLIP_SO400M),
    )
    return replace(base, **changes)


# -- tensor names and shapes -------------------------------------------------------------------------------
def vit_shapes(
    prefix: str, dims: dict, cls: bool, reg: int, layer_scale: bool, pool: bool, image: int = TINY.image
) -> dict[str, tuple[int, ...]]:
    """timm's tensors of one ViT (prefix e.g. vision_backbone.featurizer)."""
    d, p = dims["embed_dim"], dims["patch_size"]
    hidden = int(d * dims["mlp_ratio"])  # timm truncates: 1152 * 3.7362 -> 4304
    patches = (image // p) ** 2
    s = {
        "patch_embed.proj.weight": (d, 3, p, p),
        "patch_embed.proj.bias": (d,),
        "pos_embed": (1, patches if (reg or not cls) else patches + 1, d),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    if cls:
        s["cls_token"] = (1, 1, d)
    if reg:
        s["reg_token"] = (1, reg, d)
    for i in range(dims["depth"]):
        b = f"blocks.{i}."
        s.update(
            {
                b + "norm1.weight": (d,),
                b + "norm1.bias": (d,),
                b + "attn.qkv.weight": (3 * d, d),
                b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d),
                b + "attn.proj.bias": (d,),
                b + "norm2.weight": (d,),
                b + "norm2.bias": (d,),
                b + "mlp.fc1.weight": (hidden, d),
                b + "mlp.fc1.bias": (hidden,),
                b + "mlp.fc2.weight": (d, hidden),
                b + "mlp.fc2.bias": (d,),
            }
        )
        if layer_scale:
            s.update({b + "ls1.scale_factor": (d,), b + "ls2.scale_factor": (d,)})
    if pool:
        a = "attn_pool."
        s.update(
            {
                a + "latent": (1, 1, d),
                a + "q.weight": (d, d),
                a + "q.bias": (d,),
                a + "kv.weight": (2 * d, d),
                a + "kv.bias": (2 * d,),
                a + "proj.weight": (d, d),
                a + "proj.bias": (d,),
                a + "norm.weight": (d,),
                a + "norm.bias": (d,),
                a + "mlp.fc1.weight": (hidden, d),
                a + "mlp.fc1.bias": (hidden,),
                a + "mlp.fc2.weight": (d, hidden),
                a + "mlp.fc2.bias": (d,),
            }
        )
    return {f"{prefix}.{k}": v for k, v in s.items()}


def openvla_shapes(shape: SyntheticOpenVla = TINY) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, in the order the weights are drawn."""
    shapes = vit_shapes(
        "vision_backbone.featurizer",
        shape.dino,
        cls=True,
        reg=4,
        layer_scale=True,
        pool=False,
        image=shape.image,
    )
    shapes.update(
        vit_shapes(
            "vision_backbone.fused_featurizer",
            shape.siglip,
            cls=False,
            reg=0,
            layer_scale=False,
            pool=True,
            image=shape.image,
        )
    )
    text = shape.text
    v, h = shape.dino["embed_dim"] + shape.siglip["embed_dim"], text["hidden_size"]
    shapes.update(
        {
            "projector.fc1.weight": (4 * v, v),
            "projector.fc1.bias": (4 * v,),
            "projector.fc2.weight": (h, 4 * v),
            "projector.fc2.bias": (h,),
            "projector.fc3.weight": (h, h),
            "projector.fc3.bias": (h,),
        }
    )
    kv = text["num_key_value_heads"] * h // text["num_attention_heads"]
    inter = text["intermediate_size"]
    lm = {
        "language_model.model.embed_tokens.weight": (shape.padded_vocab, h),
        "language_model.model.norm.weight": (h,),
        "language_model.lm_head.weight": (shape.padded_vocab, h),
    }
    for i in range(text["num_hidden_layers"]):
        b = f"language_model.model.layers.{i}."
        lm.update(
            {
                b + "self_attn.q_proj.weight": (h, h),
                b + "self_attn.k_proj.weight": (kv, h),
                b + "self_attn.v_proj.weight": (kv, h),
                b + "self_attn.o_proj.weight": (h, h),
                b + "mlp.gate_proj.weight": (inter, h),
                b + "mlp.up_proj.weight": (inter, h),
                b + "mlp.down_proj.weight": (h, inter),
                b + "input_layernorm.weight": (h,),
                b + "post_attention_layernorm.weight": (h,),
            }
        )
    shapes.update(lm)
    return shapes


# -- weights -----------------------------------------------------------------------------------------------
def iter_random_weights(seed: int = 0, shape: SyntheticOpenVla = TINY) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, bf16 tensor) one at a time, so a multi-GB checkpoint never sits in memory whole. Norm weights
    near 1, layer scales near 0.5, the rest small: activations stay finite through every block."""
    g = torch.Generator().manual_seed(seed)
    for name, dims in openvla_shapes(shape).items():
        t = torch.randn(dims, generator=g)
        if "norm" in name and name.endswith("weight"):
            t = 1.0 + 0.1 * t
        elif "scale_factor" in name:
            t = 0.5 + 0.1 * t
        else:
            t = 0.08 * t
        yield name, t.to(torch.bfloat16)


def random_weights(seed: int = 0, shape: SyntheticOpenVla = TINY) -> dict[str, torch.Tensor]:
    return dict(iter_random_weights(seed, shape))


def shard_of(name: str) -> str:
    """Three shards as OpenVLA-7B has them: DINOv2, SigLIP + projector, the language model."""
    if name.startswith("vision_backbone.featurizer."):
        return SHARDS[0]
    if name.startswith("language_model."):
        return SHARDS[2]
    return SHARDS[1]


def _write_index(directory: Path, sizes: dict[str, int]) -> None:
    index = {
        "metadata": {"total_size": sum(sizes.values())},
        "weight_map": {name: shard_of(name) for name in sorted(sizes)},
    }
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_weights(directory: Path, weights: dict[str, torch.Tensor]) -> None:
    """Given weights (tests alter some first), sharded, with the index."""
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in weights.items():
        shards.setdefault(shard_of(name), {})[name] = t
    for file, tensors in shards.items():
        save_file(tensors, str(directory / file), metadata={"format": "pt"})
    _write_index(directory, {n: t.numel() * t.element_size() for n, t in weights.items()})


def write_random_weights(directory: Path, shape: SyntheticOpenVla = TINY, seed: int = 0) -> None:
    """Random weights (the values of `random_weights`), one shard in memory at a time."""
    sizes: dict[str, int] = {}
    shard: dict[str, torch.Tensor] = {}
    current = None
    for name, t in iter_random_weights(seed, shape):  # drawn in shard order
        if shard_of(name) != current and shard:
            save_file(shard, str(directory / current), metadata={"format": "pt"})
            shard = {}
        current = shard_of(name)
        shard[name] = t
        sizes[name] = t.numel() * t.element_size()
    save_file(shard, str(directory / current), metadata={"format": "pt"})
    _write_index(directory, sizes)


# -- config and tokenizer ----------------------------------------------------------------------------------
def stats(action: dict) -> dict:
    """dataset_statistics.json's entry for one dataset, as OpenVLA writes it."""
    n = len(action["q01"])
    return {
        "action": {**action, "mean": [0.0] * n, "std": [1.0] * n, "min": action["q01"], "max": action["q99"]},
        "proprio": {"mean": [0.0] * 7, "std": [1.0] * 7},
        "num_transitions": 100,
        "num_trajectories": 4,
    }


def write_config(directory: Path, shape: SyntheticOpenVla = TINY, **changes: Any) -> dict:
    """OpenVLA's config.json (two datasets' statistics); `changes` replace keys, None removes one."""
    config = {
        "arch_specifier": "no-align+fused-gelu-mlp",
        "architectures": ["OpenVLAForActionPrediction"],
        "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "image_resize_strategy": "resize-naive",
        "image_sizes": [shape.image, shape.image],
        "llm_backbone_id": "llama2-7b-pure",
        "llm_max_length": 2048,
        "model_type": "openvla",
        "n_action_bins": 256,
        "norm_stats": {"bridge_tiny": stats(BRIDGE), "fractal_tiny": stats(FRACTAL)},
        "output_projector_states": False,
        "pad_to_multiple_of": shape.pad_to,
        "pad_token_id": shape.base_vocab,
        "text_config": {
            "model_type": "llama",
            "pad_token_id": shape.base_vocab,
            "torch_dtype": "bfloat16",
            "vocab_size": shape.padded_vocab,
            **shape.text,
        },
        "timm_model_ids": [DINO_ID, SIGLIP_ID],
        "timm_override_act_layers": [None, None],
        "timm_model_args": shape.timm_model_args,  # the only key real checkpoints lack: it shrinks the ViTs
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.1",
        "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
        "synthetic": SYNTHETIC_LABEL,
    }
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return config


def write_tokenizer(directory: Path, shape: SyntheticOpenVla = TINY) -> None:
    """A word-level stand-in for Llama's SentencePiece: same specials, word boundary marker and <PAD>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3}
    for w in WORDS:
        vocab["\u2581" + w] = len(vocab)
    while len(vocab) < shape.base_vocab:
        vocab[f"<x{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.add_special_tokens(["<PAD>"])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<PAD>",
                "model_max_length": 2048,
            }
        )
    )


def write_checkpoint(directory: Path | str, shape: SyntheticOpenVla = TINY, seed: int = 0) -> Path:
    """A whole synthetic OpenVLA directory (config, sharded random weights, tokenizer) at `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_config(directory, shape)
    write_random_weights(directory, shape, seed)
    write_tokenizer(directory, shape)
    return directory
