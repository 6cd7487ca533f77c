"""Vision Transformers with timm's parameter names, as OpenVLA checkpoints store them.

OpenVLA keeps whole timm ViTs (DINOv2 with registers, SigLIP) inside its checkpoint but only
reads the patch tokens after the second-to-last block (no final norm, no pooling head). This
module rebuilds those networks from a small spec so the checkpoint loads without timm; every
tensor timm would hold (final `norm`, SigLIP's `attn_pool`) exists here too, so weight loading
can stay strict. Layer-scale factors are named `scale_factor`, the name OpenVLA's Hugging Face
export gives timm's `gamma`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class VitSpec:
    """The few numbers that fix a timm ViT's shape, so OpenVLA checkpoints load without timm."""

    image_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    class_token: bool
    reg_tokens: int
    no_embed_class: bool  # position embeddings cover the patches only (prefix tokens get none)
    layer_scale: bool
    attn_pool: bool  # SigLIP's latent-attention pooling head ("map"): stored, never run here
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image size {self.image_size} is not a multiple of patch {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.depth < 2:
            raise ValueError(f"depth {self.depth}: features come from the second-to-last block, need >= 2")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)  # timm truncates, e.g. 1152 * 3.7362 -> 4304


# timm architectures OpenVLA uses (timm model name without the pretrained tag).
_DINOV2_L_REG4 = dict(
    patch_size=14,
    embed_dim=1024,
    depth=24,
    num_heads=16,
    mlp_ratio=4.0,
    class_token=True,
    reg_tokens=4,
    no_embed_class=True,
    layer_scale=True,
    attn_pool=False,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)
_SIGLIP_SO400M = dict(
    patch_size=14,
    embed_dim=1152,
    depth=27,
    num_heads=16,
    mlp_ratio=3.7362,
    class_token=False,
    reg_tokens=0,
    no_embed_class=False,
    layer_scale=False,
    attn_pool=True,
    mean=HALF,
    std=HALF,
)
KNOWN_VITS: dict[str, dict[str, Any]] = {
    "vit_large_patch14_reg4_dinov2": _DINOV2_L_REG4,
    "vit_so400m_patch14_siglip_224": _SIGLIP_SO400M,
    "vit_so400m_patch14_siglip_384": _SIGLIP_SO400M,
}
OVERRIDABLE = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "reg_tokens")


def vit_spec(timm_id: str, image_size: int, overrides: dict[str, Any] | None = None) -> VitSpec:
    """Spec of a known timm ViT; `overrides` shrink it (tiny test checkpoints)."""
    base = KNOWN_VITS.get(timm_id.split(".")[0])
    if base is None:
        raise ValueError(f"vision backbone '{timm_id}' is not supported; supported: {sorted(KNOWN_VITS)}")
    spec = VitSpec(image_size=int(image_size), **base)
    if overrides:
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise ValueError(f"unknown ViT override(s) {unknown} for '{timm_id}'; allowed: {OVERRIDABLE}")
        spec = replace(spec, **overrides)
    return spec


class PatchEmbed(nn.Module):
    """Image -> patch tokens (a strided convolution), named as timm's so weights load strictly."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, spec.embed_dim, spec.patch_size, stride=spec.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """timm's fused-qkv self-attention, kept under timm's parameter names for strict loading."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """timm's transformer MLP (fc1, GELU, fc2), under timm's parameter names."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """DINOv2's per-channel residual scale; `scale_factor` is the name OpenVLA's export uses."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Block(nn.Module):
    """One pre-norm transformer block as timm builds it (optional layer scale)."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        d = spec.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, spec.num_heads)
        self.ls1 = LayerScale(d) if spec.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, spec.mlp_hidden)
        self.ls2 = LayerScale(d) if spec.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolParams(nn.Module):
    """SigLIP's pooling head: its tensors are in the checkpoint, OpenVLA never uses them."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        d = spec.embed_dim
        self.latent = nn.Parameter(torch.zeros(1, 1, d))
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, spec.mlp_hidden)


class VisionTransformer(nn.Module):
    """A timm-compatible ViT giving the patch tokens after the second-to-last block (what OpenVLA reads)."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.patch_embed = PatchEmbed(spec)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if spec.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, spec.reg_tokens, d)) if spec.reg_tokens else None
        n_pos = spec.num_patches + (0 if spec.no_embed_class else spec.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, d))
        self.blocks = nn.ModuleList([Block(spec) for _ in range(spec.depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.attn_pool = AttentionPoolParams(spec) if spec.attn_pool else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalized (B, 3, S, S) pixels -> (B, num_patches, D) patch tokens of the second-to-last block."""
        size = self.spec.image_size
        if pixels.shape[-2:] != (size, size):
            raise ValueError(f"expected {size} x {size} pixels, got {tuple(pixels.shape[-2:])}")
        x = self.patch_embed(pixels)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.spec.no_embed_class:
            x = torch.cat([*prefix, x + self.pos_embed], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        for block in self.blocks[: self.spec.depth - 1]:  # the last block's output is never read
            x = block(x)
        return x[:, self.spec.num_prefix_tokens :]
