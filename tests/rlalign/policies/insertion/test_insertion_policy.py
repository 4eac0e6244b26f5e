"""InsertionPolicy: exact on-policy log-probs, sampled frequencies = scored probabilities, frozen suffix,
LoRA-only gradients, per-sample determinism, rollout plumbing and model files."""

import pickle

import pytest
import torch

from rlalign.policies import StepPolicy, concat_rollouts
from rlalign.policies.insertion.model import NUM_SPECIAL, load_model, save_model
from rlalign.policies.insertion.sampler import open_gaps, sample_step, step_log_prob, step_width
from rlalign.policies.shared import uniforms

SETTINGS = {"no-cfg": {"cfg_scale": 0.0, "temperature": 1.0}, "cfg": {"cfg_scale": 1.5, "temperature": 0.8}}


def prompts_of(images, batch):
    return [images[i % len(images)] for i in range(batch)]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_on_policy_log_probs_match_rollout_for_every_prefix(make_insertion_policy, images, setting, batch):
    policy = make_insertion_policy(**SETTINGS[setting])
    assert isinstance(policy, StepPolicy) and policy.num_steps == 5
    max_len, fired_any, worst = policy.model.max_len, 0, 0.0
    for m in range(1, policy.num_steps + 1):
        rollout = policy.rollout(prompts_of(images, batch), m, generator=torch.Generator().manual_seed(m))
        rescored = policy.log_prob(rollout)
        assert len(rescored) == m == rollout.prefix_steps == len(rollout.action_mask)
        for s, (new, old, mask) in enumerate(zip(rescored, rollout.old_logp, rollout.action_mask)):
            gaps = step_width(s, max_len) + 1
            assert new.shape == old.shape == mask.shape == (batch, gaps) and new.dtype == torch.float32
            assert torch.equal(mask, open_gaps(rollout.state.lengths[s], gaps, max_len))
            worst = max(worst, float((new.detach() - old).abs().max()))
            assert (old[~mask] == 0).all() and (new.detach()[~mask] == 0).all()  # padded actions are exactly 0
            assert (old[mask] < 0).all()  # every real action is a real (non-certain) choice
            fired_any += int(rollout.state.fired[s].sum())
        # The sampler's own log-probs of what it drew agree with log_prob's batched re-scoring.
        assert rollout.sampler_logp_gap.shape == (batch,)
        assert rollout.sampler_logp_gap.max() <= 1e-5
    assert worst <= 1e-5
    assert fired_any > 0


def _outcome_frequencies(fired_NI, tokens_NI, vocab):
    """Per gap: frequencies [I, 1 + V] of "no insertion" (column 0) and "insert token v" (column 1 + v)."""
    outcome_NI = torch.where(fired_NI, tokens_NI + 1, torch.zeros_like(tokens_NI))
    return torch.stack([torch.bincount(column, minlength=vocab + 1) for column in outcome_NI.T]).double() / len(fired_NI)


def _outcome_probabilities(dist, vocab):
    """exp(step_log_prob) of every outcome of every gap of row 0: [I, 1 + V], scored as log_prob scores."""
    gaps = dist.log_fire_BI.shape[1]
    no_fire = step_log_prob(dist, torch.zeros(1, gaps, dtype=torch.bool), torch.zeros(1, gaps, dtype=torch.long))
    columns = [no_fire[0]]
    for token in range(vocab):
        fire = step_log_prob(dist, torch.ones(1, gaps, dtype=torch.bool), torch.full((1, gaps), token))
        columns.append(fire[0] if token >= NUM_SPECIAL else torch.full((gaps,), float("-inf")))
    return torch.stack(columns, 1).exp().double()


