"""dllm compatibility: the golden Edit Flow checkpoint (shared/golden/editflow, written by dllm's
EditFlowModernBertModel under transformers) loads through AutoModel/AutoTokenizer and reproduces
the reference forward outputs; bad checkpoints fail with errors that name the problem."""

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from rlalign.policies import load_policy
from rlalign.policies.edit_flow.model import (
    CheckpointError,
    EditFlowModernBertModel,
    load_model,
    load_tokenizer,
)
from rlalign.policies.edit_flow.tau_leap import schedule_weight

from .conftest import GOLDEN_DIR, needs_golden

pytestmark = needs_golden
TOLERANCE = 1e-5  # the golden README's agreement target
OUTPUTS = ("sub_rate_hat", "del_rate_hat", "ins_rate_hat", "sub_logits", "ins_logits")


def test_auto_classes_load_transformers_own_modernbert_with_the_heads():
    config = transformers.AutoConfig.from_pretrained(GOLDEN_DIR / "model", local_files_only=True)
    model = transformers.AutoModel.from_pretrained(GOLDEN_DIR / "model", local_files_only=True)
    assert config.model_type == "editflow-modernbert" and isinstance(model, EditFlowModernBertModel)
    assert isinstance(model, transformers.ModernBertForMaskedLM)  # the backbone is transformers', not ours
    tokenizer = transformers.AutoTokenizer.from_pretrained(GOLDEN_DIR / "model", local_files_only=True)
    assert (tokenizer.bos_token_id, tokenizer.mask_token_id, tokenizer.pad_token_id) == (2, 4, 0)


def test_forward_reproduces_the_golden_outputs_at_every_unpadded_position():
    vectors = load_file(str(GOLDEN_DIR / "vectors.safetensors"))
    policy = load_policy({"kind": "edit_flow", "checkpoint": str(GOLDEN_DIR / "model")})
    with torch.no_grad():  # policy.model is dllm's interface: ids, mask, t -> the dict of five tensors
        outputs = policy.model(input_ids=vectors["input_ids"], attention_mask=vectors["attention_mask"], t=vectors["t"])
    real = vectors["attention_mask"].bool()
    assert real.sum(1).tolist() == [9, 6, 12]
    for name in OUTPUTS:
        assert outputs[name].shape == vectors[name].shape
        assert (outputs[name] - vectors[name])[real].abs().max() <= TOLERANCE, name


def test_schedule_weight_is_dllms_linear_kappa_weight():
    vectors = load_file(str(GOLDEN_DIR / "vectors.safetensors"))
    weights = torch.stack([schedule_weight(float(t)) for t in vectors["t"][:, 0]])
    assert torch.allclose(weights, vectors["weight_w"], atol=0, rtol=1e-6)


def _copy(tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(GOLDEN_DIR / "model", target)
    return target


def test_unknown_model_type_is_named(tmp_path):
    directory = _copy(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "editflow-llada"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="editflow-llada.*editflow-modernbert"):
        load_model(directory)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)


def test_missing_heads_are_named_not_silently_initialised(tmp_path):
    directory = _copy(tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("rate_heads")}, str(directory / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"Edit Flow heads \['rate_heads.0.bias', 'rate_heads.0.weight'\]"):
        load_model(directory)


def test_a_tokenizer_of_another_model_is_refused(tmp_path):
    directory = _copy(tmp_path)
    model = load_model(directory)
    config = model.config
    config.mask_token_id = 7
    with pytest.raises(CheckpointError, match="MASK id is 4 but config.json says 7"):
        load_tokenizer(directory, config)
    config.mask_token_id, config.vocab_size = 4, 32
    with pytest.raises(CheckpointError, match="64 tokens but the model's vocabulary is 32"):
        load_tokenizer(directory, config)
