"""The package's acceleration on OpenVLA-format checkpoints: the precision ladder, draft heads, node options.

Every test runs on the tiny random checkpoint of the tests' generator (evaluation/openvla_synthetic: the
exact Hugging Face layout, shrunk). Its decoder's MLP is 96 wide, so the ladder runs at group size 32
(the graph's default).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_replay import ALL as ALL_METHODS
from torch import nn

from vla_accel_ros.evaluation.openvla_synthetic import write_checkpoint
from vla_accel_ros.policy.openvla import load_policy
from vla_accel_ros.policy.runtime import PolicyInput
from vla_accel_ros.quant import DEFAULT_MODES, Int4Linear, quantize_policy
from vla_accel_ros.quant.memory import module_bytes
from vla_accel_ros.quant.vocab import ActionHead, Int4Embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GROUP = 32
MODES = [m.name for m in DEFAULT_MODES]
INSTRUCTION = "pick up red cup"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("openvla-accel"))


def observations(n: int = 10, seed: int = 0) -> list[PolicyInput]:
    rng = np.random.default_rng(seed)
    return [
        PolicyInput({"corner": rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)}, np.zeros(7), INSTRUCTION)
        for _ in range(n)
    ]


def fp32_policy(checkpoint: Path):
    return load_policy(checkpoint, unnorm_key="bridge_tiny", dtype="float32", device="cpu")


def laddered(checkpoint: Path, vocab: bool = False):
    policy = fp32_policy(checkpoint)
    quantize_policy(policy, group=GROUP, vocab=vocab)
    return policy


@pytest.fixture(scope="module")
def reference(checkpoint) -> list[np.ndarray]:
    policy = fp32_policy(checkpoint)
    return [policy.act(o).token_ids for o in observations()]


# -- 1. the precision ladder -------------------------------------------------------------------------
@pytest.mark.parametrize("vocab", [False, True])
def test_ladder_serves_every_static_mode_with_valid_actions(checkpoint, reference, vocab):
    policy = laddered(checkpoint, vocab)
    assert policy.precisions == MODES
    first, last = policy.model.action_first_id, policy.model.config.vocab_size
    obs = observations()
    agreement = {}
    for mode in MODES:
        results = [policy.act(o, precision=mode) for o in obs]
        for r in results:
            assert r.precision == mode and r.fallback is None
            assert r.action.shape == (7,) and np.isfinite(r.action).all()
            assert ((r.token_ids >= first) & (r.token_ids < last)).all()
        agreement[mode] = np.mean(
            [np.mean(r.token_ids == ref) for r, ref in zip(results, reference, strict=True)]
        )
        if mode == "w4a16":  # the first token comes from the prefill alone: no earlier flip cascades
            assert (
                np.mean([r.token_ids[0] == ref[0] for r, ref in zip(results, reference, strict=True)]) >= 0.8
            )
    # Random weights make the bin logits nearly flat, so one flipped token changes every later one;
    # still, most w4a16 tokens are the fp32 ones (0.73 measured, with either copy).
    assert agreement["w4a16"] >= 0.6, agreement


def test_w4a16_prefill_logits_track_fp32(checkpoint):
    full, quant = fp32_policy(checkpoint), laddered(checkpoint)
    inp = observations(1)[0]
    first, last = full.model.action_first_id, full.model.config.vocab_size
    with torch.inference_mode():
        a = full.model.prefill(*full.preprocess(inp)).logits[0, -1, first:last]
        with quant.ladder.step("w4a16"):
            b = quant.model.prefill(*quant.preprocess(inp)).logits[0, -1, first:last]
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95


def test_ladder_quantizes_the_llama_only_and_holds_less_than_the_fp32_decoder(checkpoint):
    full = fp32_policy(checkpoint)
    fp32_decoder = module_bytes(full.model.llama) + module_bytes(full.model.lm_head)
    vision = {k: v.clone() for k, v in full.model.vision_backbone.state_dict().items()}
    for vocab in (False, True):
        policy = laddered(checkpoint, vocab)
        model, ladder = policy.model, policy.ladder
        # q/k/v/o and gate/up/down of every layer: 7 per layer, in the one stored copy
        linears = [n for n in ladder.layers if not n.startswith(("embed", "lm_head"))]
        assert len(linears) == 7 * model.config.num_layers
        assert all(isinstance(ladder.layers[n], Int4Linear) for n in linears)
        # vision towers and projector stay at the checkpoint's precision, untouched
        assert not any(isinstance(m, Int4Linear) for m in model.vision_backbone.modules())
        assert all(isinstance(m, nn.Linear) for m in (model.projector.fc1, model.projector.fc2))
        for k, v in model.vision_backbone.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, vision[k]), k
        assert isinstance(model.llama.embed_tokens, Int4Embedding) == vocab
        assert isinstance(model.lm_head, ActionHead) == vocab
        held = module_bytes(model.llama) + module_bytes(model.lm_head)
        assert ladder.held_bytes() < ladder.bf16_bytes / 3
        assert held < fp32_decoder, (vocab, held, fp32_decoder)
        if vocab:  # table, layers and the head cut to its 256 bins: a fraction of the fp32 decoder
            assert held < fp32_decoder / 4


def test_switching_modes_between_steps_equals_each_static_mode(checkpoint):
    """DyQ's switch is the ladder's pointer flip: interleaved modes give each mode's own tokens."""
    policy = laddered(checkpoint)
    obs = observations(3)
    static = {m: [policy.act(o, precision=m).token_ids for o in obs] for m in MODES}
    order = ["w4a16", "w4a4-emu", "w4a8-emu", "w4a16", "w4a8-emu", "w4a4-emu"]
    for i, mode in enumerate(order):
        result = policy.act(obs[i % 3], precision=mode)
        assert result.precision == mode
        np.testing.assert_array_equal(result.token_ids, static[mode][i % 3])
    # a switch requested from another thread lands between two steps
    done = threading.Event()
    threading.Thread(target=lambda: (policy.ladder.set("w4a4-emu"), done.set())).start()
    assert done.wait(10) and policy.ladder.mode == "w4a4-emu"
    unknown = policy.act(obs[0], precision="w2a2")
    assert unknown.precision == "w4a16" and "w2a2" in unknown.fallback


