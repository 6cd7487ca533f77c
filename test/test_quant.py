"""The precision ladder: numerics per mode, switching, one stored copy, runtime integration."""

from __future__ import annotations

import copy
import itertools
import threading

import numpy as np
import pytest
import torch
from torch import nn

from vla_accel_ros.decoding.common import action_argmax
from vla_accel_ros.evaluation.reporting import machine_info
from vla_accel_ros.policy.config import VlaConfig, tiny_config
from vla_accel_ros.policy.model import VlaModel
from vla_accel_ros.policy.runtime import Policy, PolicyInput
from vla_accel_ros.policy.tokenizer import PromptTokenizer
from vla_accel_ros.quant import (
    DEFAULT_MODES,
    Int4Linear,
    Mode,
    get_ladder,
    quantize_model,
    quantize_policy,
    set_precision,
)
from vla_accel_ros.quant import ladder as ladder_module
from vla_accel_ros.quant.activation import fake_quantize
from vla_accel_ros.quant.benchmark import BenchSettings, bench_section, random_observations
from vla_accel_ros.quant.int4 import quantize_groups, quantize_int4
from vla_accel_ros.quant.ladder import DECODER_LINEARS, find_linears
from vla_accel_ros.quant.memory import held_tensors, module_bytes
from vla_accel_ros.quant.report import render
from vla_accel_ros.quant.strategies import STRATEGIES, install_strategy
from vla_accel_ros.quant.vocab import ActionHead, Int4Embedding, restrict_head

INSTRUCTIONS = ["reach the red goal", "open the drawer"]
GROUP = 32
MODE_NAMES = [m.name for m in DEFAULT_MODES]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_config() -> VlaConfig:
    # Smallest shapes the int4 kernel takes: in_features a multiple of the group, out_features of 16.
    return tiny_config(INSTRUCTIONS, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)


def quantized_model(mode: str | None = None) -> VlaModel:
    torch.manual_seed(0)
    model = VlaModel(small_config()).eval()
    ladder = quantize_model(model, group=GROUP)
    if mode is not None:
        ladder.set(mode)
    return model


