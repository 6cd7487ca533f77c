"""OpenVLA checkpoints (Hugging Face format, local directory) behind the package's decoding interface.

A checkpoint directory holds config.json (`"model_type": "openvla"`, `norm_stats`, `text_config`,
`timm_model_ids`, ...), safetensors weights (one file, or shards listed in
model.safetensors.index.json) and the Llama tokenizer files. The network is rebuilt here, not
through OpenVLA's remote code: DINOv2 + SigLIP ViTs (policy/vit.py) whose second-to-last-block
patch tokens are concatenated, a GELU MLP projector, and a transformers Llama whose input is
<bos>, the projected patches, then the rest of the prompt. Actions follow OpenVLA's convention:
the last `n_action_bins` ids of the unpadded vocabulary, id -> bin `vocab_size - id`, bin centres
of linspace(-1, 1, n_bins), un-normalized with the dataset's q01/q99 where `mask` is true.
Nothing is downloaded: every file comes from the directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from vla_accel_ros.policy.checkpoint import PICKLE_SUFFIXES, CheckpointError, check_declared_size
from vla_accel_ros.policy.decoder_pass import decoder_hidden
from vla_accel_ros.policy.formats import OPENVLA_MODEL_TYPE
from vla_accel_ros.policy.model import Step, VlaModel
from vla_accel_ros.policy.runtime import InputError, Policy, PolicyInput
from vla_accel_ros.policy.vit import VisionTransformer, VitSpec, vit_spec

log = logging.getLogger(__name__)

MODEL_TYPE = OPENVLA_MODEL_TYPE
PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
EMPTY_TOKEN = "\u2581"  # SentencePiece's bare word boundary (Llama id 29871), appended after "Out:"
REQUIRED_KEYS = (
    "n_action_bins",
    "text_config",
    "timm_model_ids",
    "image_sizes",
    "use_fused_vision_backbone",
    "pad_to_multiple_of",
)
# OpenVLA's text_config lists little more than vocab_size; the rest were transformers 4.40's
# LlamaConfig defaults (Llama-2-7B). Pinned here so a change of defaults cannot alter the model.
LLAMA2_7B_DEFAULTS: dict[str, Any] = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    hidden_act="silu",
    tie_word_embeddings=False,
)
_TEXT_META_KEYS = (
    "model_type",
    "torch_dtype",
    "dtype",
    "architectures",
    "_name_or_path",
    "transformers_version",
)
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # buffers older transformers versions saved
_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
}


# -- action tokens ---------------------------------------------------------------------------
class OpenVlaActionTokenizer:
    """OpenVLA's action <-> token convention, bit for bit (ids run backwards: the last id is bin 0).

    Distances between action ids still equal distances in bins, which relaxed acceptance relies on.
    """

    def __init__(self, q01, q99, mask, vocab_size: int, n_bins: int = 256) -> None:
        self.q01 = np.asarray(q01, dtype=np.float64)
        self.q99 = np.asarray(q99, dtype=np.float64)
        self.mask = np.asarray(mask, dtype=bool)
        if not (self.q01.ndim == 1 and self.q01.shape == self.q99.shape == self.mask.shape):
            raise ValueError(f"q01 {self.q01.shape}, q99 {self.q99.shape} and mask {self.mask.shape} differ")
        if not (np.all(np.isfinite(self.q01)) and np.all(np.isfinite(self.q99))):
            raise ValueError("action statistics q01/q99 must be finite")
        if vocab_size <= n_bins:
            raise ValueError(f"vocab_size {vocab_size} must exceed n_action_bins {n_bins}")
        self.vocab_size, self.n_bins = int(vocab_size), int(n_bins)
        self.first_id = self.vocab_size - self.n_bins
        self.bins = np.linspace(-1.0, 1.0, self.n_bins)
        self.centres = (self.bins[:-1] + self.bins[1:]) / 2.0  # n_bins - 1 centres

    def with_range(self, q01, q99) -> OpenVlaActionTokenizer:
        """The same convention (and normalization mask) over another action range."""
        return OpenVlaActionTokenizer(q01, q99, self.mask, self.vocab_size, self.n_bins)

    @property
    def action_dim(self) -> int:
        return int(self.q01.shape[0])

    @property
    def bin_width(self) -> np.ndarray:
        """Spacing of adjacent bin centres in action units (normalized units where the mask is off)."""
        step = 2.0 / (self.n_bins - 1)
        return np.where(self.mask, step / 2.0 * (self.q99 - self.q01), step)

    def normalize(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        scaled = np.clip(2.0 * (a - self.q01) / (self.q99 - self.q01 + 1e-8) - 1.0, -1.0, 1.0)
        return np.where(self.mask, scaled, a)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        n = np.asarray(normalized, dtype=np.float64)
        return np.where(self.mask, 0.5 * (n + 1.0) * (self.q99 - self.q01) + self.q01, n)

    def encode(self, action: np.ndarray) -> np.ndarray:
        """Token ids as OpenVLA's training data has them (clip to [-1, 1], digitize on the bin edges)."""
        n = np.clip(self.normalize(action), -1.0, 1.0)
        return (self.vocab_size - np.digitize(n, self.bins)).astype(np.int64)

    def id_to_bin(self, ids: np.ndarray) -> np.ndarray:
        """Bin centre index of each id; the first action id shares the last centre (OpenVLA's clip)."""
        ids = np.asarray(ids, dtype=np.int64)
        if np.any(ids < self.first_id) or np.any(ids >= self.vocab_size):
            raise ValueError(f"ids outside the action range [{self.first_id}, {self.vocab_size})")
        return np.clip(self.vocab_size - ids - 1, 0, self.centres.shape[0] - 1)

    def decode(self, ids: np.ndarray) -> np.ndarray:
        return self.unnormalize(self.centres[self.id_to_bin(ids)]).astype(np.float32)


