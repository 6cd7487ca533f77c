"""Speculative decoders (strict, Spec-VLA, KERV) on tiny random fp32 models, against fresh greedy runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.threshold_policy import ThresholdPolicy
from vla_accel_ros.decoding.autoregressive import decode_autoregressive
from vla_accel_ros.decoding.common import StageTimer, action_argmax
from vla_accel_ros.decoding.draft import DraftConfig, DraftContext, EagleDraft, OracleDraft
from vla_accel_ros.decoding.kerv import decode_kerv, fill_ids
from vla_accel_ros.decoding.speculative import decode_specvla, decode_strict, speculate
from vla_accel_ros.kinematics.kalman import ActionKalman
from vla_accel_ros.kinematics.proxies import ProxyCalibration
from vla_accel_ros.policy.config import tiny_config
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.runtime import Policy, PolicyInput
from vla_accel_ros.policy.tokenizer import ActionTokenizer, PromptTokenizer

INSTRUCTIONS = ["reach the red goal", "open the drawer"]


def make_model(action_dim: int = 4, seed: int = 0) -> VlaModel:
    """A tiny random target whose greedy actions depend on the input (default init gives one action)."""
    torch.manual_seed(seed)
    model = VlaModel(tiny_config(INSTRUCTIONS, action_dim)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 if "embed" in name else p.shape[-1] ** -0.5)
    return model


def random_draft(model: VlaModel, seed: int = 0, use_cache: bool = False, prefix: bool = True) -> EagleDraft:
    torch.manual_seed(seed)
    draft = EagleDraft(DraftConfig.for_target(model, use_cache=use_cache, attend_prefix=prefix), model).eval()
    with torch.no_grad():
        for p in draft.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p.shape[-1] ** -0.5)
    return draft


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> VlaModel:
    return make_model()


@pytest.fixture(scope="module")
def tok(model) -> ActionTokenizer:
    c = model.config
    return ActionTokenizer(c.action_q01, c.action_q99, c.vocab_size, c.n_bins)


def observation(model: VlaModel, seed: int):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    images = {c: torch.rand(1, 3, cfg.image_size, cfg.image_size, generator=g) for c in cfg.cameras}
    state = torch.randn(1, cfg.state_dim, generator=g)
    text = INSTRUCTIONS[seed % 2]
    prompt = torch.tensor([PromptTokenizer(cfg.prompt_vocab).encode(text, cfg.prompt_length)])
    return images, state, prompt


def prefill(model: VlaModel, seed: int):
    return model.prefill(*observation(model, seed))


@torch.inference_mode()
def fresh_next(model: VlaModel, seed: int, tokens: list[int]) -> int:
    """The target's greedy next token after `tokens`, from a fresh prefill (no cache reuse)."""
    step = prefill(model, seed)
    if tokens:
        step = model.extend(step.cache, torch.tensor([tokens]))
    return int(action_argmax(step.logits[0, -1], model.action_first_id))


@torch.inference_mode()
def greedy(model: VlaModel, seed: int) -> list[int]:
    out = decode_autoregressive(model, prefill(model, seed), model.config.action_dim, StageTimer())
    return out.token_ids[0].tolist()


class ScriptedDraft:
    """Proposes fixed ids per token index (index -> id); records what it was asked."""

    def __init__(self, script: dict[int, int]) -> None:
        self.script = script
        self.calls: list[tuple[int, int]] = []

    def reset(self) -> None:
        pass

    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        m = ctx.tokens.shape[1]
        self.calls.append((m, n))
        return torch.tensor([[self.script[m + i] for i in range(n)]])


class RaisingDraft:
    def reset(self) -> None:
        pass

    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        raise RuntimeError("draft exploded")


def shifted(token: int, bins: int, model: VlaModel) -> int:
    """token moved by `bins` bins, towards the inside of the action range."""
    last = model.config.vocab_size - 1
    return token + bins if token + bins <= last else token - bins


