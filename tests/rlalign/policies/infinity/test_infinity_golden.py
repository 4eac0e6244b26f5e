"""Infinity's transformer, text encoder, sampler distribution and policy against the reference's golden
vectors (shared/golden/infinity: FoundationVision/Infinity run on CPU in float32; its README lists every
tensor and the tolerances used here: logits ~1e-3, CFG logits ~5e-3, images ~1e-4, log-prob sums
relatively ~1e-5, bits and top-p masks exactly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import one_torch_thread

from rlalign.policies.infinity.layers import Condition, TextFeatures
from rlalign.policies.infinity.model import load_directory
from rlalign.policies.infinity.sampler import (
    bit_log_probs,
    drawn_log_probs,
    guided_bit_logits,
    kept_values,
    multinomial_bits,
)
from rlalign.policies.infinity.transformer import bit_logits

GOLDEN_DIR = Path(__file__).resolve().parents[4].parent / "shared" / "golden" / "infinity"
LOGIT_TOLERANCE = 1e-3
CFG_TOLERANCE = 5e-3
IMAGE_TOLERANCE = 1e-4
LOGPROB_RELATIVE = 1e-5

needs_golden = pytest.mark.skipif(not (GOLDEN_DIR / "vectors.safetensors").is_file(),
                                  reason=f"golden Infinity vectors not found at {GOLDEN_DIR}")
pytestmark = needs_golden
_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(actual), finite), f"{name}: the -inf entries differ"
    error = (actual[finite].double() - expected[finite].double()).abs().max().item()
    assert error <= tolerance, f"{name}: max abs error {error:.3e} > {tolerance:.0e}"


@pytest.fixture(scope="module")
def golden():
    config = json.loads((GOLDEN_DIR / "config.json").read_text())
    return config, load_file(str(GOLDEN_DIR / "vectors.safetensors"))


@pytest.fixture(scope="module")
def model():
    return load_directory(GOLDEN_DIR)


def test_text_encoder_and_condition_match(golden, model):
    config, v = golden
    ids, mask = model.text.tokenize(config["prompts"])
    assert torch.equal(ids, v["input_ids"][:, : ids.shape[1]]) and torch.equal(mask.sum(-1), v["text_lens"])
    text = model.text.encode(config["prompts"])
    valid = mask.bool()
    assert_close(text.features_BTC[valid], v["kv_compact"], 1e-5, "text_features")
    cond = model.transformer.condition(TextFeatures(v["text_features"], v["text_lens"]))
    assert_close(model.transformer.text_norm(v["text_features"])[valid], v["tf_text_norm"], 1e-5, "tf_text_norm")
    assert_close(cond.cond_BD, v["tf_cond_BD"], 1e-5, "tf_cond_BD")
    assert_close(cond.kv_BTD[valid], v["tf_text_kv"], 1e-5, "tf_text_kv")


@torch.no_grad()
@pytest.mark.parametrize("half", ["cond", "uncond"])
def test_teacher_forced_logits_match(golden, model, half):
    _, v = golden
    text = TextFeatures(v["text_features"], v["text_lens"])
    cond = model.transformer.condition(text) if half == "cond" else model.transformer.null_condition(v["text_lens"])
    logits = model.transformer(cond, v["teacher_input"])
    assert_close(bit_logits(logits), v[f"logits_{half}"], LOGIT_TOLERANCE, f"logits_{half}")


@torch.no_grad()
def test_teacher_inputs_from_bits_match(golden, model):
    _, v = golden
    bits = [v[f"forced_bits_scale{k}"] for k in range(4)]
    assert_close(model.teacher_inputs(bits), v["teacher_input"], 1e-6, "teacher_input")


@torch.no_grad()
@pytest.mark.parametrize("run", ["forced", "sample"])
def test_kv_cached_sampler_distribution_matches(golden, model, run):
    """Scale by scale through the KV cache with the run's bits: CFG logits, top-p masks, log-prob sums."""
    config, v = golden
    sampling = config["sampling"]
    transformer = model.transformer
    text = TextFeatures(v["text_features"], v["text_lens"])
    both = Condition.stack(transformer.condition(text), transformer.null_condition(v["text_lens"]))
    cache, summed, next_input = transformer.new_cache(), None, None
    for k in range(len(transformer.scales)):
        bits = v[f"{run}_bits_scale{k}"]
        logits = transformer.step(both, None if next_input is None else torch.cat([next_input, next_input]), cache)
        scaled = guided_bit_logits(logits[:2], logits[2:], cfg_scale=sampling["cfg"], temperature=sampling["tau"])
        assert_close(scaled, v[f"{run}_cfg_logits_scale{k}"], CFG_TOLERANCE, f"{run}_cfg_logits_scale{k}")
        kept = kept_values(scaled, top_k=sampling["top_k"], top_p=sampling["top_p"])
        filtered = scaled.masked_fill(~kept, float("-inf"))
        assert_close(filtered, v[f"{run}_cfg_logits_filtered_scale{k}"], CFG_TOLERANCE, f"{run}_filtered_scale{k}")
        for name, mask in (("logprob", kept), ("logprob_unfiltered", None)):
            ours = drawn_log_probs(bit_log_probs(scaled, mask), bits).sum(dim=(1, 2))
            theirs = v[f"{run}_{name}"][:, k]
            finite = torch.isfinite(theirs)
            assert torch.equal(torch.isfinite(ours), finite), f"{run}_{name} scale {k}: -inf differs"
            relative = ((ours - theirs)[finite].abs() / theirs[finite].abs()).max().item() if finite.any() else 0.0
            assert relative <= LOGPROB_RELATIVE, f"{run}_{name} scale {k}: relative error {relative:.2e}"
        if run == "sample":  # the reference's draw: argmax(p / q) with its Exp(1) noise q
            probs = bit_log_probs(scaled, kept).exp()
            drawn = (probs / v[f"sample_expnoise_scale{k}"]).argmax(dim=-1)
            assert torch.equal(drawn.to(torch.uint8), bits), f"sample bits of scale {k} differ"
        summed, next_input = model.add_scale(summed, bits, k)
    assert_close(summed, v[f"{run}_summed_codes"], 1e-5, f"{run}_summed_codes")
    assert_close(model.latent_to_images(summed) * 2 - 1, v[f"{run}_decoded"], IMAGE_TOLERANCE, f"{run}_decoded")


