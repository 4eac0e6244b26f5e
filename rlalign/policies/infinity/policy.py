"""InfinityPolicy: an Infinity text-to-image model as a StepPolicy, with peft LoRA on its transformer.

Steps are scales; an action is one token, i.e. the b bits at one position of a scale's map, whose
log-prob is the sum of its bits' (docs/infinity.md: the bits of a token are drawn independently
given the coarser scales, so the token's probability is their product). Scales 1..m are sampled
with the adapter on; scales m+1..K with the adapter off from a KV cache that the base model itself
prefilled over the prefix (the frozen suffix, as in the next-scale family). Re-scoring the prefix is
one block-masked teacher-forced pass over the first m scales, both CFG halves, with gradients.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rlalign.policies.base import Generators, Rollout, keep_rescored_old_logp, resolve_prefix_steps
from rlalign.policies.infinity.layers import Condition
from rlalign.policies.infinity.model import InfinityModel, load_directory, load_official
from rlalign.policies.infinity.sampler import (
    bit_log_probs,
    draw_bits,
    drawn_log_probs,
    guided_bit_logits,
    kept_values,
)
from rlalign.policies.infinity.schedules import RESOLUTIONS, schedule
from rlalign.policies.infinity.settings import settings
from rlalign.policies.infinity.state import InfinityState
from rlalign.policies.infinity.transformer import pad_text
from rlalign.policies.lora import AdapterMethods, LoraAdapter
from rlalign.policies.shared import doubled, uniforms
from rlalign.utils.rows import prompt_text, require_text

DEFAULT_TARGETS = r".*(blocks|block_chunks)\..*\.(sa\.mat_qkv|sa\.proj|ca\.mat_q|ca\.mat_kv|ca\.proj|ffn\.fc1|ffn\.fc2)"
"""Every Linear layer of every block: self-attention qkv and output, cross-attention q, kv and output,
the FFN; not the text pooling, the text projection, the embeddings or the head."""
SAMPLING = {"cfg_scale": 3.0, "temperature": 0.5, "top_k": 900, "top_p": 0.97}
"""The public sampler's settings (tools/interactive_infer.ipynb, run_infinity.py:87-88) for null fields."""
TEXT_CACHE = 4096
"""Prompts whose T5 features are kept (the encoder is frozen, so a prompt's features never change)."""


class InfinitySample(NamedTuple):
    bits: list[Tensor]  # uint8 [B, n_k, b] per scale, on the policy's device
    logp: list[Tensor]  # per sampled prefix scale: [B, n_k] float32 log-probs of the drawn tokens
    kept_masks: list[Tensor | None]  # per sampled prefix scale: bool [B, n_k, b, 2] or None
    summed_BdHW: Tensor  # the decoder's latent