@pytest.mark.parametrize("setting", SETTINGS)
def test_monte_carlo_frequencies_match_scored_probabilities(make_insertion_policy, images, setting):
    """100,000 draws of step 3 from one fixed state (image + pre-step text of 3 words, t = 2/5).

    The state's distribution is computed once and the sampler draws from 100,000 copies of it (one
    forward pass per copy would give the same rows and only cost time)."""
    policy = make_insertion_policy(**SETTINGS[setting])
    model, draws, step = policy.model, 100_000, 2
    text_1N, length_1 = model.encode_texts(["red above circle"])
    text_1N = text_1N[:, : step_width(step, model.max_len)]
    one = policy.distribution([images[3]], text_1N, length_1, step)
    many = type(one)(*(x.expand(draws, *x.shape[1:]) for x in one))
    generator = torch.Generator().manual_seed(0)
    gaps = text_1N.shape[1] + 1
    fired, tokens = sample_step(many, uniforms((draws, gaps), generator), uniforms((draws, gaps), generator))
    empirical = _outcome_frequencies(fired, tokens, model.vocab_size)
    expected = _outcome_probabilities(one, model.vocab_size)
    assert torch.allclose(expected.sum(1), torch.ones(gaps, dtype=torch.float64), atol=1e-5)
    assert (expected[:, 0] < 0.95).all()  # every gap really may fire: the check is not vacuous
    tv_I = 0.5 * (empirical - expected).abs().sum(1)
    print(f"{setting}: per-gap TV {tv_I.tolist()}")
    assert tv_I.max() <= 0.02


def test_monte_carlo_of_the_rollout_itself(make_insertion_policy, make_insertion_model, images):
    """20,000 real rollouts of one image: the first step (a fixed state: the empty text) is drawn with the
    frequencies that its recorded old_logp says. (A model with 4 image patches keeps this fast.)"""
    policy = make_insertion_policy(model=make_insertion_model(patch_size=16), num_steps=1, cfg_scale=1.0)
    draws = 20_000
    rollout = policy.rollout([images[5]] * draws, 1, generator=torch.Generator().manual_seed(0))
    state = rollout.state
    fired, inserted, logp = state.fired[0][:, 0], state.inserted[0][:, 0], rollout.old_logp[0][:, 0]
    outcome = torch.where(fired, inserted + 1, torch.zeros_like(inserted))
    empirical = torch.bincount(outcome, minlength=policy.model.vocab_size + 1).double() / draws
    expected = torch.zeros_like(empirical)
    for value in outcome.unique():  # each outcome's probability, read off the rollout's own log-probs
        chosen = logp[outcome == value]
        assert (chosen - chosen[0]).abs().max() <= 1e-6
        expected[value] = chosen[0].exp()
    assert 0.05 < empirical[0] < 0.95
    tv = 0.5 * (empirical - expected).abs().sum() + (1 - expected.sum())  # unseen outcomes count fully
    print(f"rollout first-step TV {float(tv):.4f}")
    assert tv <= 0.02


def test_frozen_suffix_uses_the_base_given_the_prefix(make_insertion_policy, images):
    policy = make_insertion_policy(cfg_scale=1.5, temperature=0.9)
    prompts, m = prompts_of(images, 6), 2
    rollout = policy.rollout(prompts, m, generator=torch.Generator().manual_seed(3), keep_trace=True)
    trace = rollout.state.trace
    for s in range(policy.num_steps):
        texts, lengths = trace.sequences[s], trace.lengths[s]
        adapter = policy.distribution(prompts, texts, lengths, s)
        with policy.adapter_disabled():
            base = policy.distribution(prompts, texts, lengths, s)
        real = adapter.open_BI
        sampled = (trace.log_fire[s], trace.token_logp[s][..., NUM_SPECIAL:])
        for name, used, model_value in (("adapter", sampled, adapter), ("base", sampled, base)):
            gap_fire = (used[0] - model_value.log_fire_BI)[real].abs().max()
            gap_token = (used[1] - model_value.token_logp_BIV[..., NUM_SPECIAL:])[real].abs().max()
            matches = max(gap_fire, gap_token) <= 1e-5
            differs = max(gap_fire, gap_token) > 1e-3
            if (s < m) == (name == "adapter"):
                assert matches, (s, name, gap_fire, gap_token)
            else:
                assert differs, (s, name, gap_fire, gap_token)
    assert trace.lengths[-1].sum() > 0