# -- configuration ---------------------------------------------------------------------------
@dataclass
class OpenVlaConfig:
    """What the package needs of an OpenVLA config.json, validated once at load time."""

    cameras: list[str]
    unnorm_key: str
    datasets: list[str]
    action_q01: list[float]
    action_q99: list[float]
    action_mask: list[bool]
    n_bins: int
    vocab_size: int  # unpadded: the action ids are its last n_bins
    text_config: dict[str, Any]
    timm_model_ids: list[str]
    image_size: int
    use_fused_vision_backbone: bool
    means: list[list[float]]
    stds: list[list[float]]
    vit_overrides: list[dict[str, Any]] = field(default_factory=list)
    attn_implementation: str = "sdpa"
    state_dim: int = 0  # plain OpenVLA has no proprioception input

    @property
    def action_dim(self) -> int:
        return len(self.action_q01)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config["hidden_size"])

    # The decoder's shape under VlaConfig's names, so a draft head (DraftConfig.for_target) and the
    # precision ladder size themselves from either model alike.
    @property
    def num_layers(self) -> int:
        return int(self.text_config["num_hidden_layers"])

    @property
    def num_heads(self) -> int:
        return int(self.text_config["num_attention_heads"])

    @property
    def num_kv_heads(self) -> int:
        return int(self.text_config.get("num_key_value_heads") or self.num_heads)

    @property
    def intermediate_size(self) -> int:
        return int(self.text_config["intermediate_size"])

    @property
    def max_positions(self) -> int:
        return int(self.text_config["max_position_embeddings"])

    def vit_specs(self) -> list[VitSpec]:
        overrides = self.vit_overrides or [{}] * len(self.timm_model_ids)
        return [vit_spec(t, self.image_size, o) for t, o in zip(self.timm_model_ids, overrides, strict=True)]

    def llama_config(self) -> LlamaConfig:
        return LlamaConfig(**self.text_config, attn_implementation=self.attn_implementation)

    def action_tokenizer(self) -> OpenVlaActionTokenizer:
        return OpenVlaActionTokenizer(
            self.action_q01, self.action_q99, self.action_mask, self.vocab_size, self.n_bins
        )


