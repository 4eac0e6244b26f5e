"""`shapes_eval`: the Shapes world's verifier (rlalign.shapes.verify) as an eval-only reward in TRL's
convention. It is evaluation ground truth, so the config refuses it as a trained reward."""

from __future__ import annotations

import torch

from rlalign.shapes import Scene
from rlalign.shapes.verify import verify_caption, verify_image


def shapes_eval(prompts: list, completions, scenes: list[Scene] | None = None, metric: str = "score", **_) -> list[float]:
    """TRL-style reward: images are checked against text prompts, captions against `scenes`.

    `metric="score"` gives the fraction of constraints met, `metric="exact"` gives 1.0 or 0.0.
    """
    if metric not in ("score", "exact"):
        raise ValueError(f"shapes_eval metric must be 'score' or 'exact', got {metric!r}")
    if isinstance(completions, torch.Tensor):
        if len(prompts) != completions.shape[0]:
            raise ValueError(f"shapes_eval got {len(prompts)} prompts for {completions.shape[0]} images")
        images = completions.detach().cpu()  # the detector is numpy: one copy for the batch, not one per image
        verdicts = [verify_image(p, img) for p, img in zip(prompts, images)]
    else:
        if scenes is None and all(isinstance(p, Scene) for p in prompts):
            scenes = prompts  # a captioner's prompts are the scenes it describes
        if scenes is None or len(scenes) != len(completions):
            raise ValueError("shapes_eval on captions needs the true scenes: pass scenes=[Scene, ...] (one per caption), "
                             "or give Scene prompts")
        verdicts = [verify_caption(c, s) for c, s in zip(completions, scenes)]
    return [float(v.exact) if metric == "exact" else v.score for v in verdicts]