class InfinityPolicy(AdapterMethods):
    """Sampling, exact prefix log-probs and LoRA for an InfinityModel."""

    def __init__(self, model: InfinityModel, *, cfg_scale: float = 3.0, temperature: float = 0.5, top_k: int = 900,
                 top_p: float = 0.97, lora_rank: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.0,
                 target_modules: Sequence[str] = ()):
        self.model = model
        self.transformer = model.transformer
        self.sampling = {"cfg_scale": float(cfg_scale), "temperature": float(temperature), "top_k": int(top_k),
                         "top_p": float(top_p)}
        self.lora = LoraAdapter(self.transformer, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                                target_modules=list(target_modules) or DEFAULT_TARGETS,
                                family="Infinity transformer (its block layers: sa.mat_qkv, sa.proj, ca.mat_q, "
                                       "ca.mat_kv, ca.proj, ffn.fc1, ffn.fc2)")
        self.num_steps = len(model.scales)
        self._text_cache: OrderedDict[str, Tensor] = OrderedDict()
        self._adapter_reaches_text = any(name.endswith("lora_A") and not name.startswith(("blocks.", "block_chunks."))
                                         for name, _ in self.transformer.named_modules())
        """LoRA outside the blocks (custom targets such as `proj` also catch the text pooling) changes the
        condition, so the frozen suffix then needs the base's own; the default targets leave it alone."""

    log_prob_batch_invariant = False
    """A sample's log-prob depends (in float rounding) on the batch it is scored in: text rows are padded
    to the batch's longest prompt, and the bf16 rounding of cross-attention amplifies a last-bit change
    to ~1e-4. The trainer therefore re-scores old_logp in the update's micro-batches."""

    @classmethod
    def from_config(cls, cfg: Any) -> InfinityPolicy:
        """Build from a PolicyConfig (kind: infinity): a golden-style directory or the official files."""
        model = _load_model(cfg)
        model.transformer.set_bf16_rounding(settings(cfg).cross_attention_bf16_rounding)
        model.to(cfg.device)
        lora = cfg.lora
        return cls(model, **cfg.sampling(**SAMPLING), lora_rank=lora.rank, lora_alpha=lora.alpha,
                   lora_dropout=lora.dropout, target_modules=lora.target_modules)

    @staticmethod
    def resolved_settings(cfg: Any) -> dict[str, Any]:
        """policy.infinity with every default filled in (what a run saves and a resume compares)."""
        return {"infinity": dataclasses.asdict(settings(cfg))}

    @staticmethod
    def declared_num_steps(cfg: Any) -> int | None:
        """T without loading weights: the configured number of scales, or the schedule's length."""
        inf = settings(cfg)
        if inf.num_scales:
            return inf.num_scales
        if inf.resolution:
            return RESOLUTIONS.get(inf.resolution)
        config = Path(cfg.checkpoint).expanduser() / "config.json"
        if config.is_file():
            try:
                return len(json.loads(config.read_text())["scale_schedule"])
            except (ValueError, KeyError, TypeError):
                return None
        return RESOLUTIONS["1M"]

    @property
    def device(self) -> torch.device:
        return self.transformer.pos_start.device

    def completion_tokenizer(self) -> None:
        """Images have no text tokens: rewards get no `completion_ids` from this family."""

    # ---------------------------------------------------------------------------------------------
    # Researcher API: bits in and out, teacher-forced logits
    # ---------------------------------------------------------------------------------------------

    def encode(self, images: Tensor) -> list[Tensor]:
        """Images [B, 3, H, W] in [0, 1] → bits uint8 [B, n_k, b] per scale."""
        return self.model.encode(images.to(self.device))

    def decode(self, bits: Sequence[Tensor]) -> Tensor:
        """Bits of every scale → images [B, 3, H, W] in [0, 1]."""
        return self.model.decode(list(bits))

    def logits(self, prompts: list, bits: Sequence[Tensor], cfg_scale: float | None = None,
               temperature: float = 1.0) -> list[Tensor]:
        """Teacher-forced bit logits [B, n_k, b, 2] of the first len(bits) scales (adapter as currently set).

        `cfg_scale=None` gives the conditional logits; a number gives the CFG mix as sampling makes it.
        """
        settings = {"cfg_scale": 1.0 if cfg_scale is None else cfg_scale, "temperature": temperature}
        return self._teacher_logits(prompts, bits, settings)

    def _teacher_logits(self, prompts: list, bits: Sequence[Tensor], settings: dict) -> list[Tensor]:
        batch, use_cfg = len(prompts), settings["cfg_scale"] != 1
        cond = self._conditions(prompts, use_cfg)
        inputs = doubled(self.model.teacher_inputs(list(bits)), use_cfg)  # moved to the device there
        logits_BLV = self.transformer(cond, inputs, num_scales=len(bits))
        bounds = self.transformer.scale_bounds
        return [guided_bit_logits(logits_BLV[:batch, bounds[k] : bounds[k + 1]],
                                  logits_BLV[batch:, bounds[k] : bounds[k + 1]] if use_cfg else None,
                                  cfg_scale=settings["cfg_scale"], temperature=settings["temperature"])
                for k in range(len(bits))]

    def _conditions(self, prompts: list, use_cfg: bool) -> Condition:
        """The prompts' condition, with the null condition stacked below it when CFG is used. A prompt row (jsonl:,
        hf:) conditions on its "prompt"; its other columns are the rewards' (rlalign/utils/rows.py)."""
        text = pad_text([self._text_features(prompt_text(p)) for p in prompts])
        text.features_BTC, text.lens_B = text.features_BTC.to(self.device), text.lens_B.to(self.device)
        cond = self.transformer.condition(text)
        return Condition.stack(cond, self.transformer.null_condition(text.lens_B)) if use_cfg else cond

    def _text_features(self, prompt: str) -> Tensor:
        """T5 features [len, Ct5] of one prompt, from the cache when seen before."""
        if prompt not in self._text_cache:
            features = self.model.text.encode([prompt])  # kept on the host: a GPU holds KV caches instead
            self._text_cache[prompt] = features.features_BTC[0, : int(features.lens_B[0])].cpu()
            while len(self._text_cache) > TEXT_CACHE:
                self._text_cache.popitem(last=False)
        self._text_cache.move_to_end(prompt)
        return self._text_cache[prompt]

    def check_prompts(self, prompts: Sequence, *, where: str, allow_unknown_words: bool = False) -> None:
        """Refuse prompts that are not text or are longer than the encoder takes (named, before any work).
        T5's pieces cover any text, so `allow_unknown_words` has nothing to allow here."""
        prompts = [require_text(p, where=where, family="infinity") for p in prompts]
        self.model.text.tokenize(list(dict.fromkeys(prompts)))

    # ---------------------------------------------------------------------------------------------
    # Rollout and re-scoring
    # ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def rollout(self, prompts: list, prefix_steps: int | str, *, generator: Generators,
                group_ids: Tensor | None = None) -> Rollout:
        """Sample B images: scales 1..m with the adapter on, m+1..K from the frozen base."""
        m = resolve_prefix_steps(prefix_steps, self.num_steps)
        settings = dict(self.sampling)
        sample = self._sample(list(prompts), m, generator, settings)
        rollout = Rollout(
            prompts=list(prompts),
            group_ids=group_ids.cpu() if group_ids is not None else torch.arange(len(prompts)),
            outputs=self.model.latent_to_images(sample.summed_BdHW),
            old_logp=[lp.cpu() for lp in sample.logp],
            action_mask=[torch.ones_like(lp, dtype=torch.bool, device="cpu") for lp in sample.logp],
            prefix_steps=m,
            state=InfinityState(bits=[b.cpu() for b in sample.bits],
                                kept_masks=[None if k is None else k.cpu() for k in sample.kept_masks],
                                sampling=settings),
        )
        return keep_rescored_old_logp(rollout, [lp.detach().cpu() for lp in self.log_prob(rollout)])

    def _sample(self, prompts: list, m: int, generator: Generators, settings: dict, *,
                forced_prefix: Sequence[Tensor] | None = None) -> InfinitySample:
        """The sampling loop: scales k < m with the adapter (or given by `forced_prefix`), k ≥ m from the base."""
        use_cfg, batch = settings["cfg_scale"] != 1, len(prompts)
        cond = base_cond = self._conditions(prompts, use_cfg)
        if m < self.num_steps and self._adapter_reaches_text:  # the suffix runs on the base's own condition
            with self.adapter_disabled():
                base_cond = self._conditions(prompts, use_cfg)
        cache, summed, next_input = self.transformer.new_cache(), None, None
        bits, old_logp, kept_masks = [], [], []
        for k, (h, w) in enumerate(self.model.scales):
            if forced_prefix is not None and k < m:
                bits.append(forced_prefix[k].to(self.device))
                summed, next_input = self.model.add_scale(summed, bits[-1], k)
                continue
            if k == m:  # frozen suffix: the base model's own cache over the prefix
                cache = self.transformer.new_cache()
                with self.adapter_disabled():
                    self.transformer(base_cond, doubled(self.model.teacher_inputs(bits), use_cfg),
                                     num_scales=m, cache=cache)
            with nullcontext() if k < m else self.adapter_disabled():
                logits = self.transformer.step(cond if k < m else base_cond, doubled(next_input, use_cfg), cache)
            scaled = guided_bit_logits(logits[:batch], logits[batch:] if use_cfg else None,
                                       cfg_scale=settings["cfg_scale"], temperature=settings["temperature"])
            kept = kept_values(scaled, top_k=settings["top_k"], top_p=settings["top_p"])
            logp_Bnb2 = bit_log_probs(scaled, kept)
            bits_Bnb = draw_bits(logp_Bnb2, uniforms((batch, scaled.shape[1] * scaled.shape[2]), generator,
                                                     self.device).view(batch, h * w, -1))
            if k < m:
                old_logp.append(drawn_log_probs(logp_Bnb2, bits_Bnb).sum(-1))
                kept_masks.append(kept)
            bits.append(bits_Bnb)
            summed, next_input = self.model.add_scale(summed, bits_Bnb, k)
        return InfinitySample(bits, old_logp, kept_masks, summed)

    @torch.no_grad()
    def complete(self, rollout: Rollout, samples: int, *, generator: Generators) -> tuple[Tensor, list, list]:
        """Finish each rollout's prefix `samples` times with fresh frozen-suffix draws (sample-major)."""
        m, k = rollout.prefix_steps, samples
        prompts = [p for p in rollout.prompts for _ in range(k)]
        prefix = [b.repeat_interleave(k, dim=0) for b in rollout.state.bits[:m]]
        sample = self._sample(prompts, m, generator, rollout.state.sampling, forced_prefix=prefix)
        return self.model.latent_to_images(sample.summed_BdHW), prompts, [b.cpu() for b in sample.bits]

    def log_prob(self, rollout: Rollout) -> list[Tensor]:
        """[B, n_k] log-probs of the prefix tokens under the current adapter, with gradients."""
        state, m = rollout.state, rollout.prefix_steps
        scaled = self._teacher_logits(rollout.prompts, state.bits[:m], state.sampling)
        result = []
        for k, scaled_Bnb2 in enumerate(scaled):
            kept = state.kept_masks[k]
            logp_Bnb2 = bit_log_probs(scaled_Bnb2, None if kept is None else kept.to(self.device))
            result.append(drawn_log_probs(logp_Bnb2, state.bits[k].to(self.device)).sum(-1))
        return result