def resolve_unnorm_key(norm_stats: dict[str, Any], unnorm_key: str | None) -> str:
    """OpenVLA's rule: a key is needed unless the checkpoint knows exactly one dataset."""
    keys = sorted(norm_stats)
    if unnorm_key is None:
        if len(keys) != 1:
            raise CheckpointError(
                f"the checkpoint has statistics for {len(keys)} datasets; pass unnorm_key, one of {keys}"
            )
        return keys[0]
    if unnorm_key not in norm_stats:
        raise CheckpointError(f"unnorm_key '{unnorm_key}' is not in the checkpoint; available: {keys}")
    return unnorm_key


def parse_config(
    raw: dict[str, Any],
    unnorm_key: str | None = None,
    norm_stats: dict[str, Any] | None = None,
    preprocessor: dict[str, Any] | None = None,
    camera: str = "corner",
) -> OpenVlaConfig:
    """config.json (+ dataset_statistics.json, preprocessor_config.json contents) -> OpenVlaConfig."""
    if raw.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"config.json model_type is {raw.get('model_type')!r}, expected '{MODEL_TYPE}'")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise CheckpointError(f"config.json lacks {missing}")
    norm_stats = norm_stats if norm_stats is not None else raw.get("norm_stats")
    if not norm_stats:
        raise CheckpointError(
            "no action statistics: no norm_stats in config.json, no dataset_statistics.json"
        )
    key = resolve_unnorm_key(norm_stats, unnorm_key)
    action = norm_stats[key].get("action") if isinstance(norm_stats[key], dict) else None
    if not isinstance(action, dict) or "q01" not in action or "q99" not in action:
        raise CheckpointError(f"norm_stats['{key}'] lacks action q01/q99")
    q01, q99 = [float(v) for v in action["q01"]], [float(v) for v in action["q99"]]
    mask = [bool(v) for v in action.get("mask", [True] * len(q01))]
    if not len(q01) == len(q99) == len(mask):
        raise CheckpointError(f"norm_stats['{key}']: q01, q99 and mask lengths differ")

    text = {k: v for k, v in dict(raw["text_config"]).items() if k not in _TEXT_META_KEYS}
    if raw["text_config"].get("model_type", "llama") != "llama":
        kind = raw["text_config"]["model_type"]
        raise CheckpointError(f"language model '{kind}' is not supported (Llama only)")
    if "vocab_size" not in text:
        raise CheckpointError("config.json text_config lacks vocab_size")
    text = {**LLAMA2_7B_DEFAULTS, **text}
    vocab = int(text["vocab_size"]) - int(raw["pad_to_multiple_of"])
    n_bins = int(raw["n_action_bins"])
    if vocab <= n_bins:
        raise CheckpointError(f"vocab_size - pad_to_multiple_of = {vocab} leaves no room for {n_bins} bins")

    ids, sizes = list(raw["timm_model_ids"]), [int(s) for s in raw["image_sizes"]]
    fused = bool(raw["use_fused_vision_backbone"])
    if len(ids) != (2 if fused else 1) or len(sizes) != len(ids):
        raise CheckpointError(
            f"use_fused_vision_backbone={fused} needs {2 if fused else 1} backbone(s); "
            f"timm_model_ids {ids}, image_sizes {sizes}"
        )
    if len(set(sizes)) != 1:
        raise CheckpointError(f"backbones with different input sizes {sizes} are not supported")
    acts = raw.get("timm_override_act_layers") or [None] * len(ids)
    if any(a is not None for a in acts):
        raise CheckpointError(f"timm_override_act_layers {acts} are not supported (only the default GELU)")
    pre = preprocessor or {}
    strategy = raw.get("image_resize_strategy", pre.get("image_resize_strategy"))
    if strategy != "resize-naive":
        raise CheckpointError(f"image_resize_strategy {strategy!r} is not supported (only 'resize-naive')")
    overrides = list(raw.get("timm_model_args") or [])
    if overrides and len(overrides) != len(ids):
        raise CheckpointError(f"timm_model_args has {len(overrides)} entries for {len(ids)} backbones")
    try:
        specs = [vit_spec(t, sizes[0], o) for t, o in zip(ids, overrides or [{}] * len(ids), strict=True)]
    except ValueError as err:
        raise CheckpointError(f"config.json: {err}") from err
    if len({s.num_patches for s in specs}) != 1:
        raise CheckpointError("the fused backbones produce different numbers of patches")
    means = pre.get("means") or [list(s.mean) for s in specs]
    stds = pre.get("stds") or [list(s.std) for s in specs]
    if len(means) != len(specs) or len(stds) != len(specs):
        raise CheckpointError(
            f"preprocessor_config.json: {len(means)} means, {len(stds)} stds for {len(specs)} backbones"
        )
    return OpenVlaConfig(
        cameras=[camera],
        unnorm_key=key,
        datasets=sorted(norm_stats),
        action_q01=q01,
        action_q99=q99,
        action_mask=mask,
        n_bins=n_bins,
        vocab_size=vocab,
        text_config=text,
        timm_model_ids=ids,
        image_size=sizes[0],
        use_fused_vision_backbone=fused,
        means=[list(m) for m in means],
        stds=[list(s) for s in stds],
        vit_overrides=overrides,
    )