def test_only_lora_parameters_receive_gradients(make_insertion_policy, images):
    policy = make_insertion_policy(cfg_scale=1.5)
    rollout = policy.rollout(prompts_of(images, 4), 3, generator=torch.Generator().manual_seed(0))
    sum(lp.sum() for lp in policy.log_prob(rollout)).backward()
    with_grad = {n for n, p in policy.model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.trainable_parameters())
    assert {n.split(".")[-4] for n in with_grad} == {"mat_qkv", "proj", "fc1", "fc2"}


def test_per_sample_generators_make_samples_independent_of_the_batch(make_insertion_policy, images):
    policy = make_insertion_policy(cfg_scale=1.0)
    prompts, seeds = prompts_of(images, 4), [11, 12, 13, 14]
    together = policy.rollout(prompts, 2, generator=[torch.Generator().manual_seed(s) for s in seeds])
    alone = policy.rollout(prompts[2:3], 2, generator=[torch.Generator().manual_seed(seeds[2])])
    assert together.outputs[2] == alone.outputs[0]
    assert torch.equal(together.state.final_tokens[2:3], alone.state.final_tokens)
    for key in ("sequences", "fired", "inserted"):
        for joint, single in zip(getattr(together.state, key), getattr(alone.state, key)):
            assert torch.equal(joint[2:3], single)


def test_rollout_pickles_selects_concatenates_and_rescores(make_insertion_policy, images):
    policy = make_insertion_policy(cfg_scale=1.0)
    rollout = policy.rollout(prompts_of(images, 6), 4, generator=torch.Generator().manual_seed(0),
                             group_ids=torch.tensor([0, 0, 1, 1, 2, 2]))
    part = pickle.loads(pickle.dumps(rollout)).select([1, 4])
    assert part.group_ids.tolist() == [0, 2] and part.outputs == [rollout.outputs[1], rollout.outputs[4]]
    assert torch.equal(part.state.fired[3], rollout.state.fired[3][[1, 4]])
    for new, old in zip(policy.log_prob(part), rollout.old_logp):
        assert torch.allclose(new.detach(), old[[1, 4]], atol=1e-5)
    # Shards of different sizes (as from two workers) join: every step has a batch-independent width.
    other = policy.rollout(prompts_of(images, 3), 4, generator=torch.Generator().manual_seed(1))
    joined = concat_rollouts([rollout, other])
    assert len(joined) == 9 and joined.outputs == rollout.outputs + other.outputs
    for new, old in zip(policy.log_prob(joined), joined.old_logp):
        assert torch.allclose(new.detach(), old, atol=1e-5)


def test_the_length_cap_closes_gaps_in_sampling_and_scoring(make_insertion_policy, make_insertion_model, images):
    model = make_insertion_model()
    with torch.no_grad():  # a model that wants to fill every gap at every step
        model.zero_head.bias.fill_(-30.0)
        model.rate_head.bias.fill_(30.0)
    policy = make_insertion_policy(model=model, num_steps=6)
    rollout = policy.rollout(prompts_of(images, 5), "all", generator=torch.Generator().manual_seed(0))
    lengths = [n.tolist() for n in rollout.state.lengths] + [rollout.state.final_lengths.tolist()]
    assert lengths[:5] == [[0] * 5, [1] * 5, [3] * 5, [7] * 5, [12] * 5]  # 7 → 15 is capped at max_len = 12
    assert rollout.action_mask[3].sum(1).tolist() == [5] * 5  # n = 7: only 12 − 7 = 5 gaps are open
    assert rollout.action_mask[4].sum() == 0  # a full text has no actions
    for new, old in zip(policy.log_prob(rollout), rollout.old_logp):
        assert (new.detach() - old).abs().max() <= 1e-5


