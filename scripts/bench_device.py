"""Device benchmark at VAR-d16 size: rollout, update, reward and the bf16 on-policy gap on one accelerator.

    python scripts/bench_device.py                  # on a GPU (device cuda when present): ≤ 8 min
    python scripts/bench_device.py --quick          # tiny sizes on the CPU: a smoke run (CI)

Nothing is downloaded and no weights are needed: the policy is VAR-d16's architecture (configs/var_d16.yaml:
10 scales to 16×16, width 1024, depth 16, ~310 M transformer parameters plus the VQVAE) with random
weights, class prompts, batch 32, CFG 4, top-k 900, top-p 0.95, LoRA rank 16; the reward is open_clip
ViT-L-14 with its random initialisation (written to a temporary file, loaded by `clip_score` as a user's
file would be) at 224 px. Rows, each a median over --repeats after one warm-up:

    rollout    images/s for m = 4 and m = T, in fp32 and bf16 (policy.precision)
    update     seconds of one grpo_update (reference pass, policy pass, backward, AdamW) and the peak
               device memory, for m = 4 and m = T, in fp32 and bf16
    reward     clip_score images/s (ViT-L-14, batch 32)
    on-policy  bf16: max |log_prob − old_logp| after re-scoring old_logp in the update's micro-batches
    syncs      host-device synchronisations inside the sampling loop (m = 4, fp32) and in a whole
               rollout, counted by CUDA's sync debug mode (0 on a CPU, where there is nothing to count)

It prints a table and writes JSON (default outputs/bench/device.json). docs/performance.md says how
to run it on a GPU and holds the GPU numbers once measured.

    python scripts/bench_device.py --family infinity                # Infinity-2B size, 1M (13 scales, 1024²): H200
    python scripts/bench_device.py --family infinity --skip-unfit   # on an 80 GB H100 (the m = T update is skipped)
    python scripts/bench_device.py --family infinity --infinity-scales 10   # its first 10 scales (512²)
    python scripts/bench_device.py --family infinity --quick --device cpu   # the same code path, tiny (CI)

`--family infinity` (scripts/bench_device_infinity.py) builds Infinity-2B's architecture with random
weights on the device (a Flan-T5-XL-sized random T5, the official 2B VAE config), bf16, LoRA rank 16,
batch 4 (--batch-size); rows m = 4, 8, T: rollout images/s and peak memory, one grpo_update over a
micro-batch of --micro-batch-size (1) and its peak memory. It estimates every row's memory first and
stops before allocating any weight if one would not fit (--skip-unfit: report those rows as skipped).
At 1M the estimates (printed before the run, from the code path's probed KV dtype and saved bytes) are
about: rollout at batch 4 ≈ 43 GB (weights 11.8 GB, bf16 KV cache 22.1 GB, VAE decode 8.6 GB); update
at micro-batch 1 ≈ 17 GB (m = 4), 24 GB (m = 8), 112 GB (m = T).

Infinity-2B, derived (C = 2048 width, D = 32 blocks, 16 heads, FFN 8192, b = 32 bits, Ct5 = 2048):
  parameters   a block: 16·C² (sa.mat_qkv 3C², sa.proj C², ca.mat_q C², ca.mat_kv 2C², ca.proj C²,
               FFN 2·4C²) + 19·C (biases, norms, ada_gss 6C) + 16 = 67,147,792; × 32 = 2,148,729,344;
               outside the blocks 55,834,688 (shared_ada_lin 6C²+6C, text pooling 3C²+3C, text
               projection 2C²+2C, head AdaLN 2C²+2C, cfg_uncond 512·C, head, embeddings) → 2,204,564,032
               (2.20 B; counted again on the meta device by parameter_counts). LoRA rank r on the 7
               block linears: r·Σ(in+out) = r·47,104 per block = 1,507,328·r (r = 16: 24.1 M).
  weights      bf16: 2.2046e9 × 2 B = 4.41 GB (4.11 GiB). This bench holds them as bf16 autocast does,
               float32 (4 B: 8.82 GB, 8.21 GiB); Flan-T5-XL's encoder 1,223,527,424 parameters, bf16 2.45 GB;
               the VAE 110,118,051 parameters, float32 0.44 GB; LoRA r = 16 with its gradient and AdamW
               states 24.1 M × 16 B = 0.39 GB.
  KV cache     per image at 1M: Σ tokens (1+4+16+36+64+144+256+400+576+1024+1600+2304+4096 = 10,521)
               × D 32 × 2 (K, V) × C 2048 × 2 B × 2 (CFG halves) = 5,516,034,048 B = 5.52 GB (5.14 GiB)
               in bf16 (the q/k/v bias is added in the matmul's dtype, so the cache stays bf16 under
               autocast; probe_code_path reports the dtype it finds).
               (0.25M, 10 scales, 2,521 tokens: 1.32 GB bf16; 0.06M, 7 scales, 521 tokens: 0.27 GB.)
  re-score     with gradients (the update's log_prob + backward through LoRA), both CFG halves: autograd
               keeps ≈ 63 B per token, channel and block under bf16 autocast (97 in float32; counted
               with saved_tensors_hooks, one count per storage, on widths 256 and 512, depth 2,
               prefixes of 57, 121 and 265 tokens; probe_code_path recounts it on every run). By the
               code: LoRA inputs in bf16 2 B × (4 C-wide + the 4C-wide fc2 input) = 18 B, the float32
               qkv 12 B, self-attention q/k/v/out 8 B, cross-attention q/out 4 B, three float32
               residual/LayerNorm inputs 12 B, the FFN hidden 8 B = 62 B. So 2 × 63 × 2048 × 32 =
               8.26 MB per prefix token per image:
                 m = 4:     57 tokens →  0.47 GB per image
                 m = 8:    921 tokens →  7.61 GB per image      (m = 10: 2,521 → 20.8 GB)
                 m = T: 10,521 tokens → 86.9 GB per image (m = 12: 6,425 → 53.1 GB)
               m = T does not fit one 80 GB device without activation checkpointing. Once per update
               add the bf16 copies of the block weights autocast keeps for the backward (2.149e9 × 2 B
               = 4.30 GB) and up to D·L_m²·2 B for an efficient-attention mask (7.1 GB at m = T, 0.05
               GB at m = 8). Without gradients (the rollout's re-score, the reference pass)
               activations are transient, one block at a time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from rlalign.config import GrpoConfig, TrainConfig
from rlalign.grpo.update import grpo_update, rescore_old_logp
from rlalign.policies.next_scale.conditioning import ClassConditioner
from rlalign.policies.next_scale.model import NextScaleModel
from rlalign.policies.next_scale.policy import NextScalePolicy
from rlalign.policies.next_scale.var_import import build_tokenizer, build_transformer, validate_var_config
from rlalign.policies.precision import with_precision
from rlalign.utils.files import write_json_atomic
from rlalign.utils.seeding import grouped_generators
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info

ROOT = Path(__file__).resolve().parents[1]
QUICK_ARCHITECTURE = {
    "patch_nums": [1, 2, 3, 4, 6], "vocab_size": 64, "z_channels": 8, "vae_ch": 32, "vae_ch_mult": [1, 2],
    "share_quant_resi": 4, "quant_resi": 0.5, "num_classes": 10, "depth": 2, "embed_dim": 64, "num_heads": 2,
    "mlp_ratio": 4.0, "attn_l2_norm": True, "shared_aln": False, "norm_eps": 1e-6, "cfg_scale": 4.0, "image_size": 12,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("next-scale", "infinity"), default="next-scale")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (next-scale), 4 (infinity)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clip", default="ViT-L-14", help="open_clip architecture of the reward (random weights)")
    parser.add_argument("--infinity-scales", type=int, default=None, help="infinity: the first N scales of 1M")
    parser.add_argument("--micro-batch-size", type=int, default=None, help="infinity: samples in the timed update (1)")
    parser.add_argument("--skip-unfit", action="store_true",
                        help="infinity: report rows whose estimated memory exceeds the free memory as skipped")
    parser.add_argument("--quick", action="store_true", help="tiny model (and the built-in Shapes CLIP), 1 repeat")
    parser.add_argument("--out", default=None, help="default outputs/bench/device.json (device_infinity.json)")
    args = parser.parse_args(argv)
    infinity = args.family == "infinity"
    args.out = args.out or f"outputs/bench/device{'_infinity' if infinity else ''}.json"
    args.batch_size = args.batch_size or (4 if infinity else 32)
    if args.quick:
        args.batch_size, args.repeats, args.clip = (2 if infinity else 4), 1, "shapes-clip"
    args.micro_batch_size = args.micro_batch_size or (2 if args.quick else 1)
    if infinity and not 1 <= args.micro_batch_size <= args.batch_size:
        parser.error(f"--micro-batch-size must be 1..{args.batch_size} (the rollout batch)")
    return args


def var_policy(architecture: dict, device: str) -> NextScalePolicy:
    """A next-scale policy with VAR's architecture and random weights, sampled as VAR's demo samples."""
    config = validate_var_config(architecture)
    torch.manual_seed(0)
    tokenizer, transformer = build_tokenizer(config), build_transformer(config)
    tokenizer.eval().requires_grad_(False)
    model = NextScaleModel(tokenizer, transformer.eval(), ClassConditioner(transformer), {"var": config}).to(device)
    return NextScalePolicy(model, cfg_scale=config["cfg_scale"], top_k=900, top_p=0.95, lora_rank=16, lora_alpha=32)


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up, synchronising the device."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_memory_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def bench_policy(policy: NextScalePolicy, args: argparse.Namespace) -> list[dict]:
    prompts = [i % policy.transformer.num_classes for i in range(args.batch_size)]
    rows = []
    for precision in ("fp32", "bf16"):
        for m in sorted({min(4, policy.num_steps - 1), policy.num_steps}):  # VAR-d16: 4 and 10
            rows.append(bench_one(with_precision(policy, precision), precision, m, prompts, args))
            row = rows[-1]
            print(f"  {precision} m = {m}: {row['rollout_images_per_s']:.2f} images/s, update {row['update_s']:.3f} s, "
                  f"on-policy {row['on_policy_gap']:.1e}", flush=True)
    return rows


def bench_one(policy, precision: str, m: int, prompts: list, args: argparse.Namespace) -> dict:
    """One (precision, m) row: rollout rate, update time and peak memory, on-policy gap."""
    batch = len(prompts)

    def rollout(group_ids=None):
        return policy.rollout(prompts, m, generator=grouped_generators(0, "bench", m, 1, batch), group_ids=group_ids)

    seconds = timed(rollout, args.repeats, args.device)
    sample = rollout(torch.arange(batch) // 8)
    rescore_gap = rescore_old_logp(policy, sample, batch)  # as the trainer does for bf16
    on_policy = max(float(((new.detach().cpu() - old).abs() * mask).max()) for new, old, mask
                    in zip(policy.log_prob(sample), sample.old_logp, sample.action_mask))
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    advantages_B = torch.randn(batch, generator=torch.Generator().manual_seed(m))
    grpo, train = GrpoConfig(group_size=8, beta=0.02), TrainConfig(micro_batch_size=batch)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    update_s = timed(lambda: grpo_update(policy, optimizer, scheduler, sample, advantages_B, grpo, train),
                     args.repeats, args.device)
    return {"precision": precision, "m": m, "T": policy.num_steps, "rollout_images_per_s": batch / seconds,
            "update_s": update_s, "update_peak_gb": peak_memory_gb(args.device), "on_policy_gap": on_policy,
            "rescore_gap": rescore_gap}


def count_syncs(fn) -> int:
    """Host-device synchronisations fn() caused, as CUDA's sync debug mode reports them (0 without CUDA)."""
    if not torch.cuda.is_available():
        fn()
        return 0
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def bench_syncs(policy: NextScalePolicy, batch: int) -> dict[str, int]:
    """Syncs in the sampling loop alone (`_sample`) and in a whole rollout (loop, re-scoring, host copies)."""
    prompts, m = [i % policy.transformer.num_classes for i in range(batch)], min(4, policy.num_steps - 1)

    def generators():
        return grouped_generators(1, "bench", m, 1, batch)

    with torch.no_grad():
        loop = count_syncs(lambda: policy._sample(prompts, m, generators(), dict(policy.sampling)))
    whole = count_syncs(lambda: policy.rollout(prompts, m, generator=generators()))
    return {"m": m, "sampling_loop_syncs": loop, "rollout_syncs": whole}


