"""EditFlowPolicy: a dllm-format Edit Flow checkpoint as a StepPolicy, with peft LoRA on its HF modules.

Steps are τ-leap steps at t = 0, τ, 2τ, … < 1 − 1e-3 (T of them, tau_leap.step_times). A text
starts as BOS + the prompt's tokens (+ `mask_length` MASK tokens), and each step may delete or
substitute every unprotected position and insert after it, all in parallel (tau_leap.py). Steps
1..m (the prefix) run with the adapter on, m+1..T with it off. The model is bidirectional and keeps
no cache, so the frozen suffix is the base model applied to the text the prefix produced: exactly
p_base(suffix | prefix).

Actions of a step are its W positions and W gaps (W = max_length, fixed, so shards concatenate):
[B, 2W] log-probs with an action mask of the open ones. `policy.model` is the transformers model
itself, whose forward takes and returns what dllm's does, with the adapter as currently set.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rlalign.assets import resolve_checkpoint_dir
from rlalign.policies.base import Generators, Rollout, keep_rescored_old_logp, resolve_prefix_steps
from rlalign.policies.edit_flow.model import DEFAULT_TARGET_MODULES, load_model, load_tokenizer
from rlalign.policies.edit_flow.settings import settings
from rlalign.policies.edit_flow.state import EditFlowState, EditFlowTrace
from rlalign.policies.edit_flow.tau_leap import (
    StepActions,
    StepDistribution,
    apply_step,
    open_actions,
    sample_step,
    schedule_weight,
    step_distribution,
    step_log_prob,
    step_times,
)
from rlalign.policies.lora import AdapterMethods, LoraAdapter
from rlalign.policies.shared import uniforms, upload
from rlalign.utils.rows import prompt_text, require_text

UNIFORMS_PER_SLOT = 5
"""Uniforms each step draws per position: edit fires, deletion or substitution, its token, insertion fires, its token."""


class EditFlowSample(NamedTuple):
    tokens_BW: Tensor  # the finished texts [B, W] (policy device)
    lengths_B: Tensor
    sequences: list[Tensor]  # per prefix step: the text before it [B, W]
    lengths: list[Tensor]  # per prefix step: its length [B]
    actions: list[StepActions]  # per prefix step
    logp: list[Tensor]  # per sampled prefix step: the sampler's own [B, 2W] log-probs
    # All on the policy's device (no host copy per step); rollout() moves them to the host once.
    trace: EditFlowTrace | None


class TokenIds:
    """Completion texts → the checkpoint tokenizer's ids (rewards' `completion_ids`); pickles with the tokenizer."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


