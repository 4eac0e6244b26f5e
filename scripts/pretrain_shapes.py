"""Pretrain the built-in Shapes next-scale generator (docs/shapes.md): `builtin:shapes-nextscale`.

Stage 1 trains VAR's multi-scale residual VQ tokenizer on renders of every kind of scene (a
tokenizer is generic, as VAR's VQVAE is); stage 2 freezes it, tokenizes many `train` scenes of the
six GenEval categories and trains the text encoder + next-scale transformer with teacher-forced
cross-entropy (10 % condition dropout, for classifier-free guidance). The scenes are true to their
prompts, but the captions they are paired with are noisy the way web alt-text is (counts,
relations, colour bindings and colour words misstated with fixed probabilities,
rlalign/shapes/web_captions.py), which gives the base a real base model's profile. The generator
never sees a held-out colour–shape pair, in images or captions. At the end, samples from a
KV-cached CFG sampler are judged by the `shapes_eval` verifier on the fixed per-category evaluation
lists of both splits (evaluation only).

Deterministic on CPU (fixed seeds, step counts rather than time budgets, 2 threads):

    python scripts/pretrain_shapes.py              # ~55 min on 2 cores → rlalign/assets/shapes-nextscale.*
    python scripts/pretrain_shapes.py --quick --out /tmp/smoke.safetensors   # < 1 min smoke run

`--layout-weight W` adds a probe to stage 1 that makes the 1×1 and 2×2 codes carry the scene's
layout (rlalign/shapes/layout.py; the layout generator of docs/next_scale.md). `--tokenizer-only`
stops after stage 1, and `--tokenizer-from` starts stage 2 from such a file. The report gives
`layout_readout`: how much the coarse code ids tell about fresh scenes.

Writes the weights (fp16 safetensors with the architecture) and a JSON report next to them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from rlalign.assets import ASSETS_DIR
from rlalign.evaluation.geneval import generate, task_report
from rlalign.policies.next_scale.model import NextScaleModel, build_model, load_model, save_model
from rlalign.policies.next_scale.policy import NextScalePolicy
from rlalign.policies.next_scale.pretraining import (
    DeadCodeReviver,
    adamw_param_groups,
    coarse_queries,
    pretokenize,
    teacher_forced_loss,
    tokenizer_loss,
    warmup_cosine,
)
from rlalign.shapes import (
    GRAMMAR_WORDS,
    Scene,
    eval_prompts,
    render_batch,
    sample_category_scenes,
)
from rlalign.shapes.layout import LayoutProbe, layout_targets
from rlalign.shapes.verify import verify_image
from rlalign.shapes.web_captions import CaptionNoise, noisy_caption
from rlalign.tasks.shapes import TASK as SHAPES_TASK
from rlalign.utils.timing import Clock, format_metrics

DEFAULT_OUT = ASSETS_DIR / "shapes-nextscale.safetensors"
PROMPT_WORDS = [word for word in GRAMMAR_WORDS if word != "centre"]  # the shipped model's vocabulary order
# (cfg, top_k, temperature) settings judged at the end; the best on the train prompts is recommended.
SAMPLING_SETTINGS = ((0.0, 0, 1.0), (1.0, 0, 1.0), (2.0, 0, 1.0))
# Seed offsets of the independent data streams, so no two of them ever draw the same scenes.
TOKENIZER_DATA, TRANSFORMER_DATA, VALIDATION_DATA, RECON_EVAL_DATA, CAPTION_NOISE, LAYOUT_READOUT_DATA = 1, 2, 3, 4, 5, 6
TOKENIZER_WEIGHTS = {"single_object": 1, "two_object": 1, "counting": 2, "colors": 1, "position": 1, "color_attr": 1}
"""Stage-1 category mix: crowded (counting) scenes weigh double, their small objects are the hardest to keep."""
PRETRAIN_WEIGHTS = {"single_object": 1, "two_object": 1, "counting": 1.5, "colors": 1, "position": 1.5,
                    "color_attr": 1.5}
"""Stage-2 category mix of the `train` split: the categories with more prompts get more scenes."""


def shapes_architecture(depth: int = 4, embed_dim: int = 128, pooling: str = "flatten") -> dict:
    """The generator's sizes: ~0.8M tokenizer, ~1.3M transformer (depth 4, width 128), ~0.7M text encoder.

    The text encoder pools by `flatten` (word order kept), not `mean`: with mean pooling the first
    built-in generator could not bind colours to shapes nor order a relation (docs/next_scale.md).
    """
    return {
        "tokenizer": {"vocab_size": 256, "latent_channels": 16, "patch_nums": [1, 2, 3, 4, 6, 8], "ch": 32,
                      "ch_mult": [1, 1, 2], "num_res_blocks": 1},
        "transformer": {"depth": depth, "embed_dim": embed_dim, "num_heads": embed_dim // 32, "attn_l2_norm": True},
        "text_encoder": {"vocabulary": PROMPT_WORDS, "width": 128, "depth": 2,
                         "num_heads": 4, "max_words": 16, "pooling": pooling},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"weights path (default {DEFAULT_OUT}; with --quick, outputs/shapes-nextscale-quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it)")
    parser.add_argument("--device", default="cpu", help="torch device; the shipped asset is trained on cpu")
    parser.add_argument("--depth", type=int, default=4, help="transformer blocks")
    parser.add_argument("--embed-dim", type=int, default=128, help="transformer width (heads = width / 32)")
    parser.add_argument("--pooling", choices=("flatten", "mean"), default="flatten", help="text encoder pooling")
    parser.add_argument("--tokenizer-from", type=Path, default=None,
                        help="skip stage 1: copy the tokenizer of this next-scale checkpoint (same tokenizer sizes)")
    parser.add_argument("--tokenizer-steps", type=int, default=1500)
    parser.add_argument("--tokenizer-batch", type=int, default=32)
    parser.add_argument("--tokenizer-lr", type=float, default=3e-3)
    parser.add_argument("--layout-weight", type=float, default=0.0,
                        help="weight of the layout probe on the 1x1 and 2x2 queries (rlalign/shapes/layout.py); "
                             "0 trains a pure reconstruction tokenizer")
    parser.add_argument("--layout-targets", choices=("shapes-and-colours", "shapes"), default="shapes-and-colours",
                        help="what the probe asks of the coarse codes: shapes and colours, or shapes only")
    parser.add_argument("--transformer-steps", type=int, default=3400)
    parser.add_argument("--transformer-batch", type=int, default=64)
    parser.add_argument("--transformer-lr", type=float, default=2e-3)
    parser.add_argument("--dataset-size", type=int, default=80000, help="train scenes tokenized for stage 2")
    parser.add_argument("--count-noise", type=float, default=0.75, help="P(a counting caption's number is redrawn)")
    parser.add_argument("--relation-noise", type=float, default=0.75, help="P(a relation caption's direction is redrawn)")
    parser.add_argument("--binding-noise", type=float, default=0.35, help="P(two colour words are swapped)")
    parser.add_argument("--colour-noise", type=float, default=0.0, help="P(a colour word is redrawn)")
    parser.add_argument("--cond-dropout", type=float, default=0.1)
    parser.add_argument("--eval-repeats", type=int, default=8,
                        help="samples per evaluation prompt (147 prompts per split: 24-27 per category)")
    parser.add_argument("--tokenizer-only", action="store_true",
                        help="stop after stage 1 (weights with an untrained transformer, for --tokenizer-from)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 minute), not a usable model")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokenizer_steps, args.transformer_steps, args.dataset_size, args.eval_repeats = 8, 8, 128, 1
        args.tokenizer_batch, args.transformer_batch = 8, 8
    if args.out is None:
        args.out = Path("outputs/shapes-nextscale-quick.safetensors") if args.quick else DEFAULT_OUT
    return args


def train_tokenizer(model: NextScaleModel, args: argparse.Namespace, clock: Clock) -> dict:
    """Stage 1: reconstruction + VQ losses on fresh `train` renders every step."""
    tokenizer = model.tokenizer.requires_grad_(True).train()
    probe = LayoutProbe(tokenizer.latent_channels, colours=args.layout_targets != "shapes").to(args.device)
    optimizer = torch.optim.AdamW([*tokenizer.parameters(), *probe.parameters()], lr=args.tokenizer_lr,
                                  betas=(0.9, 0.95), weight_decay=0.0)
    reviver = DeadCodeReviver(tokenizer.quantize)
    generator = torch.Generator().manual_seed(args.seed)
    warmup = max(1, min(100, args.tokenizer_steps // 10))
    scene_rng = np.random.default_rng([args.seed, TOKENIZER_DATA])
    recent: list[dict[str, float]] = []
    for step in range(args.tokenizer_steps):
        for group in optimizer.param_groups:
            group["lr"] = args.tokenizer_lr * warmup_cosine(step, args.tokenizer_steps, warmup)
        scenes = sample_category_scenes("all", args.tokenizer_batch, int(scene_rng.integers(2**31)) * 1000 + TOKENIZER_DATA,
                                        TOKENIZER_WEIGHTS)
        images_B3HW = render_batch(scenes)
        images_B3HW = images_B3HW.to(args.device)

        def layout_loss(f_BCHW: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            # Called only when --layout-weight > 0, so a plain tokenizer builds no targets.
            targets = {key: value.to(args.device) for key, value in layout_targets(scenes).items()}
            query1_BC11, query2_BC22 = coarse_queries(tokenizer, f_BCHW, 2)
            return probe(query1_BC11, query2_BC22, targets)

        loss, metrics, code_hits_V, queries_NC = tokenizer_loss(tokenizer, images_B3HW, auxiliary=layout_loss,
                                                                auxiliary_weight=args.layout_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), 1.0)
        optimizer.step()
        reviver.observe(code_hits_V)
        # Revive every 100 steps (and at step 0, which initialises the codebook from data); never at
        # the very end, so the decoder has adapted to every code it will meet.
        revived = reviver.revive(queries_NC, generator) if step % 100 == 0 and step < 0.9 * args.tokenizer_steps else 0
        recent = (recent + [metrics])[-50:]
        if step % 100 == 0 or step == args.tokenizer_steps - 1:
            clock.log(f"tokenizer step {step}/{args.tokenizer_steps} " + format_metrics(metrics) + f" revived {revived}")
    tokenizer.requires_grad_(False).eval()
    return {key: float(np.mean([m[key] for m in recent])) for key in recent[-1]}


@torch.no_grad()
def reconstruction_exact(model: NextScaleModel, split: str, count: int, seed: int) -> dict[str, float]:
    """Verifier exact match of decode(encode(render)) per category: the ceiling of what the
    generator can reach."""
    scenes = sample_category_scenes(split, count, seed=seed * 1000 + RECON_EVAL_DATA)
    images_B3HW = render_batch(scenes).to(next(model.parameters()).device)
    recon_B3HW = model.tokenizer.decode(model.tokenizer.encode(images_B3HW)).cpu()
    by_category: dict[str, list[bool]] = {}
    for i, scene in enumerate(scenes):
        by_category.setdefault(scene.spec.category, []).append(verify_image(scene.prompt, recon_B3HW[i]).exact)
    return {category: float(np.mean(hits)) for category, hits in sorted(by_category.items())}


@torch.no_grad()
def layout_readout(model: NextScaleModel, count: int, seed: int) -> dict[str, dict[str, float]]:
    """How much the code ids of the 1×1 and 2×2 scales tell about the scene (rlalign/shapes/layout.py).

    Each code is read as the most frequent target value among the first half of `count` fresh scenes
    that chose it; the accuracy of that reading on the second half is reported next to chance (always
    guessing the most frequent value). Facts: the object count and the shapes per half from the 1×1
    code; the shapes of each quadrant from that quadrant's 2×2 code.
    """
    scenes = sample_category_scenes("all", count, seed=seed * 1000 + LAYOUT_READOUT_DATA, weights=TOKENIZER_WEIGHTS)
    tokens = model.tokenizer.encode(render_batch(scenes).to(next(model.parameters()).device))
    targets = layout_targets(scenes)
    bits = 2 ** torch.arange(targets["halves_shapes"].shape[1])
    facts = {  # (code ids [N], fact values [N])
        "count | 1x1 code": (tokens[0][:, 0], targets["count"]),
        "shapes per half | 1x1 code": (tokens[0][:, 0], (targets["halves_shapes"].long() * bits).sum(1)),
        "quadrant shapes | 2x2 code": (tokens[1].reshape(-1),
                                       (targets["quadrant_shapes"].long() * bits[:3]).sum(2).reshape(-1)),
    }
    report = {}
    for name, (codes_N, values_N) in facts.items():
        codes_N, values_N = codes_N.cpu().numpy(), values_N.cpu().numpy()
        half = len(codes_N) // 2
        reading: dict[int, int] = {}
        for code in np.unique(codes_N[:half]):
            reading[int(code)] = int(np.bincount(values_N[:half][codes_N[:half] == code]).argmax())
        fallback = int(np.bincount(values_N[:half]).argmax())
        guesses = np.array([reading.get(int(code), fallback) for code in codes_N[half:]])
        report[name] = {"accuracy": float(np.mean(guesses == values_N[half:])),
                        "chance": float(np.mean(values_N[half:] == fallback)),
                        "codes_used": int(len(np.unique(codes_N)))}
    return report


def caption_noise(args: argparse.Namespace) -> CaptionNoise:
    return CaptionNoise(count=args.count_noise, relation=args.relation_noise, binding=args.binding_noise,
                        colour=args.colour_noise)


def token_dataset(model: NextScaleModel, scenes: list[Scene], noise: CaptionNoise,
                  seed: int) -> tuple[list[str], torch.Tensor]:
    """Noisy captions and frozen-tokenizer token ids [N, L] of scenes (rendered in chunks to bound memory)."""
    device = next(model.parameters()).device
    token_chunks = [pretokenize(model.tokenizer, render_batch(scenes[start:start + 4096]).to(device))
                    for start in range(0, len(scenes), 4096)]
    rng = np.random.default_rng([seed, CAPTION_NOISE])
    return [noisy_caption(scene, noise, rng) for scene in scenes], torch.cat(token_chunks)


def train_transformer(model: NextScaleModel, args: argparse.Namespace, clock: Clock) -> dict:
    """Stage 2: teacher-forced cross-entropy over all L tokens with condition dropout."""
    noise = caption_noise(args)
    prompts, tokens_NL = token_dataset(
        model, sample_category_scenes("train", args.dataset_size, args.seed * 1000 + TRANSFORMER_DATA,
                                      PRETRAIN_WEIGHTS), noise, args.seed * 1000 + TRANSFORMER_DATA)
    val_prompts, val_tokens_NL = token_dataset(  # unseen scenes of the same (noisy) distribution
        model, sample_category_scenes("train", min(1024, args.dataset_size), args.seed * 1000 + VALIDATION_DATA,
                                      PRETRAIN_WEIGHTS), noise, args.seed * 1000 + VALIDATION_DATA)
    clock.log(f"tokenized {tokens_NL.shape[0]} train scenes (+{val_tokens_NL.shape[0]} for validation)")
    parameters = [p for name, p in model.named_parameters() if not name.startswith("tokenizer.")]
    optimizer = torch.optim.AdamW(adamw_param_groups(model, weight_decay=0.05), lr=args.transformer_lr,
                                  betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(args.seed)
    warmup = max(1, min(100, args.transformer_steps // 10))
    model.transformer.train()
    model.conditioner.train()
    recent: list[dict[str, float]] = []
    for step in range(args.transformer_steps):
        for group in optimizer.param_groups:
            group["lr"] = args.transformer_lr * warmup_cosine(step, args.transformer_steps, warmup)
        batch_B = torch.randint(tokens_NL.shape[0], (args.transformer_batch,), generator=generator)
        tokens_BL = tokens_NL[batch_B.to(tokens_NL.device)]
        loss, metrics = teacher_forced_loss(model, [prompts[i] for i in batch_B], tokens_BL,
                                            drop_prob=args.cond_dropout, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        recent = (recent + [metrics])[-50:]
        if step % 100 == 0 or step == args.transformer_steps - 1:
            clock.log(f"transformer step {step}/{args.transformer_steps} " + format_metrics(metrics))
    model.eval()
    final = {key: float(np.mean([m[key] for m in recent])) for key in recent[-1]}
    with torch.no_grad():  # validation: unseen train-split scenes, no condition dropout
        _, val_metrics = teacher_forced_loss(model, val_prompts, val_tokens_NL, drop_prob=0.0, generator=generator)
    final.update({f"val_{key}": value for key, value in val_metrics.items()})
    return final


def evaluate_sampling(path: Path, args: argparse.Namespace, clock: Clock) -> tuple[list[dict], dict]:
    """Judge every sampling setting on both splits' evaluation prompts; recommend the best on `train`.

    Samples come from the saved (fp16) checkpoint through NextScalePolicy, i.e. exactly what users
    and the trainer get, with per-sample seeds (rlalign.evaluation.geneval.generate).
    """
    policy = NextScalePolicy(load_model(path).to(args.device))
    settings = SAMPLING_SETTINGS[:1] if args.quick else SAMPLING_SETTINGS
    results = []
    for cfg, top_k, temperature in settings:
        policy.sampling.update(cfg_scale=cfg, top_k=top_k, temperature=temperature)
        row: dict = {"cfg": cfg, "top_k": top_k, "temperature": temperature}
        for split in ("train", "heldout"):
            images, prompts = generate(policy, eval_prompts(split), samples_per_prompt=args.eval_repeats,
                                       seed=args.seed, batch_size=128)
            row[split] = task_report(SHAPES_TASK, prompts, images.cpu())
        results.append(row)
        clock.log(f"sampling cfg={cfg} top_k={top_k} T={temperature}: " + "; ".join(
            f"{split} " + " ".join(f"{group} {r['exact']:.3f}" for group, r in row[split].items())
            for split in ("train", "heldout")))
    best = max(results, key=lambda r: (r["train"]["overall"]["exact"], r["heldout"]["overall"]["exact"]))
    recommended = {"cfg_scale": best["cfg"], "top_k": best["top_k"], "top_p": 1.0, "temperature": best["temperature"]}
    return results, recommended


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clock = Clock()
    model = build_model(shapes_architecture(args.depth, args.embed_dim, args.pooling)).to(args.device)
    sizes = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("tokenizer", "transformer", "conditioner")}
    clock.log(f"parameters: {sizes}")
    if args.tokenizer_from is not None:  # stage 1 reused: the tokenizer does not depend on stage 2
        source = load_model(args.tokenizer_from)
        if source.architecture["tokenizer"] != model.architecture["tokenizer"]:
            raise SystemExit(f"--tokenizer-from {args.tokenizer_from}: its tokenizer sizes "
                             f"{source.architecture['tokenizer']} differ from {model.architecture['tokenizer']}")
        model.tokenizer.load_state_dict(source.tokenizer.state_dict())
        tokenizer_final = {"copied_from": str(args.tokenizer_from)}
        clock.log(f"tokenizer copied from {args.tokenizer_from} (stage 1 skipped)")
    else:
        tokenizer_final = train_tokenizer(model, args, clock)
    tokenizer_minutes = clock() / 60
    recon_count = 64 if args.quick else 512
    recon = {split: reconstruction_exact(model, split, recon_count, args.seed) for split in ("train", "heldout")}
    clock.log(f"tokenizer reconstruction exact match: {recon}")
    readout = layout_readout(model, 256 if args.quick else 8192, args.seed)
    clock.log(f"layout read from the coarse codes: {readout}")
    if args.tokenizer_only:
        path = save_model(model, args.out)
        path.with_suffix(".json").write_text(json.dumps(
            {"command": " ".join(["python scripts/pretrain_shapes.py", *(sys.argv[1:] if argv is None else argv)]),
             "tokenizer_only": True, "final_losses": {"tokenizer": tokenizer_final},
             "tokenizer_reconstruction_exact": recon, "layout_readout": readout}, indent=2) + "\n")
        return {"tokenizer_reconstruction_exact": recon, "layout_readout": readout}
    stage2_start = clock()
    transformer_final = train_transformer(model, args, clock)
    transformer_minutes = (clock() - stage2_start) / 60
    path = save_model(model, args.out)
    sampling, recommended = evaluate_sampling(path, args, clock)
    report = {
        "command": " ".join(["python scripts/pretrain_shapes.py", *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed, "threads": args.threads, "torch": torch.__version__,
        "hyperparameters": {key: str(value) if isinstance(value, Path) else value
                            for key, value in vars(args).items() if key not in ("out",)},
        "architecture": model.architecture, "parameters": sizes,
        "minutes": {"tokenizer": tokenizer_minutes, "transformer": transformer_minutes, "total": clock() / 60},
        "final_losses": {"tokenizer": tokenizer_final, "transformer": transformer_final},
        "tokenizer_reconstruction_exact": {**recon, "scenes_per_split": recon_count},
        "layout_readout": readout,
        "sampling": sampling, "recommended_sampling": recommended,
        "asset_bytes": path.stat().st_size,
    }
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    clock.log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}; "
              f"recommended sampling {recommended}")
    return report


if __name__ == "__main__":
    main()