def test_bfloat16_checkpoint_serves_the_ladder(checkpoint):
    policy = load_policy(checkpoint, unnorm_key="bridge_tiny", dtype="bfloat16", device="cpu")
    quantize_policy(policy, group=GROUP, vocab=True)
    assert policy.model.vision_backbone.featurizer.patch_embed.proj.weight.dtype == torch.bfloat16
    for mode in MODES:
        result = policy.act(observations(1)[0], precision=mode)
        assert result.precision == mode and np.isfinite(result.action).all()


# -- 2. a draft head trained on a bag, and the speculative decoders ----------------------------------
def write_bag(path: Path, episodes: int = 3, steps: int = 6, seed: int = 0) -> Path:
    """A bag as a robot records it, written by the package's own bag writer (one camera, 7-D actions)."""
    from conftest import SAWYER_JOINTS

    from vla_accel_ros.data.bag_io import write_episodes
    from vla_accel_ros.data.episodes import Episode, sim_stamps

    rng = np.random.default_rng(seed)
    write_episodes(
        path,
        [
            Episode(
                task="pick",
                seed=i,
                instruction=INSTRUCTION,
                success=True,
                images={"corner": rng.integers(0, 256, (steps, 32, 32, 3), dtype=np.uint8)},
                joint_positions=rng.normal(size=(steps, 9)).astype(np.float32),
                actions=rng.uniform(-0.02, 0.02, (steps, 7)).astype(np.float32),
                stamps_ns=sim_stamps(i, steps, 80.0),
                joint_names=list(SAWYER_JOINTS),
                joint_velocities=np.zeros((steps, 9), np.float32),
            )
            for i in range(episodes)
        ],
    )
    return path


TRAIN_FLAGS = ["--steps", "6", "--batch-size", "8", "--eval-frames", "4", "--val-episodes", "1"]
TARGET_FLAGS = ["--unnorm-key", "bridge_tiny", "--dtype", "float32", "--device", "cpu", "--no-progress"]
SMALL_DRAFT = ["--draft", '{"intermediate_size": 64}']