def model_inputs(cfg: VlaConfig, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = {c: torch.rand(1, 3, cfg.image_size, cfg.image_size, generator=g) for c in cfg.cameras}
    state = torch.randn(1, cfg.state_dim, generator=g)
    prompt = torch.tensor([PromptTokenizer(cfg.prompt_vocab).encode(INSTRUCTIONS[0], cfg.prompt_length)])
    return images, state, prompt


def observation(cfg: VlaConfig, seed: int = 0) -> PolicyInput:
    rng = np.random.default_rng(seed)
    size = (cfg.image_size, cfg.image_size, 3)
    images = {c: rng.integers(0, 255, size, dtype=np.uint8) for c in cfg.cameras}
    joints = rng.normal(size=cfg.state_dim)
    return PolicyInput(images=images, joint_positions=joints, instruction=INSTRUCTIONS[1])


@torch.no_grad()
def decode_logits(model: VlaModel, schedule: list[str], seed: int = 0) -> list[torch.Tensor]:
    """Prefill in schedule[0], then one extend per further entry, switching mode before each pass."""
    set_precision(model, schedule[0])
    step = model.prefill(*model_inputs(model.config, seed))
    out = [step.logits[:, -1]]
    for mode in schedule[1:]:
        set_precision(model, mode)
        step = model.extend(step.cache, out[-1].argmax(-1, keepdim=True))
        out.append(step.logits[:, -1])
    return out


# -- numerics of each mode ---------------------------------------------------------------------------
def activations_seen_by(mode: Mode, x: torch.Tensor) -> torch.Tensor:
    if mode.act_bits == 16:
        return x.to(torch.bfloat16).float()
    return fake_quantize(x, mode.act_bits, mode.act_group)


@pytest.mark.parametrize("mode", DEFAULT_MODES, ids=MODE_NAMES)
@pytest.mark.parametrize("rows", [1, 7])
def test_each_mode_matches_dequantized_fp32_reference(mode, rows):
    torch.manual_seed(1)
    linear = nn.Linear(96, 48, bias=True)
    x = torch.randn(rows, 96)
    x[:, 5] *= 30.0  # an outlier channel, as LLM activations have
    layer = quantize_model_layer(linear, mode)
    weight = quantize_int4(linear.weight, GROUP).dequantize()
    xa = activations_seen_by(mode, x).double()
    product = xa @ weight.double().T
    # The kernel sums in fp32 and rounds its output to bf16 (unit roundoff 2^-8; 2^-7 allowed), the bias
    # is added after; grouped activations are also rounded to bf16 on the way in (2^-8 of each term).
    magnitude = xa.abs() @ weight.double().abs().T
    tol = 2.0**-7 * product.abs() + 1e-5 * magnitude + 1e-6
    if mode.act_group is not None:
        tol += 2.0**-8 * magnitude
    with torch.no_grad():
        err = (layer(x).double() - product - linear.bias.double()).abs()
    assert torch.all(err <= tol), float((err - tol).max())


def quantize_model_layer(linear: nn.Linear, mode: Mode) -> Int4Linear:
    holder = nn.Sequential()
    holder.q_proj = linear
    ladder = quantize_model(holder, group=GROUP)
    ladder.set(mode.name)
    holder.q_proj.ladder_for_test = ladder
    return holder.q_proj


def get_ladder_of(layer: Int4Linear):
    return layer.ladder_for_test


def test_modes_differ_and_lower_modes_are_coarser():
    torch.manual_seed(2)
    linear = nn.Linear(64, 32)
    x = torch.randn(4, 64)
    ref = x @ quantize_int4(linear.weight, GROUP).dequantize().T + linear.bias
    layer = quantize_model_layer(linear, DEFAULT_MODES[-1])
    errors = {}
    for name in MODE_NAMES:
        layer._selector.mode = get_ladder_of(layer).modes[name]
        with torch.no_grad():
            errors[name] = (layer(x) - ref).abs().mean().item()
    assert errors["w4a16"] < errors["w4a8-emu"] < errors["w4a4-emu"]


def test_int4_codes_round_to_nearest_within_half_a_step():
    w = torch.randn(32, 128)
    q = quantize_int4(w, 64)
    assert q.codes.dtype == torch.uint8 and int(q.codes.max()) <= 15
    step = q.scales.repeat_interleave(64, dim=1)
    # half a step, plus the bf16 rounding of the stored zero (2^-9 relative)
    assert torch.all((q.dequantize() - w).abs() <= step / 2 + q.zeros.abs().repeat_interleave(64, 1) * 2**-8)


# -- switching ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("before, after", list(itertools.product(MODE_NAMES, repeat=2)))
def test_switching_between_any_two_modes_equals_a_fresh_model(before, after):
    switched = quantized_model()
    decode_logits(switched, [before] * 3)
    got = decode_logits(switched, [after] * 3)
    fresh = decode_logits(quantized_model(after), [after] * 3)
    for a, b in zip(got, fresh, strict=True):
        assert torch.equal(a, b)


def test_switch_inside_a_decode_loop_keeps_the_kv_cache():
    schedule = ["w4a16", "w4a4-emu", "w4a8-emu", "w4a16"]
    model = quantized_model()
    with torch.no_grad():
        step = model.prefill(*model_inputs(model.config))
        keys = [layer.keys.clone() for layer in step.cache.layers]
        token = step.logits[:, -1:].argmax(-1)
        for mode in schedule[1:]:
            set_precision(model, mode)
            step = model.extend(step.cache, token)
            token = step.logits[:, -1:].argmax(-1)
    for before, layer in zip(keys, step.cache.layers, strict=True):  # prefill positions untouched
        assert torch.equal(layer.keys[..., : before.shape[-2], :], before)
    assert step.cache.get_seq_length() == keys[0].shape[-2] + 3
    # and the whole schedule is reproduced by a model that never ran anything else
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            decode_logits(quantized_model(), schedule),
            decode_logits(quantized_model(), schedule),
            strict=True,
        )
    )


def test_switch_is_only_a_pointer_flip():
    model = quantized_model()
    ladder = get_ladder(model)
    layers = list(ladder.layers.values())
    before = [(layer.packed.data_ptr(), layer.scales_and_zeros.data_ptr()) for layer in layers]
    for name in MODE_NAMES:
        set_precision(model, name)
        assert ladder.mode == name and all(layer._selector.mode.name == name for layer in layers)
    assert before == [(layer.packed.data_ptr(), layer.scales_and_zeros.data_ptr()) for layer in layers]


