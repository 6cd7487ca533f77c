"""OpenVLA checkpoints: a tiny random checkpoint written in the exact Hugging Face layout, loaded back.

The generator (vla_accel_ros.evaluation.openvla_synthetic, shared with the benchmarks' mid-size
checkpoint) lists every tensor name and shape by hand from timm's and transformers' naming (not from
the loader's modules), so a loader that drifted from the real format fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from vla_accel_ros.evaluation.openvla_synthetic import (
    BRIDGE,
    FRACTAL,
    TINY,
    openvla_shapes,
    random_weights,
    stats,
    write_config,
    write_tokenizer,
    write_weights,
)
from vla_accel_ros.policy.checkpoint import CheckpointError
from vla_accel_ros.policy.formats import is_openvla_checkpoint
from vla_accel_ros.policy.loading import policy_from_checkpoint
from vla_accel_ros.policy.openvla import (
    OpenVlaActionTokenizer,
    OpenVlaPolicy,
    center_crop,
    load_openvla,
    load_policy,
)
from vla_accel_ros.policy.runtime import InputError, Policy, PolicyInput

IMAGE = TINY.image
BASE_VOCAB = TINY.base_vocab  # tokenizer vocabulary; <PAD> is added as id 320, the LM pads to 384
PADDED_VOCAB = TINY.padded_vocab
FIRST_ACTION_ID = TINY.first_action_id
TEXT = TINY.text


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("openvla-tiny")
    write_config(directory)
    write_weights(directory, random_weights())
    write_tokenizer(directory)
    return directory


@pytest.fixture
def copy(checkpoint, tmp_path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(checkpoint, target)
    return target


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_openvla(checkpoint, unnorm_key="bridge_tiny", dtype=torch.float32)


def prompt() -> torch.Tensor:
    return torch.tensor([[1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 8, 14, 3]])


def image(seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


# -- loading ---------------------------------------------------------------------------------
def test_loads_every_tensor_of_the_sharded_checkpoint(checkpoint, model):
    written = {}
    for shard in sorted(checkpoint.glob("model-*.safetensors")):
        written.update(load_file(str(shard)))
    params = dict(model.named_parameters())
    assert set(params) == set(written) == set(openvla_shapes())
    for name, t in written.items():
        assert torch.equal(params[name], t.float()), name
    cfg = model.config
    assert (cfg.action_dim, cfg.cameras, cfg.vocab_size, cfg.image_size) == (7, ["corner"], BASE_VOCAB, IMAGE)
    assert model.action_first_id == FIRST_ACTION_ID and cfg.unnorm_key == "bridge_tiny"
    assert cfg.means[0] == pytest.approx([0.485, 0.456, 0.406]) and cfg.stds[1] == pytest.approx([0.5] * 3)
    assert is_openvla_checkpoint(checkpoint) and not is_openvla_checkpoint(checkpoint / "missing")


def test_rotary_frequencies_are_rebuilt_in_float32(checkpoint):
    m = load_openvla(checkpoint, unnorm_key="bridge_tiny", dtype=torch.bfloat16)
    inv = m.language_model.model.rotary_emb.inv_freq
    head = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    expected = 1.0 / 10000.0 ** (torch.arange(0, head, 2, dtype=torch.float32) / head)
    assert inv.dtype == torch.float32 and torch.allclose(inv, expected)
    assert m.dtype == torch.bfloat16 and m.vision_backbone.featurizer.pos_embed.dtype == torch.bfloat16


def test_unnorm_key_required_with_two_datasets_and_errors_list_keys(checkpoint, copy):
    with pytest.raises(CheckpointError, match=r"2 datasets.*\['bridge_tiny', 'fractal_tiny'\]"):
        load_openvla(checkpoint)
    with pytest.raises(CheckpointError, match=r"'libero' is not in .*\['bridge_tiny', 'fractal_tiny'\]"):
        load_openvla(checkpoint, unnorm_key="libero")
    write_config(copy, norm_stats={"bridge_tiny": stats(BRIDGE)})
    assert load_openvla(copy, dtype=torch.float32).config.unnorm_key == "bridge_tiny"
    # A fine-tuned checkpoint's dataset_statistics.json replaces the config's statistics (OpenVLA's rule)
    (copy / "dataset_statistics.json").write_text(json.dumps({"libero_tiny": stats(FRACTAL)}))
    cfg = load_openvla(copy, dtype=torch.float32).config
    assert cfg.unnorm_key == "libero_tiny" and cfg.action_q99 == FRACTAL["q99"]


# -- action tokens ---------------------------------------------------------------------------
def test_action_decoding_follows_openvla_formula():
    tok = OpenVlaActionTokenizer(BRIDGE["q01"], BRIDGE["q99"], BRIDGE["mask"], vocab_size=BASE_VOCAB)
    assert tok.first_id == FIRST_ACTION_ID
    ids = np.array([319, 64, 192, 65, 250, 100, 64])

    def centre(i: int) -> float:  # centre i of the 255 intervals between 256 edges on [-1, 1]
        return -1.0 + (2 * i + 1) / 255.0

    # bin = vocab_size - id - 1, clipped to the 255 centres: ids 64 and 65 share the last centre
    normalized = [centre(0), centre(254), centre(127), centre(254), centre(69), centre(219), centre(254)]
    assert normalized[2] == pytest.approx(0.0)
    q01, q99 = np.array(BRIDGE["q01"]), np.array(BRIDGE["q99"])
    expected = 0.5 * (np.array(normalized) + 1.0) * (q99 - q01) + q01
    expected[6] = normalized[6]  # masked out (gripper): the normalized value passes through
    np.testing.assert_allclose(tok.decode(ids), expected, rtol=1e-6, atol=1e-7)
    assert tok.decode(np.array([319] * 7))[0] == pytest.approx(-0.03 + 0.5 * (1 / 255.0) * 0.06)
    with pytest.raises(ValueError, match="outside the action range"):
        tok.decode(np.array([63, 64, 64, 64, 64, 64, 64]))
    with pytest.raises(ValueError, match="outside the action range"):
        tok.decode(np.array([320] * 7))


def test_action_encoding_round_trip_and_id_distance():
    tok = OpenVlaActionTokenizer(BRIDGE["q01"], BRIDGE["q99"], BRIDGE["mask"], vocab_size=BASE_VOCAB)
    rng = np.random.default_rng(0)
    q01, q99 = np.array(BRIDGE["q01"]), np.array(BRIDGE["q99"])
    a = rng.uniform(q01, q99, size=(50, 7))
    a[:, 6] = rng.uniform(-1, 1, size=50)
    ids = tok.encode(a)
    assert ids.min() >= FIRST_ACTION_ID and ids.max() < BASE_VOCAB
    assert np.all(np.abs(tok.decode(ids) - a) <= tok.bin_width + 1e-9)
    # a larger action gets a smaller id; id distance equals bin distance
    lo, hi = tok.encode(np.zeros(7)), tok.encode(np.full(7, 0.01))
    assert np.all(hi[:3] <= lo[:3]) and np.array_equal(lo - hi, tok.id_to_bin(hi) - tok.id_to_bin(lo))


# -- the decoding interface ------------------------------------------------------------------
@torch.no_grad()
def test_prefill_extend_and_rollback_equal_a_full_forward(model):
    actions = torch.tensor([[300, 70, 128, 199, 64, 250, 111]])
    full = model.prefill({"corner": image()}, None, torch.cat([prompt(), actions], dim=1))
    n_prefix = 1 + 16 + (prompt().shape[1] - 1)  # <bos>, 4 x 4 patches, rest of the prompt
    assert full.length == n_prefix + 7 and full.logits.shape == (1, 1, BASE_VOCAB)  # the last position's
    head = model.language_model.lm_head.weight[:BASE_VOCAB]
    expected = (full.hidden @ head.T)[:, n_prefix - 1 :]  # predicting each action token (and one after)
    torch.testing.assert_close(expected[:, -1:], full.logits)

    step = model.prefill({"corner": image()}, None, prompt())
    assert step.length == n_prefix and step.logits.shape == (1, 1, BASE_VOCAB)
    got = [step.logits[:, -1]]
    for i in range(3):
        step = model.extend(step.cache, actions[:, i : i + 1])
        got.append(step.logits[:, -1])
    chunk = model.extend(step.cache, actions[:, 3:])  # k tokens in one pass
    torch.testing.assert_close(
        torch.cat([torch.stack(got, 1), chunk.logits], 1), expected, rtol=1e-4, atol=1e-4
    )

    model.rollback(chunk.cache, n_prefix + 2)  # drop actions 2.. and redo them
    redo = model.extend(chunk.cache, actions[:, 2:])
    assert redo.length == n_prefix + 7
    torch.testing.assert_close(redo.logits, expected[:, 3:], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_language_model_matches_plain_transformers_llama(checkpoint, model):
    text = {
        k: v
        for k, v in json.loads((checkpoint / "config.json").read_text())["text_config"].items()
        if k not in ("model_type", "torch_dtype")
    }
    plain = LlamaForCausalLM(LlamaConfig(**text, rms_norm_eps=1e-6)).eval()
    weights = load_file(str(checkpoint / "model-00003-of-00003.safetensors"))
    plain.load_state_dict({k.removeprefix("language_model."): v.float() for k, v in weights.items()})
    ids = torch.tensor([[1, 5, 9, 70, 200, 319, 64, 3]])
    ours = model.extend(DynamicCache(), ids)
    torch.testing.assert_close(ours.logits, plain(ids).logits[..., :BASE_VOCAB], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_vision_features_come_from_the_second_to_last_block(checkpoint):
    m = load_openvla(checkpoint, unnorm_key="bridge_tiny", dtype=torch.float32)  # own copy: mutated below
    x = image(3, batch=2)
    base = m.image_tokens(x)
    assert base.shape == (2, 16, TEXT["hidden_size"])
    for net in (m.vision_backbone.featurizer, m.vision_backbone.fused_featurizer):
        net.blocks[-1].mlp.fc2.weight.mul_(5.0)  # the last block is never read
        net.norm.weight.mul_(5.0)
    torch.testing.assert_close(m.image_tokens(x), base)
    m.vision_backbone.fused_featurizer.blocks[-2].mlp.fc2.weight.mul_(5.0)
    assert not torch.allclose(m.image_tokens(x), base)
    # per-backbone normalization: ImageNet statistics for DINOv2, 0.5 / 0.5 for SigLIP
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    manual = m.projector(
        torch.cat(
            [
                m.vision_backbone.featurizer((x - mean) / std),
                m.vision_backbone.fused_featurizer((x - 0.5) / 0.5),
            ],
            dim=2,
        )
    )
    torch.testing.assert_close(m.image_tokens(x), manual)
    with pytest.raises(ValueError, match=r"\(B, 3, 28, 28\)"):
        m.image_tokens(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="camera 'corner'"):
        m.prefill({"wrist": x[:1]}, None, prompt())


# -- runtime ---------------------------------------------------------------------------------
def test_policy_from_checkpoint_dispatches_and_act_returns_a_7d_action(checkpoint):
    policy = policy_from_checkpoint(checkpoint, unnorm_key="bridge_tiny", dtype="float32", device="cpu")
    assert isinstance(policy, OpenVlaPolicy)
    assert (policy.action_dim, policy.cameras) == (7, ["corner"])
    ids = policy.prompt_ids("Pick up the RED cup")
    assert ids[0].tolist() == [1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 8, 14, 15, 3]  # <bos> ... "▁" appended
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = policy.act(PolicyInput({"corner": frame}, np.zeros(9), "pick up the red cup"))
    assert out.action.shape == (7,) and out.action.dtype == np.float32 and np.all(np.isfinite(out.action))
    assert np.all((out.token_ids >= FIRST_ACTION_ID) & (out.token_ids < BASE_VOCAB))
    np.testing.assert_array_equal(out.action, policy.actions.decode(out.token_ids))
    assert out.target_passes == 6 and out.decoding == "ar" and out.fallback is None
    again = policy.act(PolicyInput({"corner": frame}, np.zeros(3), "pick up the red cup"), decoding="nope")
    np.testing.assert_array_equal(again.token_ids, out.token_ids)  # deterministic; state is ignored
    assert "decoding 'nope' unavailable" in again.fallback
    with pytest.raises(InputError, match="corner"):
        policy.act(PolicyInput({"wrist": frame}, np.zeros(9), "pick up the red cup"))
    with pytest.raises(InputError, match="uint8"):
        policy.act(PolicyInput({"corner": frame.astype(np.float32)}, np.zeros(9), "pick up the red cup"))
    with pytest.raises(TypeError, match="OpenVLA checkpoints only"):
        policy_from_checkpoint(None, device="cpu")  # the built-in model takes no OpenVLA options
    with pytest.raises(CheckpointError, match="policy_from_checkpoint"):
        Policy.load(checkpoint)  # the base class loads its own format only, and says where OpenVLA's is


def test_act_emits_only_action_ids_even_when_other_ids_score_higher(checkpoint):
    policy = load_policy(checkpoint, unnorm_key="fractal_tiny", dtype="float32", device="cpu")
    frame = np.full((28, 28, 3), 127, dtype=np.uint8)
    inp = PolicyInput({"corner": frame}, np.zeros(9), "open the drawer")
    with torch.no_grad():
        step = policy.model.prefill(*policy.preprocess(inp))
        h = step.hidden[0, -1]
        head = policy.model.language_model.lm_head.weight
        head[5] = head[BASE_VOCAB + 10] = 20.0 * h / h.norm()  # a text id and a padding id dominate
        raw = policy.model.language_model.lm_head(policy.model.prefill(*policy.preprocess(inp)).hidden[0, -1])
    assert int(raw.argmax()) in (5, BASE_VOCAB + 10)
    out = policy.act(inp)
    assert np.all((out.token_ids >= FIRST_ACTION_ID) & (out.token_ids < BASE_VOCAB))
    assert np.all(np.isfinite(out.action))


def test_bfloat16_policy_acts(checkpoint):
    policy = load_policy(checkpoint, unnorm_key="bridge_tiny", dtype=torch.bfloat16, device="cpu")
    frame = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = policy.act(PolicyInput({"corner": frame}, np.zeros(9), "pick up the red cup"))
    assert out.action.shape == (7,) and np.all(np.isfinite(out.action))


def test_center_crop_samples_tf_crop_and_resize_grid():
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (20, 1))[..., None].repeat(3, axis=2)  # 20 x 20
    assert np.array_equal(center_crop(ramp, 1.0, 20), ramp)
    # the central half (scale 0.25 of the area) spans x = 4.75 .. 14.25 pixels: values 47.5 .. 142.5
    out = center_crop(ramp, 0.25, 5)[0, :, 0]
    expected = np.floor(np.clip(np.linspace(47.5, 142.5, 5) / 255.0 * 255.5, 0, 255))
    np.testing.assert_array_equal(out, expected)


# -- bad checkpoints -------------------------------------------------------------------------
def test_missing_shard_names_the_file(copy):
    (copy / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-00002-of-00003.safetensors.*missing"):
        load_openvla(copy, unnorm_key="bridge_tiny")


def test_wrong_shape_names_the_tensor(copy):
    weights = random_weights()
    weights["projector.fc3.weight"] = weights["projector.fc3.weight"][:, :32].contiguous()
    write_weights(copy, weights)
    with pytest.raises(CheckpointError, match=r"projector.fc3.weight has shape \(64, 32\).*\(64, 64\)"):
        load_openvla(copy, unnorm_key="bridge_tiny")


def test_missing_and_unexpected_tensors_are_refused(copy):
    weights = random_weights()
    del weights["vision_backbone.fused_featurizer.attn_pool.latent"]
    weights["vision_backbone.featurizer.head.weight"] = torch.zeros(2, 2)
    write_weights(copy, weights)
    with pytest.raises(CheckpointError, match=r"1 missing.*attn_pool.latent.*1 unexpected.*head.weight"):
        load_openvla(copy, unnorm_key="bridge_tiny")


def test_timm_gamma_name_is_accepted_for_layer_scale(copy):
    weights = random_weights()
    key = "vision_backbone.featurizer.blocks.1.ls2.scale_factor"
    weights[key.replace("scale_factor", "gamma")] = weights.pop(key)
    write_weights(copy, weights)
    m = load_openvla(copy, unnorm_key="bridge_tiny", dtype=torch.float32)
    assert torch.equal(
        m.vision_backbone.featurizer.blocks[1].ls2.scale_factor,
        weights[key.replace("scale_factor", "gamma")].float(),
    )


def test_pickle_only_weights_refused_unless_allowed(copy):
    weights = random_weights()
    for f in copy.glob("model*"):
        f.unlink()
    torch.save(weights, copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin is a pickle-based file.*allow_pickle=True"):
        load_openvla(copy, unnorm_key="bridge_tiny")
    m = load_openvla(copy, unnorm_key="bridge_tiny", dtype=torch.float32, allow_pickle=True)
    assert torch.equal(m.projector.fc1.weight, weights["projector.fc1.weight"].float())


def test_config_problems_are_named(copy):
    write_config(copy, image_sizes=None)
    with pytest.raises(CheckpointError, match=r"lacks \['image_sizes'\]"):
        load_openvla(copy, unnorm_key="bridge_tiny")
    write_config(copy, timm_model_ids=["vit_base_patch16_clip_224.openai", "vit_so400m_patch14_siglip_224"])
    with pytest.raises(CheckpointError, match="vit_base_patch16_clip_224.openai' is not supported"):
        load_openvla(copy, unnorm_key="bridge_tiny")
    write_config(copy, image_resize_strategy="letterbox")
    with pytest.raises(CheckpointError, match="'letterbox' is not supported"):
        load_openvla(copy, unnorm_key="bridge_tiny")
    write_config(copy, norm_stats={"bridge_tiny": {"proprio": {}}})
    with pytest.raises(CheckpointError, match="lacks action q01/q99"):
        load_openvla(copy)
    write_config(copy, model_type="prismatic")
    assert not is_openvla_checkpoint(copy)
    with pytest.raises(CheckpointError, match="model_type is 'prismatic'"):
        load_openvla(copy)


def test_missing_tokenizer_is_a_clear_error(copy):
    (copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer.json or tokenizer.model"):
        load_policy(copy, unnorm_key="bridge_tiny", dtype="float32", device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_openvla(copy / "nowhere")


def test_a_config_declaring_far_more_than_the_shards_hold_is_refused_before_allocation(copy):
    """config.json sizes are checked against the safetensors headers before the model gets storage."""
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 4_000_000
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="declares .* parameters, the weights hold"):
        load_openvla(copy, unnorm_key="bridge_tiny")
