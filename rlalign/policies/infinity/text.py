"""Infinity's text side: a local T5 encoder through transformers, and prompts to TextFeatures.

The reference (`tools/run_infinity.py`, `load_tokenizer` lines 149-157 and `encode_prompt` 38-57)
tokenises with `AutoTokenizer` (max length 512, truncation, EOS appended by the tokenizer), runs
`T5EncoderModel` and keeps each prompt's first len_i rows of `last_hidden_state`, len_i being its
attention-mask sum (EOS included). It pads every prompt to 512 tokens; padding to the longest prompt
of the batch gives the same rows (the encoder's attention never reads masked positions) at a
fraction of the cost. The encoder is frozen: no adapter touches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from rlalign.policies.infinity.layers import TextFeatures

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class T5Text:
    """Tokenizer + frozen T5 encoder loaded from a local directory (never from a hub)."""

    def __init__(self, directory: str | Path, *, dtype: str = "fp32", device: str | torch.device = "cpu",
                 max_length: int = 512):
        from transformers import AutoTokenizer, T5EncoderModel  # heavy import, only for this family

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"no T5 encoder at {directory} (config.json missing): set policy.infinity.text_encoder "
                                    "to a local directory saved by transformers, e.g. a downloaded google/flan-t5-xl")
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self.encoder = T5EncoderModel.from_pretrained(str(directory), local_files_only=True, dtype=DTYPES[dtype])
        self.encoder.to(device).eval().requires_grad_(False)
        self.max_length = max_length
        self.directory = directory

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def tokenize(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """input_ids and attention_mask [B, T] (T = the longest prompt, at most max_length)."""
        prompts = list(prompts)
        bad = [p for p in prompts if not isinstance(p, str)]
        if bad:
            raise TypeError(f"Infinity prompts must be strings, got {type(bad[0]).__name__} {bad[0]!r}")
        full = self.tokenizer(prompts, padding="longest", truncation=False, return_tensors="pt")
        too_long = [(p, int(n)) for p, n in zip(prompts, full.attention_mask.sum(-1)) if n > self.max_length]
        if too_long:
            prompt, count = too_long[0]
            raise ValueError(f"prompt of {count} tokens is longer than the text encoder's {self.max_length} "
                             f"(the reference would cut it silently): {prompt[:80]!r}…; shorten it")
        return full.input_ids, full.attention_mask

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextFeatures:
        """Float32 features [B, T, Ct5] and lengths [B] for the transformer."""
        input_ids, mask = self.tokenize(prompts)
        hidden = self.encoder(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
        return TextFeatures(hidden.float(), mask.sum(-1).to(hidden.device))
