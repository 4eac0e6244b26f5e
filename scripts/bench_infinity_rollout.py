"""Infinity rollout benchmark on the CPU: images/s per m, the cost of recording log-probs, KV cache vs recomputation.

    python scripts/bench_infinity_rollout.py            # golden + mid model → outputs/bench/infinity_rollout.json
    python scripts/bench_infinity_rollout.py --quick    # tiny sizes, batch 2, 1 repeat: a smoke run (seconds)

Two models, sampled with the public settings (CFG 3, τ 0.5, top-k 900, top-p 0.97), LoRA rank 8 on
every block layer (peft's zero B: the adapter is on for scales ≤ m and costs its FLOPs, but changes
no number):
  golden  --golden-dir (shared/golden/infinity): the reference's architecture at width 64, depth 4,
          2 heads, 16 bits per token, a T5 of d_model 128, 4 scales 1²..6² (57 tokens, 96² images);
  mid     random weights built here (MID, MID_VAE, seed 0): width 256, depth 8, 4 heads, 16 bits per
          token, text channels 128 (the golden T5), the "0.06M" schedule = the first 7 scales of the
          1:1 1M schedule (1², 2², 4², 6², 8², 12², 16²: 521 tokens, 256² images), a BSQ VAE of base
          width 24, ch_mult (1, 1, 1, 2, 1), 1 residual block, patch 16 (9.64 M transformer and 0.37 M
          VAE parameters; the JSON's "models" lists every size). Sized so that the whole
          script should take under 10 minutes at batch 8 on 2 idle cores (the FLOP count below;
          not yet timed on an idle machine); --quick replaces it by QUICK
          (width 48, depth 2, 3 heads, 6 bits, 4 scales) and runs batch 2 with 1 repeat.

Per model, with --threads torch threads at batch --batch-size, medians of --repeats after one warm-up
(the contenders of one row are timed in turn, so background load hits them alike):
  1. rollout    images/s of `policy.rollout(prompts, m)` for every m in 1..T: the sampling loop, the
                VAE decode and the one teacher-forced `log_prob` pass that re-scores the prefix;
  2. recording  the same sampling without the re-score (`policy._sample` + the VAE decode: what a plain
                sampler does) and one `policy.log_prob(rollout)` pass alone; record share = (rollout −
                sample) / rollout. The rollout should cost no more than sampling plus the re-score of
                the prefix: `within` is rollout ≤ 1.1 × (sample + rescore);
  3. KV cache   the base model, both CFG halves, every scale: sampling from the KV cache
                (`transformer.step`) against naive recomputation (each scale re-runs the block-causal
                teacher-forced pass over all scales so far and keeps the last scale's logits): the
                speed ratio, and the largest |logit difference| of the two paths on the same bits.
                Both are the same math in another float order: ~5e-7 with the cross-attention's
                bf16 rounding off (`_fp32` column). With it on (the default, layers.CrossAttention:
                it mimics the reference's flash-attn), an order-level difference can move a value
                across a bf16 rounding boundary, which shows as a few 1e-4 on the mid model (the
                rounded values then differ by one bf16 ulp, ~4e-3 relative), ~1e-7 on the tiny ones.
It prints a Markdown table per part and writes the rows as JSON (--out).

Cost, counted with torch.utils.flop_counter at batch 1 (matmuls and convolutions only): the mid
model's rollout is 20.5 GFLOP per image at m = 1 and 37.1 at m = T (sampling 21.1, of which the VAE
decode 4.9; the re-score 0.06 at m = 1 to 16.0 at m = T); cached sampling 15.5, naive 29.3. The
whole script is ≈ 1.9 TFLOP per image for the mid model (the golden one is ~1% of it), 15.4 TFLOP
at batch 8: ≈ 6 minutes at 45 GFLOP/s, 0.2 of the 2-core machine's measured fp32 matmul peak
(227 GFLOP/s, docs/performance.md), which is what the next-scale rollouts reach there.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch import Tensor

from rlalign.policies.infinity.architecture import InfinityArchitecture
from rlalign.policies.infinity.model import InfinityModel, load_directory
from rlalign.policies.infinity.policy import InfinityPolicy
from rlalign.policies.infinity.sampler import bit_log_probs, draw_bits, guided_bit_logits, kept_values
from rlalign.policies.infinity.schedules import image_size, schedule
from rlalign.policies.infinity.text import T5Text
from rlalign.policies.infinity.transformer import InfinityTransformer
from rlalign.policies.infinity.vae import BSQVAE, VAEConfig
from rlalign.policies.shared import doubled, uniforms
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import interleaved_medians, machine_info

ROOT = Path(__file__).resolve().parents[1]
MID = {"embed_dim": 256, "depth": 8, "num_heads": 4, "codebook_dim": 16, "text_channels": 128, "text_maxlen": 512}
MID_VAE = VAEConfig(codebook_dim=16, base_ch=24, encoder_ch_mult=(1, 1, 1, 2, 1), decoder_ch_mult=(1, 1, 1, 2, 1),
                    num_res_blocks=1, patch_size=16)
QUICK = {"embed_dim": 48, "depth": 2, "num_heads": 3, "codebook_dim": 6, "text_channels": 128, "text_maxlen": 512}
QUICK_VAE = VAEConfig(codebook_dim=6, base_ch=24, encoder_ch_mult=(1, 1, 1, 1, 1), decoder_ch_mult=(1, 1, 1, 1, 1),
                      num_res_blocks=1, patch_size=16)
PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon , oil painting",
           "a red cube on top of a blue sphere", "a watercolor painting of a lighthouse at dusk",
           "two dogs playing in the snow", "a bowl of fruit on a wooden table , studio lighting",
           "a city skyline at night", "a small boat on a calm lake surrounded by mountains"]
RECORD_TOLERANCE = 1.1
"""`within`: rollout ≤ this × (sampling alone + one re-score pass), a 10% allowance for timing noise."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--golden-dir", default="../shared/golden/infinity", help="relative to the repo root")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny random model instead of MID, batch 2, 1 repeat")
    parser.add_argument("--out", default="outputs/bench/infinity_rollout.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.repeats = 2, 1
    return args


def perturb(module: torch.nn.Module, seed: int, std: float) -> None:
    """Noise on every parameter, so that no zero-initialised path (AdaLN terms, biases, the null text)
    is inert: the cache-equivalence check then exercises all of the math, not just part of it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.add_(noise.abs() if "scale_mul" in name else noise)


def random_model(sizes: dict, vae_config: VAEConfig, scales: list, text_dir: Path, seed: int = 0) -> InfinityModel:
    """Seeded random weights: torch's initialisation under a forked, seeded RNG (the caller's RNG is
    untouched), perturbed, and the head shrunk so that raw logits are O(0.1) and the guided ones
    (CFG 3, τ 0.5) O(1): top-p then fixes a few bits and leaves most random, as a trained model does."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        transformer = InfinityTransformer(InfinityArchitecture(**sizes), scales)
        perturb(transformer, seed, std=0.05)
        with torch.no_grad():
            transformer.head.weight.normal_(0.0, 0.02)
            transformer.head_nm.ada_lin[1].weight.mul_(0.1)
        vae = BSQVAE(vae_config)
        perturb(vae, seed + 1, std=0.02)
    return InfinityModel(transformer.eval().requires_grad_(False), vae.eval().requires_grad_(False), T5Text(text_dir))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def sampled_images(policy: InfinityPolicy, prompts: list[str], m: int) -> Tensor:
    """What a plain sampler does: the rollout's own sampling loop and decode, without the re-score."""
    sample = policy._sample(prompts, m, seeded(0), dict(policy.sampling))
    return policy.model.latent_to_images(sample.summed_BdHW)


