"""Tiny real Infinity models for tests: random weights with the golden set's text encoder.

The golden directory (shared/golden/infinity) is the reference's own architecture at a tiny size; the
builders here make other sizes, schedules and aspect ratios, so that no test depends on that one set.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from rlalign.policies.infinity.architecture import InfinityArchitecture
from rlalign.policies.infinity.model import InfinityModel
from rlalign.policies.infinity.text import T5Text
from rlalign.policies.infinity.transformer import InfinityTransformer
from rlalign.policies.infinity.vae import BSQVAE, VAEConfig

GOLDEN_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "golden" / "infinity"
TEXT_DIR = GOLDEN_DIR / "text_encoder"
TINY_VAE = VAEConfig(codebook_dim=6, base_ch=24, encoder_ch_mult=(1, 1, 1, 1, 1), decoder_ch_mult=(1, 1, 1, 1, 1),
                     num_res_blocks=1, patch_size=16)


def tiny_architecture(**changes) -> InfinityArchitecture:
    sizes = dict(embed_dim=48, depth=3, num_heads=3, codebook_dim=TINY_VAE.codebook_dim, text_channels=128,
                 text_maxlen=32, block_chunks=1)
    return InfinityArchitecture(**{**sizes, **changes})


def randomize(module: torch.nn.Module, seed: int, std: float = 0.3) -> None:
    """Weights far from their zero/one initialisation, so that every path of the math matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.add_(noise if "scale_mul" not in name else noise.abs())


def tiny_model(scales, h_div_w: float = 1.0, seed: int = 0, **arch_changes) -> InfinityModel:
    """The same weights for the same arguments (torch's default initialisation runs under a forked, seeded RNG)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _tiny_model(scales, h_div_w, seed, **arch_changes)


def _tiny_model(scales, h_div_w: float, seed: int, **arch_changes) -> InfinityModel:
    arch = tiny_architecture(**arch_changes)
    transformer = InfinityTransformer(arch, scales, h_div_w)
    randomize(transformer, seed)
    with torch.no_grad():  # logits of order 1 after CFG 3 and τ 0.5: a few bits deterministic, most not
        head = transformer.head.weight
        head.copy_(torch.randn(head.shape, generator=torch.Generator().manual_seed(seed + 7)) * 0.02)
        transformer.head_nm.ada_lin[1].weight.mul_(0.1)
    vae_config = TINY_VAE if not arch.apply_spatial_patchify else VAEConfig(
        codebook_dim=arch.codebook_dim, base_ch=24, encoder_ch_mult=(1, 1, 1, 1), decoder_ch_mult=(1, 1, 1, 1),
        num_res_blocks=1, patch_size=8)
    vae = BSQVAE(vae_config)
    randomize(vae, seed + 1, std=0.05)
    return InfinityModel(transformer.eval().requires_grad_(False), vae.eval().requires_grad_(False), T5Text(TEXT_DIR))


def write_model_directory(model: InfinityModel, directory: Path) -> Path:
    """Save a model in the golden set's layout (config.json, infinity.safetensors, vae.safetensors, text_encoder/)."""
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    arch, vae = model.arch, model.vae.config
    config = {
        "infinity": {"embed_dim": arch.embed_dim, "depth": arch.depth, "num_heads": arch.num_heads,
                     "text_channels": arch.text_channels, "text_maxlen": arch.text_maxlen,
                     "block_chunks": arch.block_chunks, "apply_spatial_patchify": int(arch.apply_spatial_patchify)},
        "vae": {"autoencoder_args_all": {
            "codebook_dim": vae.codebook_dim, "codebook_size": 2 ** vae.codebook_dim, "base_ch": vae.base_ch,
            "encoder_ch_mult": list(vae.encoder_ch_mult), "decoder_ch_mult": list(vae.decoder_ch_mult),
            "num_res_blocks": vae.num_res_blocks, "patch_size": vae.patch_size, "quantizer_type": "MultiScaleBSQ",
            "use_vae": False, "cnn_type": "2d", "cnn_attention": "no", "norm_type": "group",
            "cnn_norm_axis": "spatial", "use_pxsf": False, "ln_before_quant": False, "use_decay_factor": False,
            "new_quant": True, "random_flip": False, "random_flip_1lvl": False, "drop_when_test": False}},
        "scale_schedule": [[1, h, w] for h, w in model.scales],
        "h_div_w_template": model.transformer.template,
    }
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.transformer.state_dict().items()}, str(directory / "infinity.safetensors"))
    save_file({k: v.clone().contiguous() for k, v in model.vae.state_dict().items()}, str(directory / "vae.safetensors"))
    shutil.copytree(TEXT_DIR, directory / "text_encoder", dirs_exist_ok=True)
    return directory
