"""rlalign: prefix-GRPO alignment of coarse-to-fine generative models.

Only the first m generation steps (the *prefix*) are trained, through LoRA adapters; the remaining
steps are sampled by the frozen base model. See README.md and docs/ for the map.
"""

__version__ = "0.1.0"
