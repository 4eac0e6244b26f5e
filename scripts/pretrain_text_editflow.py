"""Pretrain the built-in text Edit Flow (docs/edit_flow.md, "The built-in Sums task"): `builtin:text-editflow`.

A ModernBERT-config Edit Flow in dllm's format (random init, nothing downloaded) learns the Sums task
(rlalign.sums: "write 12 as a sum of 3 digits" → "\\boxed{5+4+3}", any right answer) from a mask start:
every text begins as BOS + prompt + 7 MASKs, so answers of 2 terms (5 tokens) need deletions, 3 terms
(7 tokens) substitutions only and 4 terms (9 tokens) insertions. The loss is the Edit Flow loss
(rlalign/policies/edit_flow/training.py) on answers drawn uniformly among the right ones, for every
prompt of the task. The directory it writes is exactly what dllm writes (config.json with model_type
editflow-modernbert, model.safetensors, tokenizer files), loaded back through `load_policy(kind:
edit_flow)` and judged by the Sums verifier on both splits at several τ.

Deterministic on CPU (fixed seeds and step counts, 2 threads):

    python scripts/pretrain_text_editflow.py            # → rlalign/assets/text-editflow/ and text-editflow.json
    python scripts/pretrain_text_editflow.py --quick --out /tmp/ef   # < 1 min smoke run
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rlalign import sums
from rlalign.assets import ASSETS_DIR
from rlalign.evaluation.geneval import generate, wilson_interval
from rlalign.policies import load_policy
from rlalign.policies.edit_flow.model import EditFlowModernBertConfig, EditFlowModernBertModel
from rlalign.policies.edit_flow.training import corrupt, edit_flow_loss
from rlalign.policies.next_scale.pretraining import warmup_cosine
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import markdown_table
from rlalign.utils.timing import Clock, format_metrics

DEFAULT_OUT = ASSETS_DIR / "text-editflow"
MASK_LENGTH, MAX_LENGTH = 7, 24
SAMPLER_MAX_LENGTH = 32
"""The sampler's width in the evaluation (and configs/editflow_text.yaml): twice the longest text, so the
length cap never binds."""
EVAL_TAUS = (0.5, 0.25, 0.125, 0.05)
"""τ of the final evaluations (T = 2, 4, 8, 20 steps)."""
TRAIN_DATA, EVAL_DATA = 31, 32  # seed streams, distinct from the other pretraining scripts


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over sums.VOCABULARY; completions decode without spaces ("\\boxed{5+4+3}")."""
    vocab = {token: i for i, token in enumerate(sums.VOCABULARY)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(sums.TOKEN_PATTERN), behavior="isolated")])
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", bos_token="[CLS]", sep_token="[SEP]", eos_token="[SEP]",
                                   mask_token="[MASK]")


def build_model(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast) -> EditFlowModernBertModel:
    config = EditFlowModernBertConfig(
        vocab_size=len(sums.VOCABULARY), hidden_size=args.width, num_hidden_layers=args.depth,
        num_attention_heads=args.width // 32, intermediate_size=2 * args.width, max_position_embeddings=64,
        global_attn_every_n_layers=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        cls_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.eos_token_id, sep_token_id=tokenizer.sep_token_id,
        mask_token_id=tokenizer.mask_token_id, attn_implementation="sdpa")
    torch.manual_seed(args.seed)
    return EditFlowModernBertModel(config)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoint directory (replaced at the end)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it)")
    parser.add_argument("--width", type=int, default=128, help="hidden size (heads = width / 32)")
    parser.add_argument("--depth", type=int, default=4, help="ModernBERT layers")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=8, help="samples per prompt in the final evaluation")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 minute), not a usable model")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.width, args.depth, args.eval_samples = 30, 32, 1, 1
    return args


