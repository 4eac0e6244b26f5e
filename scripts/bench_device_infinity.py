"""`bench_device.py --family infinity`: an Infinity-2B-sized policy with random weights on one accelerator.

Everything is built on the device, nothing is read from disk: the transformer of
`architecture.PRESETS["infinity_2b"]` on the 1M schedule (or its first --infinity-scales scales), a
T5 encoder of Flan-T5-XL's config (random, bf16) behind a word-hash tokenizer, and a BSQ VAE of the
official 2B config `vae.INFINITY_2B_VAE`; torch's default initialisation, seed 0 (only costs are
measured, so no weight needs to mean anything). The policy samples with the public settings (CFG 3,
τ 0.5, top-k 900, top-p 0.97), has LoRA rank 16 / α 32 and runs `policy.precision: bf16`
(`with_precision`: autocast bf16, float32 weights and LoRA). --quick builds a tiny model of the same
code path (QUICK_*) for a CPU smoke run.

Rows, one per m in {4, 8, T} (those ≤ T): rollout images/s at --batch-size and its peak memory; one
`grpo_update` over a micro-batch of --micro-batch-size of that rollout (old_logp re-scored in bf16
as the trainer does, the reference pass, log_prob with gradients through LoRA on the prefix,
backward, AdamW) and its peak memory. Before any weight is allocated, every row's memory is estimated
(`memory_plan`, the arithmetic of bench_device.py's docstring, with the two code-dependent numbers
counted on a small CPU model by `probe_code_path`) and compared with the device's free memory: a row
that would not fit stops the run there, naming it, unless --skip-unfit (it is then reported skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import zlib
from collections.abc import Callable

import torch
from torch import Tensor

from rlalign.config import GrpoConfig, TrainConfig
from rlalign.grpo.update import grpo_update, rescore_old_logp
from rlalign.policies.infinity.architecture import PRESETS, InfinityArchitecture
from rlalign.policies.infinity.model import InfinityModel
from rlalign.policies.infinity.policy import DEFAULT_TARGETS, InfinityPolicy
from rlalign.policies.infinity.schedules import image_size, scale_bounds, schedule
from rlalign.policies.infinity.text import T5Text
from rlalign.policies.infinity.transformer import InfinityTransformer
from rlalign.policies.infinity.vae import BSQVAE, INFINITY_2B_VAE, VAEConfig
from rlalign.policies.precision import with_precision
from rlalign.utils.files import write_json_atomic
from rlalign.utils.seeding import grouped_generators
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info

FLAN_T5_XL = {"d_model": 2048, "d_kv": 64, "d_ff": 5120, "num_layers": 24, "num_heads": 32,
              "feed_forward_proj": "gated-gelu", "vocab_size": 32128}
QUICK_ARCH = InfinityArchitecture(embed_dim=64, depth=2, num_heads=2, codebook_dim=32, text_channels=128,
                                  block_chunks=2)
QUICK_T5 = {"d_model": 128, "d_kv": 32, "d_ff": 256, "num_layers": 2, "num_heads": 4,
            "feed_forward_proj": "gated-gelu", "vocab_size": 32128}
QUICK_VAE = VAEConfig(codebook_dim=32, base_ch=24, encoder_ch_mult=(1, 1, 1, 1, 1), decoder_ch_mult=(1, 1, 1, 1, 1),
                      num_res_blocks=1, patch_size=16)
QUICK_SCALES = 5
LORA_RANK, LORA_ALPHA = 16, 32.0
PROMPTS = ["a photo of a cat sitting on a windowsill in the morning sun",
           "an astronaut riding a horse on the moon , oil painting",
           "a red cube on top of a blue sphere next to a green cylinder",
           "a watercolor painting of a lighthouse at dusk with seagulls",
           "two dogs playing in the snow", "a bowl of fruit on a wooden table , studio lighting , 35mm photograph",
           "a futuristic city skyline at night with flying cars and neon signs", "a small boat on a calm lake"]
GB = 1e9
MARGIN, SLACK_BYTES = 1.10, 2e9
"""A row fits when MARGIN × its estimate + SLACK_BYTES (CUDA context, allocator fragmentation) ≤ free memory."""


class HashT5Text(T5Text):
    """T5Text's interface (tokenize, encode, encoder, device) over a randomly initialised T5 encoder,
    with token ids hashed from words instead of a vocabulary file: nothing is read from disk, and a
    prompt still gets a realistic length (one id per word, EOS appended), which is all the cost sees."""

    EOS, FIRST_WORD_ID = 1, 3

    def __init__(self, config: dict, *, dtype: torch.dtype, device: str, max_length: int = 512):
        from transformers import T5Config, T5EncoderModel

        with torch.device(device):
            self.encoder = T5EncoderModel(T5Config(**config)).to(dtype).eval().requires_grad_(False)
        self.vocab_size, self.max_length, self.directory = config["vocab_size"], max_length, None

    def tokenize(self, prompts) -> tuple[Tensor, Tensor]:
        words = [str(prompt).lower().split() for prompt in prompts]
        ids = [[self.FIRST_WORD_ID + zlib.crc32(w.encode()) % (self.vocab_size - self.FIRST_WORD_ID) for w in ws]
               + [self.EOS] for ws in words]
        longest = max(len(row) for row in ids)
        if longest > self.max_length:
            raise ValueError(f"a prompt of {longest} tokens is longer than the text encoder's {self.max_length}")
        input_ids = torch.zeros(len(ids), longest, dtype=torch.long)
        for row, values in enumerate(ids):
            input_ids[row, : len(values)] = torch.tensor(values)
        return input_ids, (input_ids != 0).long()


def build_policy(arch: InfinityArchitecture, t5: dict, vae_config: VAEConfig, scales: list, device: str):
    """The random policy, built on the device (no host copy of the weights), wrapped for bf16."""
    torch.manual_seed(0)
    with torch.device(device):
        transformer = InfinityTransformer(arch, scales).eval().requires_grad_(False)
        vae = BSQVAE(vae_config).eval().requires_grad_(False)
    text = HashT5Text(t5, dtype=torch.bfloat16, device=device, max_length=arch.text_maxlen)
    policy = InfinityPolicy(InfinityModel(transformer, vae, text), lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA)
    return with_precision(policy, "bf16")


def parameter_counts(arch: InfinityArchitecture, t5: dict, vae_config: VAEConfig, scales: list) -> dict:
    """Exact parameter counts from modules built on the meta device (no memory, no time)."""
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        transformer = InfinityTransformer(arch, scales)
        counts = {"transformer": sum(p.numel() for p in transformer.parameters()),
                  "blocks": sum(p.numel() for block in transformer.layers for p in block.parameters()),
                  "t5_encoder": sum(p.numel() for p in T5EncoderModel(T5Config(**t5)).parameters()),
                  "vae": sum(p.numel() for p in BSQVAE(vae_config).parameters())}
    counts["lora"] = LORA_RANK * sum(module.in_features + module.out_features
                                     for name, module in transformer.named_modules()
                                     if isinstance(module, torch.nn.Linear) and re.fullmatch(DEFAULT_TARGETS, name))
    return counts


def _saved_bytes(policy: InfinityPolicy, rollout) -> int:
    """Bytes of the tensors autograd saves in one log_prob pass, parameters, buffers and their views excluded."""
    owned = {t.untyped_storage().data_ptr() for t in [*policy.transformer.parameters(), *policy.transformer.buffers()]}
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in owned:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        policy.log_prob(rollout)
    return sum(seen.values())


def probe_code_path() -> dict:
    """The two numbers of the memory arithmetic that depend on the code rather than the sizes, counted
    on a width-256, depth-2 model (head dim 128, as the 2B's) under CPU bf16 autocast:
    the element size of a KV-cache entry, and the bytes autograd keeps per token, channel and block
    for log_prob's backward (the slope between prefixes of 57 and 121 tokens, so that weights, casts of
    weights and text terms, which do not grow with the prefix, cancel)."""
    arch = InfinityArchitecture(embed_dim=256, depth=2, num_heads=2, codebook_dim=32, text_channels=128)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy = build_policy(arch, QUICK_T5, QUICK_VAE, schedule("1M", 1.0, 5), "cpu")
    prompts = PROMPTS[:1]
    with policy.autocast(), torch.no_grad():
        cache = policy.transformer.new_cache()
        policy.transformer.step(policy._conditions(prompts, True), None, cache)
    sizes = {}
    for m in (4, 5):
        rollout = policy.rollout(prompts, m, generator=torch.Generator().manual_seed(0))
        with policy.autocast():
            sizes[policy.transformer.scale_bounds[m]] = _saved_bytes(policy.policy, rollout)
    (short, low), (long, high) = sorted(sizes.items())
    per_value = (high - low) / ((long - short) * 2 * arch.depth * arch.embed_dim)  # 2: both CFG halves
    return {"kv_bytes_per_value": cache.keys[0].element_size(), "kv_dtype": str(cache.keys[0].dtype),
            "activation_bytes_per_token_channel_block": per_value}


def memory_plan(arch: InfinityArchitecture, vae_config: VAEConfig, scales: list, counts: dict, probe: dict,
                batch: int, micro: int, ms: list[int]) -> list[dict]:
    """Estimated bytes per row (bench_device.py's docstring gives the terms and the 2B's numbers)."""
    bounds, C, depth = scale_bounds(scales), arch.embed_dim, arch.depth
    height, width = image_size(scales, vae_config.downsample_factor)
    weights = 4 * counts["transformer"] + 2 * counts["t5_encoder"] + 4 * counts["vae"] + 4 * counts["lora"]
    kv_per_image = bounds[-1] * depth * 2 * C * probe["kv_bytes_per_value"] * 2
    decode_per_image = 4 * vae_config.base_ch * height * width * 4  # ~4 full-resolution float32 maps alive
    rows = []
    for m in ms:
        cast = batch * 2 * bounds[-1] * 2 * C * 2  # one layer's K, V cast to bf16 for attention (transient)
        rollout = weights + batch * (kv_per_image + decode_per_image) + cast
        activations = micro * 2 * bounds[m] * C * depth * probe["activation_bytes_per_token_channel_block"]
        attention_bias = depth * bounds[m] ** 2 * 2  # the additive mask an efficient-attention backward keeps
        update = weights + 12 * counts["lora"] + 2 * counts["blocks"] + activations + attention_bias
        rows.append({"m": m, "tokens": bounds[m], "rollout_gb": rollout / GB, "update_gb": update / GB,
                     "weights_gb": weights / GB, "kv_cache_gb": batch * kv_per_image / GB,
                     "activations_gb": activations / GB})
    return rows


def unfit_rows(plan: list[dict], device: str, skip_unfit: bool) -> set[tuple[int, str]]:
    """(m, part) pairs that do not fit the device's free memory; stops the run unless skip_unfit."""
    if not device.startswith("cuda"):
        return set()
    free, total = torch.cuda.mem_get_info()
    unfit = {(row["m"], part) for row in plan for part in ("rollout", "update")
             if MARGIN * row[f"{part}_gb"] * GB + SLACK_BYTES > free}
    if unfit and not skip_unfit:
        lines = [f"  m = {m} {part}: needs ≈ {next(r for r in plan if r['m'] == m)[f'{part}_gb']:.1f} GB"
                 for m, part in sorted(unfit)]
        name = torch.cuda.get_device_name()
        advice = ("lower --batch-size / --micro-batch-size, use fewer --infinity-scales, a larger device, "
                  "or --skip-unfit to measure the rest")
        raise SystemExit(f"[bench_device] {name} has {free / GB:.1f} of {total / GB:.1f} GB free; these "
                         f"measurements would not fit (estimate × {MARGIN} + {SLACK_BYTES / GB:.0f} GB):\n"
                         + "\n".join(lines) + "\n" + advice)
    return unfit