# -- strict speculative decoding ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["oracle", "random_eagle", "random_eagle_cached"])
@torch.inference_mode()
def test_strict_equals_greedy_token_for_token(model, kind):
    a = model.config.action_dim
    draft = {
        "oracle": lambda: OracleDraft(model),
        "random_eagle": lambda: random_draft(model),
        "random_eagle_cached": lambda: random_draft(model, use_cache=True),
    }[kind]()
    for seed in range(50):
        out = decode_strict(model, prefill(model, seed), a, draft, StageTimer())
        assert out.token_ids[0].tolist() == greedy(model, seed), seed
        # every pass decides its accepted drafts + one target token
        assert out.target_passes == a - 1 - out.accepted_tokens
        if kind == "oracle":
            assert out.target_passes == 1 and out.accepted_tokens == out.draft_tokens == a - 2


@torch.inference_mode()
def test_strict_with_7d_actions_and_every_rejection_point():
    model = make_model(action_dim=7, seed=3)
    for seed in range(6):
        ref = greedy(model, seed)
        assert (
            decode_strict(model, prefill(model, seed), 7, OracleDraft(model), StageTimer()).target_passes == 1
        )
        for bad in range(1, 6):  # the draft is right except at token `bad`
            script = {i: ref[i] for i in range(7)}
            script[bad] = shifted(ref[bad], 3, model)
            out = decode_strict(model, prefill(model, seed), 7, ScriptedDraft(script), StageTimer())
            assert out.token_ids[0].tolist() == ref
            assert out.target_passes == 2 and out.accepted_tokens == 4


@torch.inference_mode()
def test_cache_is_consistent_after_speculative_rounds(model):
    a = model.config.action_dim
    for seed in range(5):
        ref = greedy(model, seed)
        script = {1: shifted(ref[1], 1, model), 2: ref[2]}  # reject at 1, then right
        step = prefill(model, seed)
        out = decode_strict(model, step, a, ScriptedDraft(script), StageTimer())
        assert step.cache.get_seq_length() == step.length + a - 1  # prefix + all tokens but the last
        cont = model.extend(step.cache, out.token_ids[:, -1:])
        fresh = prefill(model, seed)
        fresh = model.extend(fresh.cache, out.token_ids)
        assert torch.allclose(cont.logits[0, -1], fresh.logits[0, -1], atol=1e-5)


@torch.inference_mode()
def test_rollback_then_continue_matches_a_fresh_run(model):
    first = model.action_first_id
    step = prefill(model, 7)
    n0 = step.length
    model.extend(step.cache, torch.tensor([[first + 3, first + 200, first + 9]]))
    VlaModel.rollback(step.cache, n0 + 1)
    assert step.cache.get_seq_length() == n0 + 1
    cont = model.extend(step.cache, torch.tensor([[first + 50, first + 60]]))
    fresh = prefill(model, 7)
    ref = model.extend(fresh.cache, torch.tensor([[first + 3, first + 50, first + 60]]))
    assert torch.allclose(cont.logits[0], ref.logits[0, 1:], atol=1e-5)
    assert torch.allclose(cont.hidden[0], ref.hidden[0, 1:], atol=1e-5)
    with pytest.raises(ValueError):
        VlaModel.rollback(step.cache, step.cache.get_seq_length() + 1)


@pytest.mark.parametrize("prefix", [True, False])
@torch.inference_mode()
def test_draft_paths_propose_the_same(model, prefix):
    """transformers layer recomputed, transformers layer with its own cache, and the folded fast path."""
    model7 = make_model(action_dim=7, seed=2)
    for target in (model, model7):
        plain, cached, fast = (
            random_draft(target, 1, prefix=prefix),
            random_draft(target, 1, use_cache=True, prefix=prefix),
            random_draft(target, 1, prefix=prefix),
        )
        plain.fast = False
        for seed in range(5):
            step = prefill(target, seed)
            feats, toks = step.hidden[:, -1:], torch.tensor([[greedy(target, seed)[0]]])
            for d in (plain, cached, fast):
                d.reset()
            for _ in range(3):  # contexts grow as verified tokens arrive within one action
                ctx = DraftContext(toks, feats, step.cache, step.length, step.hidden)
                ref = plain.propose(ctx, 3)
                assert torch.equal(cached.propose(ctx, 3), ref) and torch.equal(fast.propose(ctx, 3), ref)
                h_ref = plain.forward_layer(feats, toks, step.hidden)
                assert torch.allclose(fast(feats, toks, step.hidden), h_ref, atol=1e-5)
                feats = torch.cat([feats, torch.randn(1, 1, feats.shape[-1])], 1)
                nxt = (toks[:, -1:] - target.action_first_id + 37) % 256 + target.action_first_id
                toks = torch.cat([toks, nxt], 1)
        assert fast._fast is not None and (fast._prefix_cache is not None) == prefix  # the fast path ran