# -- network ---------------------------------------------------------------------------------
class VisionBackbone(nn.Module):
    """OpenVLA's fused vision tower (DINOv2 + SigLIP), under the parameter names its checkpoints use."""

    def __init__(self, specs: list[VitSpec]) -> None:
        super().__init__()
        self.featurizer = VisionTransformer(specs[0])
        self.fused_featurizer = VisionTransformer(specs[1]) if len(specs) > 1 else None
        self.embed_dim = sum(s.embed_dim for s in specs)

    def forward(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        """One normalized image per backbone -> patch features concatenated along channels."""
        nets = [self.featurizer] + ([self.fused_featurizer] if self.fused_featurizer is not None else [])
        return torch.cat([net(p) for net, p in zip(nets, pixels, strict=True)], dim=2)


class Projector(nn.Module):
    """GELU MLP; the fused variant widens to 4x the vision width first and has a third layer."""

    def __init__(self, fused: bool, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        width = 4 * vision_dim if fused else llm_dim
        self.fc1 = nn.Linear(vision_dim, width)
        self.fc2 = nn.Linear(width, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim) if fused else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(F.gelu(self.fc1(x)))
        return self.fc3(F.gelu(x)) if self.fc3 is not None else x


class OpenVlaModel(nn.Module):
    """OpenVLA with VlaModel's decoding interface: prefill / extend / rollback / action_first_id."""

    def __init__(self, config: OpenVlaConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_backbone = VisionBackbone(config.vit_specs())
        self.projector = Projector(
            config.use_fused_vision_backbone, self.vision_backbone.embed_dim, config.hidden_size
        )
        self.language_model = LlamaForCausalLM(config.llama_config())

    rollback = staticmethod(VlaModel.rollback)

    # VlaModel's names for the decoder and the head, which the precision ladder (quant/ladder.py), the
    # draft head (decoding/draft.py) and the benchmarks read: here they live inside LlamaForCausalLM,
    # under the names the checkpoint's tensors have.
    @property
    def llama(self) -> nn.Module:
        return self.language_model.model

    @property
    def lm_head(self) -> nn.Module:
        return self.language_model.lm_head

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "lm_head":  # the ladder swaps the head (quant/vocab.py): it belongs to the Llama
            self.language_model.lm_head = value
        else:
            super().__setattr__(name, value)

    @property
    def action_first_id(self) -> int:
        return self.config.vocab_size - self.config.n_bins

    @property
    def device(self) -> torch.device:
        """Where the model runs, read from the projector (never quantized, unlike the head)."""
        return self.projector.fc2.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The checkpoint's compute dtype (the projector's; int4 layers cast to it on the way out)."""
        return self.projector.fc2.weight.dtype

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1] -> (B, num_patches, hidden) projected patch embeddings."""
        size = self.config.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise ValueError(f"expected images of shape (B, 3, {size}, {size}), got {tuple(pixels.shape)}")
        x = pixels.to(self.device, torch.float32)
        per_backbone = []
        for mean, std in zip(self.config.means, self.config.stds, strict=True):
            m = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
            s = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
            per_backbone.append(((x - m) / s).to(self.dtype))
        return self.projector(self.vision_backbone(per_backbone))

    def prefix_embeds(self, images: dict[str, torch.Tensor], prompt_ids: torch.Tensor) -> torch.Tensor:
        """[<bos>, image patches, rest of the prompt], as OpenVLA inserts the patches after <bos>."""
        camera = self.config.cameras[0]
        if camera not in images:
            raise ValueError(f"missing image for camera '{camera}' (got {sorted(images)})")
        patches = self.image_tokens(images[camera])
        text = self.llama.embed_tokens(prompt_ids.to(self.device))
        if text.shape[0] != patches.shape[0]:
            raise ValueError(f"{patches.shape[0]} image(s) for {text.shape[0]} prompt(s)")
        return torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)

    def _run(self, embeds: torch.Tensor, cache: DynamicCache, last_only: bool = False) -> Step:
        start = cache.get_seq_length()
        n = embeds.shape[1]
        hidden = decoder_hidden(self.language_model.model, embeds, cache)
        return Step(self.score(hidden[:, -1:] if last_only else hidden), hidden, cache, start + n)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the unpadded vocabulary (the padding rows are never a valid output). With the
        ladder's head (quant/vocab.ActionHead) only the action bins are scored, the rest get the
        dtype's lowest value: every decoder reads only the bins (`decoding.common.action_argmax`)."""
        head = self.language_model.lm_head
        if isinstance(head, nn.Linear):
            return F.linear(hidden, head.weight[: self.config.vocab_size])
        return head(hidden)[..., : self.config.vocab_size]

    def prefill(
        self, images: dict[str, torch.Tensor], state: torch.Tensor | None, prompt_ids: torch.Tensor
    ) -> Step:
        """state is ignored: plain OpenVLA sees no proprioception. Logits at the last position only, as
        in VlaModel.prefill: nothing reads the prefix's, and at 7B they are 32,000 x 4,096 per position."""
        return self._run(self.prefix_embeds(images, prompt_ids), DynamicCache(), last_only=True)

    def extend(self, cache: DynamicCache, token_ids: torch.Tensor) -> Step:
        """Run k tokens (B, k) after what the cache holds, in one forward pass."""
        return self._run(self.llama.embed_tokens(token_ids.to(self.device)), cache)


# -- loading ---------------------------------------------------------------------------------
def _read_json(path: Path, required: bool = False) -> Any:
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path.parent} has no {path.name}")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: invalid JSON ({err})") from err


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def resolve_device(device: torch.device | str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"device '{device}' requested but CUDA is not available")
    return device


