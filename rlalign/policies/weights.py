"""Model files of every policy family: one safetensors file holding all weights and, in its metadata,
the architecture as JSON and a format tag, so a file needs nothing else to load. `builtin:NAME`
names resolve through rlalign.assets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from rlalign.assets import resolve_checkpoint
from rlalign.utils.files import atomic_path, readable


def save_with_architecture(module: nn.Module, architecture: dict[str, Any], path: str | Path, *, file_format: str,
                           half: bool = True) -> Path:
    """Write `module`'s weights atomically (temporary file, then rename); float weights as fp16 if `half`."""
    path = Path(path)
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        state[name] = tensor.half() if half and tensor.is_floating_point() else tensor
    with atomic_path(path) as partial:
        save_file(state, str(partial), metadata={"architecture": json.dumps(architecture), "format": file_format})
    return path


def load_with_architecture(checkpoint: str | Path, *, file_format: str, build: Callable[[dict], nn.Module],
                           wrong_format_hint: str) -> nn.Module:
    """Build the module from the file's architecture and load its weights (as float32)."""
    path = resolve_checkpoint(str(checkpoint))
    readable(path)  # permission denied is its own error, not "truncated?"
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); is it truncated, or another "
                         f"format? {wrong_format_hint}") from None
    if metadata.get("format") != file_format:
        raise ValueError(f"{path} is not an {file_format} checkpoint (format {metadata.get('format')!r}); "
                         f"{wrong_format_hint}")
    module = build(json.loads(metadata["architecture"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:  # torch names the missing, unexpected and mis-sized tensors
        detail = " ".join(str(error).split())
        raise ValueError(f"{path} does not match its architecture: {detail[:600]}") from None
    return module

