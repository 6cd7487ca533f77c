"""The token-domain VLA: CNN vision encoders + projector feeding a Llama decoder.

The decoder interface is what every decoding strategy builds on: `prefill` runs the
image, proprio and prompt tokens once into a KV cache; `extend` runs k tokens in one
pass over that cache (one for autoregressive decoding, k for speculative verification);
`rollback` crops the cache back after rejected tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaModel

from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.decoder_pass import CACHE_KW, decoder_hidden

__all__ = ["CACHE_KW", "Step", "VisionEncoder", "VlaModel"]


@dataclass
class Step:
    """One forward pass's result: logits and hidden states of the new positions, and the cache after them."""

    logits: torch.Tensor  # (B, k, V); after a prefill (B, 1, V): the last position's only
    hidden: torch.Tensor  # (B, k, D), last decoder layer (draft heads read it)
    cache: DynamicCache
    length: int  # positions held in the cache after this step


class VisionEncoder(nn.Module):
    """Four stride-2 convolutions: a 64 px frame becomes 4 x 4 = 16 patch tokens."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.GroupNorm(8, c_out), nn.GELU()]
            c_in = c_out
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.net(images)  # (B, C, h, w)
        return feats.flatten(2).transpose(1, 2)  # (B, h*w, C)


class VlaModel(nn.Module):
    """The built-in token-domain VLA behind the prefill / extend / rollback interface.

    It exists so every decoder (autoregressive, speculative, KERV) and the quantization ladder work on one
    small, trainable stand-in for OpenVLA: CNN encoders per camera and a proprio projector feed a Llama
    decoder whose last 256 ids are action bins, and the KV cache can be extended by k tokens and cropped.
    """

    def __init__(self, config: VlaConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.encoders = nn.ModuleDict({cam: VisionEncoder(config.vision_channels) for cam in config.cameras})
        c = config.vision_channels[-1]
        self.projector = nn.Sequential(nn.Linear(c, d), nn.GELU(), nn.Linear(d, d))
        n_img = config.tokens_per_image
        self.image_pos = nn.Parameter(torch.zeros(len(config.cameras), n_img, d))
        self.state_proj = nn.Sequential(nn.Linear(config.state_dim, d), nn.GELU(), nn.Linear(d, d))
        self.llama = LlamaModel(
            LlamaConfig(
                vocab_size=config.vocab_size,
                hidden_size=d,
                intermediate_size=config.intermediate_size,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                num_key_value_heads=config.num_kv_heads,
                max_position_embeddings=config.max_positions,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
            )
        )
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        if config.tie_head:
            self.lm_head.weight = self.llama.embed_tokens.weight
        nn.init.normal_(self.image_pos, std=0.02)

    @property
    def action_first_id(self) -> int:
        return self.config.vocab_size - self.config.n_bins

    def prefix_embeds(
        self, images: dict[str, torch.Tensor], state: torch.Tensor, prompt_ids: torch.Tensor
    ) -> torch.Tensor:
        """Embeddings of [camera tokens..., proprio token, prompt tokens] (B, L, D).

        images: camera -> (B, 3, H, W) float in [0, 1]; state: (B, state_dim) normalized.
        """
        parts = []
        for i, cam in enumerate(self.config.cameras):
            tokens = self.projector(self.encoders[cam](images[cam] * 2.0 - 1.0))
            parts.append(tokens + self.image_pos[i])
        parts.append(self.state_proj(state).unsqueeze(1))
        parts.append(self.llama.embed_tokens(prompt_ids))
        return torch.cat(parts, dim=1)

    def _run(self, embeds: torch.Tensor, cache: DynamicCache, last_only: bool = False) -> Step:
        start = cache.get_seq_length()
        hidden = decoder_hidden(self.llama, embeds, cache)
        logits = self.score(hidden[:, -1:] if last_only else hidden)
        return Step(logits, hidden, cache, start + embeds.shape[1])

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the full vocabulary width in which only the action bins are computed; the text ids
        get the dtype's lowest value. Every decoder reads only the bins (`decoding.common.action_argmax`),
        so this is exact, and a decode pass stops reading the whole head: at the realistic size the
        49,152-row head is 113 MB in fp32, more than an int4 copy of the decoder."""
        head, first = self.lm_head, self.action_first_id
        if not isinstance(head, nn.Linear):
            return head(hidden)  # the ladder's ActionHead scores the bins already
        logits = hidden.new_full((*hidden.shape[:-1], head.out_features), torch.finfo(hidden.dtype).min)
        bias = None if head.bias is None else head.bias[first:]
        logits[..., first:] = nn.functional.linear(hidden, head.weight[first:], bias)
        return logits

    def prefill(self, images: dict[str, torch.Tensor], state: torch.Tensor, prompt_ids: torch.Tensor) -> Step:
        """Logits at the last position only: nothing reads the prefix's (at the realistic size, scoring
        the whole vocabulary at the other 44 positions cost 84 ms of a 734 ms fp32 action)."""
        return self._run(self.prefix_embeds(images, state, prompt_ids), DynamicCache(), last_only=True)

    def extend(self, cache: DynamicCache, token_ids: torch.Tensor) -> Step:
        """Run k tokens (B, k) after what the cache holds, in one forward pass."""
        return self._run(self.llama.embed_tokens(token_ids), cache)

    @staticmethod
    def rollback(cache: DynamicCache, length: int) -> None:
        """Crop the cache to its first `length` positions (drop rejected tokens)."""
        excess = cache.get_seq_length() - length
        if excess < 0:
            raise ValueError(f"cannot roll a cache of {cache.get_seq_length()} forward to {length}")
        if excess:
            cache.crop(-excess)

    def forward_train(
        self,
        images: dict[str, torch.Tensor],
        state: torch.Tensor,
        prompt_ids: torch.Tensor,
        action_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced logits over the action bins for each action dimension (B, A, n_bins)."""
        prefix = self.prefix_embeds(images, state, prompt_ids)
        embeds = torch.cat([prefix, self.llama.embed_tokens(action_ids[:, :-1])], dim=1)
        hidden = self.llama(inputs_embeds=embeds, use_cache=False).last_hidden_state
        a = action_ids.shape[1]
        logits = self.lm_head(hidden[:, -a:])
        return logits[..., self.action_first_id :]