@torch.no_grad()
def rescore(policy: InfinityPolicy, rollout) -> list[Tensor]:
    return policy.log_prob(rollout)


def rollout_rows(name: str, policy: InfinityPolicy, prompts: list[str], repeats: int) -> list[dict]:
    """Parts 1 and 2: one row per m with the rollout, sampling alone and the re-score pass."""
    rows = []
    for m in range(1, policy.num_steps + 1):
        rollout = policy.rollout(prompts, m, generator=seeded(0))
        seconds = interleaved_medians({
            "rollout": lambda m=m: policy.rollout(prompts, m, generator=seeded(0)),
            "sample": lambda m=m: sampled_images(policy, prompts, m),
            "rescore": lambda r=rollout: rescore(policy, r),
        }, repeats=repeats)
        total, sample, again = seconds["rollout"], seconds["sample"], seconds["rescore"]
        rows.append({"model": name, "m": m, "T": policy.num_steps, "batch": len(prompts), "rollout_s": total,
                     "images_per_s": len(prompts) / total, "sample_s": sample, "rescore_s": again,
                     "record_s": total - sample, "record_share": (total - sample) / total,
                     "record_vs_rescore": (total - sample) / again,
                     "within": total <= RECORD_TOLERANCE * (sample + again),
                     "sampler_logp_gap": float(rollout.sampler_logp_gap.max())})
        print(f"  {name} m = {m}: {rows[-1]['images_per_s']:.2f} images/s, record share "
              f"{rows[-1]['record_share']:.2f}", flush=True)
    return rows