def test_a_copied_model_switches_independently():
    model = quantized_model("w4a8-emu")
    twin = copy.deepcopy(model)
    set_precision(twin, "w4a4-emu")
    assert get_ladder(model).mode == "w4a8-emu" and get_ladder(twin).mode == "w4a4-emu"
    assert all(layer._selector is get_ladder(twin)._selector for layer in get_ladder(twin).layers.values())
    assert torch.equal(decode_logits(twin, ["w4a16"])[0], decode_logits(model, ["w4a16"])[0])


# -- one stored copy ---------------------------------------------------------------------------------
def test_one_stored_copy_serves_every_mode():
    model = quantized_model()
    ladder = get_ladder(model)
    cfg = model.config
    assert len(ladder.layers) == 7 * cfg.num_layers
    expected = 0
    for layer in ladder.layers.values():
        # nothing but the packed codes, the bf16 (scale, zero) per group and the bias slot
        assert [n for n, _ in layer.named_buffers()] == ["packed", "scales_and_zeros"]
        assert not [k for k, v in vars(layer).items() if isinstance(v, torch.Tensor)]
        n, k = layer.out_features, layer.in_features
        assert layer.packed.dtype == torch.uint8 and layer.packed.numel() == n * k // 2
        assert layer.scales_and_zeros.dtype == torch.bfloat16
        assert layer.scales_and_zeros.numel() == 2 * n * k // GROUP
        expected += n * k // 2 + 4 * n * k // GROUP
    assert ladder.held_bytes() == expected
    assert ladder.held_bytes() / ladder.bf16_bytes == pytest.approx((0.5 + 4 / GROUP) / 2)
    total = module_bytes(model)
    for name in MODE_NAMES:  # running every mode creates no cached per-mode weights
        decode_logits(model, [name] * 2)
        assert module_bytes(model) == total and ladder.held_bytes() == expected
    assert not any(isinstance(m, nn.Linear) for m in model.llama.modules())  # every decoder linear replaced


def test_unquantized_parts_stay_full_precision():
    model = quantized_model()
    assert model.llama.embed_tokens.weight.dtype == torch.float32
    assert model.lm_head.weight.dtype == torch.float32 and isinstance(model.lm_head, nn.Linear)
    assert all(isinstance(m, nn.Linear) for m in model.projector if not isinstance(m, nn.GELU))


def test_tied_weights_are_counted_once():
    model = VlaModel(small_config())
    untied = module_bytes(model)
    model.lm_head.weight = model.llama.embed_tokens.weight
    assert untied - module_bytes(model) == model.lm_head.weight.numel() * 4


# -- runtime integration -----------------------------------------------------------------------------
def test_policy_serves_each_mode_per_call():
    model = quantized_model()
    policy = Policy(model)
    policy.enable_ladder(get_ladder(model))
    assert policy.precisions == MODE_NAMES
    obs = observation(model.config)
    results = {name: policy.act(obs, precision=name) for name in reversed(MODE_NAMES)}
    for name, result in results.items():
        assert result.precision == name and result.fallback is None
        reference = Policy(quantized_model(name))
        reference.enable_ladder(get_ladder(reference.model))
        np.testing.assert_array_equal(result.token_ids, reference.act(obs, precision=name).token_ids)
    unknown = policy.act(obs, precision="w2a2")
    assert unknown.precision == "w4a16" and "w2a2" in unknown.fallback
    np.testing.assert_array_equal(unknown.token_ids, results["w4a16"].token_ids)


def test_policy_falls_back_to_the_top_mode_when_a_mode_fails(monkeypatch):
    torch.manual_seed(0)
    policy = Policy(VlaModel(small_config()))
    quantize_policy(policy, group=GROUP)
    model = policy.model
    assert policy.precisions == MODE_NAMES
    obs = observation(model.config)
    top = policy.act(obs, precision="w4a16")

    def broken(*_, **__):
        raise RuntimeError("kernel unavailable")

    monkeypatch.setattr(ladder_module, "quantize_per_token", broken)  # w4a8-emu's per-token path
    out = policy.act(obs, precision="w4a8-emu")
    assert out.precision == "w4a16" and "w4a8-emu" in out.fallback and "kernel unavailable" in out.fallback
    np.testing.assert_array_equal(out.token_ids, top.token_ids)
    assert out.action.shape == (model.config.action_dim,) and np.all(np.isfinite(out.action))
    monkeypatch.setattr(ladder_module, "int4_matmul", broken)  # the top mode itself: nothing to fall to
    with pytest.raises(RuntimeError, match="kernel unavailable"):
        policy.act(obs, precision="w4a16")


