"""Train the built-in GenEval-style detector `builtin:shapes-detector` and measure it (docs/rewards.md).

Data: scenes of the six GenEval categories from every split (`all`: every colour–shape pair, so
the detector knows the held-out pairs as GenEval's detector knows every COCO class), 2% empty
canvases, rendered; a share of them redrawn by the generator's tokenizer (encode, decode: the soft
edges and colour shifts of generated images), with Gaussian pixel noise. Labels are the scenes' own
objects. The verifier is never run on training data.

Measured after training (a table each, in the JSON report next to the asset):
  accuracy    on fresh true renders (and their tokenizer redraws) of every category: the detector's
              verdict against the scene's own prompt (the verifier scores 1.000 there, docs/shapes.md)
  agreement   on samples of the base generator for the fixed held-out and train evaluation lists:
              how often the detector's exact verdict equals the verifier's, and each one's exact rate
              (with --adapter: the same on an adapter's samples, where reward hacking shows as a gap)

    python scripts/train_shapes_detector.py                      # ~15 min on 2 cores; writes the asset
    python scripts/train_shapes_detector.py --eval-only --adapter runs/demo/checkpoints/step_000700/adapter \
        --config configs/shapes_nextscale.yaml                   # agreement on an adapter's samples
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rlalign.rewards.shapes_detector import (
    ShapesDetector,
    ShapesDetectorReward,
    detection_loss,
    save_detector,
    targets,
)

from rlalign.assets import ASSETS_DIR
from rlalign.policies.next_scale.model import tokenizer_round_trip
from rlalign.shapes import (
    CANVAS,
    CATEGORIES,
    Scene,
    category_of,
    eval_prompts,
    render_batch,
    sample_category_scenes,
)
from rlalign.shapes.verify import check_objects, verify_image
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info

ASSET = ASSETS_DIR / "shapes-detector.safetensors"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ASSET, help="the detector file (its JSON report goes beside it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scenes", type=int, default=48_000, help="rendered training scenes")
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--redrawn-share", type=float, default=0.5, help="share of scenes redrawn by the tokenizer")
    parser.add_argument("--max-noise", type=float, default=0.06, help="pixel noise σ drawn from U(0, this)")
    parser.add_argument("--eval-scenes", type=int, default=3_000)
    parser.add_argument("--eval-samples", type=int, default=8, help="base samples per evaluation-list entry")
    parser.add_argument("--generator", default="builtin:shapes-nextscale")
    parser.add_argument("--config", default="configs/shapes_nextscale.yaml", help="sampling settings of the samples judged")
    parser.add_argument("--adapter", default=None, help="with --eval-only: judge this adapter's samples too")
    parser.add_argument("--eval-only", action="store_true", help="measure the detector at --out, do not train")
    parser.add_argument("--quick", action="store_true", help="a tiny run for the tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.scenes, args.steps, args.batch, args.eval_scenes, args.eval_samples = 600, 30, 32, 120, 1
    return args


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def training_set(args) -> tuple[list[Scene | None], torch.Tensor]:
    """Scenes (None: an empty canvas) and their images [N, 3, 32, 32]; the first `redrawn_share` of
    them redrawn by the tokenizer."""
    scenes: list[Scene | None] = list(sample_category_scenes("all", args.scenes, seed=args.seed))
    scenes += [None] * max(1, args.scenes // 50)
    order = np.random.default_rng(args.seed).permutation(len(scenes))
    scenes = [scenes[i] for i in order]
    drawn = [i for i, scene in enumerate(scenes) if scene is not None]
    images_N3HW = torch.zeros(len(scenes), 3, CANVAS, CANVAS)
    images_N3HW[drawn] = render_batch([scenes[i] for i in drawn])
    redrawn = int(len(scenes) * args.redrawn_share)
    if redrawn:
        images_N3HW[:redrawn] = tokenizer_round_trip(images_N3HW[:redrawn], args.generator).clamp(0, 1)
    return scenes, images_N3HW


def train(args) -> tuple[ShapesDetector, dict]:
    scenes, images_N3HW = training_set(args)
    target = targets(scenes)
    detector = ShapesDetector(args.width)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / args.steps))))
    rng = torch.Generator().manual_seed(args.seed)
    start, history = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        index_B = torch.randint(len(scenes), (args.batch,), generator=rng)
        sigma_B = torch.rand(args.batch, 1, 1, 1, generator=rng) * args.max_noise
        noisy_B3HW = (images_N3HW[index_B] + sigma_B * torch.randn(images_N3HW[index_B].shape, generator=rng)).clamp(0, 1)
        losses = detection_loss(detector(noisy_B3HW), {k: v[index_B] for k, v in target.items()})
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == args.steps:
            record = {"step": step, **{k: round(float(v.detach()), 4) for k, v in losses.items()},
                      "seconds": round(time.perf_counter() - start, 1)}
            history.append(record)
            print(json.dumps(record), flush=True)
    return detector.eval().requires_grad_(False), {"train_seconds": round(time.perf_counter() - start, 1),
                                                   "history": history, "training_images": len(scenes)}


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def accuracy_rows(reward: ShapesDetectorReward, args) -> list[dict]:
    """Exact rate of the detector's verdict against each scene's own prompt, per category."""
    scenes = sample_category_scenes("all", args.eval_scenes, seed=args.seed + 1)
    clean_N3HW = render_batch(scenes)
    rows = []
    for name, images in (("true renders", clean_N3HW),
                         ("tokenizer redraws", tokenizer_round_trip(clean_N3HW, args.generator).clamp(0, 1))):
        detected = reward.detect(images)
        exact = [check_objects(s.spec, objects).exact for s, objects in zip(scenes, detected)]
        rows.append(per_category({"case": name}, [s.spec.category for s in scenes], exact))
    return rows


def per_category(row: dict, categories: list[str], values: list) -> dict:
    """row + the mean of `values` per category and their mean over the categories (GenEval's overall)."""
    for category in CATEGORIES:
        chosen = [v for v, c in zip(values, categories) if c == category]
        row[category] = round(float(np.mean(chosen)), 3) if chosen else None
    row["overall"] = round(float(np.mean([row[c] for c in CATEGORIES if row[c] is not None])), 3)
    return row


def agreement_rows(reward: ShapesDetectorReward, policy, prefix_steps, label: str, args) -> list[dict]:
    """On the policy's samples of the fixed lists: verifier exact, detector exact, and their agreement."""
    from rlalign.evaluation.geneval import generate

    rows = []
    for split in ("heldout", "train"):
        images, prompts = generate(policy, eval_prompts(split), samples_per_prompt=args.eval_samples, seed=args.seed,
                                  prefix_steps=prefix_steps)
        verifier = [verify_image(p, image).exact for p, image in zip(prompts, images)]
        detector = [v.exact for v in reward.verdicts(prompts, images)]
        agree = [a == b for a, b in zip(verifier, detector)]
        categories = [category_of(p) for p in prompts]
        for name, values in (("verifier exact", verifier), ("detector exact", detector), ("agreement", agree)):
            rows.append(per_category({"samples": f"{label}, {split}", "measure": name}, categories, values))
    return rows


def load_sampling_policy(args):
    from rlalign.config import load_config
    from rlalign.policies import load_policy

    cfg = load_config(args.config, [f"policy.checkpoint={args.generator}"])
    policy = load_policy(cfg.policy)
    if args.adapter:
        policy.load_adapter(args.adapter)
    return policy, cfg.grpo.prefix_steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_all = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    report: dict = {"command": "python scripts/train_shapes_detector.py " + " ".join(argv or sys.argv[1:]),
                    "hyperparameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "machine": machine_info()}
    if not args.eval_only:
        detector, report["training"] = train(args)
        save_detector(detector, args.out, {"seed": args.seed, "steps": args.steps})
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, "
              f"{sum(p.numel() for p in detector.parameters()):,} parameters)")
    reward = ShapesDetectorReward(weights=str(args.out), metric="exact")
    started = time.perf_counter()
    report["accuracy"] = accuracy_rows(reward, args)
    print(records_table(report["accuracy"], list(report["accuracy"][0])))
    policy, prefix_steps = load_sampling_policy(args)
    report["agreement"] = agreement_rows(reward, policy, prefix_steps, "adapter" if args.adapter else "base", args)
    if args.adapter:
        report["adapter"] = args.adapter
        with policy.adapter_disabled():
            report["agreement"] = agreement_rows(reward, policy, prefix_steps, "base", args) + report["agreement"]
    print(records_table(report["agreement"], list(report["agreement"][0])))
    report["eval_seconds"] = round(time.perf_counter() - started, 1)
    report["wall_seconds"] = round(time.perf_counter() - started_all, 1)
    destination = args.out.with_suffix(".json") if not args.eval_only else Path("outputs/detector_agreement.json")
    write_json_atomic(destination, report)
    print(f"wrote {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
