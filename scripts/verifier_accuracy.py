"""Measure the `shapes_eval` verifier on ground truth it must accept and pairs it must reject.

Prints a table and writes JSON (default: outputs/verifier_accuracy.json). Cases, each over
`--samples` scenes drawn from every colour-shape pair (split `all`):
  true renders                 image of the scene, its own prompt              (want ≥ 0.99 exact)
  other prompt                 image of the scene, another scene's prompt      (want ≤ 0.05 exact)
  noise σ                      true render + Gaussian noise σ, clamped to [0,1] (want ≥ 0.95 exact)
  true caption                 the scene's prompt as a caption of the scene    (want ≥ 0.99 exact)
  other caption                another scene's prompt as the caption           (want ≤ 0.05 exact)

    python scripts/verifier_accuracy.py --samples 2000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rewards.shapes_eval import verify_caption, verify_image
from rlalign.shapes import render_batch, sample_scenes


def _other_indices(prompts: list[str], rng: np.random.Generator) -> list[int]:
    others = []
    for index, prompt in enumerate(prompts):
        other = index
        while prompts[other] == prompt:
            other = int(rng.integers(len(prompts)))
        others.append(other)
    return others


def measure(samples: int, seed: int, noise_std: float) -> dict[str, dict[str, float]]:
    scenes = sample_scenes("all", samples, seed)
    prompts = [scene.prompt for scene in scenes]
    images = render_batch(scenes)
    noisy = (images + noise_std * torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
    others = _other_indices(prompts, np.random.default_rng(seed))
    cases = {
        "true renders": lambda i: verify_image(prompts[i], images[i]),
        "other prompt": lambda i: verify_image(prompts[others[i]], images[i]),
        f"noise σ={noise_std}": lambda i: verify_image(prompts[i], noisy[i]),
        "true caption": lambda i: verify_caption(prompts[i], scenes[i]),
        "other caption": lambda i: verify_caption(prompts[others[i]], scenes[i]),
    }
    results = {}
    for name, judge in cases.items():
        start = time.perf_counter()
        verdicts = [judge(i) for i in tqdm(range(samples), desc=name, leave=False, disable=None)]
        results[name] = {
            "samples": samples,
            "exact_match": float(np.mean([v.exact for v in verdicts])),
            "mean_score": float(np.mean([v.score for v in verdicts])),
            "ms_per_sample": 1000 * (time.perf_counter() - start) / samples,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-std", type=float, default=0.05)
    parser.add_argument("--out", default="outputs/verifier_accuracy.json")
    args = parser.parse_args()
    results = measure(args.samples, args.seed, args.noise_std)
    print(f"{'case':<16} {'samples':>7} {'exact match':>12} {'mean score':>11} {'ms/sample':>10}")
    for name, row in results.items():
        print(f"{name:<16} {row['samples']:>7} {row['exact_match']:>12.4f} {row['mean_score']:>11.4f} {row['ms_per_sample']:>10.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seed": args.seed, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