def bench_reward(args: argparse.Namespace, images_B3HW: torch.Tensor) -> dict:
    from rlalign.rewards.clip import ClipScore

    with tempfile.TemporaryDirectory() as folder:
        if args.clip == "shapes-clip":
            reward = ClipScore(device=args.device)
        else:
            import open_clip

            torch.manual_seed(0)
            model = open_clip.create_model(args.clip)  # no `pretrained`: random weights, nothing downloaded
            path = Path(folder) / "clip-random.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            del model
            reward = ClipScore(architecture=args.clip, weights=str(path), device=args.device, batch_size=32)
        prompts = ["a photo of a goldfish."] * images_B3HW.shape[0]
        seconds = timed(lambda: reward(prompts, images_B3HW), args.repeats, args.device)
    return {"reward": f"clip_score {args.clip}", "images": images_B3HW.shape[0], "images_per_s":
            images_B3HW.shape[0] / seconds}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.family == "infinity":
        import bench_device_infinity  # this script's directory is on sys.path when it runs as a script

        return bench_device_infinity.main(args, timed, peak_memory_gb)
    if args.quick:
        architecture = QUICK_ARCHITECTURE
    else:
        architecture = yaml.safe_load((ROOT / "configs" / "var_d16.yaml").read_text())["policy"]["architecture"]
    policy = var_policy(architecture, args.device)
    parameters = sum(p.numel() for p in policy.transformer.parameters())
    print(f"[bench_device] {args.device}: transformer {parameters / 1e6:.1f} M parameters, {policy.num_steps} "
          f"scales, batch {args.batch_size}", flush=True)
    rows = bench_policy(policy, args)
    syncs = bench_syncs(policy, args.batch_size)
    classes = [i % policy.transformer.num_classes for i in range(32)]
    images = policy.rollout(classes, "all", generator=torch.Generator().manual_seed(0)).outputs
    reward = bench_reward(args, images.to(args.device))
    print(records_table(rows, ["precision", "m", "T", "rollout_images_per_s", "update_s", "update_peak_gb",
                               "on_policy_gap"]))
    print(f"reward: {reward['reward']} {reward['images_per_s']:.1f} images/s")
    print(f"host-device syncs (m = {syncs['m']}, fp32): {syncs['sampling_loop_syncs']} in the sampling loop, "
          f"{syncs['rollout_syncs']} in a whole rollout")
    report = {"machine": machine_info(), "device": args.device, "quick": args.quick, "batch_size": args.batch_size,
              "repeats": args.repeats, "transformer_parameters": parameters, "architecture": architecture,
              "rows": rows, "reward": reward, "syncs": syncs,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}
    print(f"wrote {write_json_atomic(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
