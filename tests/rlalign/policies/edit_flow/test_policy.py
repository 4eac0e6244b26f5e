"""EditFlowPolicy on the golden dllm checkpoint: exact on-policy log-probs with all three edit operations,
frozen suffix, LoRA-only gradients, batch-independent samples, completion, and peft's own format."""

import json
import pickle

import pytest
import torch
from peft import PeftModel
from transformers import AutoModel

from rlalign.policies import StepPolicy, concat_rollouts
from rlalign.policies.edit_flow.tau_leap import DELETE, SUBSTITUTE

from .conftest import GOLDEN_DIR, needs_golden, prompts_of

pytestmark = needs_golden
SETTINGS = {
    "default": {},
    "insertion-only": {"insertion_only": True, "mask_length": 0},
    "edit-prompt": {"edit_prompt": True, "temperature": 0.7},
}


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_on_policy_log_probs_match_rollout_for_several_prefixes(make_golden_policy, setting, batch):
    policy = make_golden_policy(**SETTINGS[setting])
    assert isinstance(policy, StepPolicy) and policy.num_steps == 10
    width, worst, operations = 24, 0.0, {"delete": 0, "substitute": 0, "insert": 0}
    for m in (1, 4, policy.num_steps):
        rollout = policy.rollout(prompts_of(batch), m, generator=torch.Generator().manual_seed(m))
        rescored = policy.log_prob(rollout)
        assert len(rescored) == m == len(rollout.old_logp) == len(rollout.action_mask)
        for s, (new, old, mask) in enumerate(zip(rescored, rollout.old_logp, rollout.action_mask)):
            assert new.shape == old.shape == mask.shape == (batch, 2 * width) and new.dtype == torch.float32
            worst = max(worst, float((new.detach() - old).abs().max()))
            assert (old[~mask] == 0).all() and (new.detach()[~mask] == 0).all()
            assert (old[mask] < 0).all()
            ops = rollout.state.position_ops[s]
            operations["delete"] += int((ops == DELETE).sum())
            operations["substitute"] += int((ops == SUBSTITUTE).sum())
            operations["insert"] += int(rollout.state.inserted[s].sum())
        assert rollout.sampler_logp_gap.max() <= 1e-5
    assert worst <= 1e-5
    if setting == "insertion-only":
        assert operations["delete"] == operations["substitute"] == 0 and operations["insert"] > 0
    elif batch > 1:
        assert min(operations.values()) > 0, operations  # every operation was sampled and scored


def test_frozen_suffix_steps_are_the_base_models(make_golden_policy):
    policy, m = make_golden_policy(), 3
    prompts = prompts_of(6)
    rollout = policy.rollout(prompts, m, generator=torch.Generator().manual_seed(0), keep_trace=True)
    trace, prompt_lengths = rollout.state.trace, rollout.state.prompt_lengths
    assert len(trace.sequences) == policy.num_steps
    for s in range(policy.num_steps):
        tokens, lengths = trace.sequences[s], trace.lengths[s]
        adapted = policy.distribution(tokens, lengths, prompt_lengths, s)
        with policy.adapter_disabled():
            base = policy.distribution(tokens, lengths, prompt_lengths, s)
        used = adapted if s < m else base
        assert torch.allclose(trace.edit_prob[s], used.edit_prob_BW, atol=1e-6)
        assert torch.allclose(trace.insert_prob[s], used.insert_prob_BW, atol=1e-6)
        assert torch.allclose(trace.sub_logp[s], used.sub_logp_BWV, atol=1e-5)
        # The adapter really changes the model, so the check above tells the two apart.
        assert (adapted.sub_logp_BWV - base.sub_logp_BWV).abs().max() > 1e-2


