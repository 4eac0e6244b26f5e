"""Insertion (Edit Flows / OneFlow style) generator family: insertion transformer, sampler, training loss.

See docs/insertion.md.
"""

from rlalign.policies.insertion.loss import Corruption, EditFlowLoss, corrupt, edit_flow_loss
from rlalign.policies.insertion.model import (
    GapOutputs,
    InsertionTransformer,
    build_model,
    load_model,
    save_model,
    shapes_vocabulary,
)
from rlalign.policies.insertion.policy import InsertionPolicy
from rlalign.policies.insertion.sampler import (
    StepDistribution,
    apply_insertions,
    fire_log_probs,
    guide,
    insertable_log_probs,
    open_gaps,
    sample_step,
    step_distribution,
    step_log_prob,
    step_width,
)
from rlalign.policies.insertion.state import InsertionState, InsertionTrace

__all__ = [
    "Corruption",
    "EditFlowLoss",
    "GapOutputs",
    "InsertionPolicy",
    "InsertionState",
    "InsertionTrace",
    "InsertionTransformer",
    "StepDistribution",
    "apply_insertions",
    "build_model",
    "corrupt",
    "edit_flow_loss",
    "fire_log_probs",
    "guide",
    "insertable_log_probs",
    "load_model",
    "open_gaps",
    "sample_step",
    "save_model",
    "shapes_vocabulary",
    "step_distribution",
    "step_log_prob",
    "step_width",
]
