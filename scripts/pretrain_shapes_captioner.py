"""Pretrain the built-in Shapes captioner (docs/insertion.md, "The built-in captioner"): `builtin:shapes-captioner`.

An image-conditioned insertion transformer (docs/insertion.md) learns to write the canonical
grammar caption (`scene.prompt`) of 32×32 Shapes renders with the insertion-only Edit Flow loss
(`edit_flow_loss`, κ_t = t), with condition dropout so that classifier-free guidance is possible.
It trains on fresh `train`-split scenes only: no held-out colour–shape pair is ever shown to it,
which is what RL on held-out images later has to fix. At the end the saved fp16 checkpoint is
loaded exactly as users get it (`load_policy(kind: insertion)`, default sampling) and its captions
of fresh `train` and `heldout` images are judged by the `shapes_eval` caption verifier.

Deterministic on CPU (fixed seeds, step counts rather than time budgets, 2 threads):

    python scripts/pretrain_shapes_captioner.py          # ~22 min on 2 cores (estimated) → rlalign/assets/shapes-captioner.*
    python scripts/pretrain_shapes_captioner.py --quick --out /tmp/smoke.safetensors   # < 1 min smoke run

Writes the weights (fp16 safetensors with the architecture) and a JSON report next to them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rlalign.assets import ASSETS_DIR
from rlalign.evaluation.geneval import generate, wilson_interval
from rlalign.policies import load_policy
from rlalign.policies.insertion.loss import corrupt, edit_flow_loss
from rlalign.policies.insertion.model import InsertionTransformer, build_model, save_model, shapes_vocabulary
from rlalign.policies.next_scale.pretraining import warmup_cosine
from rlalign.shapes import Scene, render_batch, sample_scenes, sample_scenes_mixed
from rlalign.shapes.verify import verify_caption
from rlalign.utils.tables import markdown_table
from rlalign.utils.timing import Clock, format_metrics

DEFAULT_OUT = ASSETS_DIR / "shapes-captioner.safetensors"
# Seed streams (seed = 1000·stream + --seed), distinct from pretrain_shapes.py (1..4) and
# train_shapes_rewards.py (11..15), so no two purposes ever draw the same scenes.
CAPTION_DATA, VALIDATION_DATA, EVAL_DATA = 21, 22, 23
EVAL_INSERTION_STEPS = (8, 16)
"""T of the final evaluations: 8 is `policy.insertion.steps`' default (what users get), 16 is finer."""
NO_DECAY_NAMES = ("text_pos", "condition_pos", "null_cond")
"""Kept out of weight decay besides biases and norms: position tables and the learned null condition."""


def captioner_architecture(width: int = 128, depth: int = 4, patch_size: int = 4) -> dict:
    """The captioner's sizes: ~0.8M parameters at width 128, depth 4 (heads = width / 32)."""
    return {"vocabulary": shapes_vocabulary(), "width": width, "depth": depth, "num_heads": width // 32,
            "mlp_ratio": 4.0, "max_len": 24, "condition": "image", "image_size": 32, "patch_size": patch_size}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"weights path (default {DEFAULT_OUT}; with --quick, outputs/shapes-captioner-quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it)")
    parser.add_argument("--device", default="cpu", help="torch device; the shipped asset is trained on cpu")
    parser.add_argument("--width", type=int, default=128, help="transformer width (heads = width / 32)")
    parser.add_argument("--depth", type=int, default=4, help="transformer blocks")
    parser.add_argument("--patch-size", type=int, default=4, help="image patch side (32 / p squared condition tokens)")
    parser.add_argument("--steps", type=int, default=3600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--two-object-share", type=float, default=0.7,
                        help="share of two-object scenes in the training stream (the split itself has 0.5)")
    parser.add_argument("--cond-dropout", type=float, default=0.1, help="share of null-condition rows (for CFG)")
    parser.add_argument("--val-scenes", type=int, default=512, help="fixed scenes per split for the validation loss")
    parser.add_argument("--val-every", type=int, default=600, help="validation loss every this many steps")
    parser.add_argument("--eval-scenes", type=int, default=512, help="fresh scenes per split in the final evaluation")
    parser.add_argument("--eval-samples", type=int, default=1, help="captions sampled per evaluation scene")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 minute), not a usable model")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch, args.val_scenes, args.val_every, args.eval_scenes = 8, 8, 16, 4, 12
    if args.out is None:
        args.out = Path("outputs/shapes-captioner-quick.safetensors") if args.quick else DEFAULT_OUT
    return args