@torch.no_grad()
def sample_base(policy: InfinityPolicy, prompts: list[str], seed: int, *, cached: bool,
                forced: list[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """Every scale's bits and raw logits [2B, n_k, 2b] (both CFG halves), base model, with the KV cache
    or by naive recomputation; `forced` gives the bits instead of drawing them (same inputs for both)."""
    model, transformer, settings = policy.model, policy.transformer, dict(policy.sampling)
    batch, use_cfg, bounds = len(prompts), settings["cfg_scale"] != 1, transformer.scale_bounds
    cond = policy._conditions(prompts, use_cfg)
    generator, cache = seeded(seed), transformer.new_cache()
    summed, inputs, bits, raw = None, [], [], []
    with policy.adapter_disabled():
        for k, (h, w) in enumerate(model.scales):
            if cached:
                logits = transformer.step(cond, doubled(inputs[-1], use_cfg) if k else None, cache)
            else:  # one block-causal pass over scales 1..k+1; the last scale's rows are this step's logits
                teacher = doubled(torch.cat(inputs, dim=1), use_cfg) if k else None
                logits = transformer(cond, teacher, num_scales=k + 1)[:, bounds[k] : bounds[k + 1]]
            raw.append(logits)
            scaled = guided_bit_logits(logits[:batch], logits[batch:] if use_cfg else None,
                                       cfg_scale=settings["cfg_scale"], temperature=settings["temperature"])
            if forced is None:
                logp = bit_log_probs(scaled, kept_values(scaled, top_k=settings["top_k"], top_p=settings["top_p"]))
                noise = uniforms((batch, scaled.shape[1] * scaled.shape[2]), generator).view(batch, h * w, -1)
                bits.append(draw_bits(logp, noise))
            else:
                bits.append(forced[k])
            summed, next_input = model.add_scale(summed, bits[-1], k)
            if next_input is not None:
                inputs.append(next_input)
    return bits, raw


def kv_cache_row(name: str, policy: InfinityPolicy, prompts: list[str], repeats: int) -> dict:
    """Part 3: cached vs naive sampling time, and |cached − recomputed| logits on the cached run's bits,
    with the cross-attention bf16 rounding as configured and with it off (module docstring)."""
    seconds = interleaved_medians({"cached": lambda: sample_base(policy, prompts, 0, cached=True),
                                   "naive": lambda: sample_base(policy, prompts, 0, cached=False)},
                                  repeats=repeats)
    transformer = policy.transformer
    configured = next(m.bf16_rounding for m in transformer.modules() if hasattr(m, "bf16_rounding"))
    differences, largest = {}, 0.0
    for rounding in dict.fromkeys([configured, False]):
        transformer.set_bf16_rounding(rounding)
        bits, cached = sample_base(policy, prompts, 1, cached=True)
        _, naive = sample_base(policy, prompts, 1, cached=False, forced=bits)
        differences[rounding] = max(float((a - b).abs().max()) for a, b in zip(cached, naive))
        largest = max(largest, *(float(a.abs().max()) for a in cached))
    transformer.set_bf16_rounding(configured)
    return {"model": name, "scales": policy.num_steps, "batch": len(prompts), "cached_s": seconds["cached"],
            "naive_s": seconds["naive"], "speedup": seconds["naive"] / seconds["cached"],
            "bf16_rounding": configured, "max_abs_logit_difference": differences[configured],
            "max_abs_logit_difference_fp32": differences[False], "max_abs_logit": largest}


def describe(name: str, model: InfinityModel, source: str) -> dict:
    """What a model is, for the JSON: sizes, schedule, parameter counts."""
    return {"name": name, "source": source, "architecture": model.arch.to_dict(),
            "vae": dataclasses.asdict(model.vae.config), "scales": [list(s) for s in model.scales],
            "tokens": model.transformer.scale_bounds[-1], "image_size": list(image_size(model.scales)),
            "transformer_parameters": sum(p.numel() for p in model.transformer.parameters()),
            "vae_parameters": sum(p.numel() for p in model.vae.parameters())}


def build_models(args: argparse.Namespace) -> list[tuple[str, InfinityModel, str]]:
    golden = Path(args.golden_dir)
    golden = golden if golden.is_absolute() else (ROOT / golden).resolve()
    if not (golden / "config.json").is_file():
        raise SystemExit(f"no Infinity model directory at {golden} (--golden-dir): expected shared/golden/infinity")
    sizes, vae_config, scales = (QUICK, QUICK_VAE, schedule("0.06M", 1.0, 4)) if args.quick else (
        MID, MID_VAE, schedule("0.06M"))
    mid = random_model(sizes, vae_config, scales, golden / "text_encoder", seed=0)
    return [("golden", load_directory(golden), str(golden)),
            ("quick" if args.quick else "mid", mid, "random, seed 0 (bench_infinity_rollout.QUICK/MID)")]


def print_tables(report: dict) -> None:
    print(f"\n# Infinity rollout benchmark: batch {report['batch_size']}, {report['machine']['threads']} threads, "
          f"{report['repeats']} repeats, sampling {report['sampling']}")
    print("\n## 1. Rollout rate (sampling, decode and the prefix re-score)\n")
    print(records_table(report["rollouts"], ["model", "m", "T", "rollout_s", "images_per_s"]))
    print(f"\n## 2. Recording log-probs: rollout vs sampling alone (within: rollout ≤ {RECORD_TOLERANCE} × "
          "(sample + rescore))\n")
    print(records_table(report["rollouts"], ["model", "m", "rollout_s", "sample_s", "rescore_s", "record_s",
                                             "record_share", "record_vs_rescore", "within"]))
    print("\n## 3. KV cache vs naive recomputation (base model, both CFG halves, every scale)\n")
    print(records_table(report["kv_cache"], ["model", "scales", "cached_s", "naive_s", "speedup", "bf16_rounding",
                                             "max_abs_logit_difference", "max_abs_logit_difference_fp32",
                                             "max_abs_logit"]))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = (PROMPTS * (args.batch_size // len(PROMPTS) + 1))[: args.batch_size]
    report = {"machine": machine_info(), "quick": args.quick, "batch_size": args.batch_size,
              "repeats": args.repeats, "record_tolerance": RECORD_TOLERANCE, "models": [], "rollouts": [],
              "kv_cache": []}
    for name, model, source in build_models(args):
        report["models"].append(describe(name, model, source))
        policy = InfinityPolicy(model, lora_rank=8, lora_alpha=16)
        report["sampling"] = dict(policy.sampling)
        print(f"[bench_infinity_rollout] {name}: {report['models'][-1]['transformer_parameters'] / 1e6:.2f} M "
              f"transformer parameters, {policy.num_steps} scales, batch {len(prompts)}", flush=True)
        report["rollouts"] += rollout_rows(name, policy, prompts, args.repeats)
        report["kv_cache"].append(kv_cache_row(name, policy, prompts, args.repeats))
    print_tables(report)
    print(f"\nwrote {write_json_atomic(args.out, report)}")
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
