"""NextScalePolicy: exact on-policy log-probs, frozen suffix, LoRA-only gradients, adapter I/O."""

import pytest
import torch
from support.next_scale import PROMPTS, perturb_adapter

from rlalign.policies import StepPolicy
from rlalign.policies.next_scale.policy import NextScalePolicy

SETTINGS = {
    "cfg": dict(cfg_scale=3.0, temperature=1.0),
    "cfg+top-k+top-p": dict(cfg_scale=2.0, temperature=0.8, top_k=12, top_p=0.8),
}


def prompts_of(batch):
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_on_policy_log_probs_match_rollout_for_every_prefix(make_policy, setting, batch):
    policy = make_policy(**SETTINGS[setting])
    assert isinstance(policy, StepPolicy) and policy.num_steps == 6
    for m in range(1, policy.num_steps + 1):
        rollout = policy.rollout(prompts_of(batch), m, generator=torch.Generator().manual_seed(m))
        rescored = policy.log_prob(rollout)
        assert len(rescored) == m == rollout.prefix_steps
        for step, (new, old) in enumerate(zip(rescored, rollout.old_logp)):
            side = policy.transformer.patch_nums[step]
            assert new.shape == old.shape == (batch, side * side) and new.dtype == torch.float32
            assert (new.detach() - old).abs().max() <= 1e-5
            assert (old < 0).any()  # real distributions, not a kept set of one token
        # old_logp is recorded by log_prob's own teacher pass; the KV-cached sampler's log-probs of the
        # same tokens (the distribution actually sampled) must agree with it too.
        assert rollout.sampler_logp_gap.shape == (batch,)
        assert rollout.sampler_logp_gap.max() <= 1e-5


def test_truncation_is_stored_and_respected(make_policy):
    policy = make_policy(cfg_scale=2.0, top_k=5, top_p=0.9)
    rollout = policy.rollout(prompts_of(8), 3, generator=torch.Generator().manual_seed(0))
    for kept, tokens in zip(rollout.state.kept_masks, rollout.state.tokens):
        assert 1 <= kept.sum(-1).min() and kept.sum(-1).max() <= 5
        assert kept.gather(-1, tokens[..., None]).all()  # every sampled token is in its kept set


def test_frozen_suffix_samples_from_the_base_given_the_prefix(make_policy):
    policy = make_policy(cfg_scale=2.0, temperature=0.9)
    prompts, m = prompts_of(5), 2
    rollout = policy.rollout(prompts, m, generator=torch.Generator().manual_seed(3), keep_scale_logits=True)
    sampled = rollout.state.scale_logits
    settings = rollout.state.sampling
    with torch.no_grad():
        adapter = policy._teacher_logits(prompts, rollout.state.tokens, settings, use_cfg=True)
        with policy.adapter_disabled():
            base = policy._teacher_logits(prompts, rollout.state.tokens, settings, use_cfg=True)
    for k in range(policy.num_steps):
        if k < m:  # prefix: the adapter's distribution, which differs from the base
            assert (sampled[k] - adapter[k]).abs().max() <= 1e-5
            assert (sampled[k] - base[k]).abs().max() > 1e-3
        else:  # suffix: exactly the base given the prefix; the adapter's own cache would differ
            assert (sampled[k] - base[k]).abs().max() <= 1e-5
            assert (sampled[k] - adapter[k]).abs().max() > 1e-3


