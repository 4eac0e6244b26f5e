"""Infinity's BSQ VAE and bit bookkeeping against the reference's golden vectors (shared/golden/infinity,
FoundationVision/Infinity on CPU in float32; its README lists the tensors and tolerances), plus
properties at other sizes that do not depend on the golden set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import one_torch_thread

from rlalign.policies.infinity import bits as bsq
from rlalign.policies.infinity.vae import (
    BSQVAE,
    INFINITY_2B_VAE,
    INFINITY_8B_VAE,
    VAEConfig,
    load_vae,
    load_vae_state,
)

GOLDEN_DIR = Path(__file__).resolve().parents[4].parent / "shared" / "golden" / "infinity"
FEATURE_TOLERANCE = 1e-5  # README: 2 threads instead of 1 move encoder features by 1e-6
CODE_TOLERANCE = 1e-5
IMAGE_TOLERANCE = 1e-4

needs_golden = pytest.mark.skipif(not (GOLDEN_DIR / "vectors.safetensors").is_file(),
                                  reason=f"golden Infinity vectors not found at {GOLDEN_DIR}")

_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= tolerance, f"{name}: max abs error {error:.3e} > {tolerance:.0e}"


def assert_bits_equal(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    wrong = (actual.to(torch.uint8) != expected).sum().item()
    assert wrong == 0, f"{name}: {wrong} of {expected.numel()} bits differ"


@pytest.fixture(scope="module")
def golden() -> tuple[dict, dict[str, torch.Tensor]]:
    config = json.loads((GOLDEN_DIR / "config.json").read_text())
    return config, load_file(str(GOLDEN_DIR / "vectors.safetensors"))


def golden_schedule(config: dict) -> list[tuple[int, int]]:
    return [(h, w) for _, h, w in config["vae_scale_schedule"]]


@needs_golden
@pytest.mark.parametrize("file_name", ["vae.safetensors", "vae.pth"])
@torch.no_grad()
def test_vae_reproduces_golden_vectors(golden, file_name: str) -> None:
    config, vectors = golden
    schedule = golden_schedule(config)
    vae = load_vae(GOLDEN_DIR / file_name, VAEConfig.from_golden_config(config))

    features = vae.encode_features(vectors["image"])
    assert_close(features, vectors["encoder_features"], FEATURE_TOLERANCE, f"{file_name}: encoder_features")
    for k, bits in enumerate(vae.encode_bits(vectors["image"], schedule)):
        assert_bits_equal(bits, vectors[f"encoded_bits_scale{k}"], f"{file_name}: encoded_bits_scale{k}")
    image_inputs, labels = bsq.self_correction_inputs(features, schedule)
    assert_close(image_inputs, vectors["image_teacher_input"], CODE_TOLERANCE,
                 f"{file_name}: image_teacher_input")
    for k, bits in enumerate(labels):
        assert_bits_equal(bits, vectors[f"encoded_bits_scale{k}"], f"{file_name}: self-correction labels {k}")

    for run in ("forced", "sample"):
        bits = [vectors[f"{run}_bits_scale{k}"] for k in range(len(schedule))]
        inputs, summed = bsq.replay(bits, schedule)
        if run == "forced":
            assert_close(inputs, vectors["teacher_input"], CODE_TOLERANCE, f"{file_name}: teacher_input")
        assert_close(summed, vectors[f"{run}_summed_codes"], CODE_TOLERANCE,
                     f"{file_name}: {run}_summed_codes")
        decoded = vae.decode(summed)
        assert_close(decoded, vectors[f"{run}_decoded"], IMAGE_TOLERANCE, f"{file_name}: {run}_decoded")
        from_golden_latent = vae.decode(vectors[f"{run}_summed_codes"])
        assert_close(from_golden_latent, vectors[f"{run}_decoded"], IMAGE_TOLERANCE,
                     f"{file_name}: {run}_decoded from the golden latent")
        assert_close(bsq.to_uint8_bgr(decoded).int(), vectors[f"{run}_img_uint8_bgr"].int(), 1,
                     f"{file_name}: {run}_img_uint8_bgr")


TINY = VAEConfig(codebook_dim=6, base_ch=32, encoder_ch_mult=(1, 2), decoder_ch_mult=(1, 2),
                 num_res_blocks=1, patch_size=2)


@pytest.mark.parametrize("change", ["missing", "extra", "shape", "mask"])
def test_state_dict_mismatches_are_refused(change: str) -> None:
    vae = BSQVAE(TINY)
    state = dict(vae.state_dict())
    key = "decoder.up.1.block.0.norm2.norm.weight"
    if change == "missing":
        del state[key]
    elif change == "extra":
        key = "encoder.mid.attn_1.q.conv.weight"
        state[key] = torch.zeros(64, 64, 1, 1)
    elif change == "shape":
        state[key] = torch.zeros(3)
    else:
        key = "quantizer.lfq.mask"
        state[key] = state[key] + 1
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_vae_state(BSQVAE(TINY), state)


def test_plain_key_names_load_like_the_reference_loader() -> None:
    """`load_cnn` also takes nn.Conv2d / nn.GroupNorm names; the constant mask buffers may be absent."""
    torch.manual_seed(0)
    source = BSQVAE(TINY)
    state = {key.replace(".conv.weight", ".weight").replace(".norm.bias", ".bias"): value
             for key, value in source.state_dict().items() if not key.endswith("lfq.mask")}
    target = BSQVAE(TINY)
    load_vae_state(target, state)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    both = {**source.state_dict(), "encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}
    with pytest.raises(ValueError, match="duplicate"):
        load_vae_state(target, both)


def test_official_configurations_have_the_reference_layout() -> None:
    """Built on the meta device (no memory): widths and resampling levels of the released VAEs."""
    with torch.device("meta"):
        shapes_2b = {k: list(v.shape) for k, v in BSQVAE(INFINITY_2B_VAE).state_dict().items()}
        shapes_8b = {k: list(v.shape) for k, v in BSQVAE(INFINITY_8B_VAE).state_dict().items()}
    assert (INFINITY_2B_VAE.downsample_factor, INFINITY_8B_VAE.downsample_factor) == (16, 8)
    assert shapes_2b["encoder.conv_out.conv.weight"] == [32, 512, 3, 3]
    assert shapes_2b["decoder.up.4.upsample.conv.conv.weight"] == [512, 512, 3, 3]
    assert "encoder.down.4.downsample.conv.conv.weight" not in shapes_2b
    assert shapes_8b["decoder.conv_in.conv.weight"] == [512, 14, 3, 3]
    assert "decoder.up.3.upsample.conv.conv.weight" in shapes_8b
    assert "encoder.down.3.downsample.conv.conv.weight" not in shapes_8b
    assert shapes_8b["quantize.lfq.mask"] == [14]
    with pytest.raises(ValueError, match="upsamples"):
        VAEConfig(encoder_ch_mult=(1, 2, 4, 4), decoder_ch_mult=(1, 2, 4, 4), patch_size=16)


SCHEDULE = [(1, 1), (2, 3), (4, 6)]
SMALL = VAEConfig(codebook_dim=8, base_ch=32, encoder_ch_mult=(1, 2, 1), decoder_ch_mult=(1, 2, 1),
                  num_res_blocks=1, patch_size=4)


@torch.no_grad()
def test_non_square_round_trip_shapes_and_consistency() -> None:
    torch.manual_seed(1)
    vae = BSQVAE(SMALL).eval()
    factor, dim = SMALL.downsample_factor, SMALL.codebook_dim
    images = torch.rand(2, 3, 4 * factor, 6 * factor) * 2 - 1
    bits = vae.encode_bits(images, SCHEDULE)
    assert [list(b.shape) for b in bits] == [[2, h * w, dim] for h, w in SCHEDULE]
    assert all(b.dtype == torch.uint8 and int(b.max()) <= 1 for b in bits)

    inputs, summed = bsq.replay(bits, SCHEDULE)
    assert list(inputs.shape) == [2, 2 * 3 + 4 * 6, dim] and list(summed.shape) == [2, dim, 4, 6]
    # Scale 2's input is the 1×1 code map spread over 2×3: every token is scale 1's unit code.
    first_code = bsq.codes_from_bits(bits[0], (1, 1)).reshape(2, 1, dim)
    assert_close(inputs[:, :6], first_code.expand(2, 6, dim), 1e-6, "scale-2 input from a 1x1 map")
    assert_close(first_code.abs(), torch.full_like(first_code, dim**-0.5), 1e-6, "BSQ code magnitude")
    decoded = vae.decode(summed)
    assert list(decoded.shape) == list(images.shape) and decoded.abs().max() <= 1

    # Three paths to the same bits and inputs: the VAE's quantizer, bitwise self-correction, the sampler.
    image_inputs, labels = bsq.self_correction_inputs(vae.encode_features(images), SCHEDULE)
    for k, (label, bit) in enumerate(zip(labels, bits)):
        assert_bits_equal(label, bit, f"self-correction labels vs encode_bits, scale {k}")
    assert_close(image_inputs, inputs, 1e-6, "self-correction inputs vs sampler inputs")


@torch.no_grad()
def test_bits_of_a_code_map_are_recovered_and_flips_negate_inputs() -> None:
    torch.manual_seed(2)
    bits = torch.randint(0, 2, (3, 4 * 6, 8), dtype=torch.uint8)
    codes = bsq.codes_from_bits(bits, (4, 6))
    assert_bits_equal(bsq.residual_quantize(codes, [(4, 6)])[0], bits, "BSQ of a code map")
    # Row-major flattening: a same-size resize is the identity, tokens are (h, w) row-major.
    assert_close(bsq.next_scale_input(codes, (4, 6)), codes.flatten(2).transpose(1, 2), 0.0, "token order")

    features = torch.randn(3, 8, 4, 6)
    plain, labels = bsq.self_correction_inputs(features, SCHEDULE)
    flips = [torch.ones(3, 1, 8, dtype=torch.bool), None, None]
    flipped, flipped_labels = bsq.self_correction_inputs(features, SCHEDULE, flip_masks=flips)
    assert_close(flipped[:, :6], -plain[:, :6], 1e-6, "inputs after flipping every bit of scale 1")
    assert torch.equal(flipped_labels[0], labels[0]), "a flipped scale's labels must stay its unflipped bits"
    # Later labels quantize what the flipped codes left over, so they differ: they learn the correction.
    assert not torch.equal(flipped_labels[1], labels[1])
    with pytest.raises(ValueError, match="flip_masks"):
        bsq.self_correction_inputs(features, SCHEDULE, flip_masks=flips, noise_layers=0)


def test_spatial_patchify_groups_two_by_two_positions() -> None:
    torch.manual_seed(3)
    dim, (h, w) = 3, (2, 3)
    tokens = torch.randint(0, 2, (2, h * w, 4 * dim))
    vae_grid = bsq.unpatchify_bits(tokens, (h, w))
    assert list(vae_grid.shape) == [2, 4 * h * w, dim]
    grid = vae_grid.reshape(2, 2 * h, 2 * w, dim)
    for y, x, i, j, c in [(0, 0, 0, 1, 2), (1, 2, 1, 0, 0), (1, 1, 1, 1, 1)]:
        assert grid[:, 2 * y + i, 2 * x + j, c].tolist() == tokens[:, y * w + x, c * 4 + 2 * i + j].tolist()
    assert torch.equal(bsq.patchify_tokens(vae_grid, (2 * h, 2 * w)), tokens)


def test_uint8_output_truncates_and_flips_channels() -> None:
    images = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    assert bsq.to_uint8_bgr(images).flatten().tolist() == [255, 127, 0]