def test_switching_from_another_thread_lands_between_steps():
    model = quantized_model()
    policy = Policy(model)
    policy.enable_ladder(get_ladder(model))
    obs = observation(model.config)
    expected = {name: policy.act(obs, precision=name).token_ids for name in MODE_NAMES}
    stop = threading.Event()

    def switcher() -> None:
        i = 0
        while not stop.is_set():
            set_precision(model, MODE_NAMES[i % 3])
            i += 1

    thread = threading.Thread(target=switcher)
    thread.start()
    try:
        for i in range(12):
            name = MODE_NAMES[(i * 2) % 3]
            out = policy.act(obs, precision=name)
            assert out.precision == name
            np.testing.assert_array_equal(out.token_ids, expected[name])
    finally:
        stop.set()
        thread.join()


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_requests_are_refused_with_a_reason():
    model = VlaModel(small_config())
    with pytest.raises(ValueError, match="multiple of the group size 128"):
        quantize_model(model, group=128)
    assert not any(isinstance(m, Int4Linear) for m in model.modules())  # nothing half-done
    with pytest.raises(ValueError, match="group size 16 not supported"):
        quantize_model(model, group=16)
    with pytest.raises(ValueError, match="no precision ladder"):
        set_precision(model, "w4a16")
    quantize_model(model, group=GROUP)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(model, group=GROUP)
    with pytest.raises(ValueError, match="unknown precision mode 'w3a3'"):
        set_precision(model, "w3a3")
    with pytest.raises(ValueError, match="mark it emulated"):
        Mode("w4a8", act_bits=8)
    with pytest.raises(ValueError, match="named '...-emu'"):
        Mode("w4a8-fast", act_bits=8, emulated=True)
    with pytest.raises(ValueError, match="2..8"):
        fake_quantize(torch.ones(2, 4), bits=1)


# -- the measured alternatives and the benchmark report -----------------------------------------------
def action_logits(model: VlaModel, inputs) -> torch.Tensor:
    """Action-bin logits at every position a decoder reads: the prefill's last, then three action tokens."""
    first = model.action_first_id
    step = model.prefill(*inputs)
    more = model.extend(step.cache, torch.tensor([[first + 10, first + 100, first + 200]]))
    return torch.cat([step.logits, more.logits], 1)[..., first:]


def test_alternative_strategies_compute_what_they_claim():
    torch.manual_seed(0)
    fp32 = VlaModel(small_config()).eval()
    inputs = model_inputs(fp32.config)
    with torch.no_grad():
        ref = action_logits(fp32, inputs)
    held = {}
    for name in STRATEGIES:
        model = copy.deepcopy(fp32)
        strategy = install_strategy(model, name, GROUP)
        for mode in strategy.modes:
            strategy.set(mode)
            held[name, mode] = strategy.held_bytes()
            with torch.no_grad():
                got = action_logits(model, inputs)
            # At the positions decoders read, int4 rounding of random weights moves these logits by about
            # 10 % (int4 activations or int4-whole's table and head: about 14 %), int8 and bf16 by < 1 %.
            if mode.startswith("w4"):
                limit = 0.2 if name == "int4-whole" or mode == "w4a4-emu" else 0.13
            else:
                limit = 0.02
            assert float((got - ref).norm() / ref.norm()) < limit, (name, mode)
    lin = sum(m.weight.numel() for *_, m in find_linears(fp32, DECODER_LINEARS))
    int4 = lin // 2 + 4 * lin // GROUP
    assert held["int4-master", "w4a16"] == int4
    cfg = fp32.config
    vocab = (cfg.vocab_size + cfg.n_bins) * cfg.hidden_size  # the table, and the head's action rows
    assert held["int4-whole", "w4a16"] == int4 + vocab // 2 + 4 * vocab // GROUP
    assert held["int8-master", "w4a16"] > held["int8-master", "w8a16"] >= lin  # the derived copy is extra
    assert held["pre-packed", "bf16"] == held["pre-packed", "w4a16"] >= int4 + lin + 2 * lin
    with pytest.raises(ValueError, match="unknown strategy"):
        install_strategy(copy.deepcopy(fp32), "int2-master")