@pytest.fixture(scope="module")
def drafted(checkpoint, tmp_path_factory) -> Path:
    """A copy of the checkpoint with a draft trained by `vla-accel train-draft` on a bag (a few steps)."""
    import shutil

    from vla_accel_ros.cli import main

    root = tmp_path_factory.mktemp("openvla-draft")
    directory = root / "ckpt"
    shutil.copytree(checkpoint, directory)
    bag = write_bag(root / "bag")
    args = ["train-draft", "--checkpoint", str(directory), "--data", str(bag), "--wrist-topic", "none"]
    assert main(args + TRAIN_FLAGS + TARGET_FLAGS + SMALL_DRAFT) == 0
    return directory


def test_train_draft_writes_the_draft_with_its_held_out_acceptance(drafted):
    import json

    info = json.loads((drafted / "draft" / "training.json").read_text())
    assert info["steps"] == 6 and info["training_frames"] == 12 and info["held_out_frames"] == 6
    acc = info["held_out_acceptance"]
    assert acc["frames"] == 4 and 0.0 <= acc["strict"]["acceptance_rate"] <= 1.0
    assert info["config"]["unnorm_key"] == "bridge_tiny"
    assert (drafted / "draft" / "model.safetensors").is_file()
    assert not (drafted / "draft" / "resume.pt").exists()  # finished runs leave nothing to resume


def test_strict_speculative_decoding_equals_greedy_token_for_token(drafted):
    policy = fp32_policy(drafted)  # load_policy finds <dir>/draft
    assert policy.draft is not None and policy.draft_error is None
    assert {"spec", "specvla", "kerv"} <= set(policy.decoders)
    drafted_tokens = 0
    for obs in observations(12, seed=3):
        ar, spec = policy.act(obs), policy.act(obs, decoding="spec")
        assert spec.decoding == "spec" and spec.fallback is None
        np.testing.assert_array_equal(spec.token_ids, ar.token_ids)
        drafted_tokens += spec.draft_tokens
        assert spec.target_passes >= 1
    assert drafted_tokens > 0  # the draft really ran: no silent autoregressive path


@pytest.mark.parametrize("vocab", [False, True])
def test_specvla_kerv_and_kerv_dyq_run_without_fallback(drafted, vocab):
    full = fp32_policy(drafted)
    obs = observations(3, seed=5)
    for decoding in ("specvla", "kerv"):
        for o in obs:
            r = full.act(o, decoding=decoding, threshold=9.0, kalman_action=np.zeros(7))
            assert r.decoding == decoding and r.fallback is None and r.draft_tokens > 0
            assert np.isfinite(r.action).all()
    ladder = fp32_policy(drafted)
    quantize_policy(ladder, group=GROUP, vocab=vocab)  # the draft folds the dense table/head first
    for i, mode in enumerate(MODES * 2):  # kerv+dyq: KERV while the precision switches between steps
        r = ladder.act(obs[i % 3], precision=mode, decoding="kerv", threshold=9.0)
        assert (r.precision, r.decoding, r.fallback) == (mode, "kerv", None)
        assert r.draft_tokens > 0 and np.isfinite(r.action).all()


def test_train_draft_resumes_to_the_uninterrupted_result(checkpoint, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import vla_accel_ros.training.train_draft as trainer
    from vla_accel_ros.data.bag_io import TopicMap

    bag = write_bag(tmp_path / "bag")

    def config(out: Path, resume: bool = False) -> trainer.DraftTrainConfig:
        return trainer.DraftTrainConfig(
            checkpoint=checkpoint,
            data=bag,
            out=out,
            steps=6,
            batch_size=4,
            eval_frames=2,
            val_episodes_per_task=1,
            progress=False,
            unnorm_key="bridge_tiny",
            dtype="float32",
            device="cpu",
            topic_map=TopicMap(wrist_camera=None),
            draft={"intermediate_size": 64},
            resume=resume,
            save_every=2,
        )

    trainer.train_draft(config(tmp_path / "whole"))
    calls = {"n": 0}
    real_loss = trainer.draft_loss

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # the user stops the run during step 5
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "draft_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_draft(config(tmp_path / "cut"))
    assert (tmp_path / "cut" / "resume.pt").is_file() and (tmp_path / "cut" / "traces.pt").is_file()
    monkeypatch.setattr(trainer, "draft_loss", real_loss)
    summary = trainer.train_draft(config(tmp_path / "cut", resume=True))
    assert summary["steps"] == 6
    whole, resumed = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("whole", "cut"))
    assert whole.keys() == resumed.keys()
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], rtol=0, atol=0)


