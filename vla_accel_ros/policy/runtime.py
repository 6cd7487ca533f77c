"""The policy as the nodes, evaluation and replay call it: observation in, action out.

Preprocessing, prefill and decoding of one control step live here; which decoder and
precision run is chosen per call, so the controller can change them every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vla_accel_ros.decoding.autoregressive import DecodeOutput, decode_autoregressive
from vla_accel_ros.decoding.common import StageTimer
from vla_accel_ros.decoding.draft import DRAFT_DIR, DraftError
from vla_accel_ros.decoding.registry import speculative_decoders
from vla_accel_ros.policy.checkpoint import CheckpointError, load_checkpoint
from vla_accel_ros.policy.formats import is_openvla_checkpoint
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.tokenizer import ActionTokenizer, PromptTokenizer

FULL_PRECISION = "fp32"
AUTOREGRESSIVE = "ar"


class InputError(ValueError):
    """An observation the policy must not act on; the message names the problem."""


@dataclass
class PolicyInput:
    """One observation as the policy takes it, independent of ROS messages and simulators."""

    images: dict[str, np.ndarray]  # camera -> H x W x 3 uint8 RGB, upright
    joint_positions: np.ndarray
    instruction: str


@dataclass
class ActionResult:
    """One action and how it was made (precision, decoder, draft work, fill, fallback, timings).

    Everything the graph publishes in VlaAction and the benchmarks tabulate comes from here.
    """

    action: np.ndarray
    token_ids: np.ndarray
    precision: str
    decoding: str
    threshold: float = 0.0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    kalman_filled: list[int] = field(default_factory=list)
    target_passes: int = 0
    fallback: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return float(sum(self.timings_ms.values()))


class Policy:
    """Observation in, action out: the one interface the nodes, evaluation, replay and benchmarks drive.

    It exists so that what changes per control step (precision, decoder, KERV threshold, Kalman fill)
    is a call argument rather than a rebuilt object: the controller can switch every step, and a
    benchmark row runs the same code as the graph. It also owns what must not fail silently: input
    validation (InputError) and the fallbacks to autoregressive decoding or the top precision, which
    are reported in `ActionResult.fallback`. Subclasses (openvla.OpenVlaPolicy) replace preprocessing.
    """

    def __init__(self, model: VlaModel) -> None:
        self.model = model.eval()
        cfg = model.config
        if not cfg.action_q01 or not cfg.state_mean:
            raise InputError("checkpoint config lacks normalization statistics")
        self.config = cfg
        self.actions = ActionTokenizer(cfg.action_q01, cfg.action_q99, cfg.vocab_size, cfg.n_bins)
        self.prompts = PromptTokenizer(cfg.prompt_vocab)
        self._state_mean = torch.tensor(cfg.state_mean, dtype=torch.float32)
        self._state_std = torch.tensor(cfg.state_std, dtype=torch.float32).clamp_min(1e-6)
        self._init_shared()

    def _init_shared(self) -> None:
        """State every policy needs whatever its model (subclasses such as openvla.OpenVlaPolicy call it)."""
        self._prompt_cache: dict[str, torch.Tensor] = {}
        # Decoders registered by name; speculative ones are added by their modules.
        self.decoders = {AUTOREGRESSIVE: self._decode_ar}
        self.draft = None  # speculative decoders exist only with a draft (attach_draft)
        self.draft_error: str | None = None
        self.ladder = None  # precision ladder of self.model (quant.quantize_model), see enable_ladder

    @classmethod
    def load(cls, path: Path | str | None = None, allow_pickle: bool = False) -> Policy:
        """A checkpoint in the package's own format (None: the built-in one), with its draft if any.

        Any format, OpenVLA's included: `vla_accel_ros.policy.loading.policy_from_checkpoint` (the base
        class cannot import its OpenVLA subclass without an import cycle)."""
        if is_openvla_checkpoint(path):
            raise CheckpointError(
                f"{path} is an OpenVLA checkpoint: load it with "
                "vla_accel_ros.policy.loading.policy_from_checkpoint"
            )
        policy = cls(load_checkpoint(path, allow_pickle=allow_pickle))
        policy.load_draft(path)
        return policy

    def load_draft(self, checkpoint: Path | str | None = None) -> bool:
        """Attach `<checkpoint>/draft/` if there is one; a broken draft only leaves the speculative
        decoders out (act() then falls back to autoregressive decoding and says why)."""
        from vla_accel_ros.decoding.draft import DraftLoadError, load_draft
        from vla_accel_ros.policy.builtin import resolve_checkpoint

        root = resolve_checkpoint(checkpoint)
        directory = root / DRAFT_DIR
        if not directory.is_dir():
            self.draft_error = f"no draft in {directory}"
            return False
        try:
            self.attach_draft(load_draft(directory, self.model))
        except DraftLoadError as err:
            self.draft_error = str(err)
            return False
        return True

    def attach_draft(self, draft, **options) -> None:
        """Register "spec", "specvla" and "kerv" over `draft` (options: see speculative_decoders)."""
        self.decoders.update(speculative_decoders(self.model, self.actions, draft, **options))
        self.draft, self.draft_error = draft, None

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    def use_statistics(self, stats: dict) -> None:
        """Un-normalize actions with another action range (q01/q99) and, for a model with proprio input,
        normalize joint states with another mean/std: a `vla-accel stats` file of the user's robot.

        Dimensions must match the model's exactly (a silent mismatch would scale the wrong joints)."""
        action = stats.get("action") or {}
        q01, q99 = action.get("q01"), action.get("q99")
        if q01 is None or q99 is None:
            raise InputError("the statistics have no action q01/q99 (write them with `vla-accel stats`)")
        if len(q01) != self.action_dim or len(q99) != self.action_dim:
            raise InputError(
                f"the statistics have {len(q01)} action dimensions, the model emits {self.action_dim}"
            )
        state = stats.get("state") or {}
        mean, std = state.get("mean"), state.get("std")
        uses_state = hasattr(self, "_state_mean") and self._state_mean.numel() > 0
        if uses_state and mean is not None:
            if std is None or len(mean) != self._state_mean.numel() or len(std) != len(mean):
                raise InputError(
                    f"the statistics have {len(mean)} state dimensions, the model reads "
                    f"{self._state_mean.numel()} joint positions"
                )
        try:
            actions = self.actions.with_range(q01, q99)
        except ValueError as err:
            raise InputError(f"unusable action statistics: {err}") from err
        self.actions = actions
        if uses_state and mean is not None:
            self._state_mean = torch.tensor(mean, dtype=torch.float32)
            self._state_std = torch.tensor(std, dtype=torch.float32).clamp_min(1e-6)
        if self.draft is not None:  # the speculative decoders hold the tokenizer: rebuild them
            self.attach_draft(self.draft)

    @property
    def cameras(self) -> list[str]:
        return list(self.config.cameras)

    @property
    def precisions(self) -> list[str]:
        """Servable modes, lowest precision first, the top one last."""
        return self.ladder.names if self.ladder is not None else [FULL_PRECISION]

    def enable_ladder(self, ladder) -> None:
        """Serve the modes of a ladder installed in self.model (vla_accel_ros.quant.quantize_model);
        the unquantized fp32 weights are gone, so FULL_PRECISION is no longer among them."""
        self.ladder = ladder

    # -- preprocessing -------------------------------------------------------------------
    def _image_tensor(self, name: str, image: np.ndarray) -> torch.Tensor:
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            shape = getattr(image, "shape", None)
            raise InputError(f"camera '{name}': expected an H x W x 3 uint8 image, got {shape}")
        if image.shape[0] < 8 or image.shape[1] < 8:
            raise InputError(f"camera '{name}': image {image.shape[:2]} is too small")
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        size = self.config.image_size
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return t

    @property
    def device(self) -> torch.device:
        """Where the model runs (its first parameter's device: the vision side, never quantized)."""
        return next(self.model.parameters()).device

    @property
    def compute_dtype(self) -> torch.dtype:
        """Dtype the model's inputs are cast to (fp32, or bf16 after `model.to(torch.bfloat16)`).

        Read from the first floating-point parameter (the vision side, which no ladder quantizes)."""
        return next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)

    def preprocess(self, inp: PolicyInput) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        missing = [c for c in self.config.cameras if c not in inp.images]
        if missing:
            raise InputError(f"missing camera image(s): {missing}")
        dtype, device = self.compute_dtype, self.device
        images = {c: self._image_tensor(c, inp.images[c]).to(device, dtype) for c in self.config.cameras}
        joints = np.asarray(inp.joint_positions, dtype=np.float32).reshape(-1)
        if joints.shape[0] != self.config.state_dim:
            raise InputError(
                f"joint state has {joints.shape[0]} values, the policy expects {self.config.state_dim}"
            )
        if not np.all(np.isfinite(joints)):
            raise InputError("joint state contains NaN or inf")
        if not inp.instruction or not inp.instruction.strip():
            raise InputError("empty instruction")
        state = (torch.from_numpy(joints).unsqueeze(0) - self._state_mean) / self._state_std
        state = state.to(device, dtype)
        prompt = self._prompt_cache.get(inp.instruction)
        if prompt is None:
            ids = self.prompts.encode(inp.instruction, self.config.prompt_length)
            prompt = torch.tensor([ids], dtype=torch.long)
            if len(self._prompt_cache) < 256:
                self._prompt_cache[inp.instruction] = prompt
        return images, state, prompt.to(device)

    # -- one control step ----------------------------------------------------------------
    def _decode_ar(self, prefill, timer: StageTimer, **_: object) -> DecodeOutput:
        return decode_autoregressive(self.model, prefill, self.action_dim, timer)

    def act(
        self,
        inp: PolicyInput,
        precision: str = FULL_PRECISION,
        decoding: str = AUTOREGRESSIVE,
        threshold: float = 0.0,
        kalman_action: np.ndarray | None = None,
    ) -> ActionResult:
        """One action; with a ladder, in `precision` (held for the whole step), or in the top mode when
        that mode fails at run time: the action is then recomputed whole, and `fallback` says why."""
        if self.ladder is None:
            return self._act(inp, precision, decoding, threshold, kalman_action)
        mode = precision if precision in self.ladder.modes else self.ladder.top
        try:
            with self.ladder.step(mode):
                return self._act(inp, precision, decoding, threshold, kalman_action)
        except RuntimeError as err:
            if mode == self.ladder.top:
                raise
            with self.ladder.step(self.ladder.top):
                result = self._act(inp, self.ladder.top, decoding, threshold, kalman_action)
            why = f"precision '{mode}' failed ({type(err).__name__}: {err}), '{self.ladder.top}' used"
            result.fallback = "; ".join([why] + ([result.fallback] if result.fallback else []))
            return result

    @torch.inference_mode()
    def _act(
        self,
        inp: PolicyInput,
        precision: str = FULL_PRECISION,
        decoding: str = AUTOREGRESSIVE,
        threshold: float = 0.0,
        kalman_action: np.ndarray | None = None,
    ) -> ActionResult:
        timer = StageTimer.for_device(self.device)  # on CUDA: each stage waits for its kernels
        fallback = []
        if precision not in self.precisions:
            fallback.append(f"precision '{precision}' unavailable")
            precision = self.precisions[-1]
        if decoding not in self.decoders:
            speculative = decoding in ("spec", "specvla", "kerv")
            why = f" ({self.draft_error})" if self.draft_error and speculative else ""
            fallback.append(f"decoding '{decoding}' unavailable{why}")
            decoding = AUTOREGRESSIVE
        with timer.stage("preprocess"):
            images, state, prompt = self.preprocess(inp)
        with timer.stage("prefill"):
            prefill = self.model.prefill(images, state, prompt)
        try:
            out = self.decoders[decoding](prefill, timer, threshold=threshold, kalman_action=kalman_action)
        except DraftError as err:  # never a partial action: redo the whole action autoregressively
            VlaModel.rollback(prefill.cache, prefill.length)
            fallback.append(f"decoding '{decoding}' failed ({err}), autoregressive used")
            decoding = AUTOREGRESSIVE
            out = self._decode_ar(prefill, timer)
        ids = out.token_ids[0].cpu().numpy()
        action = self.actions.decode(ids)
        for dim in out.kalman_filled:
            action[dim] = np.float32(kalman_action[dim])
        return ActionResult(
            action=action,
            token_ids=ids,
            precision=precision,
            decoding=decoding,
            threshold=float(getattr(out, "threshold", threshold)),
            draft_tokens=out.draft_tokens,
            accepted_tokens=out.accepted_tokens,
            kalman_filled=list(out.kalman_filled),
            target_passes=out.target_passes,
            fallback="; ".join(fallback) or None,
            timings_ms=timer.ms,
        )