def test_only_lora_parameters_get_gradients(make_golden_policy):
    policy = make_golden_policy()
    rollout = policy.rollout(prompts_of(5), 4, generator=torch.Generator().manual_seed(0))
    torch.stack([lp.sum() for lp in policy.log_prob(rollout)]).sum().backward()
    named = dict(policy.model.named_parameters())
    with_grad = {n for n, p in named.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert {n for n, p in named.items() if p.requires_grad} == {n for n in named if "lora_" in n}
    assert any(".Wqkv." in n for n in with_grad) and any("mlp.Wi." in n for n in with_grad)


def test_samples_do_not_depend_on_batch_composition(make_golden_policy):
    policy = make_golden_policy()
    prompts = prompts_of(6)
    seeds = [11, 12, 13, 14, 15, 16]
    generators = lambda rows: [torch.Generator().manual_seed(seeds[i]) for i in rows]
    whole = policy.rollout(prompts, 4, generator=generators(range(6)))
    rows = [4, 1, 3]
    part = policy.rollout([prompts[i] for i in rows], 4, generator=generators(rows))
    assert part.outputs == [whole.outputs[i] for i in rows]
    for s in range(4):
        assert torch.equal(part.state.sequences[s], whole.state.sequences[s][rows])
        assert (part.old_logp[s] - whole.old_logp[s][rows]).abs().max() <= 1e-6
    # Shards join into the same rollout (what Ray workers' results become).
    joined = concat_rollouts([whole.select(torch.tensor([0, 1])), whole.select(torch.tensor([2, 3, 4, 5]))])
    assert joined.outputs == whole.outputs and torch.equal(joined.state.final_tokens, whole.state.final_tokens)
    pickle.loads(pickle.dumps(joined))


def test_complete_replays_the_prefix_then_samples_the_base(make_golden_policy):
    policy = make_golden_policy()
    prompts = prompts_of(3)
    full = policy.rollout(prompts, "all", generator=torch.Generator().manual_seed(3))
    texts, repeated, tokens = policy.complete(full, 2, generator=[torch.Generator().manual_seed(i) for i in range(6)])
    # With m = T every step is replayed: each completion is the rollout's own text.
    assert texts == [t for t in full.outputs for _ in range(2)] and repeated == [p for p in prompts for _ in range(2)]
    short = policy.rollout(prompts, 2, generator=torch.Generator().manual_seed(3))
    texts, _, tokens = policy.complete(short, 4, generator=torch.Generator().manual_seed(0))
    assert len(texts) == 12 and tokens.shape == (12, 24)
    assert len(set(texts)) > 3  # fresh suffixes differ


def test_adapter_saves_in_peft_format_and_loads_onto_the_plain_dllm_model(make_golden_policy, tmp_path):
    policy = make_golden_policy()
    policy.save_adapter(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {"Wqkv", "Wo", "Wi"} and config["peft_type"] == "LORA"
    plain = AutoModel.from_pretrained(GOLDEN_DIR / "model", local_files_only=True)  # dllm's model, no rlalign policy
    restored = PeftModel.from_pretrained(plain, tmp_path / "adapter").eval()
    ids, mask = torch.tensor([[2, 5, 6, 7, 4, 4]]), torch.ones(1, 6, dtype=torch.long)
    with torch.no_grad():
        ours = policy.model(input_ids=ids, attention_mask=mask)
        theirs = restored(input_ids=ids, attention_mask=mask)
        with restored.disable_adapter():
            base = restored(input_ids=ids, attention_mask=mask)
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max() <= 1e-6, name
    assert (ours["sub_logits"] - base["sub_logits"]).abs().max() > 1e-2  # the adapter is not a no-op


def test_prompt_rows_and_bad_prompts(make_golden_policy):
    policy = make_golden_policy(perturb=False)
    rows = [{"prompt": "w5 w6", "solution": "w7"}, {"prompt": "w8", "solution": "w9"}]
    tokens, lengths, prompt_lengths = policy.encode_prompts(rows)
    # BOS + the prompt's tokens + 3 MASKs; the prompt length counts BOS.
    assert tokens[0, :6].tolist() == [2, 5, 6, 4, 4, 4] and lengths.tolist() == [6, 5]
    assert prompt_lengths.tolist() == [3, 2]
    policy.check_prompts(rows, where="prompts.train")
    with pytest.raises(ValueError, match="prompts.train: prompt 'w5 hello'.*does not know"):
        policy.check_prompts(["w5 hello"], where="prompts.train")
    with pytest.raises(ValueError, match="prompts.eval: prompt 0 .*max_length=24"):
        policy.check_prompts([" ".join(["w5"] * 22)], where="prompts.eval")
    policy.check_prompts(["w5 hello"], where="prompts.train", allow_unknown_words=True)  # waives the unknown piece
    with pytest.raises(ValueError, match="max_length=24"):  # and only that: a prompt too long is still refused
        policy.check_prompts([" ".join(["w5"] * 22)], where="prompts.eval", allow_unknown_words=True)
    with pytest.raises(ValueError, match="prompt 0: .*text prompts.*got a number"):  # a bad input: one `error:` line
        policy.encode_prompts([3])
    with pytest.raises(ValueError, match="prompts.train: prompt 0: .*got conversational messages.*give the prompt as text"):
        policy.check_prompts([{"prompt": [{"role": "user", "content": "w5"}]}], where="prompts.train")


def test_the_tau_leap_loop_makes_no_host_copy(make_golden_policy, monkeypatch):
    from support.host_copies import counting_cpu_calls

    policy = make_golden_policy()
    tokens, lengths, prompt_lengths = policy.encode_prompts(prompts_of(3))
    with counting_cpu_calls(monkeypatch) as calls:
        sample = policy._sample(tokens, lengths, prompt_lengths, 4, torch.Generator().manual_seed(0),
                                dict(policy.sampling))
    assert calls == [] and len(sample.logp) == 4
