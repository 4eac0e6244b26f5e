"""Fixtures for the Edit Flow family: the golden dllm checkpoint (shared/golden/editflow) as a policy."""

from pathlib import Path

import pytest
from support import one_torch_thread
from support.next_scale import perturb_adapter

from rlalign.policies.edit_flow.model import load_model, load_tokenizer
from rlalign.policies.edit_flow.policy import EditFlowPolicy

GOLDEN_DIR = Path(__file__).resolve().parents[4].parent / "shared" / "golden" / "editflow"
PROMPTS = ["w5 w6 w7", "w8", "w9 w10 w11 w12", "w13 w14"]
"""Texts in the golden tokenizer's vocabulary (w5 … w63)."""

needs_golden = pytest.mark.skipif(not (GOLDEN_DIR / "model" / "config.json").is_file(),
                                  reason=f"golden Edit Flow checkpoint not found at {GOLDEN_DIR}")


_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


@pytest.fixture
def make_golden_policy():
    """EditFlowPolicy on the golden checkpoint; `perturb` gives the adapter random B matrices."""

    def make(perturb=True, **settings):
        model = load_model(GOLDEN_DIR / "model")
        tokenizer = load_tokenizer(GOLDEN_DIR / "model", model.config)
        settings = {"tau": 0.1, "mask_length": 3, "max_length": 24, "lora_rank": 4, **settings}
        policy = EditFlowPolicy(model, tokenizer, **settings)
        if perturb:
            perturb_adapter(policy, std=0.3)
        return policy

    return make


def prompts_of(batch):
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