def bench_row(policy, m: int, args: argparse.Namespace, unfit: set, timed: Callable,
              peak_memory_gb: Callable) -> dict:
    """One m: rollout rate and peak, then one GRPO update over a micro-batch of that rollout and its peak."""
    prompts = (PROMPTS * (args.batch_size // len(PROMPTS) + 1))[: args.batch_size]
    row = {"m": m, "T": policy.num_steps, "batch": args.batch_size, "micro_batch": args.micro_batch_size}
    if (m, "rollout") in unfit:
        return {**row, "skipped": "rollout and update: estimated memory above the free memory"}

    def rollout():
        return policy.rollout(prompts, m, generator=grouped_generators(0, "bench", m, 1, len(prompts)))

    reset_peak(args.device)
    row["rollout_s"] = timed(rollout, args.repeats, args.device)
    row.update(rollout_images_per_s=args.batch_size / row["rollout_s"], rollout_peak_gb=peak_memory_gb(args.device))
    if (m, "update") in unfit:
        return {**row, "skipped": "update: estimated memory above the free memory"}
    micro = args.micro_batch_size
    sample = rollout().select(torch.arange(micro))
    row["rescore_gap"] = rescore_old_logp(policy, sample, micro)  # as the trainer does for bf16
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    advantages_B = torch.randn(micro, generator=torch.Generator().manual_seed(m))
    grpo, train = GrpoConfig(group_size=max(2, micro), beta=0.02), TrainConfig(micro_batch_size=micro)
    reset_peak(args.device)
    row["update_s"] = timed(lambda: grpo_update(policy, optimizer, scheduler, sample, advantages_B, grpo, train),
                            args.repeats, args.device)
    row["update_peak_gb"] = peak_memory_gb(args.device)
    return row


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def sizes(args: argparse.Namespace) -> tuple[InfinityArchitecture, dict, VAEConfig, list]:
    if args.quick:
        return QUICK_ARCH, QUICK_T5, QUICK_VAE, schedule("1M", 1.0, args.infinity_scales or QUICK_SCALES)
    return PRESETS["infinity_2b"], FLAN_T5_XL, INFINITY_2B_VAE, schedule("1M", 1.0, args.infinity_scales)


def main(args: argparse.Namespace, timed: Callable, peak_memory_gb: Callable) -> dict:
    arch, t5, vae_config, scales = sizes(args)
    ms = sorted({min(m, len(scales)) for m in (4, 8, len(scales))})
    counts, probe = parameter_counts(arch, t5, vae_config, scales), probe_code_path()
    plan = memory_plan(arch, vae_config, scales, counts, probe, args.batch_size, args.micro_batch_size, ms)
    print(f"[bench_device] infinity on {args.device}: transformer {counts['transformer'] / 1e6:.1f} M parameters, "
          f"{len(scales)} scales to {scales[-1]}, batch {args.batch_size}, micro-batch {args.micro_batch_size}; "
          f"KV cache {probe['kv_dtype']}, {probe['activation_bytes_per_token_channel_block']:.1f} saved bytes per "
          "token, channel and block", flush=True)
    print(records_table(plan, ["m", "tokens", "weights_gb", "kv_cache_gb", "activations_gb", "rollout_gb",
                               "update_gb"]), flush=True)
    unfit = unfit_rows(plan, args.device, args.skip_unfit)  # before any weight is allocated
    policy = build_policy(arch, t5, vae_config, scales, args.device)
    rows = []
    for m in ms:
        rows.append(bench_row(policy, m, args, unfit, timed, peak_memory_gb))
        print(f"  m = {m}: {rows[-1]}", flush=True)
    print(records_table(rows, ["m", "T", "batch", "rollout_images_per_s", "rollout_peak_gb", "micro_batch",
                               "update_s", "update_peak_gb", "rescore_gap", "skipped"]))
    report = {"machine": machine_info(), "family": "infinity", "device": args.device, "quick": args.quick,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "batch_size": args.batch_size, "micro_batch_size": args.micro_batch_size, "repeats": args.repeats,
              "architecture": arch.to_dict(), "t5": t5, "vae": dataclasses.asdict(vae_config),
              "scales": [list(s) for s in scales], "parameters": counts, "code_path": probe,
              "memory_plan": plan, "rows": rows, "sampling": dict(policy.sampling),
              "lora": {"rank": LORA_RANK, "alpha": LORA_ALPHA}, "precision": "bf16"}
    print(f"wrote {write_json_atomic(args.out, report)}")
    return report
