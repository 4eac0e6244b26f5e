"""bf16 autocast (policy.precision): the on-policy check stays exact because old log-probs are re-scored in
the same precision and micro-batches as the update; bf16 log-probs stay close to float32 ones; LoRA
parameters, their gradients and the optimizer stay float32."""

import torch
from support.next_scale import perturb_adapter

from rlalign.grpo.update import rescore_old_logp
from rlalign.policies.edit_flow.model import load_model, load_tokenizer
from rlalign.policies.edit_flow.policy import EditFlowPolicy
from rlalign.policies.precision import AutocastPolicy, with_precision

from .edit_flow.conftest import GOLDEN_DIR, needs_golden, prompts_of


def _worst(new, old, masks):
    return max(float(((n.detach() - o).abs() * m).max()) for n, o, m in zip(new, old, masks))


def test_bf16_next_scale_on_policy_is_exact_and_close_to_fp32(make_policy):
    policy = make_policy()
    bf16 = with_precision(policy, "bf16")
    assert isinstance(bf16, AutocastPolicy) and with_precision(policy, "fp32") is policy
    prompts = ["a red circle", "two blue squares", "a green triangle on the left"] * 4
    rollout = bf16.rollout(prompts, 2, generator=torch.Generator().manual_seed(0))
    rescore_old_logp(bf16, rollout, micro_batch_size=5)  # what the trainer does for bf16
    for micro in torch.arange(len(rollout)).split(5):  # the update's micro-batches
        part = rollout.select(micro)
        assert _worst(bf16.log_prob(part), part.old_logp, part.action_mask) == 0.0
    fp32 = policy.log_prob(rollout)
    gap = _worst(fp32, rollout.old_logp, rollout.action_mask)
    assert 0.0 < gap <= 0.1, gap  # bf16 really ran, and stayed within 0.1 nats of fp32 per action


@needs_golden
def test_bf16_edit_flow_keeps_fp32_master_weights_and_gradients():
    model = load_model(GOLDEN_DIR / "model")
    policy = EditFlowPolicy(model, load_tokenizer(GOLDEN_DIR / "model", model.config), tau=0.1, mask_length=3,
                            max_length=24, lora_rank=4)
    perturb_adapter(policy, std=0.3)
    bf16 = with_precision(policy, "bf16")
    rollout = bf16.rollout(prompts_of(7), 3, generator=torch.Generator().manual_seed(0))
    rescore_old_logp(bf16, rollout, micro_batch_size=7)
    new = bf16.log_prob(rollout)
    assert _worst(new, rollout.old_logp, rollout.action_mask) == 0.0
    assert all(t.dtype == torch.float32 for t in new)
    torch.stack([t.sum() for t in new]).sum().backward()
    lora = bf16.trainable_parameters()
    assert lora and all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
                        for p in lora)
    assert 0.0 < _worst(policy.log_prob(rollout), rollout.old_logp, rollout.action_mask) <= 0.1
