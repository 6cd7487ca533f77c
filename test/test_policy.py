"""The token-domain VLA: tokenizers, the prefill/extend/rollback interface, checkpoints, runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_accel_ros.decoding.common import action_argmax
from vla_accel_ros.policy import config as config_module
from vla_accel_ros.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.runtime import InputError, Policy, PolicyInput
from vla_accel_ros.policy.tokenizer import ActionTokenizer, PromptTokenizer

INSTRUCTIONS = ["reach the red goal", "open the drawer"]


def tiny_config(**kw) -> VlaConfig:
    return config_module.tiny_config(INSTRUCTIONS, **kw)


@pytest.fixture(scope="module")
def model() -> VlaModel:
    torch.manual_seed(0)
    return VlaModel(tiny_config()).eval()


def inputs(model: VlaModel, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    images = {c: torch.rand(batch, 3, cfg.image_size, cfg.image_size, generator=g) for c in cfg.cameras}
    state = torch.randn(batch, cfg.state_dim, generator=g)
    prompt = torch.tensor(
        [PromptTokenizer(cfg.prompt_vocab).encode(INSTRUCTIONS[0], cfg.prompt_length)] * batch
    )
    return images, state, prompt


def test_action_tokenizer_round_trip_and_id_range():
    tok = ActionTokenizer([-2.0, 0.0], [2.0, 1.0], vocab_size=300, n_bins=256)
    a = np.array([[0.3, 0.25], [-2.0, 1.0], [5.0, -3.0]])
    ids = tok.encode(a)
    assert ids.min() >= 44 and ids.max() <= 299
    back = tok.decode(ids)
    # inside the range the error is at most half a bin; outside it clips to the range edge
    assert np.all(np.abs(back[0] - a[0]) <= tok.bin_width / 2 + 1e-6)
    assert back[2, 0] == pytest.approx(2.0 - tok.bin_width[0] / 2, abs=1e-5)
    # id distance equals bin distance
    assert np.array_equal(
        np.diff(tok.encode(np.array([[0.0, 0.5], [0.1, 0.5]])), axis=0)[0],
        np.diff(tok.to_bins(np.array([[0.0, 0.5], [0.1, 0.5]])), axis=0)[0],
    )
    with pytest.raises(ValueError):
        tok.id_to_bin(np.array([10]))


def test_action_tokenizer_rejects_bad_statistics():
    with pytest.raises(ValueError):
        ActionTokenizer([1.0], [0.0], 300)
    with pytest.raises(ValueError):
        ActionTokenizer([float("nan")], [1.0], 300)


def test_prompt_tokenizer_fixed_length_and_unknown_words():
    p = PromptTokenizer.from_texts(INSTRUCTIONS)
    ids = p.encode("Reach the RED goal", 8)
    assert len(ids) == 8 and ids[-1] == p.index[p.ACT] and p.index[p.BOS] in ids
    assert p.encode("grasp the unicorn", 6).count(p.index[p.UNK]) == 2
    assert len(p.encode("a " * 40, 6)) == 6


def test_constrained_argmax_never_leaves_action_ids():
    logits = torch.randn(64, 500)
    logits[:, :244] += 100.0  # text ids dominate: must still not be chosen
    ids = action_argmax(logits, 244)
    assert ids.min().item() >= 244 and ids.max().item() < 500


def test_cached_decoding_matches_teacher_forcing(model):
    images, state, prompt = inputs(model)
    actions = torch.randint(model.action_first_id, model.config.vocab_size, (2, model.config.action_dim))
    with torch.no_grad():
        full = model.forward_train(images, state, prompt, actions)
        step = model.prefill(images, state, prompt)
        logits = [step.logits[:, -1, model.action_first_id :]]
        for i in range(model.config.action_dim - 1):
            step = model.extend(step.cache, actions[:, i : i + 1])
            logits.append(step.logits[:, -1, model.action_first_id :])
    assert torch.allclose(full, torch.stack(logits, dim=1), atol=1e-4)


def test_verify_k_in_one_pass_and_rollback(model):
    images, state, prompt = inputs(model, seed=1)
    tokens = torch.randint(model.action_first_id, model.config.vocab_size, (2, 3))
    with torch.no_grad():
        ref = model.prefill(images, state, prompt)
        one_by_one = []
        s = ref
        for i in range(3):
            s = model.extend(s.cache, tokens[:, i : i + 1])
            one_by_one.append(s.logits[:, -1])
        base = model.prefill(images, state, prompt)
        k = model.extend(base.cache, tokens)
        assert torch.allclose(k.logits, torch.stack(one_by_one, dim=1), atol=1e-4)
        # reject the last two: roll back to prefix + 1 token, then continue with another token
        model.rollback(k.cache, base.length + 1)
        assert k.cache.get_seq_length() == base.length + 1
        alt = tokens[:, 2:3]
        after = model.extend(k.cache, alt)
        fresh = model.prefill(images, state, prompt)
        fresh = model.extend(fresh.cache, tokens[:, :1])
        fresh = model.extend(fresh.cache, alt)
        assert torch.allclose(after.logits, fresh.logits, atol=1e-4)
        with pytest.raises(ValueError):
            model.rollback(k.cache, k.cache.get_seq_length() + 5)


def test_checkpoint_round_trip(tmp_path, model):
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_checkpoint_failures_are_named(tmp_path, model):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    save_checkpoint(model, tmp_path / "trunc")
    data = (tmp_path / "trunc" / "model.safetensors").read_bytes()
    (tmp_path / "trunc" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "trunc")
    save_checkpoint(VlaModel(tiny_config(hidden_size=16, num_heads=2)), tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "trunc" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "other")


def test_pickle_checkpoints_refused_unless_allowed(tmp_path, model):
    d = tmp_path / "pkl"
    save_checkpoint(model, d)
    (d / "model.safetensors").unlink()
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(d)
    assert isinstance(load_checkpoint(d, allow_pickle=True), VlaModel)


def observation(cfg: VlaConfig, **kw) -> PolicyInput:
    rng = np.random.default_rng(0)
    images = {
        c: rng.integers(0, 255, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8) for c in cfg.cameras
    }
    base = dict(images=images, joint_positions=np.zeros(cfg.state_dim), instruction=INSTRUCTIONS[1])
    base.update(kw)
    return PolicyInput(**base)


def test_runtime_act_returns_a_full_action(model):
    policy = Policy(model)
    out = policy.act(observation(model.config))
    assert out.action.shape == (4,) and np.all(np.isfinite(out.action))
    assert np.all(out.token_ids >= model.action_first_id)
    assert out.target_passes == 3 and out.fallback is None
    assert {"preprocess", "prefill", "decode_1"} <= set(out.timings_ms)
    # an unknown mode is served by full-precision autoregressive decoding, and says so
    out2 = policy.act(observation(model.config), precision="int3", decoding="magic")
    assert out2.precision == "fp32" and out2.decoding == "ar"
    assert "int3" in out2.fallback and "magic" in out2.fallback
    np.testing.assert_array_equal(out.action, out2.action)


def test_runtime_resizes_other_image_sizes(model):
    cfg = model.config
    big = {c: np.zeros((120, 160, 3), np.uint8) for c in cfg.cameras}
    assert Policy(model).act(observation(cfg, images=big)).action.shape == (4,)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(joint_positions=np.full(9, np.nan)), "NaN"),
        (dict(joint_positions=np.zeros(5)), "5 values"),
        (dict(instruction="  "), "empty instruction"),
        (dict(images={}), "missing camera"),
        (
            dict(images={"corner": np.zeros((64, 64), np.uint8), "wrist": np.zeros((64, 64, 3), np.uint8)}),
            "H x W x 3",
        ),
        (
            dict(
                images={"corner": np.zeros((64, 64, 3), np.float32), "wrist": np.zeros((64, 64, 3), np.uint8)}
            ),
            "uint8",
        ),
    ],
)
def test_runtime_rejects_bad_input(model, change, message):
    with pytest.raises(InputError, match=message):
        Policy(model).act(observation(model.config, **change))
