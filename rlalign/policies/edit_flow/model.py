"""Edit Flow checkpoints in dllm's format, loaded through transformers (docs/edit_flow.md).

dllm (`dllm/pipelines/editflow`) puts Edit Flow heads on a transformers masked-LM backbone and saves
the result with `save_pretrained`: a `config.json` whose `model_type` is `editflow-modernbert`
(otherwise a plain ModernBERT config), a `model.safetensors` with ModernBertForMaskedLM's key names
plus three heads, and a tokenizer. The heads read the final hidden state h after the MLM head's
transform (`head`: dense → act → norm), before its vocabulary `decoder`:

    sub_logits(h), ins_logits(h)   [B, L, V]   token logits for substituting position i / inserting after it
    rate_heads(h) = softplus(Linear(h) → 3)   [B, L, 3] = (substitution, deletion, insertion) rates

The classes below are transformers' own ModernBERT classes with those heads added (not a
re-implementation of the backbone), registered with AutoConfig/AutoModel under the same model_type,
so `AutoModel.from_pretrained(directory)` returns them. `forward(input_ids, attention_mask, t)`
returns dllm's dict; t is accepted and ignored, as in dllm (its models are time-independent). We skip
the unused vocabulary decoder: `last_hidden_state` equals dllm's `hidden_states[-1]` under the
transformers versions we support (tests/rlalign/policies/edit_flow/test_golden.py checks the outputs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, ModernBertConfig, ModernBertForMaskedLM

HEADS = ("sub_logits", "ins_logits", "rate_heads")
"""The modules dllm adds to the backbone; dllm trains them fully even when the backbone gets LoRA."""

SUPPORTED_MODEL_TYPES = ("editflow-modernbert",)
"""model_type values this version loads. dllm also writes editflow-qwen2/-qwen3/-llada/-dream/-roberta
checkpoints; those backbones are not supported yet (docs/edit_flow.md)."""

DEFAULT_TARGET_MODULES = ("Wqkv", "Wo", "Wi")
"""ModernBERT's attention (Wqkv, Wo) and MLP input (Wi) projections: the LoRA targets by default.
The name `Wo` also matches the MLP output projection (`mlp.Wo`), so every Linear of every layer is adapted."""


class EditFlowModernBertConfig(ModernBertConfig):
    model_type = "editflow-modernbert"


class EditFlowModernBertModel(ModernBertForMaskedLM):
    """ModernBertForMaskedLM plus dllm's three Edit Flow heads."""

    config_class = EditFlowModernBertConfig

    def __init__(self, config: EditFlowModernBertConfig):
        super().__init__(config)
        width, vocab = self.decoder.in_features, self.decoder.out_features
        bias = self.decoder.bias is not None
        self.sub_logits = nn.Linear(width, vocab, bias=bias)
        self.ins_logits = nn.Linear(width, vocab, bias=bias)
        self.rate_heads = nn.Sequential(nn.Linear(width, 3), nn.Softplus())
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, t: Tensor | None = None,
                **kwargs: Any) -> dict[str, Tensor]:
        """dllm's interface: token ids [B, L] (and mask) → the three rates [B, L] and two logit tensors [B, L, V]."""
        hidden_BLD = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        hidden_BLD = self.head(hidden_BLD)
        sub_rate_BL, del_rate_BL, ins_rate_BL = self.rate_heads(hidden_BLD).unbind(-1)
        return {
            "sub_rate_hat": sub_rate_BL,
            "del_rate_hat": del_rate_BL,
            "ins_rate_hat": ins_rate_BL,
            "ins_logits": self.ins_logits(hidden_BLD),
            "sub_logits": self.sub_logits(hidden_BLD),
        }


AutoConfig.register(EditFlowModernBertConfig.model_type, EditFlowModernBertConfig, exist_ok=True)
AutoModel.register(EditFlowModernBertConfig, EditFlowModernBertModel, exist_ok=True)


class CheckpointError(ValueError):
    """An Edit Flow checkpoint directory that cannot be used as it is; the message says what to do."""


def read_model_type(directory: Path) -> str:
    """The `model_type` of directory/config.json, checked to be one this version loads."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{directory} has no config.json: an Edit Flow checkpoint is a directory written by "
                              "dllm's (or rlalign's) save_pretrained, holding config.json, model.safetensors and "
                              "the tokenizer files")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error})") from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        hint = ("it is a plain masked LM without Edit Flow heads; convert it with dllm's editflow init first"
                if model_type in ("modernbert", "bert", "roberta") else
                "dllm's Qwen/LLaDA/Dream Edit Flow backbones are not supported yet")
        raise CheckpointError(f"{config_path}: model_type {model_type!r} is not an Edit Flow type this version "
                              f"loads ({', '.join(SUPPORTED_MODEL_TYPES)}); {hint}")
    return model_type


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> EditFlowModernBertModel:
    """AutoModel.from_pretrained on a local directory (nothing is downloaded), in float32, eval mode.

    Every weight must come from the file: a head or backbone tensor that transformers would silently
    initialise at random (a missing key), or a key the model does not have, is an error naming them.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise CheckpointError(f"Edit Flow checkpoint {str(directory)!r} is not a directory; give the directory "
                              "that holds config.json and model.safetensors (or builtin:NAME)")
    read_model_type(directory)
    model, info = AutoModel.from_pretrained(str(directory), local_files_only=True, output_loading_info=True,
                                            dtype=torch.float32, attn_implementation="sdpa")
    missing = [key for key in info["missing_keys"] if not key.startswith("decoder.")]  # decoder: tied/unused
    if missing or info["unexpected_keys"] or info.get("mismatched_keys"):
        heads = [key for key in missing if key.split(".")[0] in HEADS]
        what = (f"the Edit Flow heads {sorted(heads)} are missing (a masked LM not yet converted by dllm?)"
                if heads else f"missing {sorted(missing)[:4]}")
        raise CheckpointError(f"{directory}/model.safetensors does not fit its config.json: {what}; unexpected "
                              f"{sorted(info['unexpected_keys'])[:4]}; mismatched {list(info.get('mismatched_keys', []))[:2]}")
    return model.to(device).eval()


def load_tokenizer(directory: str | Path, config: ModernBertConfig) -> transformers.PreTrainedTokenizerBase:
    """AutoTokenizer from the checkpoint directory, checked against the model's config: its ids must fit
    the embedding, and BOS, MASK and PAD must be the ids the model was trained with."""
    directory = Path(directory).expanduser()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{directory} holds no tokenizer AutoTokenizer can load locally ({error}); "
                              "save the tokenizer beside the model (tokenizer.save_pretrained(directory))") from None
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(f"{directory}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary is "
                              f"{config.vocab_size}; it is not this model's tokenizer")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    checks = {"BOS": (bos, config.bos_token_id), "MASK": (tokenizer.mask_token_id, getattr(config, "mask_token_id", None)),
              "PAD": (tokenizer.pad_token_id, config.pad_token_id)}
    if bos is None:
        raise CheckpointError(f"{directory}: the tokenizer has no BOS (or CLS) token; Edit Flow texts start with one")
    for name, (from_tokenizer, from_config) in checks.items():
        if from_tokenizer is not None and from_config is not None and from_tokenizer != from_config:
            raise CheckpointError(f"{directory}: the tokenizer's {name} id is {from_tokenizer} but config.json says "
                                  f"{from_config}; the tokenizer does not belong to this model")
    return tokenizer