def test_benchmark_section_renders_a_report():
    torch.manual_seed(0)
    fp32 = VlaModel(small_config()).eval()
    policy = Policy(fp32)
    observations = random_observations(policy, 2)
    settings = BenchSettings(GROUP, warmup=0, repeats=1, strategies=tuple(STRATEGIES), sweep_groups=True)
    section = bench_section(fp32, observations, settings, policy.actions, log=lambda _: None)
    assert {k["kernel"] for k in section["kernels"] if "decode_ms" in k} >= {"fp32 dense (F.linear)"}
    assert all(("decode_ms" in k) != ("error" in k) for k in section["kernels"])
    mem = section["memory"]
    assert mem["ladder_linears"] / mem["bf16_decoder_linears"] == pytest.approx((0.5 + 4 / GROUP) / 2)
    assert set(section["errors"]) == {"bf16", *MODE_NAMES, *(f"{m} (int4-whole)" for m in MODE_NAMES)}
    whole = next(e for e in section["strategies"] if e["strategy"] == "int4-whole")
    assert whole["decoder_bytes"] < mem["ladder_decoder"] and "bf16-action-head" in section["latency"]
    section.update(
        inputs="2 random observations",
        model={
            "label": "test",
            "description": "tiny",
            "prefill_tokens": section["prefill_tokens"],
            "action_tokens": 4,
            "vocab_size": fp32.config.vocab_size,
            "hidden_size": 64,
        },
    )
    machine = machine_info() | {"load_average_end": [0.0, 0.0, 0.0]}
    text = render(
        {
            "command": "test",
            "date": "today",
            "machine": machine,
            "settings": {"group": GROUP, "warmup": 0, "repeats": 1},
            "realistic": section,
        }
    )
    assert "### Targets" in text and all(name in text for name in MODE_NAMES)
    # the baseline is the faster full precision, and each decode time stands beside its physical limit
    fastest = min(("fp32", "bf16"), key=lambda k: section["latency"][k]["action"]["median_ms"])
    assert f"Baseline: **{fastest}**" in text and f"vs baseline ({fastest})" in text
    formats = section["decode_limit"]["formats"]
    assert formats["int4-master"]["bytes"] < formats["bf16"]["bytes"] < formats["fp32"]["bytes"]
    assert "decode limit: bytes / bandwidth (ms)" in text and "within 2x of its bytes" in text
    assert "int8-master" in text and "pre-packed" in text and "w4a16 (int4-whole)" in text
    assert "whole decoder (embeddings, layers, norm, head), int4-whole" in text
    sweep = {r["group"]: r for r in section["group_sweep"]}
    assert sweep[64]["fraction_of_bf16_linears"] < sweep[32]["fraction_of_bf16_linears"]
    assert "multiple of the group size 128" in sweep[128]["not_applicable"]


@pytest.mark.parametrize("ladder", ["int4", "int4-whole"])
def test_inference_node_loader_serves_the_int4_ladder_when_configured(ladder):
    """precision_ladder: int4 makes the node's policy serve every ladder mode; 'none' only fp32."""
    from vla_accel_ros.params import InferenceParams
    from vla_accel_ros.quant import DEFAULT_MODES
    from vla_accel_ros.ros.inference_node import load_policy

    plain, _ = load_policy(InferenceParams.from_mapping({"num_threads": 1}))
    assert plain.precisions == ["fp32"]
    policy, make_input = load_policy(
        InferenceParams.from_mapping({"precision_ladder": ladder, "quant_group_size": 32, "num_threads": 1})
    )
    assert policy.precisions == [m.name for m in DEFAULT_MODES]
    assert isinstance(policy.model.llama.embed_tokens, Int4Embedding) == (ladder == "int4-whole")
    inp = make_input(
        images={c: np.zeros((64, 64, 3), np.uint8) for c in policy.cameras},
        joint_positions=np.zeros(policy.config.state_dim, np.float32),
        instruction="reach the goal",
    )
    for mode in policy.precisions:
        result = policy.act(inp, precision=mode)
        assert result.precision == mode and np.isfinite(result.action).all()
    # the shipped draft was folded before the table and head were quantized: KERV still decodes
    assert policy.draft is not None
    result = policy.act(inp, decoding="kerv", threshold=9.0)
    assert np.isfinite(result.action).all() and result.draft_tokens > 0, result.fallback


