"""InsertionPolicy: an Edit Flow insertion model as a StepPolicy, with peft LoRA on the transformer.

Steps are insertion steps: T of them, step s (0-based) at t = s/T with Δt = 1/T, from the empty
text. Steps 1..m (the prefix) run with the adapter on, steps m+1..T with it off. The model is
bidirectional and keeps no cache, so the frozen suffix is simply the base model applied to the
text the prefix produced: exactly p_base(suffix | prefix), with no hybrid state to avoid.

Actions of a step are its gaps. Step s has A_s = min(max_len, 2^s − 1) + 1 gap slots (the most a
text can have then, see sampler.step_width): a width that depends on (s, max_len) only, so rollouts
of different workers and micro-batches concatenate; `action_mask` marks the open gaps. What a
rollout keeps of each prefix step (the text before it, which gaps fired, which words) is its
InsertionState (state.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rlalign.policies.base import Generators, Rollout, keep_rescored_old_logp, resolve_prefix_steps
from rlalign.policies.insertion.model import InsertionTransformer, WordIds, load_model
from rlalign.policies.insertion.settings import settings
from rlalign.policies.insertion.sampler import (
    FIRE_EPS,
    StepDistribution,
    apply_insertions,
    guide,
    open_gaps,
    sample_step,
    step_distribution,
    step_log_prob,
    step_width,
)
from rlalign.policies.insertion.state import InsertionState, InsertionTrace
from rlalign.policies.lora import AdapterMethods, LoraAdapter
from rlalign.policies.shared import uniforms
from rlalign.shapes import Scene, render


class InsertionSample(NamedTuple):
    """What the sampling loop returns; the per-step lists cover the prefix steps s < m."""

    tokens_BL: Tensor  # the finished texts' word ids [B, max_len], on the policy's device
    lengths_B: Tensor  # their lengths
    sequences: list[Tensor]  # per prefix step: the text before it, [B, A_s − 1]
    lengths: list[Tensor]  # per prefix step: its length [B]
    fired: list[Tensor]  # per prefix step: bool [B, A_s], the gaps that inserted a word
    inserted: list[Tensor]  # per prefix step: [B, A_s] the inserted word ids, 0 where not fired
    logp: list[Tensor]  # per sampled (not forced) prefix step: the sampler's own [B, A_s] log-probs
    # All on the policy's device (no host copy per step); rollout() moves them to the host once.
    trace: InsertionTrace | None  # with keep_trace: every sampled step's text and distribution


def rendered_scenes(prompts: list) -> list:
    """The prompts with every Shapes Scene replaced by its picture [3, H, W] in [0, 1].

    The caption demo's prompts are Scenes, because its rewards check a caption against the scene
    itself; the model is conditioned on pixels only, so the policy renders them.
    """
    return [render(prompt) if isinstance(prompt, Scene) else prompt for prompt in prompts]


class InsertionPolicy(AdapterMethods):
    """Sampling, exact prefix log-probs and LoRA for an InsertionTransformer."""

    def __init__(self, model: InsertionTransformer, *, num_steps: int = 8, cfg_scale: float = 0.0,
                 temperature: float = 1.0, lora_rank: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.0,
                 target_modules: Sequence[str] = ()):
        if num_steps < 1 or temperature <= 0 or cfg_scale < 0:
            raise ValueError(f"need num_steps ≥ 1, temperature > 0, cfg_scale ≥ 0; got {num_steps}, "
                             f"{temperature}, {cfg_scale}")
        self.model = model
        self.num_steps = int(num_steps)
        self.sampling = {"cfg_scale": float(cfg_scale), "temperature": float(temperature),
                         "num_steps": self.num_steps, "eps": FIRE_EPS}
        model.requires_grad_(False).eval()
        self.lora = LoraAdapter(model, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                                target_modules=list(target_modules) or ["mat_qkv", "proj", "fc1", "fc2"],
                                family="insertion transformer (its layers: mat_qkv, proj, fc1, fc2)")

    @classmethod
    def from_config(cls, cfg: Any) -> InsertionPolicy:
        """Build from a PolicyConfig with kind=insertion (an rlalign insertion checkpoint)."""
        if cfg.vae_checkpoint or cfg.architecture:
            raise ValueError("policy.vae_checkpoint / policy.architecture import official VAR weights (kind: "
                             "next_scale); an insertion policy loads one rlalign insertion checkpoint: leave them empty")
        sampling = cfg.sampling()
        if sampling["top_k"] != 0 or sampling["top_p"] != 1.0:
            raise ValueError(f"policy.top_k={sampling['top_k']} / top_p={sampling['top_p']}: the insertion family samples the full "
                             "token distribution (top_k: 0, top_p: 1.0); use temperature and cfg_scale")
        model = load_model(cfg.checkpoint).to(cfg.device)
        lora = cfg.lora
        return cls(model, num_steps=settings(cfg).steps, cfg_scale=sampling["cfg_scale"],
                   temperature=sampling["temperature"],
                   lora_rank=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                   target_modules=lora.target_modules)

    @staticmethod
    def completion_tokenizer_from_config(cfg: Any) -> WordIds:
        """The checkpoint's word ids (rewards' `completion_ids`), read without building the policy."""
        return WordIds(load_model(cfg.checkpoint).vocabulary)

    @staticmethod
    def resolved_settings(cfg: Any) -> dict[str, Any]:
        """policy.insertion with every default filled in (what a run saves and a resume compares)."""
        return {"insertion": dataclasses.asdict(settings(cfg))}

    @staticmethod
    def declared_num_steps(cfg: Any) -> int:
        """T is the config's own `policy.insertion.steps`."""
        return settings(cfg).steps

    @property
    def device(self) -> torch.device:
        return self.model.device

    def completion_tokenizer(self) -> WordIds:
        """Captions -> this model's word ids, handed to rewards as TRL's `completion_ids`."""
        return WordIds(self.model.vocabulary)

    # ---------------------------------------------------------------------------------------------
    # One step's distribution (shared by sampling, scoring and the tests)
    # ---------------------------------------------------------------------------------------------

    def _condition_rows(self, prompts: list, repeats: int, use_cfg: bool) -> tuple[Tensor, Tensor]:
        """Condition tokens for `repeats` stacked copies of the batch, with the null condition's copies
        stacked below them when CFG is used: ([R or 2R, C, W], [R or 2R, C])."""
        inputs = rendered_scenes(prompts) if self.model.condition_kind == "image" else prompts
        cond_BED, keep_BE = self.model.condition(inputs)
        cond_RED, keep_RE = cond_BED.repeat(repeats, 1, 1), keep_BE.repeat(repeats, 1)
        if not use_cfg:
            return cond_RED, keep_RE
        null_RED, null_keep_RE = self.model.null_condition(cond_RED.shape[0])
        return torch.cat([cond_RED, null_RED]), torch.cat([keep_RE, null_keep_RE])

    def _distribution(self, condition: tuple[Tensor, Tensor], tokens_RN: Tensor, lengths_R: Tensor, t_R: Tensor,
                      settings: dict) -> StepDistribution:
        """The step distribution of R texts under the adapter as currently set (both CFG halves if used)."""
        use_cfg = settings["cfg_scale"] > 0
        tokens_RN, lengths_R = tokens_RN.to(self.device), lengths_R.to(self.device)
        doubled = (lambda x: torch.cat([x, x])) if use_cfg else (lambda x: x)
        heads = self.model(*condition, doubled(t_R.to(self.device)), doubled(tokens_RN), doubled(lengths_R))
        rows = tokens_RN.shape[0]
        uncond = type(heads)(*(h[rows:] for h in heads)) if use_cfg else None
        guided = guide(type(heads)(*(h[:rows] for h in heads)), uncond, 1.0 + settings["cfg_scale"])
        return step_distribution(guided, t_B=t_R, dt=1.0 / settings["num_steps"], lengths_B=lengths_R,
                                 max_len=self.model.max_len, temperature=settings["temperature"], eps=settings["eps"])

    @staticmethod
    def _times(step_index: int, settings: dict, rows: int) -> Tensor:
        """t = s/T for `rows` rows, float64 so sampling and scoring build the same value."""
        return torch.full((rows,), step_index / settings["num_steps"], dtype=torch.float64)

    # ---------------------------------------------------------------------------------------------
    # Rollout and re-scoring
    # ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(self, prompts: list, prefix_steps: int | str, *, generator: Generators,
                group_ids: Tensor | None = None, keep_trace: bool = False) -> Rollout:
        """Caption B prompts: insertion steps 1..m with the adapter on, m+1..T with the frozen base.

        `keep_trace` also stores every step's pre-step text and distribution (state.trace, lists over
        all T steps), for diagnostics such as checking the frozen suffix.
        """
        m = resolve_prefix_steps(prefix_steps, self.num_steps)
        prompts = list(prompts)
        settings = dict(self.sampling)
        sample = self._sample(prompts, m, generator, settings, keep_trace=keep_trace)
        batch, max_len = len(prompts), self.model.max_len
        sequences, lengths, fired, inserted = ([t.cpu() for t in steps] for steps in
                                               (sample.sequences, sample.lengths, sample.fired, sample.inserted))
        rollout = Rollout(
            prompts=prompts,
            group_ids=group_ids.cpu() if group_ids is not None else torch.arange(batch),
            outputs=self.model.decode_texts(sample.tokens_BL, sample.lengths_B),
            old_logp=[lp.cpu() for lp in sample.logp],
            action_mask=[open_gaps(n_B, fired_BI.shape[1], max_len) for n_B, fired_BI in zip(lengths, fired)],
            prefix_steps=m,
            state=InsertionState(sequences=sequences, lengths=lengths, fired=fired,
                                 inserted=inserted, final_tokens=sample.tokens_BL.cpu(),
                                 final_lengths=sample.lengths_B.cpu(), sampling=settings, trace=sample.trace),
        )
        return self._rescored(rollout)

    def _sample(self, prompts: list, m: int, generator: Generators, settings: dict, *,
                forced_prefix: tuple[Sequence[Tensor], Sequence[Tensor]] | None = None,
                keep_trace: bool = False) -> InsertionSample:
        """The sampling loop. Steps s < m use the adapter (or, with `forced_prefix` = (fired, inserted)
        per prefix step, replay those steps' fired gaps and words); steps s ≥ m are the frozen base's.
        Each step draws 2·A_s uniforms per sample (fire, then word) whatever the batch, so per-sample
        generators make samples batch-independent."""
        batch, max_len, num_steps = len(prompts), self.model.max_len, settings["num_steps"]
        condition = self._condition_rows(prompts, 1, settings["cfg_scale"] > 0)
        tokens_BL = torch.zeros(batch, max_len, dtype=torch.long, device=self.device)
        lengths_B = torch.zeros(batch, dtype=torch.long, device=self.device)
        sequences, lengths, fired, inserted, sampler_logp = [], [], [], [], []
        trace = InsertionTrace([], [], [], []) if keep_trace else None
        for s in range(num_steps):
            num_gaps = step_width(s, max_len) + 1
            tokens_BN = tokens_BL[:, : num_gaps - 1]
            if forced_prefix is not None and s < m:
                fired_BI, inserted_BI = (steps[s].to(self.device) for steps in forced_prefix)
            else:
                with nullcontext() if s < m else self.adapter_disabled():
                    dist = self._distribution(condition, tokens_BN, lengths_B, self._times(s, settings, batch), settings)
                uniform_fire_BI = uniforms((batch, num_gaps), generator, self.device)
                fired_BI, inserted_BI = sample_step(dist, uniform_fire_BI, uniforms((batch, num_gaps), generator, self.device))
                if s < m:
                    sampler_logp.append(step_log_prob(dist, fired_BI, inserted_BI))
                if trace is not None:
                    trace.append(tokens_BN, lengths_B, dist.log_fire_BI, dist.token_logp_BIV)
            if s < m:  # kept on the device; rollout() moves them to the host once, after the loop
                for steps, value in zip((sequences, lengths, fired, inserted),
                                        (tokens_BN, lengths_B, fired_BI, inserted_BI)):
                    steps.append(value)
            tokens_BL, lengths_B = apply_insertions(tokens_BN, lengths_B, fired_BI, inserted_BI, max_len)
        return InsertionSample(tokens_BL, lengths_B, sequences, lengths, fired, inserted, sampler_logp, trace)

    @torch.no_grad()
    def complete(self, rollout: Rollout, samples: int, *, generator: Generators) -> tuple[list[str], list, Tensor]:
        """Finish each rollout's prefix `samples` times with fresh frozen-suffix draws (branching).

        Returns texts (sample-major: K completions of sample 0 first), the repeated prompts and the
        final token ids [B·K, max_len]. With one generator per output row, results do not depend on
        batching.
        """
        m, k = rollout.prefix_steps, samples
        prompts = [p for p in rollout.prompts for _ in range(k)]
        fired = [t.repeat_interleave(k, dim=0) for t in rollout.state.fired[:m]]
        inserted = [t.repeat_interleave(k, dim=0) for t in rollout.state.inserted[:m]]
        sample = self._sample(prompts, m, generator, rollout.state.sampling, forced_prefix=(fired, inserted))
        return self.model.decode_texts(sample.tokens_BL, sample.lengths_B), prompts, sample.tokens_BL.cpu()

    def _rescored(self, rollout: Rollout) -> Rollout:
        """old_logp from log_prob's one batched pass over all prefix steps, not the sampler's per-step
        passes (their padding differs, so they agree up to float rounding only)."""
        return keep_rescored_old_logp(rollout, [lp.cpu() for lp in self.log_prob(rollout)])

    def log_prob(self, rollout: Rollout) -> list[Tensor]:
        """[B, A_s] log-probs of each prefix step's gap outcomes under the current adapter, with gradients.

        All m pre-step texts go through the model in one pass (rows step-major, texts padded to the
        widest prefix step); closed gaps score exactly 0.
        """
        state, m, batch = rollout.state, rollout.prefix_steps, len(rollout)
        settings = state.sampling
        width = state.sequences[m - 1].shape[1]
        tokens_RN = torch.cat([F.pad(t, (0, width - t.shape[1])) for t in state.sequences[:m]])
        lengths_R = torch.cat(state.lengths[:m])
        t_R = torch.cat([self._times(s, settings, batch) for s in range(m)])
        condition = self._condition_rows(rollout.prompts, m, settings["cfg_scale"] > 0)
        dist = self._distribution(condition, tokens_RN, lengths_R, t_R, settings)
        result = []
        for s in range(m):
            fired_BI = state.fired[s]
            step = dist.select(slice(s * batch, (s + 1) * batch), fired_BI.shape[1])
            result.append(step_log_prob(step, fired_BI, state.inserted[s]))
        return result

    @torch.no_grad()
    def distribution(self, prompts: list, tokens_BN: Tensor, lengths_B: Tensor, step_index: int) -> StepDistribution:
        """The distribution of insertion step `step_index` (0-based) from given texts, with this policy's
        settings and the adapter as currently set: what the sampler draws from at that step."""
        settings = dict(self.sampling)
        condition = self._condition_rows(list(prompts), 1, settings["cfg_scale"] > 0)
        return self._distribution(condition, tokens_BN, lengths_B, self._times(step_index, settings, len(prompts)),
                                  settings)