def _weight_files(directory: Path, allow_pickle: bool) -> list[Path]:
    """The weight files to read, after checking every listed shard exists."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = _read_json(directory / index_name)
        if index is None:
            continue
        if not isinstance(index.get("weight_map"), dict) or not index["weight_map"]:
            raise CheckpointError(f"{directory / index_name} has no weight_map")
        files = [directory / name for name in sorted(set(index["weight_map"].values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{directory}: shard(s) {absent} listed in {index_name} are missing")
        break
    else:
        single = directory / "model.safetensors"
        pickles = sorted(p for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        files = [single] if single.is_file() else pickles
        if not files:
            raise CheckpointError(f"{directory} has no model.safetensors or model.safetensors.index.json")
    pickled = [f for f in files if f.suffix != ".safetensors"]
    if pickled and not allow_pickle:
        raise CheckpointError(
            f"{pickled[0]} is a pickle-based file, which can execute code when loaded; convert it to "
            "safetensors, or pass allow_pickle=True if you trust its source"
        )
    return files


@dataclass
class _Entry:
    file: Path
    key: str
    shape: tuple[int, ...]


def _canonical(key: str) -> str:
    # timm names layer scale `gamma`; OpenVLA's export renamed it `scale_factor`. Accept both.
    if key.startswith("vision_backbone.") and key.endswith((".ls1.gamma", ".ls2.gamma")):
        return key[: -len("gamma")] + "scale_factor"
    return key


def _index_weights(files: list[Path]) -> tuple[dict[str, _Entry], dict[Path, dict[str, torch.Tensor]]]:
    """Name -> where it lives and its shape, reading safetensors headers only."""
    entries: dict[str, _Entry] = {}
    pickled: dict[Path, dict[str, torch.Tensor]] = {}
    for path in files:
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt") as f:
                    shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({err})") from err
        else:
            log.warning("loading pickle-based weights %s (allowed explicitly)", path)
            state = torch.load(path, map_location="cpu", weights_only=True)
            pickled[path] = state
            shapes = {k: tuple(v.shape) for k, v in state.items()}
        for key, shape in shapes.items():
            if key.endswith(_IGNORED_SUFFIXES):
                continue
            name = _canonical(key)
            if name in entries:
                first = entries[name].file.name
                raise CheckpointError(f"tensor {key} appears in both {first} and {path.name}")
            entries[name] = _Entry(path, key, shape)
    return entries, pickled


def _tensors(entries: dict[str, _Entry], pickled) -> Iterator[tuple[str, torch.Tensor]]:
    by_file: dict[Path, list[str]] = {}
    for name, entry in entries.items():
        by_file.setdefault(entry.file, []).append(name)
    for path, names in by_file.items():
        if path in pickled:
            yield from ((n, pickled[path][entries[n].key]) for n in names)
            continue
        with safe_open(str(path), framework="pt") as f:  # mmap on the host; copy_ moves each tensor
            for name in names:
                yield name, f.get_tensor(entries[name].key)


def _materialize(model: OpenVlaModel, device: torch.device, dtype: torch.dtype) -> None:
    """Give a meta-device model real (uninitialized) storage; every parameter is then loaded.

    Building on the meta device skips the random init of ~7.5B parameters. The rotary
    embedding's frequencies are not in the checkpoint, so it is rebuilt (in float32, as
    transformers keeps it).
    """
    model.to(dtype=dtype)
    model.to_empty(device=device)
    lm = model.language_model.model
    lm.rotary_emb = type(lm.rotary_emb)(config=lm.config).to(device)
    model.requires_grad_(False)


def load_weights(model: OpenVlaModel, directory: Path, allow_pickle: bool = False) -> None:
    """Strict: every parameter once, no unknown tensor, every shape as config.json implies."""
    entries, pickled = _index_weights(_weight_files(directory, allow_pickle))
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(entries))
    unexpected = sorted(entries[n].key for n in set(entries) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match config.json ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    for name, entry in entries.items():
        if entry.shape != tuple(params[name].shape):
            raise CheckpointError(
                f"{entry.file.name}: tensor {entry.key} has shape {entry.shape}, config.json implies "
                f"{tuple(params[name].shape)}"
            )
    with torch.no_grad():
        for name, tensor in _tensors(entries, pickled):
            params[name].copy_(tensor)


def load_openvla(
    directory: Path | str,
    unnorm_key: str | None = None,
    dtype: torch.dtype | str = torch.bfloat16,
    device: torch.device | str = "cpu",
    allow_pickle: bool = False,
    camera: str = "corner",
    attn_implementation: str = "sdpa",
) -> OpenVlaModel:
    """A local OpenVLA checkpoint directory -> OpenVlaModel (eval mode, no gradients)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    raw = _read_json(directory / "config.json", required=True)
    stats = _read_json(directory / "dataset_statistics.json")  # fine-tuned statistics win, as in OpenVLA
    config = parse_config(raw, unnorm_key, stats, _read_json(directory / "preprocessor_config.json"), camera)
    config.attn_implementation = attn_implementation
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    with torch.device("meta"):
        model = OpenVlaModel(config)
    declared = sum(p.numel() for p in model.parameters())
    check_declared_size(declared, _weight_files(directory, allow_pickle), directory)
    _materialize(model, device, dtype)
    load_weights(model, directory, allow_pickle)
    return model.eval()


