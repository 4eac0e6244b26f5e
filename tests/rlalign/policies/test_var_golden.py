"""VAR compatibility: reproduce the reference implementation's golden vectors, and check that the
KV-cached, prefix and prefill paths of the transformer agree with one full teacher-forced pass.

Golden vectors: shared/golden/var (see its README), produced by FoundationVision/VAR on CPU, float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlalign.policies.next_scale.transformer import (
    NextScaleTransformer,
    cfg_guidance_weight,
    mix_cfg_logits,
)
from rlalign.policies.next_scale.var_import import (
    CheckpointMismatchError,
    ImportedVAR,
    from_var_checkpoint,
    load_state_dict_file,
)

GOLDEN_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "golden" / "var"
FLOAT_TOLERANCE = 1e-4  # the golden README's agreement target for floats
CACHE_TOLERANCE = 1e-5  # KV-cached vs teacher-forced logits: same math, different reduction lengths

needs_golden = pytest.mark.skipif(
    not (GOLDEN_DIR / "vectors.safetensors").is_file(),
    reason=f"golden VAR vectors not found at {GOLDEN_DIR} (the repo's sibling shared/ directory)",
)


def assert_max_abs_error(actual: torch.Tensor, expected: torch.Tensor, tolerance: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= tolerance, f"{name}: max abs error {error:.3e} > {tolerance:.0e}"


@pytest.fixture(scope="module")
def golden_config() -> dict:
    return json.loads((GOLDEN_DIR / "config.json").read_text())


@pytest.fixture(scope="module")
def imported(golden_config: dict) -> ImportedVAR:
    return from_var_checkpoint(GOLDEN_DIR / "var.safetensors", GOLDEN_DIR / "vae.safetensors", golden_config)


@pytest.fixture(scope="module")
def vectors() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN_DIR / "vectors.safetensors"))


def golden_tokens(vectors: dict[str, torch.Tensor], num_scales: int) -> list[torch.Tensor]:
    return [vectors[f"tokens_scale{index}"] for index in range(num_scales)]


def cfg_conditions(transformer: NextScaleTransformer, labels_B: torch.Tensor) -> torch.Tensor:
    """[cond; uncond] stacked along the batch, as VAR's sampler runs the two CFG halves."""
    return torch.cat((transformer.class_condition(labels_B), transformer.null_condition(labels_B.shape[0])))


@needs_golden
@torch.no_grad()
def test_encode_reproduces_golden_tokens(imported: ImportedVAR, vectors: dict[str, torch.Tensor]) -> None:
    images_unit = (vectors["image"] + 1) / 2  # the golden image is in [-1, 1]; encode takes [0, 1]
    encoded = imported.tokenizer.encode(images_unit)
    assert len(encoded) == len(imported.config["patch_nums"])
    for scale_index, tokens_Bl in enumerate(encoded):
        expected = vectors[f"encoded_tokens_scale{scale_index}"]
        assert tokens_Bl.dtype == torch.long
        assert torch.equal(tokens_Bl, expected), f"scale {scale_index}: {tokens_Bl} != {expected}"


