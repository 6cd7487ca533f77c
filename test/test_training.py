"""Training from bags (deterministic, resumable) and the closed-loop evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vla_accel_ros.data.bag_io import write_episodes
from vla_accel_ros.data.episodes import Episode, sim_stamps
from vla_accel_ros.evaluation.closed_loop import markdown_table, summarize
from vla_accel_ros.evaluation.stats import percentiles, wilson_interval
from vla_accel_ros.policy.checkpoint import load_checkpoint
from vla_accel_ros.training.train import TrainConfig, _copy_vision, _fresh, train

TINY = dict(
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=2,
    intermediate_size=64,
    vision_channels=[8, 8, 8, 8],
    image_size=32,
)


def synthetic_episode(i: int, task: str, instruction: str, steps: int = 12) -> Episode:
    rng = np.random.default_rng(i)
    # the action is a visible function of the image brightness: a learnable toy problem
    level = rng.uniform(0, 1, steps)
    images = {
        c: np.repeat((level * 255).astype(np.uint8)[:, None, None, None], 32 * 32 * 3, axis=1).reshape(
            steps, 32, 32, 3
        )
        for c in ("corner", "wrist")
    }
    actions = np.stack([level * 2 - 1, -level, np.zeros(steps), np.sign(level - 0.5)], axis=1)
    return Episode(
        task,
        i,
        instruction,
        True,
        images,
        rng.normal(size=(steps, 9)).astype(np.float32),
        actions.astype(np.float32),
        sim_stamps(i, steps, 10.0),
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos")
    write_episodes(
        root / "reach-v3", [synthetic_episode(i, "reach-v3", "reach the red goal") for i in range(4)]
    )
    write_episodes(
        root / "drawer-open-v3",
        [synthetic_episode(10 + i, "drawer-open-v3", "open the drawer") for i in range(4)],
    )
    return root


def train_args(demo_dir, out, **changes) -> dict:
    """The TrainConfig fields of the tiny test runs, with `changes` on top."""
    base = dict(data=demo_dir, out=out, epochs=2, batch_size=16, lr=3e-3, seed=3, val_episodes_per_task=1)
    return {**base, "model": TINY, **changes}


def run(demo_dir, out, epochs):
    return train(TrainConfig(**train_args(demo_dir, out, epochs=epochs, command="test")))


def test_training_writes_a_loadable_checkpoint_with_statistics(demo_dir, tmp_path):
    summary = run(demo_dir, tmp_path / "a", 3)
    assert summary["episodes"] == 8 and summary["frames"] == 96
    model = load_checkpoint(tmp_path / "a")
    cfg = model.config
    assert cfg.action_q01[0] == pytest.approx(
        np.quantile(
            np.concatenate([synthetic_episode(i, "", "").actions for i in [0, 1, 2, 3, 10, 11, 12, 13]])[
                :, 0
            ],
            0.01,
        ),
        abs=1e-5,
    )
    assert {"reach", "drawer", "open"} <= set(cfg.prompt_vocab)
    card = (tmp_path / "a" / "card.md").read_text()
    assert "8 episodes" in card and "command" in card
    hist = json.loads((tmp_path / "a" / "training.json").read_text())["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_training_is_deterministic_and_resumable(demo_dir, tmp_path):
    run(demo_dir, tmp_path / "full", 2)
    run(demo_dir, tmp_path / "again", 2)
    cfg = train_args(demo_dir, tmp_path / "resumed")
    partial = train(TrainConfig(**cfg, stop_after=1))
    assert partial["stopped_after_epoch"] == 1 and not (tmp_path / "resumed" / "model.safetensors").exists()
    train(TrainConfig(**cfg))
    full = load_checkpoint(tmp_path / "full").state_dict()
    for other in ("again", "resumed"):
        weights = load_checkpoint(tmp_path / other).state_dict()
        for k in full:
            assert torch.equal(full[k], weights[k]), (other, k)  # same seed and data -> identical weights


def test_resume_continues_from_saved_epoch(demo_dir, tmp_path, capsys):
    out = tmp_path / "r"
    run(demo_dir, out, 2)
    info = json.loads((out / "train_state" / "state.json").read_text())
    assert info["epoch"] == 2
    # a second call finds the finished state and does not train again
    summary = run(demo_dir, out, 2)
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert len(summary["history"]) == 2


def test_wilson_interval_and_percentiles():
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and 0.05 < hi < 0.09
    lo, hi = wilson_interval(35, 50)
    assert lo < 0.7 < hi and hi - lo < 0.27
    assert percentiles([1, 2, 3, 4, 100])["p50"] == 3


def test_summary_and_table():
    results = [
        dict(
            task="reach-v3",
            seed=i,
            success=i % 2 == 0,
            steps=10 + i,
            latency_ms=[5.0, 6.0],
            target_passes=[3],
            precisions=["fp32"],
        )
        for i in range(4)
    ]
    report = summarize(results)
    assert report["tasks"]["reach-v3"]["successes"] == 2
    assert report["overall"]["success_rate"] == 0.5
    table = markdown_table(report, "t")
    assert "| reach-v3 | 50.0 % |" in table and "mean over tasks" in table


def test_fine_tuning_keeps_the_checkpoints_statistics_and_vocabulary(demo_dir, tmp_path):
    run(demo_dir, tmp_path / "base", 1)
    base = load_checkpoint(tmp_path / "base")
    more = tmp_path / "more"
    shifted = [synthetic_episode(20 + i, "reach-v3", "reach the red goal") for i in range(3)]
    for e in shifted:
        e.actions[:] = e.actions * 0.5 + 0.3  # other statistics than the base data
    write_episodes(more / "reach-v3", shifted)
    common = dict(data=more, epochs=1, batch_size=8, lr=1e-3, seed=3, val_episodes_per_task=1)
    summary = train(TrainConfig(out=tmp_path / "tuned", init=str(tmp_path / "base"), **common))
    tuned = load_checkpoint(tmp_path / "tuned")
    for key in ("action_q01", "action_q99", "state_mean", "state_std", "prompt_vocab"):
        assert getattr(tuned.config, key) == getattr(base.config, key), key
    changed = [k for k, v in base.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert changed and summary["frames"] == 36
    assert f"fine-tuned from: {tmp_path / 'base'}" in (tmp_path / "tuned" / "card.md").read_text()

    write_episodes(tmp_path / "odd" / "push-v3", [synthetic_episode(30, "push-v3", "push the puck")])
    with pytest.raises(ValueError, match="unknown to"):
        odd = common | {"data": tmp_path / "odd"}
        train(TrainConfig(out=tmp_path / "x", init=str(tmp_path / "base"), **odd))
    with pytest.raises(ValueError, match="architecture"):
        train(TrainConfig(out=tmp_path / "y", init=str(tmp_path / "base"), model=TINY, **common))


def test_tied_head_model_trains_on_a_frame_budget_from_another_models_cameras(demo_dir, tmp_path, capsys):
    run(demo_dir, tmp_path / "donor", 1)
    donor = load_checkpoint(tmp_path / "donor")
    common = train_args(
        demo_dir,
        tmp_path / "tied",
        batch_size=8,
        lr=1e-3,
        model=dict(TINY, tie_head=True, rope_theta=1e5),
        vision_from=str(tmp_path / "donor"),
        frames_per_epoch=16,
        val_frames=5,
    )
    model, *_ = _fresh(TrainConfig(**common))
    _copy_vision(model, str(tmp_path / "donor"))
    for k, v in donor.encoders.state_dict().items():
        assert torch.equal(model.encoders.state_dict()[k], v), k
    train(TrainConfig(**common, stop_after=1))  # stops, then resumes from the saved (tied) state
    summary = train(TrainConfig(**common))
    assert "2/2 [" in capsys.readouterr().err  # 16 frames per epoch at batch 8: two steps, not 80 frames' ten
    assert len(summary["history"]) == 2
    stored = load_file(str(tmp_path / "tied" / "model.safetensors"))
    assert "lm_head.weight" not in stored  # one matrix for embeddings and head
    tuned = load_checkpoint(tmp_path / "tied")
    assert tuned.lm_head.weight is tuned.llama.embed_tokens.weight
    assert tuned.llama.rotary_emb.inv_freq[1].item() == pytest.approx(1e5 ** (-2 / 16))
    card = (tmp_path / "tied" / "card.md").read_text()
    assert "camera encoders started from" in card and "16 random frames per epoch" in card


def test_the_smollm2_backbone_is_only_the_pretrained_shape():
    with pytest.raises(ValueError, match="SmolLM2-135M shape"):
        _fresh(TrainConfig(data=Path("-"), out=Path("-"), backbone="smollm2", model={"num_layers": 2}))
    with pytest.raises(ValueError, match="unknown backbone"):
        _fresh(TrainConfig(data=Path("-"), out=Path("-"), backbone="gpt2"))
