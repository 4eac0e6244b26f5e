"""The Shapes showcase: a labelled grid of scenes and the verifier's report on them.

It shows, in one picture and one table, what the built-in world is: scenes of the six GenEval
categories in the `train` and `heldout` splits with their prompts, and how the `shapes_eval`
verifier judges true renders, noisy renders and renders paired with another scene's prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlalign.shapes.categories import sample_category_scenes
from rlalign.shapes.render import render_batch
from rlalign.shapes.scene import parse_prompt
from rlalign.shapes.splits import HELDOUT_PAIRS
from rlalign.shapes.verify import mismatched_prompts, verify_image
from rlalign.utils.files import write_json_atomic
from rlalign.utils.grids import save_grid


def _judge(prompts: list[str], images: torch.Tensor) -> dict[str, float]:
    verdicts = [verify_image(p, image) for p, image in zip(prompts, images)]
    return {
        "samples": len(verdicts),
        "exact_match": float(np.mean([v.exact for v in verdicts])),
        "mean_score": float(np.mean([v.score for v in verdicts])),
    }


def run_showcase(output_dir: str | Path, *, count: int = 16, seed: int = 0, noise_std: float = 0.05) -> dict:
    """Write showcase.png and report.json under output_dir; return the report."""
    output_dir = Path(output_dir)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    report: dict = {"heldout_pairs": sorted(" ".join(p) for p in HELDOUT_PAIRS), "splits": {}}
    tiles, labels = [], []
    for split in ("train", "heldout"):
        scenes = sample_category_scenes(split, count, seed)
        prompts = [scene.prompt for scene in scenes]
        images = render_batch(scenes)
        noisy = (images + noise_std * torch.randn(images.shape, generator=generator)).clamp(0, 1)
        mismatched = mismatched_prompts(scenes, rng)
        report["splits"][split] = {
            "true_prompt": _judge(prompts, images),
            f"noise_{noise_std}": _judge(prompts, noisy),
            "other_prompt": _judge(mismatched, images),
        }
        for prompt, image in zip(prompts, images):
            verdict = verify_image(prompt, image)
            tiles.append(image)
            category = parse_prompt(prompt).category
            labels.append(f"[{split} {category}] {prompt} ({'ok' if verdict.exact else 'FAIL'})")
    grid_path = save_grid(torch.stack(tiles), labels, output_dir / "showcase.png", columns=8, scale=4)
    report["grid"] = str(grid_path)
    write_json_atomic(output_dir / "report.json", report)
    return report


def format_report(report: dict) -> str:
    """The showcase report as a plain-text table."""
    lines = [
        f"held-out colour-shape pairs: {', '.join(report['heldout_pairs'])}",
        f"{'split':<9} {'case':<16} {'samples':>7} {'exact match':>12} {'mean score':>11}",
    ]
    for split, cases in report["splits"].items():
        for case, row in cases.items():
            lines.append(
                f"{split:<9} {case:<16} {row['samples']:>7} {row['exact_match']:>12.3f} {row['mean_score']:>11.3f}"
            )
    lines.append(f"grid: {report['grid']}")
    return "\n".join(lines)