class EditFlowPolicy(AdapterMethods):
    """τ-leap sampling, exact prefix log-probs and LoRA for a dllm Edit Flow model."""

    def __init__(self, model: Any, tokenizer: Any, *, tau: float = 0.05, kappa: str = "linear",
                 mask_length: int = 0, max_length: int = 64, temperature: float = 1.0, edit_prompt: bool = False,
                 insertion_only: bool = False, lora_rank: int = 8, lora_alpha: float = 16.0,
                 lora_dropout: float = 0.0, target_modules: Sequence[str] = DEFAULT_TARGET_MODULES):
        if temperature <= 0 or mask_length < 0 or max_length < 2:
            raise ValueError(f"need temperature > 0, mask_length ≥ 0, max_length ≥ 2; got {temperature}, "
                             f"{mask_length}, {max_length}")
        self.model, self.tokenizer = model, tokenizer
        self.times = step_times(tau)
        self.num_steps = len(self.times)
        schedule_weight(0.0, kappa)  # an unknown κ fails here, not in the first step
        self.sampling = {"tau": float(tau), "kappa": kappa, "temperature": float(temperature),
                         "max_length": int(max_length), "edit_prompt": bool(edit_prompt),
                         "insertion_only": bool(insertion_only)}
        self.mask_length = int(mask_length)
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        self.mask_id = tokenizer.mask_token_id
        if mask_length and self.mask_id is None:
            raise ValueError("policy.edit_flow.mask_length > 0 needs a tokenizer with a MASK token")
        model.requires_grad_(False).eval()
        self.lora = LoraAdapter(model, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                                target_modules=list(target_modules) or list(DEFAULT_TARGET_MODULES),
                                family="Edit Flow model (ModernBERT layers: Wqkv, Wo, Wi)")

    @classmethod
    def from_config(cls, cfg: Any) -> EditFlowPolicy:
        """Build from a PolicyConfig with kind=edit_flow: `checkpoint` is a dllm checkpoint directory or builtin:NAME."""
        sampling, ef = cfg.sampling(), settings(cfg)
        if cfg.vae_checkpoint or cfg.architecture or sampling["cfg_scale"] != 0 or sampling["top_k"] != 0 \
                or sampling["top_p"] != 1.0:
            raise ValueError("policy.kind=edit_flow samples dllm's τ-leap rules: leave vae_checkpoint, architecture, "
                             "cfg_scale (0), top_k (0) and top_p (1.0) at their defaults; set policy.edit_flow.* "
                             "and policy.temperature")
        directory = resolve_checkpoint_dir(cfg.checkpoint)
        model = load_model(directory, device=cfg.device)
        tokenizer = load_tokenizer(directory, model.config)
        lora = cfg.lora
        return cls(model, tokenizer, tau=ef.tau, kappa=ef.kappa, mask_length=ef.mask_length,
                   max_length=ef.max_length, temperature=sampling["temperature"], edit_prompt=ef.edit_prompt,
                   insertion_only=ef.insertion_only, lora_rank=lora.rank, lora_alpha=lora.alpha,
                   lora_dropout=lora.dropout, target_modules=lora.target_modules)

    @staticmethod
    def resolved_settings(cfg: Any) -> dict[str, Any]:
        """policy.edit_flow with every default filled in (what a run saves and a resume compares)."""
        return {"edit_flow": dataclasses.asdict(settings(cfg))}

    @staticmethod
    def declared_num_steps(cfg: Any) -> int:
        """T = the number of τ-leap steps of policy.edit_flow.tau."""
        return len(step_times(settings(cfg).tau))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def completion_tokenizer(self) -> Callable[[list[str]], list[list[int]]]:
        return TokenIds(self.tokenizer)

    # ---------------------------------------------------------------------------------------------
    # Texts in and out
    # ---------------------------------------------------------------------------------------------

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """BOS + prompt tokens (+ MASKs) per prompt (a text, or a row's "prompt"): (tokens [B, W], lengths [B],
        prompt lengths [B] with BOS)."""
        width = self.sampling["max_length"]
        tokens_BW = torch.zeros(len(prompts), width, dtype=torch.long)
        lengths_B, prompt_lengths_B = torch.zeros(len(prompts), dtype=torch.long), torch.zeros(len(prompts), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            prompt = require_text(prompt, where=f"prompt {row}", family="edit_flow")  # a bad input: ValueError
            ids = [self.bos_id, *self.tokenizer(prompt, add_special_tokens=False)["input_ids"]]
            start = ids + [self.mask_id] * self.mask_length
            if len(start) >= width:
                raise ValueError(f"prompt {row} ({prompt[:40]!r}…) is {len(ids)} tokens with BOS, plus mask_length "
                                 f"{self.mask_length}: it leaves no room under policy.edit_flow.max_length={width}; "
                                 "raise max_length or shorten the prompt")
            tokens_BW[row, : len(start)] = torch.tensor(start)
            lengths_B[row], prompt_lengths_B[row] = len(start), len(ids)
        return tokens_BW, lengths_B, prompt_lengths_B

    def check_prompts(self, prompts: Sequence, *, where: str, allow_unknown_words: bool = False) -> None:
        """Refuse prompts the tokenizer reads with UNK tokens (the model would see something other than
        what the prompt says; `allow_unknown_words` accepts them) or that leave no room under max_length,
        naming one."""
        unk = None if allow_unknown_words else self.tokenizer.unk_token_id
        for prompt in prompts:
            text = prompt_text(prompt)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if isinstance(text, str) else []
            if unk is not None and unk in ids:
                pieces = self.tokenizer.convert_ids_to_tokens(ids)
                unknown = [w for w, i in zip(self.tokenizer.tokenize(text), ids) if i == unk] or pieces
                raise ValueError(f"{where}: prompt {text!r} has pieces this tokenizer does not know ({unknown[:5]}), "
                                 f"each read as {self.tokenizer.unk_token}; rephrase it, or set "
                                 "prompts.allow_unknown_words=true to accept them")
        try:
            self.encode_prompts(list(prompts))
        except ValueError as error:  # too long for max_length
            raise ValueError(f"{where}: {error}") from None

    def decode(self, tokens_BW: Tensor, lengths_B: Tensor, prompt_lengths_B: Tensor) -> list[str]:
        """The completions: each text after its prompt, special tokens (MASK, PAD, …) dropped."""
        rows = zip(tokens_BW.tolist(), lengths_B.tolist(), prompt_lengths_B.tolist())
        return [self.tokenizer.decode(ids[start:n], skip_special_tokens=True).strip() for ids, n, start in rows]

    # ---------------------------------------------------------------------------------------------
    # One step's distribution (shared by sampling, scoring and the tests)
    # ---------------------------------------------------------------------------------------------

    def _distribution(self, tokens_RW: Tensor, lengths_R: Tensor, prompt_lengths_R: Tensor, steps_R: Tensor,
                      settings: dict) -> StepDistribution:
        """The step distribution of R texts (row r at step steps_R[r]) under the adapter as currently set."""
        tokens_RW, lengths_R = tokens_RW.to(self.device), lengths_R.to(self.device)
        width = tokens_RW.shape[1]
        mask_RW = (torch.arange(width, device=self.device) < lengths_R[:, None]).long()
        # One value per τ-leap step, then one per row: no Python loop over the m·B rows of log_prob.
        times_T = torch.tensor(self.times, dtype=torch.float32)
        weights_T = torch.stack([schedule_weight(t, settings["kappa"]) for t in self.times])
        outputs = self.model(input_ids=tokens_RW, attention_mask=mask_RW, t=upload(times_T[steps_R][:, None], self.device))
        weight_R1 = upload(weights_T[steps_R][:, None], self.device)
        positions_RW, gaps_RW = open_actions(lengths_R, prompt_lengths_R, width, edit_prompt=settings["edit_prompt"],
                                             insertion_only=settings["insertion_only"])
        return step_distribution(outputs, weight=weight_R1, tau=settings["tau"], positions_BW=positions_RW,
                                 gaps_BW=gaps_RW, temperature=settings["temperature"])

    @torch.no_grad()
    def distribution(self, tokens_BW: Tensor, lengths_B: Tensor, prompt_lengths_B: Tensor, step: int) -> StepDistribution:
        """What the sampler draws from at τ-leap step `step` (0-based) from given texts, adapter as set."""
        steps_B = torch.full((tokens_BW.shape[0],), step, dtype=torch.long)
        return self._distribution(tokens_BW, lengths_B, prompt_lengths_B, steps_B, dict(self.sampling))

    # ---------------------------------------------------------------------------------------------
    # Rollout, completion and re-scoring
    # ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(self, prompts: list, prefix_steps: int | str, *, generator: Generators,
                group_ids: Tensor | None = None, keep_trace: bool = False) -> Rollout:
        """τ-leap B prompts: steps 1..m with the adapter on, m+1..T with the frozen base."""
        m = resolve_prefix_steps(prefix_steps, self.num_steps)
        prompts, settings = list(prompts), dict(self.sampling)
        tokens_BW, lengths_B, prompt_lengths_B = self.encode_prompts(prompts)
        sample = self._sample(tokens_BW, lengths_B, prompt_lengths_B, m, generator, settings, keep_trace=keep_trace)
        host = lambda steps: [t.cpu() for t in steps]
        actions = [StepActions(*host(a)) for a in sample.actions]
        lengths = host(sample.lengths)
        rollout = Rollout(
            prompts=prompts,
            group_ids=group_ids.cpu() if group_ids is not None else torch.arange(len(prompts)),
            outputs=self.decode(sample.tokens_BW, sample.lengths_B, prompt_lengths_B),
            old_logp=host(sample.logp),
            action_mask=[torch.cat(open_actions(n_B, prompt_lengths_B, tokens_BW.shape[1],
                                                edit_prompt=settings["edit_prompt"],
                                                insertion_only=settings["insertion_only"]), dim=1)
                         for n_B in lengths],
            prefix_steps=m,
            state=EditFlowState(
                sequences=host(sample.sequences), lengths=lengths,
                position_ops=[a.position_op_BW for a in actions], sub_tokens=[a.sub_token_BW for a in actions],
                inserted=[a.inserted_BW for a in actions], ins_tokens=[a.ins_token_BW for a in actions],
                prompt_lengths=prompt_lengths_B, final_tokens=sample.tokens_BW.cpu(),
                final_lengths=sample.lengths_B.cpu(), sampling=settings, trace=sample.trace),
        )
        return keep_rescored_old_logp(rollout, [lp.cpu() for lp in self.log_prob(rollout)])  # under no_grad

    def _sample(self, tokens_BW: Tensor, lengths_B: Tensor, prompt_lengths_B: Tensor, m: int, generator: Generators,
                settings: dict, *, forced_prefix: Sequence[StepActions] | None = None,
                keep_trace: bool = False) -> EditFlowSample:
        """The τ-leap loop. Steps s < m use the adapter (or replay `forced_prefix`'s actions); s ≥ m the base.
        Each sampled step draws 5·W uniforms per sample whatever the batch, so per-sample generators make
        samples batch-independent."""
        batch, width = tokens_BW.shape
        tokens_BW, lengths_B = tokens_BW.to(self.device), lengths_B.to(self.device)
        sequences, lengths, actions, sampler_logp = [], [], [], []
        trace = EditFlowTrace([], [], [], [], []) if keep_trace else None
        for s in range(self.num_steps):
            if forced_prefix is not None and s < m:
                step_actions = StepActions(*(a.to(self.device) for a in forced_prefix[s]))
            else:
                with nullcontext() if s < m else self.adapter_disabled():
                    steps_B = torch.full((batch,), s, dtype=torch.long)
                    dist = self._distribution(tokens_BW, lengths_B, prompt_lengths_B, steps_B, settings)
                noise_5BW = upload(torch.stack([uniforms((batch, width), generator) for _ in range(UNIFORMS_PER_SLOT)]),
                                   self.device)  # drawn on the host, one asynchronous upload
                step_actions = sample_step(dist, noise_5BW)
                if s < m:
                    sampler_logp.append(step_log_prob(dist, step_actions))
                if trace is not None:
                    trace.append(tokens_BW, lengths_B, dist.edit_prob_BW, dist.insert_prob_BW, dist.sub_logp_BWV)
            if s < m:  # kept on the device; rollout() moves them to the host once, after the loop
                sequences.append(tokens_BW)
                lengths.append(lengths_B)
                actions.append(step_actions)
            tokens_BW, lengths_B = apply_step(tokens_BW, lengths_B, step_actions)
        return EditFlowSample(tokens_BW, lengths_B, sequences, lengths, actions, sampler_logp, trace)

    @torch.no_grad()
    def complete(self, rollout: Rollout, samples: int, *, generator: Generators) -> tuple[list[str], list, Tensor]:
        """Finish each rollout's prefix `samples` times with fresh frozen-suffix draws (sample-major)."""
        m, k, state = rollout.prefix_steps, samples, rollout.state
        prompts = [p for p in rollout.prompts for _ in range(k)]
        repeat = lambda t: t.repeat_interleave(k, dim=0)
        forced = [StepActions(*(repeat(a) for a in state.actions(s))) for s in range(m)]
        start_BW, start_B, prompt_B = repeat(state.sequences[0]), repeat(state.lengths[0]), repeat(state.prompt_lengths)
        sample = self._sample(start_BW, start_B, prompt_B, m, generator, state.sampling, forced_prefix=forced)
        return self.decode(sample.tokens_BW, sample.lengths_B, prompt_B), prompts, sample.tokens_BW.cpu()

    def log_prob(self, rollout: Rollout) -> list[Tensor]:
        """[B, 2W] log-probs of each prefix step's actions under the current adapter, with gradients.
        All m pre-step texts go through the model in one pass (rows step-major)."""
        state, m, batch = rollout.state, rollout.prefix_steps, len(rollout)
        tokens_RW = torch.cat(state.sequences[:m])
        lengths_R = torch.cat(state.lengths[:m])
        steps_R = torch.arange(m).repeat_interleave(batch)
        dist = self._distribution(tokens_RW, lengths_R, state.prompt_lengths.repeat(m), steps_R, state.sampling)
        result = []
        for s in range(m):
            rows = slice(s * batch, (s + 1) * batch)
            step = StepDistribution(*(x[rows] for x in dist))
            result.append(step_log_prob(step, state.actions(s)))
        return result
