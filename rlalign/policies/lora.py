"""The LoRA adapter every policy family carries (peft), in one place.

A policy composes one `LoraAdapter` around the module it trains (the next-scale transformer, the
insertion transformer) and forwards the StepPolicy adapter methods to it. Only the adapter's
tensors ever change or travel: `state()` is what rollout workers receive, `save()` writes peft's
own format (adapter_config.json + adapter_model.safetensors).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from rlalign.utils.files import readable, user_path


def adapter_bytes(state: dict[str, Tensor]) -> int:
    """Bytes of the tensors in an adapter state: what one rollout replica receives per sync."""
    return sum(t.numel() * t.element_size() for t in state.values())


class LoraAdapter:
    """peft LoRA on the nn.Linear layers of `module` named by `target_modules` (base weights frozen)."""

    def __init__(self, module: nn.Module, *, rank: int, alpha: float, dropout: float,
                 target_modules: Sequence[str] | str, family: str):
        """`target_modules`: names or name suffixes, or one regular expression that a module's full name
        must match (peft's two forms)."""
        module.requires_grad_(False)
        targets = target_modules if isinstance(target_modules, str) else list(target_modules)
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
        try:
            with warnings.catch_warnings():  # peft asks transformers models a deprecated question (v5)
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                self.peft_model = get_peft_model(module, config)
        except ValueError as error:
            raise ValueError(f"policy.lora.target_modules={targets} matches no Linear layer of the "
                             f"{family}: {error}") from None
        self.module = module  # the same module, now holding the LoRA layers

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trainable (LoRA) parameters."""
        return [p for p in self.module.parameters() if p.requires_grad]

    def disabled(self) -> AbstractContextManager:
        """Inside the block the module is the base model (the KL reference, the frozen suffix)."""
        return self.peft_model.disable_adapter()

    def state(self) -> dict[str, Tensor]:
        """LoRA weights only, as CPU copies."""
        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.peft_model).items()}

    def load_state(self, state: dict[str, Tensor], device: torch.device) -> None:
        current = get_peft_model_state_dict(self.peft_model)
        expected = set(current)
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"adapter state does not fit this policy's LoRA layout: missing {missing[:3]}, "
                             f"unexpected {extra[:3]} (were rank/target_modules the same?)")
        for key, tensor in state.items():
            if tensor.shape != current[key].shape:  # peft would raise a bare size mismatch
                given, wanted = _lora_rank(key, tensor.shape), _lora_rank(key, current[key].shape)
                raise ValueError(f"adapter does not fit this policy's LoRA layout: {key} has shape {tuple(tensor.shape)}, "
                                 f"this policy's is {tuple(current[key].shape)} (adapter rank {given}, policy.lora.rank "
                                 f"{wanted}); set policy.lora.rank={given} (and the adapter's lora.alpha) to load it")
        set_peft_model_state_dict(self.peft_model, {k: v.to(device) for k, v in state.items()})

    def save(self, directory: str | Path) -> None:
        """Write the adapter in peft's format (adapter_config.json + adapter_model.safetensors)."""
        try:
            self.peft_model.save_pretrained(str(directory))
        except SafetensorError as error:  # safetensors wraps the OS's error (a full disk) in its own type
            found = re.search(r"os error (\d+)", str(error))
            if found is None:
                raise
            number = int(found.group(1))
            raise OSError(number, os.strerror(number), str(Path(directory) / "adapter_model.safetensors")) from error

    def load(self, directory: str | Path, device: torch.device, *, check_config: bool = True) -> None:
        """Load a peft adapter directory (`~` expanded, as in the config's paths); with `check_config`, refuse
        one saved with other LoRA settings."""
        directory = Path(user_path(directory, "adapter directory"))
        path = directory / "adapter_model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{directory} holds no peft adapter (adapter_model.safetensors); "
                                    "pass a directory written by save_adapter / rlalign train")
        if check_config:
            self.check_saved_config(directory)
        prefixed = {f"base_model.model.{k.removeprefix('base_model.model.')}": v for k, v in load_file(readable(path)).items()}
        self.load_state(prefixed, device)


    def check_saved_config(self, directory: str | Path) -> None:
        """Refuse an adapter whose adapter_config.json (peft's) differs from this policy's LoRA in rank,
        alpha or target modules, naming both: alpha scales every update (ΔW = alpha/r · B A), so an
        adapter read under another alpha would silently act at another strength."""
        path = Path(directory) / "adapter_config.json"
        if not path.is_file():
            return  # a bare state (older rlalign adapters): the tensors' shapes are still checked
        saved, ours = json.loads(path.read_text()), self.peft_model.peft_config["default"]
        wanted = {"rank": (saved.get("r"), ours.r, "policy.lora.rank"),
                  "alpha": (saved.get("lora_alpha"), ours.lora_alpha, "policy.lora.alpha"),
                  "target modules": (_targets(saved.get("target_modules")), _targets(ours.target_modules),
                                     "policy.lora.target_modules")}
        wrong = [(name, given, have, key) for name, (given, have, key) in wanted.items()
                 if given is not None and given != have]
        if wrong:
            said = "; ".join(f"{name}: adapter {given!r}, this policy {have!r} (set {key})" for name, given, have, key in wrong)
            raise ValueError(f"adapter {directory} was trained with other LoRA settings than this policy's: {said}; "
                             "set them to the adapter's (its adapter_config.json) to load it")


def _targets(value: Any) -> str | tuple | None:
    """Target modules as peft may store them: a regular expression, or names in any order."""
    if value is None or isinstance(value, str):
        return value
    return tuple(sorted(value))


class AdapterMethods:
    """The StepPolicy adapter methods of a policy that composes a LoraAdapter as `self.lora` and has a
    `device`: one definition for every family, each a one-line forward to the adapter."""

    lora: LoraAdapter
    device: torch.device

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return self.lora.parameters()

    def adapter_disabled(self) -> AbstractContextManager:
        """Inside the block the policy is the base model (the KL reference, the frozen suffix)."""
        return self.lora.disabled()

    def adapter_state(self) -> dict[str, Tensor]:
        """LoRA weights only, as CPU copies (what rollout workers receive)."""
        return self.lora.state()

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        self.lora.load_state(state, self.device)

    def save_adapter(self, directory: str | Path) -> None:
        """Write the adapter in peft's format (adapter_config.json + adapter_model.safetensors)."""
        self.lora.save(directory)

    def load_adapter(self, directory: str | Path, *, check_config: bool = True) -> None:
        """`check_config=False` skips the adapter_config.json comparison (a resume compares whole configs)."""
        self.lora.load(directory, self.device, check_config=check_config)


def _lora_rank(key: str, shape: torch.Size) -> int | str:
    """The LoRA rank r a weight's shape shows: lora_A is [r, in], lora_B is [out, r]."""
    if "lora_A" in key:
        return shape[0]
    return shape[-1] if "lora_B" in key else "?"
