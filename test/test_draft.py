"""The EAGLE draft head: files, isolation from the target, loss, end-to-end training, use in a Policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vla_accel_ros.data.bag_io import write_episodes
from vla_accel_ros.decoding.draft import (
    DraftConfig,
    DraftContext,
    DraftLoadError,
    EagleDraft,
    load_draft,
    save_draft,
)
from vla_accel_ros.policy.checkpoint import save_checkpoint
from vla_accel_ros.policy.config import tiny_config
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.runtime import Policy, PolicyInput
from vla_accel_ros.policy.tokenizer import PromptTokenizer
from vla_accel_ros.training.train_draft import Traces, draft_loss, draft_positions

INSTRUCTIONS = ["reach the red goal", "open the drawer"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_target(seed: int = 0, **kw) -> VlaModel:
    torch.manual_seed(seed)
    model = VlaModel(tiny_config(INSTRUCTIONS, **kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 if "embed" in name else p.shape[-1] ** -0.5)
    return model


def context(model: VlaModel, seed: int = 0) -> DraftContext:
    g = torch.Generator().manual_seed(seed)
    s = model.config.image_size
    images = {c: torch.rand(1, 3, s, s, generator=g) for c in model.config.cameras}
    prompt = torch.tensor([PromptTokenizer(model.config.prompt_vocab).encode(INSTRUCTIONS[0], 12)])
    step = model.prefill(images, torch.randn(1, 9, generator=g), prompt)
    first = step.logits[0, -1, model.action_first_id :].argmax() + model.action_first_id
    return DraftContext(first.view(1, 1), step.hidden[:, -1:], step.cache, step.length, step.hidden)


def test_draft_owns_only_its_layer_and_shares_the_target_head():
    target = tiny_target()
    draft = EagleDraft(DraftConfig.for_target(target), target)
    names = set(draft.state_dict())
    assert names and not any(n.startswith(("llama", "lm_head", "encoders")) for n in names)
    assert all(n.split(".")[0] in ("fuse", "prefix_proj", "layer", "norm") for n in names)
    n_draft = sum(p.numel() for p in draft.parameters())
    n_target = sum(p.numel() for p in target.llama.layers[0].parameters())
    assert n_draft < 2 * n_target  # one decoder layer plus the fusion
    draft.train()
    assert not target.training  # the target stays frozen in eval mode
    with pytest.raises(DraftLoadError, match="does not fit"):
        EagleDraft(DraftConfig.for_target(target, hidden_size=48), target)


@torch.inference_mode()
def test_proposals_are_action_ids_and_survive_save_and_load(tmp_path):
    target = tiny_target()
    draft = EagleDraft(DraftConfig.for_target(target), target).eval()
    ctx = context(target)
    ids = draft.propose(ctx, 3)
    assert ids.shape == (1, 3) and ids.dtype == torch.long
    assert (ids >= target.action_first_id).all() and (ids < target.config.vocab_size).all()
    assert draft.propose(ctx, 0).shape == (1, 0)
    save_draft(draft, tmp_path / "draft", info={"note": "test"})
    again = load_draft(tmp_path / "draft", target)
    assert torch.equal(again.propose(ctx, 3), ids)
    assert load_draft(tmp_path / "draft", target, use_cache=True).config.use_cache
    assert json.loads((tmp_path / "draft" / "training.json").read_text()) == {"note": "test"}


def test_load_errors_are_named(tmp_path):
    target = tiny_target()
    with pytest.raises(DraftLoadError, match="needs config.json"):
        load_draft(tmp_path / "nothing", target)
    d = tmp_path / "draft"
    save_draft(EagleDraft(DraftConfig.for_target(target), target), d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(DraftLoadError, match="invalid draft config"):
        load_draft(d, target)
    other = tiny_target(hidden_size=48, num_heads=2)
    save_draft(EagleDraft(DraftConfig.for_target(other), other), d)
    with pytest.raises(DraftLoadError, match="does not fit"):
        load_draft(d, target)
    (d / "model.safetensors").write_bytes(b"garbage")
    (d / "config.json").write_text(json.dumps(DraftConfig.for_target(target).to_dict()))
    with pytest.raises(DraftLoadError, match="unreadable"):
        load_draft(d, target)


def test_policy_loads_the_draft_beside_its_checkpoint_or_says_why(tmp_path):
    target = tiny_target()
    save_checkpoint(target, tmp_path / "ckpt")
    policy = Policy.load(tmp_path / "ckpt")
    assert "spec" not in policy.decoders and "no draft" in policy.draft_error
    (tmp_path / "ckpt" / "draft").mkdir()
    (tmp_path / "ckpt" / "draft" / "config.json").write_text("{}")
    policy = Policy.load(tmp_path / "ckpt")
    assert "spec" not in policy.decoders and "model.safetensors" in policy.draft_error
    rng = np.random.default_rng(0)
    obs = PolicyInput(
        {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in policy.cameras},
        np.zeros(9),
        INSTRUCTIONS[0],
    )
    res = policy.act(obs, decoding="kerv", threshold=7.0)
    assert res.decoding == "ar" and "unavailable" in res.fallback and "model.safetensors" in res.fallback
    save_draft(EagleDraft(DraftConfig.for_target(policy.model), policy.model), tmp_path / "ckpt" / "draft")
    policy = Policy.load(tmp_path / "ckpt")
    assert {"spec", "specvla", "kerv"} <= set(policy.decoders) and policy.draft_error is None
    ar, spec = policy.act(obs), policy.act(obs, decoding="spec")
    assert np.array_equal(ar.token_ids, spec.token_ids) and spec.fallback is None


def synthetic_traces(target: VlaModel, n: int = 64, seed: int = 0) -> Traces:
    """Greedy traces of the target on random observations (what collect_traces records from frames)."""
    first = target.action_first_id
    feats, toks, logits, prefixes = [], [], [], []
    with torch.no_grad():
        for i in range(n):
            ctx = context(target, seed * 1000 + i)
            prefixes.append(ctx.prefix)
            f, t, lg = [ctx.features[:, 0]], [ctx.tokens[:, 0]], []
            step_cache = ctx.cache
            for _ in range(target.config.action_dim - 1):
                step = target.extend(step_cache, t[-1].view(1, 1))
                f.append(step.hidden[:, -1])
                lg.append(step.logits[:, -1, first:])
                t.append(step.logits[:, -1, first:].argmax(-1) + first)
            feats.append(torch.stack(f, 1))
            toks.append(torch.stack(t, 1))
            logits.append(torch.stack(lg, 1))
    return Traces(torch.cat(feats), torch.cat(toks), torch.cat(logits), torch.cat(prefixes))


def test_training_path_equals_the_transformers_layer_and_trains_every_weight():
    target = tiny_target()
    traces = synthetic_traces(target, 6)
    draft = EagleDraft(DraftConfig.for_target(target), target).train()
    feats, toks, prefix = traces.feats[:, :3], traces.tokens[:, :3], traces.prefix
    out = draft(feats, toks, prefix)
    assert out.shape == (6, 3, 32)
    assert torch.allclose(out, draft.forward_layer(feats, toks, prefix), atol=1e-5)
    draft.bin_logits(out).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in draft.parameters())


def test_draft_loss_trains_the_draft_towards_the_target():
    target = tiny_target()
    traces = synthetic_traces(target, 48)
    assert traces.feats.shape == (48, 4, 32) and traces.logits.shape == (48, 3, 256)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    torch.manual_seed(0)
    draft = EagleDraft(DraftConfig.for_target(target), target).train()
    opt = torch.optim.Adam(draft.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, stats = draft_loss(draft, traces.feats, traces.tokens, traces.logits, prefix=traces.prefix)
        first = first if first is not None else (loss.item(), stats)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first[0]
    assert stats["tf_top1"] > first[1]["tf_top1"]
    assert set(stats) >= {"tf_reg", "tf_cls", "rollout_reg", "rollout_cls", "rollout_top1"}
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # the target stays as is
    assert draft_positions(4) == 2
    with pytest.raises(ValueError, match="nothing to draft"):
        draft_positions(2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple:
    """Demonstration bags (2 tasks), a tiny checkpoint, and its draft trained for a few steps."""
    from conftest import SAWYER_JOINTS

    from vla_accel_ros.data.episodes import Episode, sim_stamps
    from vla_accel_ros.training.train_draft import DraftTrainConfig, train_draft

    root = tmp_path_factory.mktemp("draft")
    rng = np.random.default_rng(0)
    for task, instruction in (("reach-v3", INSTRUCTIONS[0]), ("drawer-open-v3", INSTRUCTIONS[1])):
        episodes = []
        for i in range(3):
            t = 8
            episodes.append(
                Episode(
                    task=task,
                    seed=i,
                    instruction=instruction,
                    success=True,
                    images={
                        c: rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8) for c in ("corner", "wrist")
                    },
                    joint_positions=rng.normal(size=(t, 9)).astype(np.float32),
                    actions=np.cumsum(rng.normal(0, 0.1, (t, 4)), 0).clip(-1, 1).astype(np.float32),
                    stamps_ns=sim_stamps(i, t, 80.0),
                    joint_names=list(SAWYER_JOINTS),
                    joint_velocities=np.zeros((t, 9), np.float32),
                )
            )
        write_episodes(root / "demos" / task, episodes)
    target = tiny_target(image_size=16)
    save_checkpoint(target, root / "ckpt")
    summary = train_draft(
        DraftTrainConfig(
            checkpoint=root / "ckpt",
            data=root / "demos",
            out=root / "ckpt" / "draft",
            steps=4,
            batch_size=8,
            eval_frames=4,
            val_episodes_per_task=1,
            progress=False,
        )
    )
    return root, summary


def test_train_draft_end_to_end(trained):
    root, summary = trained
    assert summary["steps"] == 4 and summary["training_frames"] == 32
    acc = summary["held_out_acceptance"]
    assert acc["frames"] == 4 and 0.0 <= acc["strict"]["acceptance_rate"] <= 1.0
    assert 1.0 <= acc["r9"]["target_passes_per_action"] <= 3.0
    out = root / "ckpt" / "draft"
    assert (out / "model.safetensors").is_file() and (out / "training.json").is_file()
    assert "spec" in Policy.load(root / "ckpt").decoders


def bench_args(trained, tmp_path, frames: int, warmup: int, methods: str, *more: str) -> list[str]:
    root, _ = trained
    data = ["--checkpoint", str(root / "ckpt"), "--data", str(root / "demos")]
    out = ["--json", str(tmp_path / "d.json"), "--markdown", str(tmp_path / "D.md"), "--no-progress"]
    run = ["--frames", str(frames), "--warmup", str(warmup), "--methods", methods, *more]
    return ["bench-decoding", *data, *run, *out]


def test_bench_decoding_open_loop(trained, tmp_path):
    from vla_accel_ros.cli import main

    args = bench_args(trained, tmp_path, 8, 2, "ar,spec,specvla,kerv")
    assert main(args) == 0
    report = json.loads((tmp_path / "d.json").read_text())
    rows = report["open_loop"]
    assert list(rows) == ["ar", "spec", "specvla", "kerv"]
    assert rows["ar"]["target_passes_per_action"] == 3.0 and rows["spec"]["same_action_as_ar"] == 1.0
    assert rows["specvla"]["mean_threshold"] == 9.0 and rows["ar"]["speedup"]["vs_ar_p50"] == 1.0
    assert all(r["fallbacks"] == 0 and r["actions"] == rows["ar"]["actions"] for r in rows.values())
    # the only full-precision AR row is the baseline; the page keeps one section per kernel class
    assert report["open_loop_baseline"] == "ar" and rows["ar"]["speedup"]["vs_baseline_p50"] == 1.0
    text = (tmp_path / "D.md").read_text()
    assert "Baseline: **ar (fp32)**" in text and "| kerv |" in text
    assert text.count("<!-- bench-decoding@") == 2  # begin and end of this machine's section
    assert main(args) == 0 and (tmp_path / "D.md").read_text().count("<!-- bench-decoding@") == 2


def test_bench_decoding_replays_the_acceptance_at_the_realistic_size(trained, tmp_path):
    """Every row again on a (1-layer, random) realistic-size model: same passes, drafts and fills."""
    from vla_accel_ros.cli import main

    more = ("--realistic-frames", "3", "--realistic-layers", "1")
    args = bench_args(trained, tmp_path, 6, 1, "ar,spec,kerv,ar@bf16", *more)
    assert main(args) == 0
    report = json.loads((tmp_path / "d.json").read_text())
    built_in, scaled = report["open_loop"], report["realistic"]["rows"]
    assert list(scaled) == list(built_in) and report["realistic"]["frames"] == 3
    assert all(r["pattern_reproduced"] == 1.0 and r["fallbacks"] == 0 for r in scaled.values())
    assert scaled["ar"]["target_passes_per_action"] == 3.0 and scaled["ar"]["speedup"]["vs_ar_p50"] == 1.0
    assert scaled["ar@bf16"]["precision_shares"] == {"bf16": 1.0}
    # the baseline is the faster of the fp32 and bf16 AR rows, and every row has its physical limit
    fastest = min(("ar", "ar@bf16"), key=lambda n: scaled[n]["latency_ms"]["p50"])
    assert report["realistic"]["baseline"] == fastest and report["realistic"]["bandwidth"]["gb_per_s"] > 0
    limits = {n: r["decode_limit"] for n, r in scaled.items()}
    assert limits["ar@bf16"]["bytes"] < limits["ar"]["bytes"] and limits["ar"]["pass_ms"] > 0
    assert report["realistic"]["decoder_parameters"] > 1e7  # SmolLM2's 576-wide embedding, 1 layer
    assert "Realistic size: 3 of those frames" in (tmp_path / "D.md").read_text()
    pieces = report["realistic"]["pieces_ms"]
    assert pieces["prefill"] > 0 and pieces["target_pass"] > 0  # ar ran; no specvla row: no verify

    # Rows on the int4 ladder replay a KERV step at the precision the built-in ran.
    from vla_accel_ros.evaluation.decoding_realistic import realistic_rows
    from vla_accel_ros.evaluation.spec_scale import replay_record, same_pattern

    (row,) = realistic_rows(["kerv+dyq"], layers=1)
    inp = PolicyInput(
        {c: np.zeros((32, 32, 3), np.uint8) for c in row.policy.cameras}, np.zeros(9), "open the drawer"
    )
    rec = {
        "precision": "w4a8-emu",
        "decoding": "kerv",
        "threshold": 9.0,
        "filled": [2],
        "rejected": [1],
        "passes": 2,
        "drafted": 2,
        "accepted": 0,
    }
    res, _ = replay_record(row, 0, inp, rec)
    assert res.precision == "w4a8-emu" and same_pattern(res, rec) and res.fallback is None
