"""Configuration of the token-domain VLA, stored as config.json beside the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Upper bounds on a config's sizes, far above any model this package runs (the realistic SmolLM2 backbone:
# hidden 576, 30 layers), so a corrupt or hostile config.json is refused before anything is allocated.
SIZE_LIMITS = {
    "image_size": 1024,
    "state_dim": 1024,
    "action_dim": 64,
    "hidden_size": 16384,
    "num_layers": 256,
    "num_heads": 256,
    "num_kv_heads": 256,
    "intermediate_size": 65536,
    "max_positions": 32768,
    "n_bins": 65536,
    "prompt_length": 4096,
    "text_vocab_size": 262144,
}
MAX_CAMERAS = 8


@dataclass
class VlaConfig:
    """Everything needed to rebuild a VlaModel and its tokenizers, stored as the checkpoint's config.json.

    One dataclass, so a checkpoint is self-describing: no code default can silently change a stored model.
    """

    # Inputs
    cameras: list[str] = field(default_factory=lambda: ["corner", "wrist"])
    image_size: int = 64
    state_dim: int = 9  # proprioception: joint positions
    action_dim: int = 4
    # Vision encoder (strided CNN per camera -> (image_size/16)^2 tokens each) and projector
    vision_channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    # Llama decoder
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 128
    rope_theta: float = 10000.0  # rotary base; a pretrained backbone brings its own (SmolLM2: 1e5)
    tie_head: bool = False  # lm_head shares the embedding matrix, as SmolLM2 does
    # Vocabulary: prompt words first, the last n_bins ids are action tokens
    n_bins: int = 256
    prompt_vocab: list[str] = field(default_factory=list)
    prompt_length: int = 12  # fixed: [<pad>...] <bos> words <act>
    text_vocab_size: int = 0  # > 0 when the backbone brings its own tokenizer (e.g. SmolLM2)
    backbone: str = "scratch"  # "scratch" or the name of a pretrained Llama backbone
    # Normalization statistics (OpenVLA style: q01/q99 for actions, mean/std for proprio)
    action_q01: list[float] = field(default_factory=list)
    action_q99: list[float] = field(default_factory=list)
    state_mean: list[float] = field(default_factory=list)
    state_std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, limit in SIZE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise ValueError(f"{name} {str(value)[:40]} is not an int in [0, {limit}]")
        for name in ("image_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "n_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 1 <= len(self.cameras) <= MAX_CAMERAS or len(self.vision_channels) > 16:
            raise ValueError(f"{len(self.cameras)} cameras / {len(self.vision_channels)} vision stages")
        if any(
            isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 4096 for c in self.vision_channels
        ):
            raise ValueError("vision_channels must be ints in [1, 4096]")
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 16")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size}, num_heads {self.num_heads} and num_kv_heads "
                f"{self.num_kv_heads} must divide evenly"
            )
        for name in ("action_q01", "action_q99"):
            values = getattr(self, name)
            if values and len(values) != self.action_dim:
                raise ValueError(f"{name} has {len(values)} values, action_dim is {self.action_dim}")
        for name in ("state_mean", "state_std"):
            values = getattr(self, name)
            if values and len(values) != self.state_dim:
                raise ValueError(f"{name} has {len(values)} values, state_dim is {self.state_dim}")

    @property
    def tokens_per_image(self) -> int:
        return (self.image_size // 16) ** 2

    @property
    def vocab_size(self) -> int:
        base = self.text_vocab_size or (len(self.prompt_vocab) + 4)
        return base + self.n_bins

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VlaConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown VlaConfig keys: {unknown}")
        return cls(**known)


def tiny_config(instructions: list[str], action_dim: int = 4, **overrides: Any) -> VlaConfig:
    """A VlaConfig of a few thousand parameters, for random stand-in models (tests, reliability runs):
    prompt vocabulary from `instructions`, unit action range, identity proprio statistics."""
    from vla_accel_ros.policy.tokenizer import PromptTokenizer

    base: dict[str, Any] = dict(
        prompt_vocab=PromptTokenizer.from_texts(instructions).vocab[4:],
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
        vision_channels=[8, 8, 8, 16],
        action_dim=action_dim,
        action_q01=[-1.0] * action_dim,
        action_q99=[1.0] * action_dim,
        state_mean=[0.0] * 9,
        state_std=[1.0] * 9,
    )
    return VlaConfig(**{**base, **overrides})
