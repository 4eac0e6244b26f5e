"""A tiny random text-conditioned next-scale model (real modules, built in a second) for tests."""

import torch

from rlalign.shapes import COLOURS, SHAPES

WORDS = "a an in the center on left right at top bottom to of above below".split() + list(COLOURS) + list(SHAPES)
TINY = {
    "tokenizer": dict(vocab_size=64, latent_channels=8, patch_nums=[1, 2, 3, 4, 6, 8], ch=32, ch_mult=[1, 1, 2],
                      num_res_blocks=1),
    "transformer": dict(depth=2, embed_dim=64, num_heads=2, attn_l2_norm=True),
    "text_encoder": dict(vocabulary=WORDS, width=32, depth=1, num_heads=2),
}
PROMPTS = ["a red circle on the left", "a blue square above a red circle", "an orange triangle at the top"]


def randomize_like_trained(model, seed=0):
    """Replace VAR's near-identity initialisation (AdaLN gates ~1e-5) by O(1/√fan_in) weights, so every
    block, and so every LoRA layer inside it, really shapes the logits, as in a trained model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.transformer.named_parameters():
            if parameter.ndim == 2 and "lora_" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5)


def perturb_adapter(policy, std=0.2, seed=0):
    """Random LoRA B matrices, so the adapter really changes the model (B = 0 at init); any policy
    family (it walks the module its LoraAdapter wraps)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in policy.lora.module.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
