"""Rollout benchmark of the next-scale policy: throughput, KV cache vs recomputation, prefill cost, roofline.

    python scripts/bench_rollout.py                       # built-in model, batch 64 → outputs/bench/rollout.json

Measures, with the same torch threads throughout (default 2, this machine's cores):
  1. images/s of `policy.rollout` at batch B for every prefix length m (adapter on for scales ≤ m,
     frozen base after, as in training), plus one row with CFG on;
  2. KV-cached sampling vs naive recomputation (every scale re-runs the block-causal pass over all
     scales so far): the speed ratio, and the largest logit difference between the two;
  3. the cost of the adapter-off prefill at each m (the base model's own cache over the prefix,
     docs/next_scale.md) and its share of the rollout;
  4. rollout FLOP/s (counted by torch.utils.flop_counter) as a fraction of this machine's measured
     fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from rlalign.policies.next_scale.model import load_model
from rlalign.policies.next_scale.policy import NextScalePolicy
from rlalign.policies.next_scale.sampler import guided_logits, kept_set, scale_log_probs
from rlalign.policies.shared import doubled, draw, uniforms
from rlalign.shapes import eval_prompts
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import interleaved_medians, machine_info, matmul_peak_flops, median_seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="builtin:shapes-nextscale")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="CFG strength of the CFG row")
    parser.add_argument("--out", default="outputs/bench/rollout.json")
    return parser.parse_args(argv)


@torch.no_grad()
def sample_tokens(policy: NextScalePolicy, prompts: list[str], seed: int, *, cached: bool) -> list[torch.Tensor]:
    """All scales' tokens (base model, no CFG), with a KV cache or by recomputing every scale from scratch."""
    transformer, tokenizer = policy.transformer, policy.tokenizer
    cond_BD = policy.model.condition(prompts)
    generator = torch.Generator().manual_seed(seed)
    cache = transformer.new_cache()
    f_hat, next_input, tokens = tokenizer.empty_f_hat(len(prompts)), None, []
    with policy.adapter_disabled():
        for k, side in enumerate(transformer.patch_nums):
            if cached:
                logits_BlV = transformer.step(cond_BD, next_input, cache)
            else:  # naive: one block-causal pass over scales 1..k+1, keep the last scale's logits
                # (scale k's own tokens are not read: a placeholder map only sets the input length)
                placeholder = torch.zeros(len(prompts), side * side, dtype=torch.long)
                inputs = tokenizer.teacher_inputs(tokens + [placeholder]) if k > 0 else None
                bounds = transformer.scale_bounds
                logits_BlV = transformer(cond_BD, inputs)[:, bounds[k] : bounds[k + 1]]
            scaled = guided_logits(logits_BlV, None, cfg_scale=0.0, scale_index=k,
                                   num_scales=transformer.num_scales, temperature=1.0)
            logp_BlV = scale_log_probs(scaled, kept_set(scaled, top_k=0, top_p=1.0))
            tokens.append(draw(logp_BlV, uniforms((len(prompts), side * side), generator)))
            f_hat, next_input = tokenizer.accumulate(f_hat, tokens[-1], k)
    return tokens


@torch.no_grad()
def cache_equivalence(policy: NextScalePolicy, prompts: list[str]) -> dict:
    """|cached − recomputed| logits over all scales, on the cached sampler's own tokens.

    Also in float64: the two paths are the same math, so there the gap must shrink to ~1e-12; in
    float32 it is a few ulps of the largest logits (reported alongside, with the probability gap).
    """
    transformer, tokenizer = policy.transformer, policy.tokenizer
    tokens = sample_tokens(policy, prompts, seed=0, cached=True)
    result = {}
    for dtype in (torch.float32, torch.float64):
        policy.model.to(dtype)
        cond_BD = policy.model.condition(prompts)
        with policy.adapter_disabled():
            cache, cached_logits = transformer.new_cache(), []
            for k in range(transformer.num_scales):
                inputs = tokenizer.teacher_inputs(tokens[: k + 1])[:, -tokens[k].shape[1]:] if k > 0 else None
                cached_logits.append(transformer.step(cond_BD, inputs, cache))
            full_BLV = transformer(cond_BD, tokenizer.teacher_inputs(tokens))
        cached_BLV = torch.cat(cached_logits, dim=1)
        name = str(dtype).removeprefix("torch.")
        result[f"{name}_max_abs_logit_difference"] = float((cached_BLV - full_BLV).abs().max())
        result[f"{name}_max_abs_prob_difference"] = float((cached_BLV.softmax(-1) - full_BLV.softmax(-1)).abs().max())
        result["max_abs_logit"] = float(full_BLV.abs().max())
    policy.model.to(torch.float32)
    return result


