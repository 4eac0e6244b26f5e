"""Conditioners: turn a batch of prompts into the condition vector cond_BD of the transformer.

Two kinds, one interface (`__call__(prompts) -> cond_BD`, `null(batch) -> cond_BD`):
  ClassConditioner  VAR's class embedding (prompts are class ids; the null class drives CFG);
  PromptEncoder     a small bidirectional word-level transformer whose pooled output is the
                    condition (docs/next_scale.md: "a text encoder's pooled embedding"); a learned null
                    vector drives CFG and replaces the condition during training dropout.

Pooling. `mean` averages the word states: a nearly order-blind bag, so "a red circle above a blue
square" and "a blue square above a red circle" get almost the same condition, and which colour
goes with which shape is lost (measured on the first built-in generator: relation wrong in ~63% of
two-object samples, docs/next_scale.md). `flatten` concatenates the word states position by
position before the output Linear: still one vector per prompt, but word order, and so the binding
of colours to shapes and the order of a relation, survives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlalign.policies.next_scale.transformer import NextScaleTransformer
from rlalign.policies.shared import split_words
from rlalign.utils.rows import require_text

PAD, UNKNOWN = "<pad>", "<unk>"


class ClassConditioner(nn.Module):
    """Class ids → the transformer's own class embedding (VAR)."""

    def __init__(self, transformer: NextScaleTransformer):
        super().__init__()
        if transformer.class_emb is None:
            raise ValueError("ClassConditioner needs a transformer built with num_classes")
        # Not registered as a submodule: the embedding belongs to (and is saved with) the transformer.
        self._transformer = [transformer]

    def forward(self, prompts: Sequence) -> torch.Tensor:
        transformer = self._transformer[0]
        try:
            labels_B = torch.as_tensor([int(p) for p in prompts], device=transformer.pos_start.device)
        except (TypeError, ValueError):
            raise ValueError(f"a class-conditional model takes class ids as prompts, got {list(prompts)[:3]}...") from None
        if labels_B.numel() and (labels_B.min() < 0 or labels_B.max() >= transformer.num_classes):
            raise ValueError(f"class ids must be in [0, {transformer.num_classes}), got {labels_B.tolist()}")
        return transformer.class_condition(labels_B)

    def null(self, batch_size: int) -> torch.Tensor:
        return self._transformer[0].null_condition(batch_size)


class PromptEncoder(nn.Module):
    """Word-level text encoder: embeddings + positions → encoder layers → pooling → Linear(·, D).

    Args:
        vocabulary: known words; index 0 is the padding word and index 1 the unknown word.
        width, depth, num_heads: encoder size; max_words: longest prompt (longer prompts fail).
        cond_dim: D, the transformer's embed_dim.
        pooling: `mean` (masked mean of the word states) or `flatten` (the max_words states
            concatenated, padding zeroed; keeps word order). Checkpoints without the key are `mean`.
    """

    POOLINGS = ("mean", "flatten")

    def __init__(self, vocabulary: Sequence[str], *, cond_dim: int, width: int = 128, depth: int = 2,
                 num_heads: int = 4, max_words: int = 16, pooling: str = "mean"):
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"text encoder pooling must be one of {self.POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.vocabulary = [PAD, UNKNOWN] + [w for w in vocabulary if w not in (PAD, UNKNOWN)]
        self.word_index = {word: i for i, word in enumerate(self.vocabulary)}
        self.max_words = max_words
        self.word_embed = nn.Embedding(len(self.vocabulary), width)
        self.position_embed = nn.Parameter(torch.randn(1, max_words, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, num_heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.out = nn.Linear(width * (max_words if pooling == "flatten" else 1), cond_dim)
        self.null_cond = nn.Parameter(torch.zeros(cond_dim))

    def config(self) -> dict:
        """The constructor arguments, for saving alongside the weights."""
        layer = self.layers.layers[0]
        return {
            "vocabulary": self.vocabulary[2:],
            "cond_dim": self.out.out_features,
            "width": self.word_embed.embedding_dim,
            "depth": len(self.layers.layers),
            "num_heads": layer.self_attn.num_heads,
            "max_words": self.max_words,
            "pooling": self.pooling,
        }

    def unknown_words(self, prompts: Sequence[str]) -> list[str]:
        """The words of `prompts` outside the vocabulary (each would read as <unk>), sorted."""
        return sorted({w for prompt in prompts if isinstance(prompt, str) for w in split_words(prompt)}
                      - set(self.word_index))

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Word ids [B, max_words] (0-padded); unknown words map to index 1."""
        ids_BN = torch.zeros(len(prompts), self.max_words, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            prompt = require_text(prompt, where=f"prompt {row}", family="next_scale")
            words = split_words(prompt)
            if not words or len(words) > self.max_words:
                raise ValueError(f"prompt {prompt!r} has {len(words)} words; this encoder takes 1..{self.max_words}")
            ids_BN[row, : len(words)] = torch.tensor([self.word_index.get(w, 1) for w in words])
        return ids_BN.to(self.word_embed.weight.device)

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        ids_BN = self.tokenize(prompts)
        keep_BN = ids_BN != 0
        hidden_BND = self.layers(self.word_embed(ids_BN) + self.position_embed, src_key_padding_mask=~keep_BN)
        hidden_BND = hidden_BND * keep_BN[..., None]
        if self.pooling == "flatten":
            return self.out(hidden_BND.flatten(1))  # [B, T·W]: one slot per word position
        return self.out(hidden_BND.sum(1) / keep_BN.sum(1, keepdim=True))

    def null(self, batch_size: int) -> torch.Tensor:
        return self.null_cond.expand(batch_size, -1)