# -- 3. node parameters: unnorm_key, dtype, device ----------------------------------------------------
def node_params(checkpoint: Path, **values):
    from vla_accel_ros.params import InferenceParams

    base = {"model_path": str(checkpoint), "unnorm_key": "bridge_tiny", "num_threads": 1}
    return InferenceParams.from_mapping({**base, **values})


@pytest.mark.parametrize("ladder", ["int4", "int4-whole"])
def test_inference_node_loader_serves_the_ladder_and_draft_of_an_openvla_directory(drafted, ladder):
    from vla_accel_ros.ros.inference_node import load_policy as node_load

    values = {"dtype": "float32", "precision_ladder": ladder, "quant_group_size": GROUP, "device": "cpu"}
    policy, make_input = node_load(node_params(drafted, **values))
    assert policy.precisions == MODES and policy.draft is not None
    assert policy.config.unnorm_key == "bridge_tiny" and policy.compute_dtype == torch.float32
    inp = make_input(images=observations(1)[0].images, joint_positions=np.zeros(7), instruction=INSTRUCTION)
    for mode in MODES:
        for decoding in ("ar", "spec", "specvla", "kerv"):
            r = policy.act(inp, precision=mode, decoding=decoding, threshold=9.0)
            assert (r.precision, r.decoding, r.fallback) == (mode, decoding, None)
    default = node_load(node_params(drafted))[0]  # dtype 'auto': OpenVLA's bf16
    assert default.compute_dtype == torch.bfloat16 and default.precisions == ["fp32"]


def test_parameter_mismatches_stop_the_load_naming_them(checkpoint):
    from vla_accel_ros.policy.builder import PolicyBuildError
    from vla_accel_ros.policy.checkpoint import CheckpointError
    from vla_accel_ros.ros.inference_node import load_policy as node_load

    with pytest.raises(CheckpointError, match=r"unnorm_key 'nope'.*bridge_tiny.*fractal_tiny"):
        node_load(node_params(checkpoint, unnorm_key="nope"))
    with pytest.raises(CheckpointError, match="pass unnorm_key, one of"):
        node_load(node_params(checkpoint, unnorm_key=""))
    builtin = {"model_path": "builtin", "unnorm_key": ""}
    with pytest.raises(PolicyBuildError, match="unnorm_key 'bridge_tiny' applies to OpenVLA"):
        node_load(node_params(checkpoint, model_path="builtin"))
    with pytest.raises(PolicyBuildError, match="dtype 'bfloat16' applies to OpenVLA.*full_format"):
        node_load(node_params(checkpoint, dtype="bfloat16", **builtin))
    if not torch.cuda.is_available():
        for model in (builtin, {}):
            with pytest.raises(PolicyBuildError, match="device 'cuda': CUDA is not available"):
                node_load(node_params(checkpoint, device="cuda", **model))


def test_builtin_model_loads_on_an_explicit_cpu_device_with_its_ladder():
    from vla_accel_ros.params import InferenceParams
    from vla_accel_ros.ros.inference_node import load_policy as node_load

    values = {"device": "cpu", "precision_ladder": "int4", "quant_group_size": GROUP, "num_threads": 1}
    policy, _ = node_load(InferenceParams.from_mapping(values))
    assert policy.precisions == MODES and policy.device.type == "cpu"