def rollout_rows(policy: NextScalePolicy, prompts: list[str], repeats: int, cfg_scale: float) -> list[dict]:
    """One row per m (no CFG) and one CFG row at m = 2: time, images/s, prefill cost, FLOP count."""
    rows = []
    settings = [(m, 0.0) for m in range(1, policy.num_steps + 1)] + [(2, cfg_scale)]
    for m, cfg in settings:
        policy.sampling["cfg_scale"] = cfg
        generator = torch.Generator().manual_seed(0)
        seconds = median_seconds(lambda m=m, g=generator: policy.rollout(prompts, m, generator=g), repeats=repeats)
        with FlopCounterMode(display=False) as counter:
            rollout = policy.rollout(prompts, m, generator=generator)
        prefill = prefill_seconds(policy, rollout, repeats) if m < policy.num_steps else 0.0
        rows.append({"m": m, "cfg_scale": cfg, "rollout_s": seconds, "images_per_s": len(prompts) / seconds,
                     "prefill_s": prefill, "prefill_share": prefill / seconds, "gflop": counter.get_total_flops() / 1e9})
    policy.sampling["cfg_scale"] = 0.0
    return rows


@torch.no_grad()
def prefill_seconds(policy: NextScalePolicy, rollout, repeats: int) -> float:
    """The adapter-off teacher pass that builds the frozen suffix's cache over scales 1..m."""
    m, use_cfg = rollout.prefix_steps, rollout.state.sampling["cfg_scale"] > 0
    cond_BD = policy._conditions(rollout.prompts, use_cfg)
    inputs = policy.tokenizer.teacher_inputs(rollout.state.tokens[:m]) if m > 1 else None
    inputs = doubled(inputs, use_cfg)

    def prefill() -> None:
        with policy.adapter_disabled():
            policy.transformer(cond_BD, inputs, cache=policy.transformer.new_cache())

    return median_seconds(prefill, repeats=repeats)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy = NextScalePolicy(load_model(args.checkpoint))
    prompts = list(eval_prompts("heldout"))
    prompts = (prompts * (args.batch_size // len(prompts) + 1))[: args.batch_size]
    peak = matmul_peak_flops()
    rows = rollout_rows(policy, prompts, args.repeats, args.cfg_scale)
    for row in rows:
        row["gflop_per_s"] = row["gflop"] / row["rollout_s"]
        row["peak_fraction"] = row["gflop_per_s"] * 1e9 / peak["flops_per_s"]
    sampler_s = interleaved_medians({"cached": lambda: sample_tokens(policy, prompts, 0, cached=True),
                                     "naive": lambda: sample_tokens(policy, prompts, 0, cached=False)},
                                    repeats=args.repeats)
    cached_s, naive_s = sampler_s["cached"], sampler_s["naive"]
    report = {
        "machine": machine_info(), "checkpoint": args.checkpoint, "batch_size": args.batch_size,
        "matmul_peak_gflop_per_s": peak["flops_per_s"] / 1e9, "matmul_peak": peak, "rollouts": rows,
        "kv_cache": {"cached_s": cached_s, "naive_s": naive_s, "speedup": naive_s / cached_s,
                     **cache_equivalence(policy, prompts[:16])},
    }
    print(f"# rollout benchmark: {args.checkpoint}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"fp32 matmul peak {report['matmul_peak_gflop_per_s']:.1f} GFLOP/s")
    print(records_table(rows, ["m", "cfg_scale", "rollout_s", "images_per_s", "prefill_s", "prefill_share", "gflop",
                              "gflop_per_s", "peak_fraction"]))
    kv = report["kv_cache"]
    print(f"\nKV cache: {kv['cached_s']:.3f} s vs naive recomputation {kv['naive_s']:.3f} s per batch "
          f"(speedup {kv['speedup']:.2f}x)\nmax |cached − recomputed|: logits {kv['float32_max_abs_logit_difference']:.2e} "
          f"in float32 (largest |logit| {kv['max_abs_logit']:.1f}), {kv['float64_max_abs_logit_difference']:.2e} in "
          f"float64; probabilities {kv['float32_max_abs_prob_difference']:.2e} in float32")
    print(f"wrote {write_json_atomic(args.out, report)}")
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
