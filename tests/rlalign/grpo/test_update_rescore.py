"""rescore_old_logp: old_logp from another process is replaced by the trainer's own scoring, and the
worker's deviation is reported."""

import torch
from support.next_scale import PROMPTS, TINY, perturb_adapter, randomize_like_trained

from rlalign.grpo.update import rescore_old_logp
from rlalign.policies.next_scale.model import build_model
from rlalign.policies.next_scale.policy import NextScalePolicy


def test_rescoring_restores_the_trainers_log_probs_and_reports_the_gap():
    torch.manual_seed(0)
    model = build_model(TINY)
    randomize_like_trained(model)
    policy = NextScalePolicy(model, lora_rank=4, cfg_scale=1.0)
    perturb_adapter(policy)
    generators = [torch.Generator().manual_seed(s) for s in range(6)]
    rollout = policy.rollout(PROMPTS * 2, 3, generator=generators)
    exact = [lp.clone() for lp in rollout.old_logp]
    rollout.old_logp = [lp + 1e-3 * (k + 1) for k, lp in enumerate(rollout.old_logp)]  # a "worker" off by rounding
    gap = rescore_old_logp(policy, rollout, micro_batch_size=4)  # micro-batches 4 + 2
    assert abs(gap - 3e-3) < 1e-6  # the largest offset, that of step 3
    for new, old in zip(rollout.old_logp, exact):
        torch.testing.assert_close(new, old, atol=1e-6, rtol=0)
        assert not new.requires_grad