def test_complete_keeps_the_prefix_and_redraws_the_suffix_from_the_base(make_insertion_policy, images):
    policy = make_insertion_policy(cfg_scale=1.0)
    rollout = policy.rollout(prompts_of(images, 3), 2, generator=[torch.Generator().manual_seed(i) for i in range(3)])
    texts, prompts, tokens = policy.complete(rollout, 4, generator=[torch.Generator().manual_seed(100 + i)
                                                                     for i in range(12)])
    assert len(texts) == 12 and len(prompts) == 12 and prompts[5] is rollout.prompts[1]
    assert tokens.shape == (12, policy.model.max_len) and len(set(texts)) > 3
    # The prefix is kept: its words appear, in order, in every completion.
    prefix_rollout = policy.rollout(prompts_of(images, 3), 2, generator=[torch.Generator().manual_seed(i)
                                                                          for i in range(3)], keep_trace=True)
    after_prefix = prefix_rollout.state.trace.sequences[2]
    for row in range(12):
        words, text = after_prefix[row // 4].tolist(), tokens[row].tolist()
        kept = [w for w in words if w]
        iterator = iter(text)
        assert all(any(w == x for x in iterator) for w in kept)
    with policy.adapter_disabled():  # the suffix is the base's: switching the adapter off changes nothing
        base_texts, _, _ = policy.complete(rollout, 4, generator=[torch.Generator().manual_seed(100 + i)
                                                                  for i in range(12)])
    assert base_texts == texts


def test_adapter_state_round_trip(make_insertion_policy, images, tmp_path):
    policy = make_insertion_policy()
    state = policy.adapter_state()
    assert state and all("lora_" in k for k in state)
    rollout = policy.rollout(prompts_of(images, 3), 3, generator=torch.Generator().manual_seed(0))
    before = [lp.detach() for lp in policy.log_prob(rollout)]
    policy.save_adapter(tmp_path / "adapter")
    with torch.no_grad():
        for name, parameter in policy.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.5)
    assert (policy.log_prob(rollout)[2].detach() - before[2]).abs().max() > 1e-4
    policy.load_adapter(tmp_path / "adapter")
    assert all(torch.equal(a.detach(), b) for a, b in zip(policy.log_prob(rollout), before))
    policy.load_adapter_state(state)
    assert all(torch.equal(a.detach(), b) for a, b in zip(policy.log_prob(rollout), before))
    with pytest.raises(ValueError, match="LoRA layout"):
        policy.load_adapter_state({k: v for k, v in list(state.items())[1:]})


def test_model_file_round_trip_and_load_policy(make_insertion_model, images, tmp_path):
    from rlalign.policies import load_policy

    model = make_insertion_model()
    path = save_model(model, tmp_path / "captioner.safetensors", half=False)
    loaded = load_model(path)
    assert loaded.architecture == model.architecture and loaded.vocabulary == model.vocabulary
    tokens, lengths = model.encode_texts(["a red circle on the left", "a blue square above a white triangle"])
    t = torch.tensor([0.3, 0.6])
    with torch.no_grad():
        for a, b in zip(model(*model.condition(images[:2]), t, tokens, lengths),
                        loaded(*loaded.condition(images[:2]), t, tokens, lengths)):
            assert torch.equal(a, b)
    save_model(model, tmp_path / "half.safetensors")  # fp16 by default: close, not equal
    policy = load_policy({"kind": "insertion", "checkpoint": str(tmp_path / "half.safetensors"), "insertion": {"steps": 4},
                          "cfg_scale": 1.0, "lora": {"rank": 2}})
    assert type(policy).__name__ == "InsertionPolicy" and policy.num_steps == 4
    assert policy.rollout(prompts_of(images, 2), 2, generator=torch.Generator().manual_seed(0)).prefix_steps == 2
    with pytest.raises(ValueError, match="top_k"):
        load_policy({"kind": "insertion", "checkpoint": str(path), "top_k": 5})
    with pytest.raises(FileNotFoundError, match="shapes-nothing"):
        load_model("builtin:shapes-nothing")