def _load_model(cfg: Any) -> InfinityModel:
    """The model a PolicyConfig names (module docstring of model.py: a directory, or the official files)."""
    inf = settings(cfg)
    path = Path(cfg.checkpoint).expanduser()
    if cfg.checkpoint.startswith("builtin:") or not path.exists():
        raise FileNotFoundError(f"policy.checkpoint={cfg.checkpoint!r}: no such Infinity checkpoint; give a directory laid "
                                "out like shared/golden/infinity or the official transformer file (docs/infinity.md)")
    architecture = dict(cfg.architecture)
    preset = str(architecture.pop("preset", ""))
    if path.is_dir() and (path / "config.json").is_file():
        if cfg.vae_checkpoint or preset or architecture:
            raise ValueError(f"policy.checkpoint={cfg.checkpoint} is a model directory with its own config.json: leave "
                             "policy.vae_checkpoint and policy.architecture empty (they describe official files)")
        own = load_directory(path, text_encoder=inf.text_encoder, text_dtype=inf.text_encoder_dtype)
        if inf.resolution or inf.aspect_ratio is not None:  # a named schedule instead of the directory's own
            ratio = own.transformer.h_div_w if inf.aspect_ratio is None else inf.aspect_ratio
            count = inf.num_scales or (None if inf.resolution else len(own.scales))  # aspect alone: as many scales
            own.transformer.set_schedule(schedule(inf.resolution or "1M", ratio, count), ratio)
        elif inf.num_scales:
            if inf.num_scales > len(own.scales):
                raise ValueError(f"policy.infinity.num_scales={inf.num_scales}: {path} has {len(own.scales)} scales")
            own.transformer.set_schedule(own.scales[: inf.num_scales], own.transformer.h_div_w)
        return own
    if not cfg.vae_checkpoint or not inf.text_encoder:
        raise ValueError(f"policy.checkpoint={cfg.checkpoint} is a transformer file: also give policy.vae_checkpoint (the "
                         "BSQ VAE .pth), policy.infinity.text_encoder (a local Flan-T5 directory) and "
                         "policy.architecture.preset (infinity_2b or infinity_8b) or its sizes")
    return load_official(path, cfg.vae_checkpoint, inf.text_encoder, preset=preset, architecture=architecture,
                         text_dtype=inf.text_encoder_dtype, resolution=inf.resolution or "1M",
                         h_div_w=1.0 if inf.aspect_ratio is None else inf.aspect_ratio,
                         num_scales=inf.num_scales or None)
