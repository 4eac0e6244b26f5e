"""Counting host copies: a test helper that records every Tensor.cpu() call made inside a block."""

from contextlib import contextmanager

import torch


@contextmanager
def counting_cpu_calls(monkeypatch):
    """Yields a list that gets one entry per Tensor.cpu() call inside the block."""
    calls, original = [], torch.Tensor.cpu

    def counted(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counted)
    try:
        yield calls
    finally:
        monkeypatch.setattr(torch.Tensor, "cpu", original)
