"""Code the policy families share: seeded uniforms, inverse-CDF draws and prompt words.

It lives here, beside the protocol, so that no family imports another (docs/architecture.md):
the insertion sampler draws its words exactly as the next-scale sampler draws its codes, and both
next-scale and insertion text encoders split prompts the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def uniforms(shape: tuple[int, int], generator: torch.Generator | Sequence[torch.Generator],
             device: torch.device | str | None = None) -> Tensor:
    """U[0, 1) noise [B, N]: from one generator, or row b from generator b (batch-composition free).

    The noise is drawn on the host from CPU generators, so a sample is the same on every device, and
    moved to `device` with `upload` (asynchronously on a GPU: the sampling loop never waits for it).
    """
    if isinstance(generator, torch.Generator):
        return upload(torch.rand(shape, generator=generator), device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for {shape[0]} samples")
    return upload(torch.stack([torch.rand(shape[1:], generator=g) for g in generator]), device)


def upload(host: Tensor, device: torch.device | str | None) -> Tensor:
    """A host tensor on `device` without a host-device synchronisation.

    To a CUDA device the copy goes through pinned (page-locked) memory with non_blocking=True: the
    host queues it and goes on, where a copy from ordinary memory would first wait for the GPU to
    finish its queue. Elsewhere (CPU, None) this is `.to(device)`, the same tensor when it is already there.
    """
    if device is None:
        return host
    device = torch.device(device)
    if device.type == "cuda" and host.device.type == "cpu":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def require(ok: Tensor, message: Callable[[], str]) -> None:
    """Check an invariant held in a 0-d bool tensor without making a GPU wait for the host.

    On the CPU a failure raises ValueError(message()) at once, with the details the message computes.
    On an accelerator the check is queued (torch._assert_async): the loop goes on, and a failure
    surfaces as a device-side assertion at the next synchronisation (computing the details would
    need the device's values, i.e. the wait this avoids; the CPU run gives them).
    """
    if ok.device.type == "cpu":
        if not bool(ok):
            raise ValueError(message())
    else:
        torch._assert_async(ok, "rlalign invariant failed in a sampling step (re-run on the CPU for the details)")


def draw(logp_BNV: Tensor, uniform_BN: Tensor) -> Tensor:
    """Inverse-CDF sampling of one of V choices at each of N positions: the first choice whose
    cumulative probability exceeds u·total.

    Scaling u by the total keeps the draw inside the kept set even when the float cumulative sum
    ends slightly below 1, and a choice of probability 0 can never be returned.
    """
    cdf_BNV = logp_BNV.exp().cumsum(dim=-1)
    target_BN1 = uniform_BN.to(cdf_BNV.device).unsqueeze(-1) * cdf_BNV[..., -1:]
    return torch.searchsorted(cdf_BNV, target_BN1, right=True).squeeze(-1).clamp_max(cdf_BNV.shape[-1] - 1)


def split_words(prompt: str) -> list[str]:
    """Lower-cased words of a prompt (punctuation dropped)."""
    return re.findall(r"[a-z]+", prompt.lower())


def doubled(x: Tensor | None, use_cfg: bool) -> Tensor | None:
    """`x` stacked on itself along the batch (both CFG halves read the same inputs), or `x` as it is."""
    return torch.cat([x, x]) if use_cfg and x is not None else x