def test_inference_node_with_an_unknown_unnorm_key_stays_up_and_sends_nothing(checkpoint, monkeypatch):
    from rclpy.parameter import Parameter
    from ros_fixtures import ros_harness
    from vla_accel_ros.msg import VlaAction

    from vla_accel_ros.ros.diagnostics import ERROR
    from vla_accel_ros.ros.inference_node import InferenceNode
    from vla_accel_ros.ros.qos import vla_qos

    overrides = {"model_path": str(checkpoint), "unnorm_key": "nope", "num_threads": 1}
    with ros_harness(monkeypatch) as ros:
        actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
        node = InferenceNode(
            context=ros.context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
        )
        ros.add(node)
        assert ros.spin_until(lambda: node._load_error is not None, 60.0)
        assert "unnorm_key 'nope'" in node._load_error and "bridge_tiny" in node._load_error
        assert node._health._state == (ERROR, node._load_error)  # what /diagnostics reports
        assert node._policy is None and not actions


# -- CUDA (skipped without a GPU: the CPU path above is what CI proves) -------------------------------
NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is False here)"


def test_stage_timer_synchronizes_only_a_cuda_device():
    from vla_accel_ros.decoding.common import StageTimer

    calls = []
    timer = StageTimer(sync=lambda: calls.append(1))
    with timer.stage("prefill"):
        pass
    assert len(calls) == 2 and timer.ms["prefill"] >= 0.0
    assert StageTimer.for_device("cpu")._sync is None
    assert StageTimer.for_device("cuda:0")._sync is not None  # built without touching the GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cuda_int4_kernel_matches_the_dequantized_weights():
    from vla_accel_ros.quant.int4 import int4_matmul, pack, quantize_int4

    w = torch.randn(256, 512, device="cuda")
    q = quantize_int4(w, 32)
    x = torch.randn(5, 512, device="cuda").bfloat16()
    y = int4_matmul(x, *pack(q), 32).float()
    torch.testing.assert_close(y, x.float() @ q.dequantize().T, rtol=2e-2, atol=2e-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_openvla_on_cuda_serves_the_ladder_and_strict_speculation(drafted):
    from vla_accel_ros.ros.inference_node import load_policy as node_load

    full, _ = node_load(node_params(drafted, dtype="float32", device="cuda"))
    assert full.device.type == "cuda" and full.draft is not None
    for obs in observations(4):
        ar, spec = full.act(obs), full.act(obs, decoding="spec")
        np.testing.assert_array_equal(spec.token_ids, ar.token_ids)
        assert spec.fallback is None and spec.draft_tokens > 0
    values = {
        "dtype": "float32",
        "device": "cuda",
        "precision_ladder": "int4-whole",
        "quant_group_size": GROUP,
    }
    policy, _ = node_load(node_params(drafted, **values))
    for mode in MODES:
        r = policy.act(observations(1)[0], precision=mode, decoding="kerv", threshold=9.0)
        assert (r.precision, r.fallback) == (mode, None) and np.isfinite(r.action).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_builtin_model_on_cuda_serves_the_ladder():
    from vla_accel_ros.params import InferenceParams
    from vla_accel_ros.ros.inference_node import load_policy as node_load

    values = {"device": "cuda", "precision_ladder": "int4", "quant_group_size": GROUP, "num_threads": 1}
    policy, make_input = node_load(InferenceParams.from_mapping(values))
    assert policy.device.type == "cuda"
    inp = make_input(
        images={c: np.zeros((64, 64, 3), np.uint8) for c in policy.cameras},
        joint_positions=np.zeros(policy.config.state_dim, np.float32),
        instruction="reach the goal",
    )
    for mode in MODES:
        r = policy.act(inp, precision=mode, decoding="kerv", threshold=9.0)
        assert (r.precision, r.fallback) == (mode, None) and np.isfinite(r.action).all()


# -- 4. the mid-size checkpoint: OpenVLA-7B's layer shapes, a few decoder layers ---------------------
def test_openvla_7b_layout_has_the_real_layer_shapes():
    from vla_accel_ros.evaluation.openvla_synthetic import openvla_7b_layout, openvla_shapes

    layout = openvla_7b_layout(decoder_layers=2)
    shapes = openvla_shapes(layout)
    assert layout.timm_model_args is None  # the real backbones: config.json needs no shrinking key
    assert layout.padded_vocab == 32064 and layout.first_action_id == 31744
    assert shapes["vision_backbone.featurizer.pos_embed"] == (1, 256, 1024)  # 224 px / 14 = 16 x 16
    assert shapes["vision_backbone.fused_featurizer.pos_embed"] == (1, 256, 1152)
    assert shapes["vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight"] == (4304, 1152)
    assert shapes["vision_backbone.featurizer.blocks.23.mlp.fc1.weight"] == (4096, 1024)
    assert shapes["projector.fc1.weight"] == (8704, 2176) and shapes["projector.fc3.weight"] == (4096, 4096)
    assert shapes["language_model.model.layers.1.mlp.gate_proj.weight"] == (11008, 4096)
    assert "language_model.model.layers.2.mlp.gate_proj.weight" not in shapes
    count = {
        part: sum(math.prod(s) for n, s in shapes.items() if n.startswith(prefix))
        for part, prefix in [
            ("dino", "vision_backbone.featurizer."),
            ("siglip", "vision_backbone.fused_featurizer."),
            ("layer", "language_model.model.layers.0."),
        ]
    }
    # DINOv2-L/14 ~304 M, SigLIP So400m ~428 M (with its pooling head), one Llama-2-7B layer ~202 M
    assert 300e6 < count["dino"] < 310e6 and 420e6 < count["siglip"] < 435e6
    assert count["layer"] == 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096


def test_a_small_variant_of_the_mid_size_layout_loads_and_acts(tmp_path):
    """The benchmark's generator path end to end (real ViT widths, depth 2; a narrow decoder)."""
    from vla_accel_ros.evaluation.openvla_synthetic import DINOV2_L, SIGLIP_SO400M, openvla_7b_layout

    layout = openvla_7b_layout(
        decoder_layers=1,
        image=28,
        base_vocab=320,
        dino=dict(DINOV2_L, depth=2),
        siglip=dict(SIGLIP_SO400M, depth=2),
        text=dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=256,
        ),
    )
    directory = write_checkpoint(tmp_path / "mid", layout)
    policy = load_policy(directory, unnorm_key="bridge_tiny", dtype="bfloat16", device="cpu")
    assert policy.model.vision_backbone.featurizer.patch_embed.proj.weight.shape == (1024, 3, 14, 14)
    quantize_policy(policy, group=GROUP, vocab=True)
    for mode in ("w4a16", "w4a4-emu"):
        result = policy.act(observations(1)[0], precision=mode)
        assert result.precision == mode and np.isfinite(result.action).all()


