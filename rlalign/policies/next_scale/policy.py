"""NextScalePolicy: a next-scale generator as a StepPolicy, with peft LoRA on the transformer.

Steps are scales. Scales 1..m are sampled with the adapter on; scales m+1..K with the adapter off
from a KV cache that the base model itself prefilled over the prefix (docs/next_scale.md: reusing the
adapter's cache would sample from a hybrid that is neither policy). Re-scoring the prefix is one
block-masked teacher-forced pass over Σ_{k≤m} p_k² tokens, both CFG halves, with gradients.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from rlalign.assets import resolve_checkpoint
from rlalign.policies.base import Generators, Rollout, keep_rescored_old_logp, resolve_prefix_steps
from rlalign.policies.lora import AdapterMethods, LoraAdapter
from rlalign.policies.next_scale.conditioning import ClassConditioner
from rlalign.policies.next_scale.model import NextScaleModel, load_model
from rlalign.policies.next_scale.sampler import guided_logits, kept_set, scale_log_probs
from rlalign.policies.next_scale.state import NextScaleState
from rlalign.policies.next_scale.var_import import from_var_checkpoint
from rlalign.policies.shared import doubled, draw, split_words, uniforms
from rlalign.utils.rows import prompt_text, require_text


class NextScaleSample(NamedTuple):
    """What the sampling loop returns; per-scale lists cover all K scales unless said otherwise."""

    tokens: list[Tensor]  # LongTensor [B, p_k²] per scale, on the policy's device
    logp: list[Tensor]  # per sampled prefix scale: [B, p_k²] float32 log-probs of the drawn tokens
    kept_masks: list[Tensor | None]  # per sampled prefix scale: bool [B, p_k², V] kept set, or None
    scale_logits: list[Tensor] | None  # with keep_scale_logits: ℓ̃ [B, p_k², V] per sampled scale
    # Everything stays on the policy's device inside the loop (no host copy per scale); rollout() moves
    # what the Rollout keeps to the host once, after the last scale.
    f_hat_BCHW: Tensor  # the accumulated latent of all scales, which the tokenizer decodes


class NextScalePolicy(AdapterMethods):
    """Sampling, exact prefix log-probs and LoRA for a NextScaleModel."""

    def __init__(self, model: NextScaleModel, *, cfg_scale: float = 0.0, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, lora_rank: int = 8, lora_alpha: float = 16.0,
                 lora_dropout: float = 0.0, target_modules: Sequence[str] = ()):
        self.model = model
        self.sampling = {"cfg_scale": float(cfg_scale), "temperature": float(temperature),
                         "top_k": int(top_k), "top_p": float(top_p)}
        model.requires_grad_(False)
        self.lora = LoraAdapter(model.transformer, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                                target_modules=list(target_modules) or ["mat_qkv", "proj", "fc1", "fc2"],
                                family="transformer (its layers: mat_qkv, proj, fc1, fc2)")
        self.transformer = model.transformer  # the same module, now holding the LoRA layers
        self.tokenizer = model.tokenizer
        self.num_steps = len(self.transformer.patch_nums)

    @classmethod
    def from_config(cls, cfg: Any) -> NextScalePolicy:
        """Build from a PolicyConfig: a builtin/rlalign checkpoint, or official VAR weights."""
        if cfg.vae_checkpoint:
            imported = from_var_checkpoint(cfg.checkpoint, cfg.vae_checkpoint, cfg.architecture)
            model = NextScaleModel(imported.tokenizer, imported.transformer, ClassConditioner(imported.transformer),
                                   {"var": dict(imported.config)})
        else:
            model = load_model(cfg.checkpoint)
        model.to(cfg.device)
        lora = cfg.lora
        return cls(model, **cfg.sampling(),
                   lora_rank=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                   target_modules=lora.target_modules)

    @staticmethod
    def declared_num_steps(cfg: Any) -> int | None:
        """T without loading any weights: an imported VAR's `patch_nums`, or the scales in a checkpoint
        file's architecture metadata; None if the file cannot tell (load_policy then reports it)."""
        if cfg.architecture.get("patch_nums"):
            return len(cfg.architecture["patch_nums"])
        try:
            with safe_open(str(resolve_checkpoint(cfg.checkpoint)), "pt") as handle:
                architecture = json.loads((handle.metadata() or {}).get("architecture", "{}"))
            return len(architecture["tokenizer"]["patch_nums"])
        except (OSError, ValueError, KeyError, TypeError, SafetensorError):
            return None

    @property
    def device(self) -> torch.device:
        return self.transformer.pos_start.device

    def completion_tokenizer(self) -> None:
        """Images have no text tokens: rewards get no `completion_ids` from this family."""

    # ---------------------------------------------------------------------------------------------
    # Researcher API: tokens in and out, teacher-forced logits
    # ---------------------------------------------------------------------------------------------

    def encode(self, images: Tensor) -> list[Tensor]:
        """Images [B, 3, H, W] in [0, 1] → token maps, one LongTensor [B, p_k²] per scale."""
        return self.tokenizer.encode(images.to(self.device))

    @torch.no_grad()
    def decode(self, tokens: Sequence[Tensor]) -> Tensor:
        """Token maps of every scale → images [B, 3, H, W] in [0, 1]."""
        return self.tokenizer.decode([t.to(self.device) for t in tokens])

    def logits(self, prompts: list, tokens: Sequence[Tensor], cfg_scale: float | None = None) -> list[Tensor]:
        """Teacher-forced logits [B, p_k², V] of the given first scales (adapter as currently set).

        `cfg_scale=None` gives the conditional logits; a number gives the CFG-mixed logits exactly
        as sampling mixes them (before temperature and truncation).
        """
        settings = {"cfg_scale": cfg_scale or 0.0, "temperature": 1.0}
        use_cfg = cfg_scale is not None
        return self._teacher_logits(prompts, tokens, settings, use_cfg=use_cfg)

    def _teacher_logits(self, prompts: list, tokens: Sequence[Tensor], settings: dict, *, use_cfg: bool) -> list[Tensor]:
        """Per-scale ℓ̃ of the first len(tokens) scales in one block-masked pass (both CFG halves if used)."""
        batch, num_scales = len(prompts), len(tokens)
        tokens = [t.to(self.device) for t in tokens]
        cond_BD = self._conditions(prompts, use_cfg)
        inputs_BLC = doubled(self.tokenizer.teacher_inputs(tokens), use_cfg) if num_scales > 1 else None
        logits_BLV = self.transformer(cond_BD, inputs_BLC)
        bounds = self.transformer.scale_bounds
        per_scale = []
        for k in range(num_scales):
            logits_scale = logits_BLV[:, bounds[k] : bounds[k + 1]]
            uncond = logits_scale[batch:] if use_cfg else None
            per_scale.append(guided_logits(logits_scale[:batch], uncond, cfg_scale=settings["cfg_scale"], scale_index=k,
                                           num_scales=self.num_steps, temperature=settings["temperature"]))
        return per_scale

    def check_prompts(self, prompts: Sequence, *, where: str, allow_unknown_words: bool = False) -> None:
        """Refuse, for a text-conditioned model, a prompt that is not text (a conversational row: there is no
        chat template) and words the text encoder does not know: each would silently become <unk>, and the
        model would be conditioned on something other than what the prompt says (unless
        `allow_unknown_words`, prompts.allow_unknown_words)."""
        encoder = self.model.conditioner
        if isinstance(encoder, ClassConditioner):
            prompts = [prompt_text(p) for p in prompts]
        else:
            prompts = [require_text(p, where=where, family="next_scale") for p in prompts]
        unknown = encoder.unknown_words(prompts) if hasattr(encoder, "unknown_words") and not allow_unknown_words else []
        if unknown:
            example = next(p for p in prompts if isinstance(p, str) and set(split_words(p)) & set(unknown))
            known = ", ".join(encoder.vocabulary[2:])
            raise ValueError(f"{where}: {len(unknown)} word(s) the text encoder does not know, e.g. in {example!r}: "
                             f"{', '.join(unknown[:10])}; each would read as <unk>. Known words: {known}. Rephrase "
                             f"the prompt, or set prompts.allow_unknown_words=true to accept them")

    def _conditions(self, prompts: list, use_cfg: bool) -> Tensor:
        """cond_BD, with the null condition stacked below it ([2B, D]) when CFG is used. A prompt row (jsonl:,
        hf:) conditions on its "prompt"; its other columns are the rewards' (rlalign/utils/rows.py)."""
        cond_BD = self.model.condition([prompt_text(p) for p in prompts])
        return torch.cat([cond_BD, self.model.null_condition(len(prompts))]) if use_cfg else cond_BD

    # ---------------------------------------------------------------------------------------------
    # Rollout and re-scoring
    # ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(self, prompts: list, prefix_steps: int | str, *, generator: Generators,
                group_ids: Tensor | None = None, keep_scale_logits: bool = False) -> Rollout:
        """Sample B images: scales 1..m with the adapter on, m+1..K from the frozen base.

        `keep_scale_logits` also stores every scale's ℓ̃ (CFG-mixed / temperature) in
        state.scale_logits, for diagnostics such as checking the frozen suffix.
        """
        m = resolve_prefix_steps(prefix_steps, self.num_steps)
        settings = dict(self.sampling)
        batch = len(prompts)
        sample = self._sample(prompts, m, generator, settings, keep_scale_logits=keep_scale_logits)
        rollout = Rollout(
            prompts=list(prompts),
            group_ids=group_ids.cpu() if group_ids is not None else torch.arange(batch),
            outputs=self.tokenizer.f_hat_to_images(sample.f_hat_BCHW),  # on the device: rewards there take them as they are
            old_logp=[lp.cpu() for lp in sample.logp],
            action_mask=[torch.ones_like(lp, dtype=torch.bool, device="cpu") for lp in sample.logp],
            prefix_steps=m,
            state=NextScaleState(tokens=[t.cpu() for t in sample.tokens],
                                 kept_masks=[None if k is None else k.cpu() for k in sample.kept_masks],
                                 sampling=settings,
                                 scale_logits=None if sample.scale_logits is None else [x.cpu() for x in sample.scale_logits]),
        )
        return self._rescored(rollout)

    def _sample(self, prompts: list, m: int, generator: Generators, settings: dict, *,
                forced_prefix: Sequence[Tensor] | None = None,
                keep_scale_logits: bool = False) -> NextScaleSample:
        """The sampling loop. Scales k < m use the adapter (or, with `forced_prefix`, take those
        tokens as given); scales k ≥ m are the frozen base's, from a cache the base prefilled."""
        use_cfg = settings["cfg_scale"] > 0
        batch = len(prompts)
        cond_BD = self._conditions(prompts, use_cfg)
        cache = self.transformer.new_cache()
        f_hat_BCHW = self.tokenizer.empty_f_hat(batch, device=self.device)
        next_input, tokens, old_logp, kept_masks = None, [], [], []
        scale_logits: list[Tensor] | None = [] if keep_scale_logits else None
        for k, side in enumerate(self.transformer.patch_nums):
            if forced_prefix is not None and k < m:
                tokens.append(forced_prefix[k].to(self.device))
                f_hat_BCHW, next_input = self.tokenizer.accumulate(f_hat_BCHW, tokens[-1], k)
                continue
            if k == m:  # frozen suffix: the base model's own cache over the prefix (one teacher pass)
                cache = self.transformer.new_cache()
                with self.adapter_disabled():
                    prefix_inputs = self.tokenizer.teacher_inputs(tokens) if m > 1 else None
                    self.transformer(cond_BD, doubled(prefix_inputs, use_cfg), cache=cache)
            with nullcontext() if k < m else self.adapter_disabled():
                logits = self.transformer.step(cond_BD, doubled(next_input, use_cfg), cache)
            scaled_BlV = guided_logits(logits[:batch], logits[batch:] if use_cfg else None,
                                       cfg_scale=settings["cfg_scale"], scale_index=k, num_scales=self.num_steps,
                                       temperature=settings["temperature"])
            kept_BlV = kept_set(scaled_BlV, top_k=settings["top_k"], top_p=settings["top_p"])
            logp_BlV = scale_log_probs(scaled_BlV, kept_BlV)
            tokens_Bl = draw(logp_BlV, uniforms((batch, side * side), generator, self.device))
            if k < m:
                old_logp.append(logp_BlV.gather(-1, tokens_Bl[..., None]).squeeze(-1))
                kept_masks.append(kept_BlV)
            tokens.append(tokens_Bl)
            if scale_logits is not None:
                scale_logits.append(scaled_BlV)
            f_hat_BCHW, next_input = self.tokenizer.accumulate(f_hat_BCHW, tokens_Bl, k)
        return NextScaleSample(tokens, old_logp, kept_masks, scale_logits, f_hat_BCHW)

    @torch.no_grad()
    def complete(self, rollout: Rollout, samples: int, *, generator: Generators) -> tuple[Tensor, list, list]:
        """Finish each rollout's prefix `samples` times with fresh frozen-suffix draws (branching).

        Returns images [B·K, 3, H, W] (sample-major: K completions of sample 0 first), the repeated
        prompts and every scale's tokens. With one generator per output row, results do not depend
        on batching.
        """
        m, k = rollout.prefix_steps, samples
        prompts = [p for p in rollout.prompts for _ in range(k)]
        prefix = [t.repeat_interleave(k, dim=0) for t in rollout.state.tokens[:m]]
        sample = self._sample(prompts, m, generator, rollout.state.sampling, forced_prefix=prefix)
        images = self.tokenizer.f_hat_to_images(sample.f_hat_BCHW)  # on the device, like rollout()'s
        return images, prompts, [t.cpu() for t in sample.tokens]

    def _rescored(self, rollout: Rollout) -> Rollout:
        """old_logp from the teacher-forced pass `log_prob` runs, not the KV-cached sampler's (the two
        differ by float32 rounding: ~1e-5 absolute for a trained model's largest logits)."""
        return keep_rescored_old_logp(rollout, [lp.cpu() for lp in self.log_prob(rollout)])

    def log_prob(self, rollout: Rollout) -> list[Tensor]:
        """[B, p_k²] log-probs of the prefix tokens under the current adapter, with gradients."""
        state, m = rollout.state, rollout.prefix_steps
        use_cfg = state.sampling["cfg_scale"] > 0
        scaled = self._teacher_logits(rollout.prompts, state.tokens[:m], state.sampling, use_cfg=use_cfg)
        result = []
        for k, scaled_BlV in enumerate(scaled):
            kept_BlV = state.kept_masks[k]
            logp_BlV = scale_log_probs(scaled_BlV, kept_BlV.to(self.device) if kept_BlV is not None else None)
            tokens_Bl = state.tokens[k].to(self.device)
            result.append(logp_BlV.gather(-1, tokens_Bl[..., None]).squeeze(-1))
        return result