def test_policy_reproduces_the_reference_images(golden):
    """The policy's researcher API: decode(bits) gives the reference's images; logits(...) its CFG logits."""
    from rlalign.config.loading import build
    from rlalign.config.schema import PolicyConfig
    from rlalign.policies.registry import load_policy

    config, v = golden
    policy = load_policy(build(PolicyConfig, {"kind": "infinity", "checkpoint": str(GOLDEN_DIR)}))
    assert policy.sampling == {"cfg_scale": 3.0, "temperature": 0.5, "top_k": 900, "top_p": 0.97}
    bits = [v[f"sample_bits_scale{k}"] for k in range(4)]
    assert_close(policy.decode(bits) * 2 - 1, v["sample_decoded"], IMAGE_TOLERANCE, "sample_decoded")
    with torch.no_grad():
        scaled = policy.logits(config["prompts"], bits, cfg_scale=3.0, temperature=0.5)
    for k, ours in enumerate(scaled):
        assert_close(ours, v[f"sample_cfg_logits_scale{k}"], CFG_TOLERANCE, f"policy.logits scale {k}")


@torch.no_grad()
def test_multinomial_draw_reproduces_the_reference_run_from_its_seed(golden):
    """The reference's stream: one generator seeded with g_seed, one multinomial per scale over the
    filtered logits (the golden README's sampler facts)."""
    config, v = golden
    generator = torch.Generator().manual_seed(config["sampling"]["g_seed"])
    for k in range(4):
        filtered = v[f"sample_cfg_logits_filtered_scale{k}"]
        assert torch.equal(multinomial_bits(filtered, generator), v[f"sample_bits_scale{k}"]), f"scale {k}"
