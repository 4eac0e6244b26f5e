"""rlalign: prefix-GRPO alignment of coarse-to-fine generative models.

Only the first m generation steps (the *prefix*) are trained, through LoRA adapters; the remaining
steps are sampled by the frozen base model. See README.md and docs/ for the map; docs/api.md for the
Python API (`from rlalign import GRPOTrainer`).
"""

__version__ = "0.1.0"

_API = ("GRPOTrainer", "train")


def __getattr__(name: str):
    """`from rlalign import GRPOTrainer, train`: the Python API (rlalign/api.py), imported on first use so
    that `import rlalign` stays cheap for the CLI and the workers."""
    if name in _API:
        from rlalign import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlalign' has no attribute {name!r}")