def test_replay_runs_every_method_on_an_openvla_directory(drafted, tmp_path):
    """ar, the static modes, dyq, spec, specvla, kerv, kerv+dyq through `vla-accel replay`'s own path."""
    import shutil

    from vla_accel_ros.data.bag_io import TopicMap
    from vla_accel_ros.evaluation.replay import run_replay
    from vla_accel_ros.params.files import config_dir

    config = tmp_path / "config"
    shutil.copytree(config_dir(), config)
    (config / "calibration.yaml").unlink()  # the shipped Kalman calibration is the 4-D built-in's
    yaml = (config / "vla_accel.yaml").read_text()
    for old, new in (('unnorm_key: ""', 'unnorm_key: "bridge_tiny"'), ('dtype: "auto"', 'dtype: "float32"')):
        assert old in yaml
        yaml = yaml.replace(old, new)
    (config / "vla_accel.yaml").write_text(yaml)
    methods = ["ar", "static", "dyq", "spec", "specvla", "kerv", "kerv+dyq"]
    report = run_replay(
        write_bag(tmp_path / "bag", episodes=1, steps=4, seed=7),
        methods,
        tmp_path / "out",
        checkpoint=str(drafted),
        config=config,
        topic_map=TopicMap(wrist_camera=None),
        plots=False,
        progress=False,
        warmup=0,
    )
    ran = report["methods"]
    assert set(ran) == set(ALL_METHODS)
    for name, m in ran.items():
        assert m["available"], (name, m.get("reason"))
        assert m["fallback"]["steps"] == 0, (name, m["fallback"])