# -- the vocabulary in the same copy (vocab=True) ----------------------------------------------------
def test_int4_embedding_gathers_the_dequantized_rows():
    torch.manual_seed(2)
    emb = nn.Embedding(50, 64)
    table = Int4Embedding(emb, GROUP)
    reference = quantize_groups(emb.weight, GROUP).dequantize()
    ids = torch.tensor([[0, 7, 49], [3, 3, 12]])
    assert torch.equal(table(ids), reference[ids]) and torch.equal(table.weight, reference)
    assert table.packed.dtype == torch.uint8 and table.packed.numel() == 50 * 64 // 2
    assert table.scales_and_zeros.dtype == torch.bfloat16 and table.scales_and_zeros.numel() == 50 * 2 * 2
    groups = emb.weight.detach().reshape(50, 2, GROUP)
    step = (groups.amax(-1) - groups.amin(-1)) / 15
    assert torch.all((reference.reshape(50, 2, GROUP) - groups).abs() <= step.unsqueeze(-1) * 0.51 + 1e-3)


def test_action_head_scores_only_the_bins_and_decodes_the_same_tokens():
    torch.manual_seed(0)
    model = VlaModel(small_config()).eval()
    cut = copy.deepcopy(model)
    restrict_head(cut)
    first = model.action_first_id
    with torch.no_grad():
        full, mine = model.prefill(*model_inputs(model.config)), cut.prefill(*model_inputs(model.config))
    assert mine.logits.shape == full.logits.shape
    assert torch.allclose(mine.logits[..., first:], full.logits[..., first:], atol=1e-6)
    assert torch.all(mine.logits[..., :first] == torch.finfo(torch.float32).min)
    assert torch.equal(action_argmax(mine.logits, first), action_argmax(full.logits, first))
    assert cut.lm_head.bins.weight.shape == (model.config.n_bins, model.config.hidden_size)


def test_vocab_ladder_holds_the_whole_tied_decoder_once_in_int4():
    torch.manual_seed(0)
    model = VlaModel(small_config()).eval()
    model.lm_head.weight = model.llama.embed_tokens.weight  # tied, as in SmolLM2
    reference = copy.deepcopy(model)
    cfg = model.config
    v, d, bins = cfg.vocab_size, cfg.hidden_size, cfg.n_bins
    linears_bf16 = sum(2 * lin.weight.numel() for *_, lin in find_linears(model, DECODER_LINEARS))
    ladder = quantize_model(model, group=GROUP, vocab=True)
    assert isinstance(model.llama.embed_tokens, Int4Embedding) and isinstance(model.lm_head, ActionHead)
    assert ladder.bf16_bytes == linears_bf16 + 2 * v * d  # the tied table counted once
    quarter = lambda n, k: n * k // 2 + 4 * n * k // GROUP  # noqa: E731  int4 codes + bf16 scale/zero
    linears = sum(
        quarter(lin.out_features, lin.in_features) for *_, lin in find_linears(reference, DECODER_LINEARS)
    )
    assert ladder.held_bytes() == linears + quarter(v, d) + quarter(bins, d)
    dense = [n for n, t in held_tensors(model.llama) if t.dtype == torch.float32 and v in t.shape]
    assert not dense and not [n for n, t in held_tensors(model.lm_head) if t.dtype == torch.float32]

    # Each mode decodes from the int4 table and head: the top mode agrees with a dense model that holds
    # the same dequantized weights (bf16 activations and outputs account for the tolerance).
    with torch.no_grad():
        for name, layer in get_ladder(model).layers.items():
            if not isinstance(layer, Int4Linear) or name == "lm_head.bins":
                continue
            parent = reference.llama.get_submodule(name)
            parent.weight.copy_(quantize_int4(parent.weight, GROUP).dequantize())
        reference.llama.embed_tokens = nn.Embedding.from_pretrained(model.llama.embed_tokens.weight)
        restrict_head(reference)
        reference.lm_head.bins.weight.copy_(quantize_int4(reference.lm_head.bins.weight, GROUP).dequantize())
        for mode in MODE_NAMES:
            assert torch.isfinite(decode_logits(model, [mode] * 3)[-1][..., cfg.vocab_size - bins :]).all()
        got = decode_logits(model, ["w4a16"])[0][..., -bins:]
        want = reference.prefill(*model_inputs(cfg)).logits[:, -1, -bins:]
    assert torch.allclose(got, want, rtol=0.05, atol=0.05 * float(want.abs().max()))


def test_vocab_ladder_refuses_a_model_it_cannot_cut():
    model = VlaModel(small_config()).eval()
    model.lm_head = nn.Identity()
    with pytest.raises(ValueError, match="dense lm_head"):
        quantize_model(model, group=GROUP, vocab=True)
    assert not any(isinstance(m, Int4Linear) for m in model.modules())  # nothing changed