def batch_loss(model: InsertionTransformer, images_B3HW: torch.Tensor, captions: list[str], *, drop_prob: float,
               generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """Edit Flow loss of one batch: t ~ U(0, 1), X_t by `corrupt`, condition dropout with `drop_prob`."""
    targets_BL, lengths_B = model.encode_texts(captions)
    targets_BN = targets_BL[:, : int(lengths_B.max())]  # no all-padding columns
    batch = len(captions)
    t_B = torch.rand(batch, generator=generator)
    corrupted = corrupt(targets_BN, lengths_B, t_B, vocab_size=model.vocab_size, generator=generator)
    drop_B = torch.rand(batch, generator=generator) < drop_prob
    cond_BED, keep_BE = model.condition(images_B3HW, drop_B if drop_prob > 0 else None)
    outputs = model(cond_BED, keep_BE, t_B, corrupted.kept_BN, corrupted.kept_lengths_B)
    loss = edit_flow_loss(outputs, corrupted.bag_counts_BIV, corrupted.kept_lengths_B)
    return loss.loss, {"loss": loss.loss.item(), "token": loss.token.item(), "rate": loss.rate.item(),
                       "zero": loss.zero.item()}


def param_groups(model: InsertionTransformer, weight_decay: float) -> list[dict]:
    """AdamW groups: weight matrices and embeddings decay; biases, norms and NO_DECAY_NAMES do not."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.dim() < 2 or name in NO_DECAY_NAMES else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Validation:
    """A fixed validation loss: fixed scenes per split (natural one/two-object mix), fixed t and
    corruptions (the same generator seed at every call), no condition dropout. Held-out scenes are
    only ever scored here and in the final evaluation, never trained on."""

    def __init__(self, count: int, seed: int, device: str):
        self.sets = {}
        for split in ("train", "heldout"):
            scenes = sample_scenes(split, count, seed=1000 * VALIDATION_DATA + seed)
            self.sets[split] = (render_batch(scenes).to(device), [scene.prompt for scene in scenes])
        self.seed = 1000 * VALIDATION_DATA + seed

    @torch.no_grad()
    def __call__(self, model: InsertionTransformer, chunk: int = 128) -> dict[str, dict[str, float]]:
        was_training = model.training
        model.eval()
        result = {}
        for split, (images_N3HW, captions) in self.sets.items():
            generator = torch.Generator().manual_seed(self.seed)
            parts = []
            for start in range(0, len(captions), chunk):
                _, metrics = batch_loss(model, images_N3HW[start:start + chunk], captions[start:start + chunk],
                                        drop_prob=0.0, generator=generator)
                parts.append((len(captions[start:start + chunk]), metrics))
            total = sum(n for n, _ in parts)  # chunk means weighted by rows (close to per-gap means)
            result[split] = {key: sum(n * m[key] for n, m in parts) / total for key in parts[0][1]}
        model.train(was_training)
        return result


def train(model: InsertionTransformer, args: argparse.Namespace, clock: Clock) -> tuple[dict, list[dict], float | None]:
    """Edit Flow training on a stream of fresh `train` scenes; returns final losses, the validation
    history and the measured seconds per training step."""
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(args.seed)
    scene_rng = np.random.default_rng([args.seed, CAPTION_DATA])
    validation = Validation(args.val_scenes, args.seed, args.device)
    warmup = max(1, min(100, args.steps // 10))
    history: list[dict] = []
    recent: list[dict[str, float]] = []
    model.train()
    step_seconds, timed_from = None, None
    for step in range(args.steps):
        if step == min(10, args.steps // 2):  # time the steady state (the first steps warm up)
            timed_from = (step, time.perf_counter())
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup_cosine(step, args.steps, warmup)
        scenes = sample_scenes_mixed("train", args.batch, 1000 * CAPTION_DATA + int(scene_rng.integers(2**31)),
                                     args.two_object_share)
        loss, metrics = batch_loss(model, render_batch(scenes).to(args.device), [scene.prompt for scene in scenes],
                                   drop_prob=args.cond_dropout, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [metrics])[-50:]
        last = step == args.steps - 1
        if timed_from is not None and step > timed_from[0]:
            step_seconds = (time.perf_counter() - timed_from[1]) / (step - timed_from[0])
        if step % 100 == 0 or last:
            clock.log(f"step {step}/{args.steps} " + format_metrics(_mean(recent)) + f" lr {optimizer.param_groups[0]['lr']:.2e}"
                      + (f" ({1 / step_seconds:.2f} steps/s)" if step_seconds else ""))
        if (step + 1) % args.val_every == 0 or last:
            val = validation(model)
            history.append({"step": step + 1, **val})
            clock.log(f"validation after {step + 1} steps: " + ", ".join(
                f"{split} loss {val[split]['loss']:.4f} (token {val[split]['token']:.4f})" for split in val))
    model.eval()
    return {"train_last50": _mean(recent), "validation": history[-1]}, history, step_seconds


def evaluate(path: Path, args: argparse.Namespace, clock: Clock) -> list[dict]:
    """Caption fresh scenes of both splits with the saved fp16 checkpoint, loaded as users load it
    (`load_policy`, default sampling: cfg_scale 0, temperature 1), and judge them with the verifier.

    Per-sample seeds (rlalign.evaluation.geneval.generate: purpose `eval`), so batch size changes nothing.
    The policy has no trained adapter, so every step is the base model whatever the prefix; m = 1
    gives the very same captions as m = all (same uniforms, same model) but rollout then re-scores
    one step instead of all T (3-4x faster).
    """
    scenes = {split: sample_scenes(split, args.eval_scenes, seed=1000 * EVAL_DATA + args.seed)
              for split in ("train", "heldout")}
    results = []
    for steps in EVAL_INSERTION_STEPS:
        policy = load_policy({"kind": "insertion", "checkpoint": str(path), "device": args.device,
                              "insertion": {"steps": steps}})
        row: dict = {"insertion_steps": steps, "cfg_scale": policy.sampling["cfg_scale"],
                     "temperature": policy.sampling["temperature"], "samples_per_scene": args.eval_samples}
        for split, split_scenes in scenes.items():
            start = time.perf_counter()
            captions, repeated = generate(policy, split_scenes, samples_per_prompt=args.eval_samples, seed=args.seed,
                                          batch_size=128, prefix_steps=1, adapter=False)
            row[split] = caption_report(captions, repeated)
            row[split]["seconds"] = time.perf_counter() - start
            row[split]["examples"] = [{"truth": scene.prompt, "caption": caption}
                                      for scene, caption in list(zip(repeated, captions))[:6]]
        results.append(row)
        clock.log(f"evaluated T={steps}: " + ", ".join(
            f"{split} exact {row[split]['overall']['exact']:.3f}" for split in scenes))
    return results


def caption_report(captions: list[str], scenes: list[Scene]) -> dict:
    """Verifier exact match (95% Wilson interval), mean partial score and parse rate, overall and
    split by the scene's object count."""
    verdicts = [verify_caption(caption, scene) for caption, scene in zip(captions, scenes)]
    parsed = [verdict.checks.get("caption parses", True) for verdict in verdicts]
    report = {}
    for group, keep in (("overall", lambda s: True), ("one_object", lambda s: len(s.spec.objects) == 1),
                        ("two_objects", lambda s: len(s.spec.objects) == 2)):
        rows = [i for i, scene in enumerate(scenes) if keep(scene)]
        if not rows:
            continue
        exact = sum(verdicts[i].exact for i in rows)
        report[group] = {"exact": exact / len(rows), "exact_ci95": list(wilson_interval(exact, len(rows))),
                         "score": sum(verdicts[i].score for i in rows) / len(rows),
                         "parses": sum(parsed[i] for i in rows) / len(rows), "samples": len(rows)}
    return report


def results_table(results: list[dict]) -> str:
    rows = []
    for row in results:
        for split in ("train", "heldout"):
            for group, stats in row[split].items():
                if not isinstance(stats, dict) or "exact" not in stats:
                    continue
                low, high = stats["exact_ci95"]
                rows.append([row["insertion_steps"], split, group, f"{stats['exact']:.3f}", f"[{low:.3f}, {high:.3f}]",
                             f"{stats['score']:.3f}", f"{stats['parses']:.3f}", stats["samples"]])
    return markdown_table(["T", "split", "group", "exact", "95% CI", "score", "parses", "n"], rows, aligned=True)


def _mean(metrics: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([m[key] for m in metrics])) for key in metrics[-1]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clock = Clock()
    model = build_model(captioner_architecture(args.width, args.depth, args.patch_size)).to(args.device)
    parameters = sum(p.numel() for p in model.parameters())
    clock.log(f"parameters: {parameters}")
    final_losses, history, step_seconds = train(model, args, clock)
    train_minutes = clock() / 60
    path = save_model(model, args.out)
    eval_start = clock()
    results = evaluate(path, args, clock)
    print(results_table(results), flush=True)
    report = {
        "command": " ".join(["python scripts/pretrain_shapes_captioner.py", *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed, "threads": args.threads, "torch": torch.__version__,
        "hyperparameters": {key: str(value) if isinstance(value, Path) else value
                            for key, value in vars(args).items() if key not in ("out",)},
        "architecture": model.architecture, "parameters": parameters,
        "minutes": {"training": train_minutes, "evaluation": (clock() - eval_start) / 60, "total": clock() / 60},
        "seconds_per_step": step_seconds,
        "final_losses": final_losses, "validation_history": history,
        "evaluation": results,
        "asset_bytes": path.stat().st_size,
    }
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    clock.log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")
    return report


if __name__ == "__main__":
    main()
