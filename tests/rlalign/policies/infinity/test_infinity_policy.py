"""InfinityPolicy on tiny random models of other sizes than the golden set: exact prefix log-probs for
every m, the sampler's bit frequencies against exp(log_prob), the frozen suffix, LoRA, RoPE-2d on a
non-square schedule, spatial patchify, loading and configuration errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from support import one_torch_thread
from support.infinity import GOLDEN_DIR, tiny_model, write_model_directory

from rlalign.config.loading import build
from rlalign.config.schema import PolicyConfig
from rlalign.policies.infinity.model import load_directory, load_transformer_state
from rlalign.policies.infinity.policy import InfinityPolicy
from rlalign.policies.infinity.schedules import SCALES_1M, rope_angles, schedule
from rlalign.policies.registry import load_policy

pytestmark = pytest.mark.skipif(not (GOLDEN_DIR / "text_encoder").is_dir(), reason="needs the golden T5 encoder")
_one_thread = pytest.fixture(autouse=True)(one_torch_thread)
NON_SQUARE = [(1, 1), (2, 2), (4, 2), (6, 3)]  # the first scales of the h/w = 2 template
PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon , oil painting"]


def perturbed_policy(model, seed: int = 1, **sampling) -> InfinityPolicy:
    """A policy whose adapter is far from zero, so adapter-on and adapter-off differ visibly."""
    policy = InfinityPolicy(model, lora_rank=2, **sampling)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.trainable_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return policy


@pytest.fixture
def non_square_model():
    """A fresh model per test: a policy wraps its transformer with LoRA layers in place."""
    return tiny_model(NON_SQUARE, h_div_w=2.0, seed=3)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_rollout_log_probs_are_exact_for_every_m(non_square_model, m):
    policy = perturbed_policy(non_square_model)
    rollout = policy.rollout(PROMPTS * 2, m, generator=torch.Generator().manual_seed(m))
    assert [lp.shape for lp in rollout.old_logp] == [(4, h * w) for h, w in NON_SQUARE[:m]]
    rescored = policy.log_prob(rollout)
    gap = max((new.detach() - old).abs().max().item() for new, old in zip(rescored, rollout.old_logp))
    assert gap == 0.0, f"on-policy gap {gap} at m = {m}"
    assert rollout.sampler_logp_gap.max().item() < 1e-4  # KV-cached sampler vs teacher-forced re-score
    assert all(torch.isfinite(lp).all() for lp in rollout.old_logp)
    assert rollout.outputs.shape == (4, 3, 96, 48)  # 6×3 tokens of 16 pixels: a 2:1 image


def test_sampled_bit_frequencies_match_exp_log_prob():
    """Scale 1 (adapter on) and scale 2 of the frozen suffix after a fixed prefix: the empirical
    frequency of every bit value against the policy's own probability for it, within 5 standard errors
    (a 3-scale model: decoding is most of a rollout's cost, and only scales 1-2 are checked)."""
    policy = perturbed_policy(tiny_model(NON_SQUARE[:3], h_div_w=2.0, seed=3), top_p=1.0)
    draws = 1500
    rollout = policy.rollout([PROMPTS[0]] * draws, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p1_scale1 = policy.logits([PROMPTS[0]], [rollout.state.bits[0][:1]], cfg_scale=3.0, temperature=0.5)[0]
    check_frequencies(rollout.state.bits[0].float().mean(0), p1_scale1.softmax(-1)[0, ..., 1], draws, "scale 1")
    first = rollout.select([0])
    _, _, bits = policy.complete(first, draws, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), policy.adapter_disabled():
        p1_scale2 = policy.logits([PROMPTS[0]], [first.state.bits[0], bits[1][:1]], cfg_scale=3.0,
                                  temperature=0.5)[1]
    check_frequencies(bits[1].float().mean(0), p1_scale2.softmax(-1)[0, ..., 1], draws, "scale 2 (frozen suffix)")


def check_frequencies(frequency_nb, probability_nb, draws: int, where: str) -> None:
    std = (probability_nb * (1 - probability_nb) / draws).sqrt().clamp_min(1e-3)
    z = ((frequency_nb - probability_nb).abs() / std).max().item()
    assert z < 5, f"{where}: a bit's frequency is {z:.1f} standard errors from its probability"


def test_top_p_makes_bits_deterministic_and_scores_them_zero(non_square_model):
    """At top-p 0.9 a bit whose minority value has p ≤ 0.1 is deterministic: the value is never drawn."""
    policy = perturbed_policy(non_square_model, top_p=0.9)
    rollout = policy.rollout(PROMPTS * 8, 4, generator=torch.Generator().manual_seed(5))
    removed = sum(int((~k).sum()) for k in rollout.state.kept_masks)
    assert removed > 0, "expected top-p to remove some values with these weights"
    for k, kept in enumerate(rollout.state.kept_masks):
        taken = kept.gather(-1, rollout.state.bits[k].long().unsqueeze(-1))
        assert taken.all(), f"scale {k + 1}: a removed value was drawn"


def test_frozen_suffix_uses_the_base_and_the_prefix_uses_the_adapter(non_square_model):
    policy = perturbed_policy(non_square_model)
    rollout = policy.rollout(PROMPTS, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        adapted = policy.log_prob(rollout)
        with policy.adapter_disabled():
            base = policy.log_prob(rollout)
    assert (adapted[1] - base[1]).abs().max() > 1e-2  # the adapter changes the prefix's distribution
    bits = rollout.state.bits
    with torch.no_grad(), policy.adapter_disabled():
        suffix_base = policy.logits(PROMPTS, bits, cfg_scale=3.0, temperature=0.5)[3]
    with torch.no_grad():
        suffix_adapted = policy.logits(PROMPTS, bits, cfg_scale=3.0, temperature=0.5)[3]
    # the sampled scale-4 bits are likelier under the base than under the adapter on average
    taken = bits[3].long().unsqueeze(-1)
    base_lp = suffix_base.log_softmax(-1).gather(-1, taken).sum()
    adapted_lp = suffix_adapted.log_softmax(-1).gather(-1, taken).sum()
    assert base_lp > adapted_lp


def test_adapter_round_trip_in_peft_format(non_square_model, tmp_path):
    policy = perturbed_policy(non_square_model)
    rollout = policy.rollout(PROMPTS, 3, generator=torch.Generator().manual_seed(4))
    policy.save_adapter(tmp_path / "adapter")
    fresh = InfinityPolicy(tiny_model(NON_SQUARE, h_div_w=2.0, seed=3), lora_rank=2)
    fresh.load_adapter(tmp_path / "adapter")
    with torch.no_grad():
        for ours, theirs in zip(policy.log_prob(rollout), fresh.log_prob(rollout)):
            assert torch.equal(ours, theirs)
    names = {name for name, _ in policy.transformer.named_modules() if name.endswith("lora_A")}
    assert names and all(".sa." in n or ".ca." in n or ".ffn." in n for n in names)
    assert not any("text_proj" in n for n in names)


def test_rope_positions_on_a_non_square_map_are_spread_over_the_last_map():
    """h/w = 2: the 1M schedule ends at 90×45; a 4×2 map's token (row 1, column 1) sits at grid (22, 22)
    (round(1·90/4) = round(22.5) = 22, half to even; round(1·45/2) = 22), whose first row angle is
    22·θ_0 = 22 rad and whose first column angle (pair head_dim/4) is 22 rad too."""
    head_dim = 16
    angles = rope_angles(head_dim, 2.0)
    assert angles.shape == (2, sum(h * w for h, w in SCALES_1M[2.0]), head_dim // 2)
    token = 1 + 4 + 1 * 2 + 1  # after the 1×1 and 2×2 maps: row 1, column 1 of the 4×2 map
    cos = angles[0, token]
    assert math.isclose(cos[0].item(), math.cos(22.0), abs_tol=1e-6)
    assert math.isclose(cos[head_dim // 4].item(), math.cos(22.0), abs_tol=1e-6)
    row3 = 1 + 4 + 3 * 2  # row 3, column 0: round(67.5) = 68
    assert math.isclose(angles[0, row3, 0].item(), math.cos(68.0), abs_tol=1e-6)


def test_spatial_patchify_policy_is_exact():
    model = tiny_model([(1, 1), (2, 2), (3, 3)], seed=5, codebook_dim=4, apply_spatial_patchify=True)
    policy = perturbed_policy(model)
    rollout = policy.rollout(PROMPTS, 2, generator=torch.Generator().manual_seed(0))
    assert rollout.state.bits[1].shape == (2, 4, 16) and rollout.outputs.shape == (2, 3, 48, 48)
    assert max((a.detach() - b).abs().max().item() for a, b in zip(policy.log_prob(rollout), rollout.old_logp)) == 0
    bits = policy.encode(rollout.outputs)
    assert [b.shape for b in bits] == [b.shape for b in rollout.state.bits]


def test_directory_loading_and_config_defaults(non_square_model, tmp_path):
    directory = write_model_directory(non_square_model, tmp_path / "model")
    policy = load_policy(build(PolicyConfig, {"kind": "infinity", "checkpoint": str(directory),
                                             "temperature": 1.0, "lora": {"rank": 2}}))
    assert policy.sampling == {"cfg_scale": 3.0, "temperature": 1.0, "top_k": 900, "top_p": 0.97}
    assert policy.model.scales == NON_SQUARE and policy.num_steps == 4
    cfg = build(PolicyConfig, {"kind": "infinity", "checkpoint": str(directory), "infinity": {"num_scales": 3}})
    assert InfinityPolicy.declared_num_steps(cfg) == 3 and load_policy(cfg).model.scales == NON_SQUARE[:3]
    square = build(PolicyConfig, {"kind": "infinity", "checkpoint": str(directory), "infinity": {"aspect_ratio": 1.0}})
    assert InfinityPolicy.declared_num_steps(square) == 4  # an aspect ratio alone keeps the directory's scale count
    assert load_policy(square).model.scales == [(1, 1), (2, 2), (4, 4), (6, 6)]


def test_official_files_load_with_explicit_sizes(non_square_model, tmp_path):
    """The official layout: a transformer .pth, a VAE .pth holding {'vae': ...}, a T5 directory and sizes."""
    torch.save(non_square_model.transformer.state_dict(), tmp_path / "transformer.pth")
    torch.save({"vae": {k: v.clone() for k, v in non_square_model.vae.state_dict().items()}}, tmp_path / "vae.pth")
    arch, vae = non_square_model.arch, non_square_model.vae.config
    sizes = {"embed_dim": arch.embed_dim, "depth": arch.depth, "num_heads": arch.num_heads,
             "codebook_dim": arch.codebook_dim, "text_channels": arch.text_channels, "text_maxlen": arch.text_maxlen,
             "vae": {"base_ch": vae.base_ch, "encoder_ch_mult": list(vae.encoder_ch_mult),
                     "decoder_ch_mult": list(vae.decoder_ch_mult), "num_res_blocks": vae.num_res_blocks}}
    cfg = build(PolicyConfig, {"kind": "infinity", "checkpoint": str(tmp_path / "transformer.pth"),
                               "vae_checkpoint": str(tmp_path / "vae.pth"), "architecture": sizes,
                               "infinity": {"text_encoder": str(GOLDEN_DIR / "text_encoder"), "aspect_ratio": 2.0,
                                            "num_scales": 4}, "lora": {"rank": 2}})
    loaded = load_policy(cfg)
    assert loaded.model.scales == NON_SQUARE
    reference = InfinityPolicy(non_square_model, lora_rank=2)
    rollout = reference.rollout(PROMPTS, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(reference.log_prob(rollout), loaded.log_prob(rollout)))
        assert torch.equal(reference.decode(rollout.state.bits), loaded.decode(rollout.state.bits))
    wrong = build(PolicyConfig, {**dataclasses.asdict(cfg), "architecture": {**sizes, "depth": 4}})
    with pytest.raises(ValueError, match=r"does not fit the architecture.*missing, e\.g\. \['blocks\.3"):
        load_policy(wrong)


def test_the_suffix_runs_on_the_base_even_with_an_adapter_on_the_text_side():
    """Targets `proj` also adapt the text pooling's output (the condition): the suffix must still be the
    base's, i.e. complete() draws exactly what the base draws from the same prefix and random numbers."""
    model = tiny_model(NON_SQUARE, h_div_w=2.0, seed=3)
    policy = InfinityPolicy(model, lora_rank=2, target_modules=["proj"])
    with torch.no_grad():
        for parameter in policy.trainable_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)) * 0.3)
    assert any("text_proj_for_sos" in name for name, _ in model.transformer.named_modules() if name.endswith("lora_A"))
    rollout = policy.rollout(PROMPTS, 2, generator=torch.Generator().manual_seed(0))
    _, _, completed = policy.complete(rollout, 1, generator=torch.Generator().manual_seed(9))
    with policy.adapter_disabled():
        _, _, base = policy.complete(rollout, 1, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(a, b) for a, b in zip(completed, base))


def test_level_embedding_placement_follows_the_reference():
    """Before block 0 only; with the flag off, before every chunk, which unchunked means every block."""
    first_only = tiny_model([(1, 1), (2, 2)], depth=4)
    assert first_only.transformer._chunk_starts() == {0}
    every_block = tiny_model([(1, 1), (2, 2)], depth=4, add_lvl_embedding_only_first_block=False)
    assert every_block.transformer._chunk_starts() == {0, 1, 2, 3}
    every_chunk = tiny_model([(1, 1), (2, 2)], depth=4, block_chunks=2, add_lvl_embedding_only_first_block=False)
    assert every_chunk.transformer._chunk_starts() == {0, 2}


def test_key_coverage_is_strict(non_square_model):
    state = dict(non_square_model.transformer.state_dict())
    model = tiny_model(NON_SQUARE, h_div_w=2.0)
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(ValueError, match=r"1 missing, e\.g\. \['head\.bias'\]"):
        load_transformer_state(model.transformer, missing)
    with pytest.raises(ValueError, match=r"1 unexpected, e\.g\. \['blocks\.9\.ffn\.fc1\.weight'\]"):
        load_transformer_state(model.transformer, {**state, "blocks.9.ffn.fc1.weight": state["head.bias"]})


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such Infinity checkpoint"):
        load_policy(build(PolicyConfig, {"kind": "infinity", "checkpoint": str(tmp_path / "nothing")}))
    (tmp_path / "transformer.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="also give policy.vae_checkpoint"):
        load_policy(build(PolicyConfig, {"kind": "infinity", "checkpoint": str(tmp_path / "transformer.pth")}))
    with pytest.raises(ValueError, match="unknown Infinity resolution"):
        schedule("2M")


def test_golden_directory_loads_as_a_policy_with_the_reference_schedule():
    model = load_directory(GOLDEN_DIR)
    assert model.scales == [(1, 1), (2, 2), (4, 4), (6, 6)] and model.arch.block_chunks == 2


def test_prompt_rows_condition_on_their_prompt(non_square_model):
    """jsonl:/hf: rows reach the policy whole (their other columns are the rewards'); it reads their "prompt"."""
    policy = perturbed_policy(non_square_model)
    rows = [{"prompt": text, "solution": "x"} for text in PROMPTS]
    policy.check_prompts(rows, where="prompts.train")
    as_rows = policy.rollout(rows, 2, generator=[torch.Generator().manual_seed(s) for s in range(2)])
    as_text = policy.rollout(PROMPTS, 2, generator=[torch.Generator().manual_seed(s) for s in range(2)])
    assert all(torch.equal(a, b) for a, b in zip(as_rows.state.bits, as_text.state.bits))
    with pytest.raises(ValueError, match="prompts.train: the infinity family takes text prompts .*got conversational messages"):
        policy.check_prompts([{"prompt": [{"role": "user", "content": "a cat"}]}], where="prompts.train")