@torch.inference_mode()
def test_the_prefix_changes_what_the_draft_proposes(model):
    draft = random_draft(model, 3)
    step = prefill(model, 0)
    toks = torch.tensor([[greedy(model, 0)[0]]])
    h_with = draft(step.hidden[:, -1:], toks, step.hidden)
    h_other = draft(step.hidden[:, -1:], toks, prefill(model, 1).hidden)
    assert not torch.allclose(h_with, h_other)


# -- Spec-VLA relaxed acceptance ------------------------------------------------------------------------
@pytest.mark.parametrize("offset1,offset2", [(9, 10), (5, 0), (0, 12), (10, 0), (9, 9)])
@torch.inference_mode()
def test_relaxed_accepts_exactly_within_r_and_keeps_the_target_token(model, offset1, offset2):
    r, seed = 9.0, 11
    a0 = greedy(model, seed)[0]
    t1 = fresh_next(model, seed, [a0])
    d1 = shifted(t1, offset1, model)
    tokens, accepted = [a0], 0
    if offset1 <= r:
        tokens.append(d1)
        accepted += 1
        t2 = fresh_next(model, seed, tokens)
        d2 = shifted(t2, offset2, model)
        if offset2 <= r:
            tokens.append(d2)
            accepted += 1
        else:
            tokens.append(t2)  # the target's own token at the first rejection
    else:
        tokens.append(t1)
        d2 = fresh_next(model, seed, tokens)  # strict after the rejection: a right draft is accepted
        tokens.append(d2)
    tokens.append(fresh_next(model, seed, tokens))
    draft = ScriptedDraft({1: d1, 2: d2})
    out = decode_specvla(model, prefill(model, seed), 4, draft, StageTimer(), r=r)
    assert out.token_ids[0].tolist() == tokens
    assert out.threshold == r
    if offset1 > r:  # rejected at 1: second round drafts token 2 and verifies it strictly
        assert draft.calls == [(1, 2), (2, 1)] and out.accepted_tokens == 1 and out.target_passes == 2
    else:
        assert out.accepted_tokens == accepted
        assert out.target_passes == (1 if accepted == 2 else 2)


@torch.inference_mode()
def test_relaxed_is_strict_after_the_first_rejection_unless_asked(model):
    seed = 4
    a0 = greedy(model, seed)[0]
    t1 = fresh_next(model, seed, [a0])
    t2 = fresh_next(model, seed, [a0, t1])
    script = {1: shifted(t1, 20, model), 2: shifted(t2, 3, model)}  # reject at 1; then 3 bins off
    strict_after = decode_specvla(model, prefill(model, seed), 4, ScriptedDraft(script), StageTimer(), r=9)
    assert strict_after.token_ids[0].tolist()[:3] == [a0, t1, t2] and strict_after.target_passes == 3
    relaxed_all = decode_specvla(
        model, prefill(model, seed), 4, ScriptedDraft(script), StageTimer(), r=9, relax_all_rounds=True
    )
    assert relaxed_all.token_ids[0].tolist()[:3] == [a0, t1, script[2]] and relaxed_all.target_passes == 2


def test_bad_thresholds_are_refused(model):
    for bad in (-1.0, float("nan"), float("inf"), "nine"):
        with pytest.raises(ValueError, match="threshold"):
            decode_specvla(model, prefill(model, 0), 4, OracleDraft(model), StageTimer(), r=bad)


# -- KERV ----------------------------------------------------------------------------------------------
@torch.inference_mode()
def test_kerv_compares_in_action_units():
    model = make_model()
    cfg = model.config
    # dimension 1 spans 4 action units: a bin is 4/256 wide there; r is still counted in bins
    cfg.action_q01, cfg.action_q99 = [-1.0, -2.0, -1.0, -1.0], [1.0, 2.0, 1.0, 1.0]
    tok = ActionTokenizer(cfg.action_q01, cfg.action_q99, cfg.vocab_size, cfg.n_bins)
    seed = 2
    a0 = greedy(model, seed)[0]
    t1 = fresh_next(model, seed, [a0])
    for offset, kept in ((7, True), (8, False)):
        d1 = shifted(t1, offset, model)
        rest = fresh_next(model, seed, [a0, d1 if kept else t1])
        out = decode_kerv(
            model, prefill(model, seed), ScriptedDraft({1: d1, 2: rest}), StageTimer(), tok, threshold=7.5
        )
        assert out.token_ids[0, 1].item() == (d1 if kept else t1)
        assert out.threshold == 7.5


