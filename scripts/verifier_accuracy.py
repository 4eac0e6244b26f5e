"""Measure the `shapes_eval` verifier on ground truth it must accept and pairs it must reject.

Prints a table per GenEval category and writes JSON (default: outputs/verifier_accuracy.json).
Cases, each over `--samples` scenes of the six categories (split `all`, every colour–shape pair):
  true renders     image of the scene, its own prompt                         (want ≥ 0.99 exact)
  other prompt     image of the scene, another prompt of the same category
                   that the scene does not satisfy (by its exact objects)      (want ≤ 0.05 exact)
  noise σ          true render + Gaussian noise σ, clamped to [0, 1]          (want ≥ 0.95 exact)
  true caption     the scene's prompt as a caption of the scene               (want ≥ 0.99 exact)
  other caption    the other prompt as the caption                            (want ≤ 0.05 exact)

    python scripts/verifier_accuracy.py --samples 2000 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from rlalign.shapes import CATEGORIES, render_batch, sample_category_scenes
from rlalign.shapes.verify import mismatched_prompts, verify_caption, verify_image
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table

TARGETS = {"true renders": (">=", 0.99), "other prompt": ("<=", 0.05), "noise": (">=", 0.95),
           "true caption": (">=", 0.99), "other caption": ("<=", 0.05)}


def measure(samples: int, seed: int, noise_std: float) -> dict:
    scenes = sample_category_scenes("all", samples, seed)
    prompts = [scene.prompt for scene in scenes]
    images = render_batch(scenes)
    noisy = (images + noise_std * torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
    others = mismatched_prompts(scenes, np.random.default_rng(seed))
    cases = {
        "true renders": lambda i: verify_image(prompts[i], images[i]),
        "other prompt": lambda i: verify_image(others[i], images[i]),
        "noise": lambda i: verify_image(prompts[i], noisy[i]),
        "true caption": lambda i: verify_caption(prompts[i], scenes[i]),
        "other caption": lambda i: verify_caption(others[i], scenes[i]),
    }
    categories = [scene.spec.category for scene in scenes]
    rows = []
    for name, judge in cases.items():
        start = time.perf_counter()
        exact = np.array([judge(i).exact for i in tqdm(range(samples), desc=name, leave=False, disable=None)])
        ms = 1000 * (time.perf_counter() - start) / samples
        row = {"case": name if name != "noise" else f"noise σ={noise_std}", "samples": samples, "ms_per_sample": round(ms, 2)}
        for category in CATEGORIES:
            chosen = exact[[c == category for c in categories]]
            row[category] = round(float(chosen.mean()), 4)
        row["overall"] = round(float(np.mean([row[c] for c in CATEGORIES])), 4)
        sign, bound = TARGETS[name]
        worst = min(row[c] for c in CATEGORIES) if sign == ">=" else max(row[c] for c in CATEGORIES)
        row["target"] = f"{sign} {bound}"
        row["met"] = bool(worst >= bound if sign == ">=" else worst <= bound)
        rows.append(row)
    return {"samples_per_category": {c: categories.count(c) for c in CATEGORIES}, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-std", type=float, default=0.05)
    parser.add_argument("--out", default="outputs/verifier_accuracy.json")
    args = parser.parse_args()
    results = measure(args.samples, args.seed, args.noise_std)
    print(records_table(results["rows"], ["case", *CATEGORIES, "overall", "target", "met", "ms_per_sample"]))
    print("scenes per category:", results["samples_per_category"])
    print(f"wrote {write_json_atomic(args.out, {'seed': args.seed, **results})}")


if __name__ == "__main__":
    main()
