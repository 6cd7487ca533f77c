"""Draft models for speculative decoding of the token-domain VLA.

`EagleDraft` is an EAGLE-style head (as in Spec-VLA): one Llama decoder layer over a fusion of the target's
last hidden state and the next token's embedding, reading the target's frozen embedding table and LM head.
The prefix (images, proprio, prompt) reaches the draft only through the target's hidden states: position i
of the draft's sequence is

    x_i = W [f_{i-1} ; e(a_i)]          f_{-1} = target hidden at the last prefix position (<act>)
    f^_i = norm(layer(x_0..x_i))_i      (regresses the target hidden f_i at token a_i)
    a_{i+1} = argmax_bins lm_head(f^_i)

with f_{i-1} the target's own hidden state where verified, and the draft's f^ where not yet.

The draft either recomputes its layer over the short action sequence at every step (no cache) or keeps its
own KV cache; both give the same proposals (tested), `DraftConfig.use_cache` picks one, and
`vla-accel bench-decoding` measures both. Saved as `model.safetensors` + `config.json` in
`<checkpoint>/draft/`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache, LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding

from vla_accel_ros.decoding.common import action_argmax
from vla_accel_ros.policy.model import CACHE_KW, VlaModel

DRAFT_DIR = "draft"


class DraftError(RuntimeError):
    """A draft that failed or misbehaved at run time: the runtime falls back to autoregressive decoding."""


class DraftLoadError(ValueError):
    """A draft directory that cannot be loaded beside its target; the message says why."""


@dataclass
class DraftContext:
    """What a draft may read when it proposes the next tokens of one action (batch 1).

    Invariant kept by the decoders: the target cache holds the prefix and tokens[:-1]; features[:, i] is the
    target hidden state that predicted tokens[:, i] (f_{i-1}).
    """

    tokens: torch.Tensor  # (1, m) action ids decided so far
    features: torch.Tensor  # (1, m, D)
    cache: DynamicCache  # the target's cache (an oracle draft may extend it, and must roll it back)
    cache_length: int
    prefix: torch.Tensor | None = None  # (1, L, D) target hidden states over the prefix (the prefill's)


class Draft(Protocol):
    """What speculative decoding needs of a draft model: propose the next n action ids cheaply.

    A protocol, so the trained EAGLE-style head, oracles in tests and experiments plug in alike.
    """

    def reset(self) -> None:
        """Start of a new action (a new prefill)."""

    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        """The next n action ids after ctx.tokens, shape (1, n)."""


@dataclass
class DraftConfig:
    """Shape of a draft head, stored beside its weights so `load_draft` rebuilds it without the trainer."""

    hidden_size: int
    vocab_size: int
    n_bins: int
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 128  # prefix + action positions
    rms_norm_eps: float = 1e-5
    use_cache: bool = False
    attend_prefix: bool = False  # attend to the target's hidden states over the prefix (for_target: True)

    @classmethod
    def for_target(cls, target: VlaModel, **overrides: Any) -> DraftConfig:
        t = target.config
        base = dict(
            hidden_size=t.hidden_size,
            vocab_size=t.vocab_size,
            n_bins=t.n_bins,
            num_heads=t.num_heads,
            num_kv_heads=t.num_kv_heads,
            intermediate_size=t.intermediate_size,
            max_positions=t.max_positions,
            attend_prefix=True,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DraftConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown DraftConfig keys: {unknown}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EagleDraft(nn.Module):
    """One-layer EAGLE draft head; only its own weights are parameters (the target's stay frozen, shared)."""

    def __init__(self, config: DraftConfig, target: VlaModel) -> None:
        super().__init__()
        tc = target.config
        if (config.hidden_size, config.vocab_size, config.n_bins) != (
            tc.hidden_size,
            tc.vocab_size,
            tc.n_bins,
        ):
            raise DraftLoadError(
                f"draft (hidden {config.hidden_size}, vocab {config.vocab_size}, bins {config.n_bins}) "
                f"does not fit the target (hidden {tc.hidden_size}, vocab {tc.vocab_size}, bins {tc.n_bins})"
            )
        self.config = config
        d = config.hidden_size
        lc = LlamaConfig(
            hidden_size=d,
            intermediate_size=config.intermediate_size,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads,
            max_position_embeddings=config.max_positions,
            rms_norm_eps=config.rms_norm_eps,
            vocab_size=config.vocab_size,
        )
        lc._attn_implementation = "sdpa"
        self.fuse = nn.Linear(2 * d, d)
        self.prefix_proj = nn.Linear(d, d) if config.attend_prefix else None
        self.layer = LlamaDecoderLayer(lc, layer_idx=0)
        self.norm = LlamaRMSNorm(d, eps=config.rms_norm_eps)
        self.rotary = LlamaRotaryEmbedding(lc)
        self._target = (target,)  # a tuple hides the target from parameters(), state_dict() and .train()
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos/sin of every position, once
        self._fast: dict[str, torch.Tensor] | None = None  # folded weights, once, for inference
        self.fast = True  # False: propose through transformers' layer (a reference: same tokens, slower)
        self.reset()

    @property
    def target(self) -> VlaModel:
        return self._target[0]

    @property
    def first_action_id(self) -> int:
        return self.config.vocab_size - self.config.n_bins

    # -- the network ------------------------------------------------------------------------------------
    # One decoder layer over [prefix positions; action positions], written out so that the prefix costs
    # only its keys and values (one layer needs no prefix outputs) and the action tokens' half of the fusion
    # is a table lookup:
    #   x   = f W_f^T + T[a]                  T = E_act W_e^T + b (token half of the fusion, per action id)
    #   K_p, V_p = split(W_kv rms(W_p f_prefix + b_p))        at positions 0 .. L-1
    #   x  += W_o attn(rope(q), rope([K_p; k]), [V_p; v])    q, k, v = split(W_qkv rms(x)), causal
    #   x  += W_down (silu(g) * u)            g, u = split(W_gu rms(x))
    #   f^  = rms(x);  logits = W_bins f^     (W_bins: the action rows of the target's LM head)
    # rope(u) = u cos + (u R) sin with R = rotate_half as a matrix. `forward_layer` runs the transformers
    # LlamaDecoderLayer over the whole sequence instead: the reference (tested equal) and the cached mode.
    def forward(
        self, features: torch.Tensor, tokens: torch.Tensor, prefix: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicted target hidden states f^ (B, m, D) at the action positions, inputs (f_{i-1}, a_i)."""
        w = self._weights()
        kv = self._prefix_kv(w, prefix) if prefix is not None and "w_p" in w else None
        return self._layer(w, features, tokens, kv)

    def _weights(self) -> dict[str, torch.Tensor]:
        """The folded weights: recomputed while training (autograd flows), kept once for inference."""
        if self.training or torch.is_grad_enabled():
            return self._fold()
        if self._fast is None:
            self._fast = self._fold()
        return self._fast

    def freeze(self) -> None:
        """Fold the target's embedding and head in now, so they may be quantized afterwards."""
        with torch.no_grad():
            self._fast = self._fold()

    def _fold(self) -> dict[str, torch.Tensor]:
        layer, t, a = self.layer, self.target, self.layer.self_attn
        d, first = self.config.hidden_size, self.first_action_id
        stop = first + self.config.n_bins  # an OpenVLA head has padding rows after the bins
        action_embeds = t.llama.embed_tokens.weight[first:stop].detach().to(self.fuse.weight.dtype)
        w = self.fuse.weight
        half = a.head_dim // 2
        rot = torch.zeros(a.head_dim, a.head_dim, dtype=w.dtype, device=w.device)
        rot[half:, :half] = -torch.eye(half)
        rot[:half, half:] = torch.eye(half)
        cos, sin = self._rotary(w, 0, self.config.max_positions)
        folded = {
            "w_f": w[:, :d],
            "table": action_embeds @ w[:, d:].T + self.fuse.bias,
            "w_qkv": torch.cat([_weight(a.q_proj), _weight(a.k_proj), _weight(a.v_proj)]),
            "w_o": _weight(a.o_proj),
            "w_gu": torch.cat([_weight(layer.mlp.gate_proj), _weight(layer.mlp.up_proj)]),
            "w_down": _weight(layer.mlp.down_proj),
            "w_bins": _weight(t.lm_head)[first:stop].detach().to(w.dtype),
            "rot": rot,
            "cos": cos[0],
            "sin": sin[0],
            "causal": torch.ones(
                self.config.max_positions, self.config.max_positions, dtype=torch.bool, device=w.device
            ).tril(),
        }
        if self.prefix_proj is not None:
            folded["w_p"], folded["b_p"] = self.prefix_proj.weight, self.prefix_proj.bias
            folded["w_kv"] = torch.cat([_weight(a.k_proj), _weight(a.v_proj)])
        if not (self.training or torch.is_grad_enabled()):
            folded = {k: v.contiguous() for k, v in folded.items()}
        return folded

    def _rope_heads(self, w: dict[str, torch.Tensor], u: torch.Tensor, start: int) -> torch.Tensor:
        """u (..., n, head_dim) at positions start .. start+n-1."""
        n = u.shape[-2]
        return u * w["cos"][start : start + n] + (u @ w["rot"]) * w["sin"][start : start + n]

    def _prefix_kv(
        self, w: dict[str, torch.Tensor], prefix: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, kv_heads, L, head_dim) of the prefix positions."""
        cfg, hd = self.config, self.layer.self_attn.head_dim
        b, n, _ = prefix.shape
        x = F.linear(prefix.to(w["w_p"].dtype), w["w_p"], w["b_p"])
        h = F.rms_norm(x, (cfg.hidden_size,), self.layer.input_layernorm.weight, cfg.rms_norm_eps)
        k, v = F.linear(h, w["w_kv"]).split(cfg.num_kv_heads * hd, -1)
        k = self._rope_heads(w, k.view(b, n, cfg.num_kv_heads, hd).transpose(1, 2), 0)
        return k, v.view(b, n, cfg.num_kv_heads, hd).transpose(1, 2)

    def _layer(
        self,
        w: dict[str, torch.Tensor],
        feats: torch.Tensor,
        tokens: torch.Tensor,
        prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """f^ (B, m, D) from feats (B, m, D) and tokens (B, m), after the prefix's keys and values."""
        cfg, layer = self.config, self.layer
        (b, m, d), eps = feats.shape, cfg.rms_norm_eps
        feats = feats.to(w["w_f"].dtype)  # a bf16 target's hidden states meet the fp32 draft
        hd = layer.self_attn.head_dim
        nq, nkv = cfg.num_heads, cfg.num_kv_heads
        start = 0 if prefix_kv is None else prefix_kv[0].shape[2]
        x = F.linear(feats, w["w_f"]) + w["table"][tokens - self.first_action_id]
        h = F.rms_norm(x, (d,), layer.input_layernorm.weight, eps)
        qkv = F.linear(h, w["w_qkv"]).view(b, m, nq + 2 * nkv, hd).transpose(1, 2)
        qk = self._rope_heads(w, qkv[:, : nq + nkv], start)  # q and k heads rotate alike: one pass
        q, k, v = qk[:, :nq], qk[:, nq:], qkv[:, nq + nkv :]
        mask = None
        if prefix_kv is not None:
            k, v = torch.cat([prefix_kv[0], k], 2), torch.cat([prefix_kv[1], v], 2)
            mask = w["causal"][start : start + m, : start + m]
        if nkv != nq:
            k, v = k.repeat_interleave(nq // nkv, 1), v.repeat_interleave(nq // nkv, 1)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None and m > 1, scale=layer.self_attn.scaling
        )
        x = x + F.linear(o.transpose(1, 2).reshape(b, m, nq * hd), w["w_o"])
        g, u = F.linear(F.rms_norm(x, (d,), layer.post_attention_layernorm.weight, eps), w["w_gu"]).chunk(
            2, -1
        )
        x = x + F.linear(F.silu(g) * u, w["w_down"])
        return F.rms_norm(x, (d,), self.norm.weight, eps)

    def forward_layer(
        self,
        features: torch.Tensor,
        tokens: torch.Tensor,
        prefix: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        """The same through transformers' LlamaDecoderLayer over [W_p prefix; action inputs] (or what the
        cache continues); f^ (B, m, D) at the m action positions."""
        dtype = self.fuse.weight.dtype  # a bf16 target's states and embeddings meet the fp32 draft
        x = self.fuse(torch.cat([features.to(dtype), self.target.llama.embed_tokens(tokens).to(dtype)], -1))
        m = x.shape[1]
        if self.prefix_proj is not None and prefix is not None:
            x = torch.cat([self.prefix_proj(prefix.to(x.dtype)), x], 1)
        start = cache.get_seq_length() if cache is not None else 0
        n = x.shape[1]
        pos = torch.arange(start, start + n, device=x.device).unsqueeze(0)
        mask = None
        if start and n > 1:  # sdpa's is_causal aligns top-left: give the offset mask explicitly
            mask = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(start)
            mask = mask.view(1, 1, n, start + n)
        h = self.layer(
            x,
            attention_mask=mask,
            position_ids=pos,
            use_cache=cache is not None,
            **{CACHE_KW: cache},
            position_embeddings=self._rotary(x, start, n),
        )
        return self.norm(h[:, -m:])

    def _rotary(self, x: torch.Tensor, offset: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training or torch.is_grad_enabled():
            return self.rotary(x, torch.arange(offset, offset + m, device=x.device).unsqueeze(0))
        if self._rope is None or self._rope[0].dtype != x.dtype:
            cos, sin = self.rotary(x, torch.arange(self.config.max_positions, device=x.device).unsqueeze(0))
            self._rope = (cos, sin)
        return self._rope[0][:, offset : offset + m], self._rope[1][:, offset : offset + m]

    def bin_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the action bins (..., n_bins) through the rows of the target's LM head for them
        (at inference, the copy folded in once: the target's head may be quantized after that)."""
        if self.training or torch.is_grad_enabled():
            first = self.first_action_id
            rows = _weight(self.target.lm_head)[first : first + self.config.n_bins]
            return F.linear(hidden, rows.to(hidden.dtype))
        return F.linear(hidden, self._weights()["w_bins"])

    def train(self, mode: bool = True) -> EagleDraft:
        self._fast = None
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._fast = None
        return super().load_state_dict(*args, **kwargs)

    # -- proposing ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        self._cache: DynamicCache | None = None
        self._true = 0  # draft-cache action positions built from verified inputs
        self._prefix_src: torch.Tensor | None = None
        self._prefix_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.inference_mode()
    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        if ctx.tokens.shape[0] != 1:
            raise ValueError("speculative decoding runs one observation at a time (batch 1)")
        if self.config.use_cache:
            return self._propose_cached(ctx, n)
        use_layer = not self.fast
        w = None if use_layer else self._weights()
        if not use_layer and self.prefix_proj is not None and ctx.prefix is not None:
            if self._prefix_src is not ctx.prefix:  # once per action: the prefill's states do not change
                self._prefix_src, self._prefix_cache = ctx.prefix, self._prefix_kv(w, ctx.prefix)
        feats, toks = ctx.features.to(self.fuse.weight.dtype), ctx.tokens
        out = []
        for _ in range(n):
            if use_layer:
                f_hat = self.forward_layer(feats, toks, ctx.prefix)[:, -1:]
            else:
                f_hat = self._layer(w, feats, toks, self._prefix_cache)[:, -1:]
            nxt = self.bin_logits(f_hat).argmax(-1) + self.first_action_id
            out.append(nxt)
            feats, toks = torch.cat([feats, f_hat], 1), torch.cat([toks, nxt], 1)
        return torch.cat(out, 1) if out else ctx.tokens.new_zeros((1, 0))

    def _propose_cached(self, ctx: DraftContext, n: int) -> torch.Tensor:
        m = ctx.tokens.shape[1]
        prefix = None
        if self._cache is None or self._true >= m:
            self._cache, self._true, prefix = DynamicCache(), 0, ctx.prefix
            self._base = 0 if self.prefix_proj is None or prefix is None else prefix.shape[1]
        # Drop positions fed with the draft's own guesses; add the verified ones the cache lacks.
        keep = self._base + self._true
        if self._cache.get_seq_length() > keep:
            self._cache.crop(keep - self._cache.get_seq_length())
        feats, toks = ctx.features[:, self._true :], ctx.tokens[:, self._true :]
        f_hat = self.forward_layer(feats, toks, prefix, self._cache)[:, -1:]
        self._true = m
        out = []
        for i in range(n):
            nxt = self.bin_logits(f_hat).argmax(-1) + self.first_action_id
            out.append(nxt)
            if i + 1 < n:
                f_hat = self.forward_layer(f_hat, nxt, None, self._cache)
        return torch.cat(out, 1) if out else ctx.tokens.new_zeros((1, 0))


def _weight(linear: nn.Module) -> torch.Tensor:
    """The dense weight of a linear layer; a layer without one (quantized) cannot serve the draft."""
    weight = getattr(linear, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dtype.is_floating_point:
        return weight
    raise DraftError(f"{type(linear).__name__} has no dense weight the draft can read")


class OracleDraft:
    """The target itself as a draft (proposals = greedy decoding): the upper bound of acceptance, for tests.

    It extends the target's own cache and rolls it back, so it also exercises rollback.
    """

    def __init__(self, model: VlaModel) -> None:
        self.model = model

    def reset(self) -> None:
        pass

    @torch.inference_mode()
    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        out, tok = [], ctx.tokens[:, -1:]
        for _ in range(n):
            step = self.model.extend(ctx.cache, tok)
            tok = action_argmax(step.logits[:, -1:], self.model.action_first_id)
            out.append(tok)
        VlaModel.rollback(ctx.cache, ctx.cache_length)
        return torch.cat(out, 1) if out else ctx.tokens.new_zeros((1, 0))


# -- files -----------------------------------------------------------------------------------------------
def save_draft(draft: EagleDraft, directory: Path, info: dict[str, Any] | None = None) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in draft.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "vla_accel_ros.draft"})
    (directory / "config.json").write_text(json.dumps(draft.config.to_dict(), indent=1))
    if info is not None:
        (directory / "training.json").write_text(json.dumps(info, indent=1))


def load_draft(directory: Path, target: VlaModel, use_cache: bool | None = None) -> EagleDraft:
    directory = Path(directory)
    config_path, weights = directory / "config.json", directory / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise DraftLoadError(f"{directory} needs config.json and model.safetensors")
    try:
        config = DraftConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise DraftLoadError(f"{config_path}: invalid draft config ({err})") from err
    if use_cache is not None:
        config.use_cache = use_cache
    draft = EagleDraft(config, target)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise DraftLoadError(f"{weights}: unreadable safetensors file ({err})") from err
    expected = draft.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise DraftLoadError(f"{weights}: tensors do not match {config_path}")
    draft.load_state_dict({k: v.float() for k, v in state.items()})
    return draft.to(next(target.parameters()).device).eval()  # beside the target (a CUDA one too)