@pytest.mark.parametrize("masked", ["target", "verify"])
@torch.inference_mode()
def test_kerv_fills_the_remaining_unmasked_dims_and_never_the_gripper(model, tok, masked):
    seed = 5
    a0 = greedy(model, seed)[0]
    t1 = fresh_next(model, seed, [a0])
    d1 = shifted(t1, 40, model)
    d2 = fresh_next(model, seed, [a0, d1])
    prediction = np.array([0.1, -0.2, 0.33, 0.9], np.float32)
    out = decode_kerv(
        model,
        prefill(model, seed),
        ScriptedDraft({1: d1, 2: d2}),
        StageTimer(),
        tok,
        threshold=9.0,
        kalman_action=prediction,
        masked=masked,
    )
    filled_id = int(tok.encode(prediction)[2])
    ids = out.token_ids[0].tolist()
    assert ids[:3] == [a0, t1, filled_id]
    assert out.kalman_filled == (2,)  # dimension 2 only: the gripper (3) is masked out
    if masked == "target":  # the gripper comes from one more target pass after the filled dimension
        assert ids[3] == fresh_next(model, seed, ids[:3]) and out.target_passes == 2
    else:  # ... or from the verify pass already made
        assert ids[3] == fresh_next(model, seed, [a0, d1, d2]) and out.target_passes == 1
    assert out.accepted_tokens == 0 and out.draft_tokens == 2


@torch.inference_mode()
def test_kerv_fill_variants(model, tok):
    seed = 6
    a0 = greedy(model, seed)[0]
    t1 = fresh_next(model, seed, [a0])
    d1 = shifted(t1, 40, model)
    prediction = np.array([0.1, -0.2, 0.33, 0.9], np.float32)
    script = {1: d1, 2: model.action_first_id}

    def run(**kw):
        return decode_kerv(model, prefill(model, seed), ScriptedDraft(script), StageTimer(), tok, **kw)

    # every dimension allowed: the gripper is filled too, one pass in all
    out = run(threshold=9.0, kalman_action=prediction, mask=[True] * 4)
    assert out.kalman_filled == (2, 3) and out.target_passes == 1
    assert out.token_ids[0, 2:].tolist() == tok.encode(prediction)[2:].tolist()
    # NaN means "no prediction for this dimension": nothing left to fill -> re-inference (as Spec-VLA)
    out = run(threshold=9.0, kalman_action=np.array([0.1, -0.2, np.nan, 0.9], np.float32))
    assert out.kalman_filled == () and out.token_ids[0, :2].tolist() == [a0, t1]
    # no prediction (cool-down or warm-up): no fill
    assert run(threshold=9.0).kalman_filled == ()
    # a rejection at the last drafted dimension leaves only the gripper: nothing to fill
    t2 = fresh_next(model, seed, [a0, t1])
    out = decode_kerv(
        model,
        prefill(model, seed),
        ScriptedDraft({1: t1, 2: shifted(t2, 30, model)}),
        StageTimer(),
        tok,
        threshold=0.0,
        kalman_action=prediction,
    )
    assert out.kalman_filled == () and out.token_ids[0].tolist() == greedy(model, seed)
    with pytest.raises(ValueError, match="shape"):
        run(kalman_action=np.zeros(3))
    assert fill_ids(tok, prediction) == {d: int(tok.encode(prediction)[d]) for d in range(3)}


@torch.inference_mode()
def test_kerv_without_rejection_is_plain_relaxed(model, tok):
    for seed in range(5):
        out = decode_kerv(
            model,
            prefill(model, seed),
            OracleDraft(model),
            StageTimer(),
            tok,
            threshold=5.0,
            kalman_action=np.zeros(4, np.float32),
        )
        assert out.token_ids[0].tolist() == greedy(model, seed)
        assert out.kalman_filled == () and out.target_passes == 1


