"""The next-scale sampling loop keeps its tensors on the policy's device: no Tensor.cpu() per scale
(on a GPU each would be a device sync); the rollout moves what it keeps to the host once, afterwards."""

import torch
from support.host_copies import counting_cpu_calls


def test_the_next_scale_loop_makes_no_host_copy(make_policy, monkeypatch):
    policy = make_policy()
    settings = dict(policy.sampling)
    with counting_cpu_calls(monkeypatch) as calls:
        sample = policy._sample(["a red circle", "two blue squares"], 3, torch.Generator().manual_seed(0), settings)
    assert calls == [] and len(sample.logp) == 3
    rollout = policy.rollout(["a red circle", "two blue squares"], 3, generator=torch.Generator().manual_seed(0))
    assert all(lp.device.type == "cpu" for lp in rollout.old_logp)
    assert torch.equal(rollout.state.tokens[0], sample.tokens[0].cpu())  # same draws, moved once
