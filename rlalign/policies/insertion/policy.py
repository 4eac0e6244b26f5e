"""InsertionPolicy: an Edit Flow insertion model as a StepPolicy, with peft LoRA on the transformer.

Steps are insertion steps: T of them, step s (0-based) at t = s/T with Δt = 1/T, from the empty
text. Steps 1..m (the prefix) run with the adapter on, steps m+1..T with it off. The model is
bidirectional and keeps no cache, so the frozen suffix is simply the base model applied to the
text the prefix produced: exactly p_base(suffix | prefix), with no hybrid state to avoid.

Actions of a step are its gaps. Step s has A_s = min(max_len, 2^s − 1) + 1 gap slots (the most a
text can have then, see sampler.step_width): a width that depends on (s, max_len) only, so rollouts
of different workers and micro-batches concatenate; `action_mask` marks the open gaps.

Rollout state (lists are per prefix step, each entry batch-first, CPU):
    sequences   LongTensor [B, A_s − 1]  the text before the step (0-padded word ids)
    lengths     LongTensor [B]           its length n
    fired       BoolTensor [B, A_s]      which gaps inserted a token
    inserted    LongTensor [B, A_s]      the inserted token ids (0 where not fired)
    final_tokens [B, max_len], final_lengths [B]   the finished texts as ids
    sampling    dict of settings (cfg_scale, temperature, num_steps, eps)
    sampler_logp_gap [B]   max |sampler's own log-prob − log_prob's re-score| per sample
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rlalign.policies.base import Generators, Rollout, keep_rescored_old_logp, resolve_prefix_steps
from rlalign.policies.insertion.model import InsertionTransformer, WordIds, load_model
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
from rlalign.policies.lora import LoraAdapter
from rlalign.policies.next_scale.sampler import uniforms

RECORD_KEYS = ("sequences", "lengths", "fired", "inserted")
TRACE_KEYS = ("trace_sequences", "trace_lengths", "trace_log_fire", "trace_token_logp")


class InsertionPolicy:
    """Sampling, exact prefix log-probs and LoRA for an InsertionTransformer."""

    def __init__(self, model: InsertionTransformer, *, num_steps: int = 8, cfg_scale: float = 0.0,
                 temperature: float = 1.0, lora_rank: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.0,
                 target_modules: Sequence[str] = ("mat_qkv", "proj", "fc1", "fc2")):
        if num_steps < 1 or temperature <= 0 or cfg_scale < 0:
            raise ValueError(f"need insertion_steps ≥ 1, temperature > 0, cfg_scale ≥ 0; got {num_steps}, "
                             f"{temperature}, {cfg_scale}")
        self.model = model
        self.num_steps = int(num_steps)
        self.sampling = {"cfg_scale": float(cfg_scale), "temperature": float(temperature),
                         "num_steps": self.num_steps, "eps": FIRE_EPS}
        model.requires_grad_(False).eval()
        self.lora = LoraAdapter(model, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                                target_modules=target_modules, family="insertion transformer")

    @classmethod
    def from_config(cls, cfg: Any) -> InsertionPolicy:
        """Build from a PolicyConfig with kind=insertion (an rlalign insertion checkpoint)."""
        if cfg.vae_checkpoint or cfg.architecture:
            raise ValueError("policy.vae_checkpoint / policy.architecture import official VAR weights (kind: "
                             "next_scale); an insertion policy loads one rlalign insertion checkpoint: leave them empty")
        if cfg.top_k != 0 or cfg.top_p != 1.0:
            raise ValueError(f"policy.top_k={cfg.top_k} / top_p={cfg.top_p}: the insertion family samples the full "
                             "token distribution (top_k: 0, top_p: 1.0); use temperature and cfg_scale")
        model = load_model(cfg.checkpoint).to(cfg.device)
        lora = cfg.lora
        return cls(model, num_steps=cfg.insertion_steps, cfg_scale=cfg.cfg_scale, temperature=cfg.temperature,
                   lora_rank=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                   target_modules=lora.target_modules)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def completion_tokenizer(self) -> WordIds:
        """Captions -> this model's word ids, handed to rewards as TRL's `completion_ids`."""
        return WordIds(self.model.vocabulary)

    # ---------------------------------------------------------------------------------------------
    # LoRA
    # ---------------------------------------------------------------------------------------------

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return self.lora.parameters()

    def adapter_disabled(self) -> AbstractContextManager:
        """Inside the block the policy is the base model (the KL reference, the frozen suffix)."""
        return self.lora.disabled()

    def adapter_state(self) -> dict[str, Tensor]:
        """LoRA weights only, as CPU copies (what rollout workers receive)."""
        return self.lora.state()

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        self.lora.load_state(state, self.device)

    def save_adapter(self, directory: str | Path) -> None:
        """Write the adapter in peft's format (adapter_config.json + adapter_model.safetensors)."""
        self.lora.save(directory)

    def load_adapter(self, directory: str | Path) -> None:
        self.lora.load(directory, self.device)

    # ---------------------------------------------------------------------------------------------
    # One step's distribution (shared by sampling, scoring and the tests)
    # ---------------------------------------------------------------------------------------------

    def _condition_rows(self, prompts: list, repeats: int, use_cfg: bool) -> tuple[Tensor, Tensor]:
        """Condition tokens for `repeats` stacked copies of the batch, with the null condition's copies
        stacked below them when CFG is used: ([R or 2R, C, W], [R or 2R, C])."""
        cond_BCW, keep_BC = self.model.condition(prompts)
        cond_RCW, keep_RC = cond_BCW.repeat(repeats, 1, 1), keep_BC.repeat(repeats, 1)
        if not use_cfg:
            return cond_RCW, keep_RC
        null_RCW, null_keep_RC = self.model.null_condition(cond_RCW.shape[0])
        return torch.cat([cond_RCW, null_RCW]), torch.cat([keep_RC, null_keep_RC])

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

        `keep_trace` also stores every step's pre-step text and distribution (state["trace_*"],
        lists over all T steps), for diagnostics such as checking the frozen suffix.
        """
        m = resolve_prefix_steps(prefix_steps, self.num_steps)
        prompts = list(prompts)
        settings = dict(self.sampling)
        tokens_BL, lengths_B, record, sampler_logp, trace = self._sample(prompts, m, generator, settings,
                                                                        keep_trace=keep_trace)
        batch, max_len = len(prompts), self.model.max_len
        rollout = Rollout(
            prompts=prompts,
            group_ids=group_ids.cpu() if group_ids is not None else torch.arange(batch),
            outputs=self.model.decode_texts(tokens_BL, lengths_B),
            old_logp=sampler_logp,
            action_mask=[open_gaps(n_B, fired.shape[1], max_len) for n_B, fired in zip(record["lengths"], record["fired"])],
            prefix_steps=m,
            state={**record, "final_tokens": tokens_BL.cpu(), "final_lengths": lengths_B.cpu(), "sampling": settings,
                   **trace},
        )
        return self._rescored(rollout)

    def _sample(self, prompts: list, m: int, generator: Generators, settings: dict, *,
                forced: dict | None = None, keep_trace: bool = False):
        """The sampling loop. Steps s < m use the adapter (or, with `forced`, replay those steps' fired
        gaps and tokens); steps s ≥ m are the frozen base's. Each step draws 2·A_s uniforms per sample
        (fire, then token) whatever the batch, so per-sample generators make samples batch-independent."""
        batch, max_len, num_steps = len(prompts), self.model.max_len, settings["num_steps"]
        condition = self._condition_rows(prompts, 1, settings["cfg_scale"] > 0)
        tokens_BL = torch.zeros(batch, max_len, dtype=torch.long, device=self.device)
        lengths_B = torch.zeros(batch, dtype=torch.long, device=self.device)
        record = {key: [] for key in RECORD_KEYS}
        trace = {key: [] for key in TRACE_KEYS} if keep_trace else {}
        sampler_logp = []
        for s in range(num_steps):
            num_gaps = step_width(s, max_len) + 1
            tokens_BN = tokens_BL[:, : num_gaps - 1]
            if forced is not None and s < m:
                fired_BG, inserted_BG = forced["fired"][s].to(self.device), forced["inserted"][s].to(self.device)
            else:
                with nullcontext() if s < m else self.adapter_disabled():
                    dist = self._distribution(condition, tokens_BN, lengths_B, self._times(s, settings, batch), settings)
                uniform_fire_BG = uniforms((batch, num_gaps), generator)
                fired_BG, inserted_BG = sample_step(dist, uniform_fire_BG, uniforms((batch, num_gaps), generator))
                if s < m:
                    sampler_logp.append(step_log_prob(dist, fired_BG, inserted_BG).cpu())
                if keep_trace:
                    for key, value in zip(TRACE_KEYS, (tokens_BN, lengths_B, dist.log_fire_BG, dist.token_logp_BGV)):
                        trace[key].append(value.cpu())
            if s < m:
                for key, value in zip(RECORD_KEYS, (tokens_BN, lengths_B, fired_BG, inserted_BG)):
                    record[key].append(value.cpu())
            tokens_BL, lengths_B = apply_insertions(tokens_BN, lengths_B, fired_BG, inserted_BG, max_len)
        return tokens_BL, lengths_B, record, sampler_logp, trace

    @torch.no_grad()
    def complete(self, rollout: Rollout, samples: int, *, generator: Generators) -> tuple[list[str], list, Tensor]:
        """Finish each rollout's prefix `samples` times with fresh frozen-suffix draws (branching).

        Returns texts (sample-major: K completions of sample 0 first), the repeated prompts and the
        final token ids [B·K, max_len]. With one generator per output row, results do not depend on
        batching.
        """
        m, k = rollout.prefix_steps, samples
        prompts = [p for p in rollout.prompts for _ in range(k)]
        forced = {key: [t.repeat_interleave(k, dim=0) for t in rollout.state[key][:m]] for key in ("fired", "inserted")}
        tokens_BL, lengths_B, *_ = self._sample(prompts, m, generator, rollout.state["sampling"], forced=forced)
        return self.model.decode_texts(tokens_BL, lengths_B), prompts, tokens_BL.cpu()

    def _rescored(self, rollout: Rollout) -> Rollout:
        """old_logp from log_prob's one batched pass over all prefix steps, not the sampler's per-step
        passes (their padding differs, so they agree up to float rounding only)."""
        return keep_rescored_old_logp(rollout, [lp.cpu() for lp in self.log_prob(rollout)])

    def log_prob(self, rollout: Rollout) -> list[Tensor]:
        """[B, A_s] log-probs of each prefix step's gap outcomes under the current adapter, with gradients.

        All m pre-step texts go through the model in one pass (rows step-major, texts padded to the
        widest prefix step); closed gaps score exactly 0.
        """
        settings, m, batch = rollout.state["sampling"], rollout.prefix_steps, len(rollout)
        state = rollout.state
        width = state["sequences"][m - 1].shape[1]
        tokens_RN = torch.cat([F.pad(t, (0, width - t.shape[1])) for t in state["sequences"][:m]])
        lengths_R = torch.cat(state["lengths"][:m])
        t_R = torch.cat([self._times(s, settings, batch) for s in range(m)])
        condition = self._condition_rows(rollout.prompts, m, settings["cfg_scale"] > 0)
        dist = self._distribution(condition, tokens_RN, lengths_R, t_R, settings)
        result = []
        for s in range(m):
            fired_BG = state["fired"][s]
            step = dist.select(slice(s * batch, (s + 1) * batch), fired_BG.shape[1])
            result.append(step_log_prob(step, fired_BG, state["inserted"][s]))
        return result

    @torch.no_grad()
    def distribution(self, prompts: list, tokens_BN: Tensor, lengths_B: Tensor, step_index: int) -> StepDistribution:
        """The distribution of insertion step `step_index` (0-based) from given texts, with this policy's
        settings and the adapter as currently set: what the sampler draws from at that step."""
        settings = dict(self.sampling)
        condition = self._condition_rows(list(prompts), 1, settings["cfg_scale"] > 0)
        return self._distribution(condition, tokens_BN, lengths_B, self._times(step_index, settings, len(prompts)),
                                  settings)