def load_tokenizer(directory: Path | str):
    """The checkpoint's own tokenizer (transformers, offline)."""
    directory = Path(directory)
    if not any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        raise CheckpointError(f"{directory} has no tokenizer.json or tokenizer.model (OpenVLA ships both)")
    from transformers import AutoTokenizer, PretrainedConfig

    try:  # config.json describes the VLA, which transformers does not know: hand it a neutral config
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True, config=PretrainedConfig())
    except Exception as err:  # transformers raises many types; say which file failed and why
        raise CheckpointError(
            f"{directory}: cannot load the tokenizer ({type(err).__name__}: {err}); a directory with only "
            "tokenizer.model needs the 'sentencepiece' package"
        ) from err


# -- runtime adapter -------------------------------------------------------------------------
def center_crop(image: np.ndarray, scale: float, size: int) -> np.ndarray:
    """Crop the central `scale` of the area and resize to size x size, as OpenVLA's evaluation does.

    Bilinear sampling on the corner-aligned grid of TF's crop_and_resize, then TF's float -> uint8
    conversion (x * 255.5, truncated), for checkpoints fine-tuned with random-crop augmentation.
    """
    side = float(np.sqrt(np.clip(scale, 0.0, 1.0)))
    lo = (1.0 - side) / 2.0
    t = torch.linspace(lo, lo + side, size, dtype=torch.float64) * 2.0 - 1.0  # normalized corner coords
    grid = torch.stack(torch.meshgrid(t, t, indexing="xy"), dim=-1).unsqueeze(0)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).double() / 255.0
    out = F.grid_sample(x, grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0).clamp(0.0, 1.0)
    return torch.clamp(out * 255.5, max=255.0).to(torch.uint8).numpy()