def test_only_lora_parameters_receive_gradients(make_policy):
    policy = make_policy(cfg_scale=2.0)
    rollout = policy.rollout(prompts_of(4), 3, generator=torch.Generator().manual_seed(0))
    sum(lp.sum() for lp in policy.log_prob(rollout)).backward()
    with_grad = {n for n, p in policy.model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert all(p.grad is not None for p in policy.trainable_parameters())


def test_adapter_state_round_trip_and_disable(make_policy, tmp_path):
    policy = make_policy()
    prompts = prompts_of(3)
    state = policy.adapter_state()
    assert state and all("lora_" in k for k in state)
    rollout = policy.rollout(prompts, 2, generator=torch.Generator().manual_seed(0))
    before = [lp.detach() for lp in policy.log_prob(rollout)]
    policy.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    perturb_adapter(policy, seed=9)
    assert (policy.log_prob(rollout)[1].detach() - before[1]).abs().max() > 1e-4
    policy.load_adapter(tmp_path / "adapter")
    assert all(torch.equal(a.detach(), b) for a, b in zip(policy.log_prob(rollout), before))
    policy.load_adapter_state(state)
    assert all(torch.equal(a.detach(), b) for a, b in zip(policy.log_prob(rollout), before))
    with pytest.raises(ValueError, match="LoRA layout"):
        policy.load_adapter_state({k: v for k, v in list(state.items())[1:]})


def test_an_adapter_of_another_rank_is_refused_naming_the_rank_to_use(make_policy, tiny_model, tmp_path):
    make_policy().save_adapter(tmp_path / "rank4")  # rank 4
    other = NextScalePolicy(tiny_model, lora_rank=8)
    with pytest.raises(ValueError, match=r"rank: adapter 4, this policy 8 \(set policy.lora.rank\)"):
        other.load_adapter(tmp_path / "rank4")


def test_an_adapter_of_another_alpha_is_refused_naming_both(make_policy, tiny_model, tmp_path):
    """alpha scales every update (alpha/r · B A): an alpha-16 adapter read under alpha 64 would act at 4×."""
    make_policy().save_adapter(tmp_path / "alpha16")
    other = NextScalePolicy(tiny_model, lora_rank=4, lora_alpha=64.0)
    with pytest.raises(ValueError, match=r"alpha: adapter 16(\.0)?, this policy 64(\.0)? \(set policy.lora.alpha\)"):
        other.load_adapter(tmp_path / "alpha16")


def test_per_sample_generators_make_samples_independent_of_the_batch(make_policy):
    policy = make_policy(cfg_scale=2.0, top_k=20)
    prompts = prompts_of(4)
    seeds = [11, 12, 13, 14]
    together = policy.rollout(prompts, 2, generator=[torch.Generator().manual_seed(s) for s in seeds])
    alone = policy.rollout(prompts[2:3], 2, generator=[torch.Generator().manual_seed(seeds[2])])
    for joint, single in zip(together.state.tokens, alone.state.tokens):
        assert torch.equal(joint[2:3], single)


def test_rollout_select_and_pickle(make_policy):
    import pickle

    policy = make_policy(cfg_scale=1.0, top_p=0.9)
    rollout = policy.rollout(prompts_of(6), 2, generator=torch.Generator().manual_seed(0),
                             group_ids=torch.tensor([0, 0, 1, 1, 2, 2]))
    part = pickle.loads(pickle.dumps(rollout)).select([1, 4])
    assert part.prompts == [rollout.prompts[1], rollout.prompts[4]] and part.group_ids.tolist() == [0, 2]
    assert torch.equal(part.state.tokens[5], rollout.state.tokens[5][[1, 4]])
    rescored = policy.log_prob(part)
    assert torch.allclose(rescored[1].detach(), rollout.old_logp[1][[1, 4]], atol=1e-5)


def test_prefix_steps_out_of_range_is_named(make_policy):
    policy = make_policy()
    for bad in (0, 7, "some"):
        with pytest.raises(ValueError, match="prefix_steps must be 1..6"):
            policy.rollout(prompts_of(1), bad, generator=torch.Generator())
    assert policy.rollout(prompts_of(1), "all", generator=torch.Generator()).prefix_steps == 6


def test_encode_decode_and_teacher_logits_api(make_policy):
    policy = make_policy(cfg_scale=2.0)
    rollout = policy.rollout(prompts_of(2), 6, generator=torch.Generator().manual_seed(0))
    tokens = rollout.state.tokens
    assert torch.allclose(policy.decode(tokens), rollout.outputs, atol=1e-5)
    assert [t.shape for t in policy.encode(rollout.outputs)] == [t.shape for t in tokens]
    conditional = policy.logits(rollout.prompts, tokens[:3])
    guided = policy.logits(rollout.prompts, tokens[:3], cfg_scale=2.0)
    assert [c.shape[1] for c in conditional] == [1, 4, 9]
    assert torch.allclose(guided[0], conditional[0], atol=1e-5)  # the CFG ramp is 0 at the first scale
    assert not torch.allclose(guided[2], conditional[2])


def test_complete_keeps_the_prefix_and_redraws_the_suffix_from_the_base(make_policy):
    policy = make_policy(cfg_scale=2.0)
    rollout = policy.rollout(prompts_of(3), 2, generator=[torch.Generator().manual_seed(i) for i in range(3)])
    generators = [torch.Generator().manual_seed(100 + i) for i in range(12)]
    images, prompts, tokens = policy.complete(rollout, 4, generator=generators)
    assert images.shape == (12, 3, 32, 32) and prompts == [p for p in rollout.prompts for _ in range(4)]
    for scale, prefix in enumerate(rollout.state.tokens[:2]):  # the prefix is kept, K times each
        assert torch.equal(tokens[scale], prefix.repeat_interleave(4, dim=0))
    assert not torch.equal(tokens[-1][0], tokens[-1][1])  # the suffixes differ between completions
    # The suffix is the frozen base's: the same draws with the adapter switched off give the same tokens.
    with policy.adapter_disabled():
        _, _, base_tokens = policy.complete(rollout, 4, generator=[torch.Generator().manual_seed(100 + i)
                                                                    for i in range(12)])
    assert all(torch.equal(a, b) for a, b in zip(tokens, base_tokens))


def test_prompt_rows_condition_on_their_prompt_and_conversations_are_named(make_policy):
    """jsonl:/hf: prompts are TRL rows: the image model reads each row's "prompt" (issue 31: a jsonl: source
    used to fail at the first rollout with "takes strings as prompts")."""
    policy = make_policy(cfg_scale=2.0)
    rows = [{"prompt": text, "solution": "x"} for text in prompts_of(3)]
    as_rows = policy.rollout(rows, 2, generator=[torch.Generator().manual_seed(s) for s in range(3)])
    as_text = policy.rollout(prompts_of(3), 2, generator=[torch.Generator().manual_seed(s) for s in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(as_rows.state.tokens, as_text.state.tokens))
    assert as_rows.prompts == rows  # the rows travel on to the rewards, which get their columns
    policy.check_prompts(rows, where="prompts.train")  # the rows' words are checked, and known
    with pytest.raises(ValueError, match="prompts.train: 1 word.*zebra"):
        policy.check_prompts([{"prompt": "a zebra circle"}], where="prompts.train")
    conversation = [{"prompt": [{"role": "user", "content": "a red circle"}]}]
    with pytest.raises(ValueError, match="prompts.train: the next_scale family takes text prompts .*got conversational "
                                         "messages.*give the prompt as text"):
        policy.check_prompts(conversation, where="prompts.train")  # at check time, before the model loads a run
    with pytest.raises(ValueError, match="prompt 0: .*got conversational messages.*give the prompt as text"):
        policy.rollout(conversation, 2, generator=torch.Generator())
