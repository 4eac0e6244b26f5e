"""Mixed precision for any policy family: forward passes in bfloat16, everything that learns in float32.

`policy.precision: bf16` wraps the policy so that its sampling, re-scoring and completion run under
`torch.autocast(bfloat16)` on the policy's device. The weights, the LoRA parameters (and so their
gradients and AdamW's state) stay float32: the master copy the optimizer updates. Log-probs are
reduced in float32 by every family (log-softmax of `.float()` logits).

On-policy exactness does not rest on bf16 agreeing with float32: the rollout's old log-probs are
re-scored in the same precision, micro-batch by micro-batch exactly as the update scores them
(the trainer does this whenever precision is not fp32), so the first ratio is exp(0) = 1.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class AutocastPolicy:
    """A StepPolicy whose forward passes run under torch.autocast(dtype); every other attribute is the
    wrapped policy's own (composition: the family knows nothing of it)."""

    def __init__(self, policy: Any, dtype: torch.dtype = torch.bfloat16):
        self.policy, self.dtype = policy, dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(device_type=self.policy.device.type, dtype=self.dtype)

    def rollout(self, *args: Any, **kwargs: Any) -> Any:
        with self.autocast():
            return self.policy.rollout(*args, **kwargs)

    def log_prob(self, *args: Any, **kwargs: Any) -> Any:
        with self.autocast():
            return self.policy.log_prob(*args, **kwargs)

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        with self.autocast():
            return self.policy.complete(*args, **kwargs)

    def distribution(self, *args: Any, **kwargs: Any) -> Any:
        with self.autocast():
            return self.policy.distribution(*args, **kwargs)


def with_precision(policy: Any, precision: str) -> Any:
    """The policy itself for fp32; wrapped in AutocastPolicy for bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"policy.precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    return policy if dtype is None else AutocastPolicy(policy, dtype)