class OpenVlaPolicy(Policy):
    """Policy.act on an OpenVLA checkpoint: same decoders and result, OpenVLA's inputs and actions.

    Policy.__init__ builds the built-in model's tokenizers and proprio statistics; this sets the
    model, config and action tokenizer, shares the rest (_init_shared) and replaces preprocess.
    """

    def __init__(self, model: OpenVlaModel, tokenizer, center_crop_scale: float | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.actions = model.config.action_tokenizer()
        self.tokenizer = tokenizer
        self.center_crop_scale = center_crop_scale
        self._empty_id = tokenizer.get_vocab().get(EMPTY_TOKEN)
        self._init_shared()

    def prompt_ids(self, instruction: str) -> torch.Tensor:
        """OpenVLA's prompt with <bos>; the bare word-boundary token is appended as in predict_action."""
        ids = self._prompt_cache.get(instruction)
        if ids is None:
            tokens = list(self.tokenizer(PROMPT.format(instruction=instruction.lower())).input_ids)
            if self._empty_id is not None and tokens[-1] != self._empty_id:
                tokens.append(self._empty_id)
            ids = torch.tensor([tokens], dtype=torch.long)
            if len(self._prompt_cache) < 256:
                self._prompt_cache[instruction] = ids
        return ids

    def pixels(self, name: str, image: np.ndarray) -> torch.Tensor:
        """uint8 H x W x 3 -> (1, 3, S, S) in [0, 1]: PIL bicubic resize, as OpenVLA's processor."""
        from PIL import Image

        if not (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and image.ndim == 3
            and image.shape[2] == 3
        ):
            shape = getattr(image, "shape", None)
            raise InputError(f"camera '{name}': expected an H x W x 3 uint8 image, got {shape}")
        size = self.config.image_size
        if self.center_crop_scale is not None:
            image = center_crop(image, self.center_crop_scale, size)
        resized = Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0

    def preprocess(self, inp: PolicyInput) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        camera = self.config.cameras[0]
        if camera not in inp.images:
            raise InputError(f"missing camera image(s): ['{camera}']")
        if not inp.instruction or not inp.instruction.strip():
            raise InputError("empty instruction")
        images = {camera: self.pixels(camera, inp.images[camera])}
        return images, torch.zeros(1, 0), self.prompt_ids(inp.instruction)


def load_policy(
    path: Path | str,
    unnorm_key: str | None = None,
    dtype: torch.dtype | str = torch.bfloat16,
    device: torch.device | str = "auto",
    allow_pickle: bool = False,
    camera: str = "corner",
    center_crop_scale: float | None = None,
    attn_implementation: str = "sdpa",
) -> OpenVlaPolicy:
    """The policy of an OpenVLA directory (device 'auto': CUDA when available); loading.policy_from_checkpoint
    calls it for any directory whose config.json says model_type 'openvla'."""
    model = load_openvla(path, unnorm_key, dtype, device, allow_pickle, camera, attn_implementation)
    policy = OpenVlaPolicy(model, load_tokenizer(path), center_crop_scale)
    policy.load_draft(path)  # <path>/draft/ (`vla-accel train-draft --checkpoint path` writes it)
    return policy