class WrongDraft(OracleDraft):
    """The target's own proposals moved 100 bins: always rejected at the first drafted token."""

    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        ids = super().propose(ctx, n)
        first = self.model.action_first_id
        return (ids - first + 100) % self.model.config.n_bins + first


def test_cooldown_is_honoured_in_a_closed_loop_with_the_accel_loop(model):
    """AccelLoop (the graph's kinematics + controller logic) drives the decoder step by step."""
    policy = Policy(model)
    policy.attach_draft(WrongDraft(model))
    loop = AccelLoop(
        Method("kerv", decoding="kerv", threshold=None, kalman=True),
        ProxyCalibration(mu95=1.0, nu95=1.0, phi95=0.5),
        4,
        threshold_policy=ThresholdPolicy(r_min=5, r_max=15, f_lo=0.0, f_hi=1.0),
        kalman=ActionKalman(4, q=1e-3, r=1e-2),
        cooldown=4,
    )
    filled_at, offered_at = [], []
    for t in range(14):
        kw = loop.act_kwargs()
        res = policy.act(obs(model, t), **kw)
        if kw["kalman_action"] is not None:
            offered_at.append(t)
            assert np.isnan(kw["kalman_action"][3])  # the compensator never offers the gripper
        if res.kalman_filled:
            filled_at.append(t)
            assert res.kalman_filled == [2]  # rejected at token 1: dim 2 filled, the gripper decoded
            assert np.array_equal(res.action[res.kalman_filled], kw["kalman_action"][res.kalman_filled])
        else:  # no prediction: Spec-VLA-like re-inference, every pass decides one token
            assert res.target_passes == 3 - res.accepted_tokens
        loop.observe(res.action, res.kalman_filled)
    # a prediction needs 2 executed actions; each fill silences the next 4 steps
    assert filled_at == [2, 7, 12] and offered_at == filled_at


# -- the runtime: registration, reporting, fallback ------------------------------------------------------
def obs(model: VlaModel, seed: int = 0) -> PolicyInput:
    rng = np.random.default_rng(seed)
    s = model.config.image_size
    images = {c: rng.integers(0, 255, (s, s, 3), dtype=np.uint8) for c in model.config.cameras}
    return PolicyInput(images, rng.normal(size=9), INSTRUCTIONS[seed % 2])


def test_runtime_decoders_report_and_fill(model):
    policy = Policy(model)
    assert set(policy.decoders) == {"ar"}
    res = policy.act(obs(model), decoding="spec")
    assert res.decoding == "ar" and "decoding 'spec' unavailable" in res.fallback
    policy.attach_draft(OracleDraft(model))
    assert {"spec", "specvla", "kerv"} <= set(policy.decoders)
    for seed in range(4):
        ar = policy.act(obs(model, seed))
        spec = policy.act(obs(model, seed), decoding="spec")
        assert spec.fallback is None and spec.decoding == "spec"
        assert np.array_equal(spec.token_ids, ar.token_ids) and np.array_equal(spec.action, ar.action)
        assert (spec.target_passes, spec.draft_tokens, spec.accepted_tokens) == (1, 2, 2)
        assert ar.target_passes == 3 and "verify" in spec.timings_ms and "draft" in spec.timings_ms
        assert policy.act(obs(model, seed), decoding="specvla").threshold == 9.0
        assert policy.act(obs(model, seed), decoding="specvla", threshold=4).threshold == 4.0


def test_runtime_executes_the_kalman_values_of_filled_dims(model):
    policy = Policy(model)
    seed = 1
    ar = policy.act(obs(model, seed))
    wrong = {1: shifted(int(ar.token_ids[1]), 60, model), 2: int(ar.token_ids[2])}
    policy.attach_draft(ScriptedDraft(wrong))
    prediction = np.array([0.11, -0.23, 0.345, 0.9], np.float32)
    res = policy.act(obs(model, seed), decoding="kerv", threshold=5.0, kalman_action=prediction)
    assert res.kalman_filled == [2] and res.action[2] == prediction[2] and res.action[3] != prediction[3]
    assert res.token_ids[1] == ar.token_ids[1]  # the target's correction token