@needs_golden
@torch.no_grad()
def test_teacher_input_and_logits_reproduce_golden(
    imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    tokenizer, transformer, config = imported
    x_BLCvae = tokenizer.teacher_inputs(golden_tokens(vectors, len(config["patch_nums"])))
    assert_max_abs_error(x_BLCvae, vectors["teacher_input"], FLOAT_TOLERANCE, "teacher_input")
    logits_cond_BLV = transformer(transformer.class_condition(vectors["labels"]), x_BLCvae)
    assert_max_abs_error(logits_cond_BLV, vectors["logits_cond"], FLOAT_TOLERANCE, "logits_cond")
    null_labels_B = torch.full_like(vectors["labels"], config["num_classes"])
    logits_uncond_BLV = transformer(transformer.class_condition(null_labels_B), x_BLCvae)
    assert_max_abs_error(logits_uncond_BLV, vectors["logits_uncond"], FLOAT_TOLERANCE, "logits_uncond")


@needs_golden
@torch.no_grad()
def test_kv_cached_cfg_sampling_path_reproduces_golden(
    imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    """Scale-by-scale sampling with the tokens forced; also checks f̂ accumulation and its decoding."""
    tokenizer, transformer, config = imported
    num_scales, batch = len(config["patch_nums"]), vectors["labels"].shape[0]
    tokens = golden_tokens(vectors, num_scales)
    cond_2BD = cfg_conditions(transformer, vectors["labels"])
    cache, f_hat_BCHW, next_input_BlCvae = transformer.new_cache(), tokenizer.empty_f_hat(batch), None
    for scale_index in range(num_scales):
        logits_2BlV = transformer.step(cond_2BD, next_input_BlCvae, cache)
        weight = cfg_guidance_weight(config["cfg_scale"], scale_index, num_scales)
        logits_BlV = mix_cfg_logits(logits_2BlV[:batch], logits_2BlV[batch:], weight)
        expected = vectors[f"cfg_logits_scale{scale_index}"]
        assert_max_abs_error(logits_BlV, expected, FLOAT_TOLERANCE, f"cfg_logits_scale{scale_index}")
        f_hat_BCHW, next_input_BlCvae = tokenizer.accumulate(f_hat_BCHW, tokens[scale_index], scale_index)
        if next_input_BlCvae is not None:
            next_input_BlCvae = next_input_BlCvae.repeat(2, 1, 1)  # same input for both CFG halves
    assert cache.num_scales == num_scales
    images_signed = tokenizer.f_hat_to_images(f_hat_BCHW) * 2 - 1
    assert_max_abs_error(images_signed, vectors["image_from_fhat"], FLOAT_TOLERANCE, "image_from_fhat")


@needs_golden
@torch.no_grad()
def test_decode_reproduces_golden_reconstruction(
    imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    tokens = golden_tokens(vectors, len(imported.config["patch_nums"]))
    images_unit = imported.tokenizer.decode(tokens)
    assert images_unit.min() >= 0 and images_unit.max() <= 1
    images_signed = images_unit * 2 - 1  # the golden reconstruction is in [-1, 1]
    assert_max_abs_error(images_signed, vectors["recon_from_tokens"], FLOAT_TOLERANCE, "recon_from_tokens")


def cached_logits(
    transformer: NextScaleTransformer, cond_BD: torch.Tensor, x_BLCvae: torch.Tensor
) -> torch.Tensor:
    """All scales' logits through ``step``, fed with slices of the teacher input: [B, L, V]."""
    cache, logits = transformer.new_cache(), []
    bounds = transformer.scale_bounds
    for scale_index in range(transformer.num_scales):
        # teacher input position j holds sequence position j + p_1², the scale-2 start.
        begin, end = bounds[scale_index] - bounds[1], bounds[scale_index + 1] - bounds[1]
        x_BlCvae = None if scale_index == 0 else x_BLCvae[:, begin:end]
        logits.append(transformer.step(cond_BD, x_BlCvae, cache))
    return torch.cat(logits, dim=1)


@needs_golden
@torch.no_grad()
def test_kv_cached_logits_equal_teacher_forced_pass(
    imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    tokenizer, transformer, config = imported
    x_BLCvae = tokenizer.teacher_inputs(golden_tokens(vectors, len(config["patch_nums"])))
    cond_2BD = cfg_conditions(transformer, vectors["labels"])
    x_2BLCvae = x_BLCvae.repeat(2, 1, 1)
    full_2BLV = transformer(cond_2BD, x_2BLCvae)
    cached_2BLV = cached_logits(transformer, cond_2BD, x_2BLCvae)
    assert_max_abs_error(cached_2BLV, full_2BLV, CACHE_TOLERANCE, "cached logits")


@needs_golden
@torch.no_grad()
def test_prefix_teacher_forcing_equals_rows_of_full_pass(
    imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    tokenizer, transformer, config = imported
    tokens = golden_tokens(vectors, len(config["patch_nums"]))
    cond_BD = transformer.class_condition(vectors["labels"])
    full_BLV = transformer(cond_BD, tokenizer.teacher_inputs(tokens))
    for prefix_scales in range(1, transformer.num_scales + 1):
        prefix_input = tokenizer.teacher_inputs(tokens[:prefix_scales])  # needs only the prefix tokens
        prefix_BLV = transformer(cond_BD, prefix_input)
        prefix_length = transformer.scale_bounds[prefix_scales]
        assert prefix_BLV.shape[1] == prefix_length
        expected_BLV = full_BLV[:, :prefix_length]
        assert_max_abs_error(prefix_BLV, expected_BLV, CACHE_TOLERANCE, f"prefix m={prefix_scales}")


@needs_golden
@torch.no_grad()
def test_prefill_then_step_continues_like_full_pass(
    imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    """The frozen-suffix path: prefill m scales in one pass, then sample the rest scale by scale."""
    tokenizer, transformer, config = imported
    tokens = golden_tokens(vectors, len(config["patch_nums"]))
    cond_BD = transformer.class_condition(vectors["labels"])
    x_BLCvae = tokenizer.teacher_inputs(tokens)
    full_BLV = transformer(cond_BD, x_BLCvae)
    bounds, offset = transformer.scale_bounds, transformer.scale_bounds[1]
    for prefix_scales in range(1, transformer.num_scales):
        cache = transformer.new_cache()
        transformer(cond_BD, x_BLCvae[:, : bounds[prefix_scales] - offset], cache=cache)
        assert cache.num_scales == prefix_scales
        for scale_index in range(prefix_scales, transformer.num_scales):
            begin, end = bounds[scale_index], bounds[scale_index + 1]
            logits_BlV = transformer.step(cond_BD, x_BLCvae[:, begin - offset : end - offset], cache)
            name = f"prefill m={prefix_scales}, scale {scale_index}"
            assert_max_abs_error(logits_BlV, full_BLV[:, begin:end], CACHE_TOLERANCE, name)


@needs_golden
def test_import_folds_split_qkv_bias_into_fused_linear(imported: ImportedVAR) -> None:
    reference = load_state_dict_file(GOLDEN_DIR / "var.safetensors")
    attention = imported.transformer.blocks[1].attn
    assert isinstance(attention.mat_qkv, torch.nn.Linear)  # what LoRA wraps
    q_bias, k_bias, v_bias = attention.mat_qkv.bias.detach().chunk(3)
    assert torch.equal(q_bias, reference["blocks.1.attn.q_bias"])
    assert torch.equal(k_bias, torch.zeros_like(k_bias))
    assert torch.equal(v_bias, reference["blocks.1.attn.v_bias"])


@needs_golden
def test_import_names_mismatched_keys(golden_config: dict) -> None:
    deeper = dict(golden_config, depth=golden_config["depth"] + 1)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: \['blocks\.2\."):
        from_var_checkpoint(GOLDEN_DIR / "var.safetensors", GOLDEN_DIR / "vae.safetensors", deeper)
    wider = dict(golden_config, embed_dim=2 * golden_config["embed_dim"])
    shape_message = r"mat_qkv\.weight: checkpoint \[384, 128\] vs model \[768, 256\]"
    with pytest.raises(CheckpointMismatchError, match=shape_message):
        from_var_checkpoint(GOLDEN_DIR / "var.safetensors", GOLDEN_DIR / "vae.safetensors", wider)
    other_scales = dict(golden_config, patch_nums=[1, 2, 4])
    with pytest.raises(CheckpointMismatchError, match="patch_nums"):
        from_var_checkpoint(GOLDEN_DIR / "var.safetensors", GOLDEN_DIR / "vae.safetensors", other_scales)
    with pytest.raises(ValueError, match="missing keys \\['cfg_scale'\\]"):
        config = {key: value for key, value in golden_config.items() if key != "cfg_scale"}
        from_var_checkpoint(GOLDEN_DIR / "var.safetensors", GOLDEN_DIR / "vae.safetensors", config)


@needs_golden
@torch.no_grad()
def test_import_accepts_pth_state_dicts(
    tmp_path: Path, golden_config: dict, imported: ImportedVAR, vectors: dict[str, torch.Tensor]
) -> None:
    for name in ("var", "vae"):
        torch.save(load_file(str(GOLDEN_DIR / f"{name}.safetensors")), tmp_path / f"{name}.pth")
    from_pth = from_var_checkpoint(tmp_path / "var.pth", tmp_path / "vae.pth", golden_config)
    x_BLCvae = vectors["teacher_input"]
    cond_BD = from_pth.transformer.class_condition(vectors["labels"])
    assert torch.equal(from_pth.transformer(cond_BD, x_BLCvae), imported.transformer(cond_BD, x_BLCvae))


@pytest.mark.parametrize("shared_aln, attn_l2_norm", [(True, False), (False, False), (True, True)])
@torch.no_grad()
def test_cache_matches_teacher_pass_for_other_variants(shared_aln: bool, attn_l2_norm: bool) -> None:
    """Variants the golden checkpoint does not cover: shared AdaLN and plain 0.25/√d attention."""
    generator = torch.Generator().manual_seed(0)
    transformer = NextScaleTransformer(
        vocab_size=16, latent_channels=4, patch_nums=(1, 2, 3), num_classes=5, depth=2, embed_dim=32,
        num_heads=4, attn_l2_norm=attn_l2_norm, shared_aln=shared_aln,
    ).eval()
    for parameter in transformer.parameters():  # larger than the init so that every path matters
        parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    x_BLCvae = torch.randn(3, transformer.sequence_length - 1, 4, generator=generator)
    cond_BD = transformer.class_condition(torch.tensor([0, 4, 5]))
    full_BLV = transformer(cond_BD, x_BLCvae)
    assert full_BLV.shape == (3, transformer.sequence_length, 16)
    cached_BLV = cached_logits(transformer, cond_BD, x_BLCvae)
    assert_max_abs_error(cached_BLV, full_BLV, CACHE_TOLERANCE, "cached logits")
    # Changing the last scale's input must not change any earlier scale's logits (block-causal mask).
    perturbed = x_BLCvae.clone()
    perturbed[:, -9:] += 1.0
    perturbed_BLV = transformer(cond_BD, perturbed)
    assert torch.allclose(perturbed_BLV[:, :5], full_BLV[:, :5], atol=1e-6)
    assert not torch.allclose(perturbed_BLV[:, 5:], full_BLV[:, 5:], atol=1e-3)