def train(model: EditFlowModernBertModel, tokenizer: PreTrainedTokenizerFast, args: argparse.Namespace,
          clock: Clock) -> list[dict]:
    rows = sums.prompts("all")
    rng = np.random.default_rng([TRAIN_DATA, args.seed])
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt_ids = {r["prompt"]: [tokenizer.bos_token_id, *encode(r["prompt"])] for r in rows}
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, args.steps, args.steps // 20))
    history, window = [], []
    model.train()
    for step in range(args.steps):
        batch = [rows[i] for i in rng.integers(len(rows), size=args.batch)]
        answers = tokenizer([sums.sample_answer(r["target"], r["terms"], rng) for r in batch],
                            add_special_tokens=False)["input_ids"]
        targets = corrupt([prompt_ids[r["prompt"]] for r in batch], answers, mask_id=tokenizer.mask_token_id,
                          mask_length=MASK_LENGTH, width=MAX_LENGTH, vocab_size=len(sums.VOCABULARY),
                          t_B=rng.random(args.batch), rng=rng)
        mask_BW = (torch.arange(MAX_LENGTH) < targets.lengths_B[:, None]).long()
        losses = edit_flow_loss(model(input_ids=targets.tokens_BW, attention_mask=mask_BW), targets)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        window.append({k: float(v.detach()) for k, v in losses.items()})
        if (step + 1) % max(1, args.steps // 20) == 0 or step + 1 == args.steps:
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            history.append({"step": step + 1, **mean})
            clock.log(f"step {step + 1:5d}/{args.steps}  {format_metrics(mean)}")
            window = []
    model.eval()
    return history


def save(model: EditFlowModernBertModel, tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """Write the dllm-format directory next to `out`, then swap it in, so a failed run leaves `out` intact."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def evaluate(out: Path, args: argparse.Namespace, clock: Clock) -> list[dict]:
    """The saved checkpoint as users load it, judged on both splits at every τ of EVAL_TAUS."""
    results = []
    for tau in EVAL_TAUS:
        policy = load_policy({"kind": "edit_flow", "checkpoint": str(out),
                              "edit_flow": {"tau": tau, "mask_length": MASK_LENGTH,
                                            "max_length": SAMPLER_MAX_LENGTH}})
        for split in ("train", "heldout"):
            rows = sums.prompts(split)
            texts, repeated = generate(policy, rows, samples_per_prompt=args.eval_samples,
                                       seed=EVAL_DATA * 1000 + args.seed, batch_size=256)
            verdicts = [sums.verify(text, r["target"], r["terms"]) for text, r in zip(texts, repeated)]
            exact = sum(v.exact for v in verdicts)
            low, high = wilson_interval(exact, len(verdicts))
            results.append({"tau": tau, "steps": policy.num_steps, "split": split, "exact": exact / len(verdicts),
                            "exact_ci95": [low, high], "score": float(np.mean([v.score for v in verdicts])),
                            "samples": len(verdicts), "examples": texts[:3]})
            clock.log(f"τ {tau} ({policy.num_steps} steps) {split}: exact {exact / len(verdicts):.3f} "
                      f"[{low:.3f}, {high:.3f}]  e.g. {texts[:3]}")
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = Clock()
    tokenizer = build_tokenizer()
    model = build_model(args, tokenizer)
    clock.log(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; {args.steps} steps of "
              f"{args.batch} texts")
    history = train(model, tokenizer, args, clock)
    train_minutes = clock() / 60
    save(model, tokenizer, args.out)
    results = evaluate(args.out, args, clock)
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "mask_length": MASK_LENGTH, "train_width": MAX_LENGTH, "max_length": SAMPLER_MAX_LENGTH, "train_minutes": train_minutes,
              "total_minutes": clock() / 60, "history": history, "results": results,
              "torch": torch.__version__}
    write_json_atomic(args.out.with_name(args.out.name + ".json"), report)
    interval = lambda r: "{:.3f} [{:.3f}, {:.3f}]".format(r["exact"], *r["exact_ci95"])
    print(markdown_table(["τ", "T", "split", "exact [95% CI]", "score", "n"],
                         [[r["tau"], r["steps"], r["split"], interval(r), f"{r['score']:.3f}", r["samples"]]
                          for r in results]))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