@pytest.mark.parametrize("bad", ["raises", "shape", "range"])
def test_runtime_falls_back_to_ar_when_the_draft_fails(model, bad):
    policy = Policy(model)
    ar = policy.act(obs(model, 3))
    draft = {
        "raises": RaisingDraft(),
        "shape": ScriptedDraft({}),
        "range": ScriptedDraft({1: model.config.vocab_size + 5, 2: model.config.vocab_size + 5}),
    }[bad]
    if bad == "shape":
        draft.propose = lambda ctx, n: torch.zeros((2, n), dtype=torch.long)  # type: ignore[method-assign]
    policy.attach_draft(draft)
    for decoding in ("spec", "specvla", "kerv"):
        res = policy.act(obs(model, 3), decoding=decoding, kalman_action=np.zeros(4, np.float32))
        assert res.decoding == "ar" and f"decoding '{decoding}' failed" in res.fallback
        assert np.array_equal(res.token_ids, ar.token_ids) and res.target_passes == 3
        assert res.kalman_filled == []


def test_speculate_refuses_batches(model):
    step = model.prefill(
        *[
            {k: v.repeat(2, 1, 1, 1) for k, v in observation(model, 0)[0].items()},
            torch.zeros(2, 9),
            observation(model, 0)[2].repeat(2, 1),
        ]
    )
    with pytest.raises(ValueError, match="batch 1"):
        speculate(model, step, 4, OracleDraft(model), StageTimer())


# --- the realistic-size replay (evaluation.spec_scale) ---------------------------------------------------


def test_a_recorded_rejection_pattern_replays_on_another_model():
    """Where one policy's draft was rejected, a ScriptedDraft over another model rejects too: same target
    passes, drafts, acceptances and Kalman fills, whatever that model's own tokens."""
    from vla_accel_ros.evaluation.methods import add_kerv_verify
    from vla_accel_ros.evaluation.spec_scale import (
        ProposalLog,
        ScaledRow,
        attach_scripted_draft,
        rejected_positions,
        replay_record,
        same_pattern,
    )

    source = Policy(make_model(seed=0))
    source.attach_draft(random_draft(source.model, seed=1))
    add_kerv_verify(source)
    log = ProposalLog(source.draft)
    other = Policy(make_model(seed=3))
    row = ScaledRow("any", other, attach_scripted_draft(other, lambda m: random_draft(m, seed=2)))
    prediction = np.array([0.1, -0.2, 0.33, 0.9])
    methods = [("spec", 0.0), ("specvla", 9.0), ("kerv", 6.0), ("kerv-verify", 6.0)]
    seen: dict[str, int] = {}
    for frame in range(10):
        inp = obs(source.model, frame)
        for decoding, r in methods:
            log.take()
            kalman = prediction if decoding.startswith("kerv") else None
            res = source.act(inp, decoding=decoding, threshold=r, kalman_action=kalman)
            rec = {
                "precision": res.precision,
                "decoding": decoding,
                "threshold": r,
                "passes": res.target_passes,
                "drafted": res.draft_tokens,
                "accepted": res.accepted_tokens,
                "filled": list(res.kalman_filled),
                "rejected": rejected_positions(log.take(), res.token_ids.tolist()),
            }
            out, ms = replay_record(row, frame, inp, rec)
            assert same_pattern(out, rec), (decoding, rec, out)
            assert out.decoding == decoding and out.fallback is None and ms > 0
            if decoding == "spec":  # strict: the other model's own greedy action, whatever the script
                assert out.token_ids.tolist() == row.greedy[(frame, "fp32")]
            for key in ("rejected", "filled"):
                seen[key] = seen.get(key, 0) + bool(rec[key])
    assert seen["rejected"] >= 5 and seen["filled"] >= 1  # the script had something to replay


def test_rejected_positions_are_each_rounds_first_mismatch():
    from vla_accel_ros.evaluation.spec_scale import rejected_positions

    final = [300, 301, 302, 303]
    assert rejected_positions([(1, [301, 302])], final) == []
    assert rejected_positions([(1, [301, 9])], final) == [2]
    assert rejected_positions([(1, [7, 9]), (2, [302])], final) == [1]
    assert rejected_positions([(1, [7, 302]), (2, [8])], final) == [1, 2]