def test_bad_prompts_and_prefix_lengths_are_named(make_insertion_policy, images):
    policy = make_insertion_policy()
    with pytest.raises(ValueError, match=r"conditioned on images.*\[3, 32, 32\]"):
        policy.rollout(["a red circle on the left"], 1, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"tensor of shape \(3, 16, 16\)"):
        policy.rollout([torch.zeros(3, 16, 16)], 1, generator=torch.Generator())
    for bad in (0, 6, "some"):
        with pytest.raises(ValueError, match="prefix_steps must be 1..5"):
            policy.rollout(prompts_of(images, 1), bad, generator=torch.Generator())


def test_scenes_and_a_batch_tensor_are_accepted_as_prompts(make_insertion_policy, images):
    from rlalign.shapes import render, sample_scenes

    policy = make_insertion_policy()
    scenes = sample_scenes("all", 2, seed=0)
    generator = [torch.Generator().manual_seed(i) for i in range(2)]
    from_scenes = policy.rollout(scenes, 2, generator=generator)
    generator = [torch.Generator().manual_seed(i) for i in range(2)]
    from_images = policy.rollout([render(s) for s in scenes], 2, generator=generator)
    assert from_scenes.outputs == from_images.outputs
    assert len(policy.model.condition(torch.stack(images[:3]))[0]) == 3


def test_text_conditioned_model_is_on_policy(make_insertion_policy, make_insertion_model):
    model = make_insertion_model(condition="text", max_prompt_words=12)
    policy = make_insertion_policy(model=model, cfg_scale=1.0)
    prompts = ["a red circle on the left", "a blue square above a white triangle", "a green triangle"]
    rollout = policy.rollout(prompts, 3, generator=torch.Generator().manual_seed(0))
    for new, old in zip(policy.log_prob(rollout), rollout.old_logp):
        assert (new.detach() - old).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="text prompts"):
        policy.rollout([torch.zeros(3, 32, 32)], 1, generator=torch.Generator())


def test_vocabulary_covers_every_shapes_caption(make_insertion_model):
    from rlalign.shapes import sample_scenes

    model = make_insertion_model()
    captions = [scene.prompt for scene in sample_scenes("all", 400, seed=1)]
    tokens, lengths = model.encode_texts(captions)
    assert model.decode_texts(tokens, lengths) == captions
    assert int(lengths.max()) <= model.max_len and (tokens[tokens > 0] >= NUM_SPECIAL).all()
    with pytest.raises(ValueError, match="unknown words"):
        model.encode_texts(["a magenta circle"])


def test_condition_dropout_swaps_in_the_null_condition(make_insertion_model, images):
    model = make_insertion_model()
    cond, keep = model.condition(images[:3])
    dropped, dropped_keep = model.condition(images[:3], drop_B=torch.tensor([False, True, False]))
    null, null_keep = model.null_condition(3)
    assert torch.equal(dropped[[0, 2]], cond[[0, 2]]) and torch.equal(dropped_keep[[0, 2]], keep[[0, 2]])
    assert torch.equal(dropped[1], null[1]) and dropped_keep[1].tolist() == [True] + [False] * (keep.shape[1] - 1)
    assert torch.equal(null_keep, dropped_keep[[1, 1, 1]])


def test_the_insertion_loop_makes_no_host_copy(make_insertion_policy, images, monkeypatch):
    from support.host_copies import counting_cpu_calls

    policy = make_insertion_policy()
    with counting_cpu_calls(monkeypatch) as calls:
        sample = policy._sample(prompts_of(images, 3), 3, torch.Generator().manual_seed(0), dict(policy.sampling))
    assert calls == [] and len(sample.logp) == 3
