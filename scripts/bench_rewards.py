"""Reward benchmark: scoring throughput of the CLIP-based rewards at a fixed batch size.

    python scripts/bench_rewards.py                      # batch 32 → outputs/bench/rewards.json

Rows (each the median of --repeats timed calls after one warm-up call, in images/s, including the
tensor preprocessing and the text encoding of the batch's prompts):
  - clip_score with the built-in shapes-clip (image mode, and caption mode);
  - aesthetic with the built-in shapes-aesthetic (shapes-clip embeddings + LAION-layout MLP);
  - clip_score with open_clip's ViT-B-32 at random weights: the model is created without any
    pretrained weights, its state dict saved to a temporary file and loaded back through the same
    local-file path as a real checkpoint (32×32 renders are upsampled to 224×224, as for real CLIP).
Inputs are renders of the Shapes `heldout` split with their prompts. Load times (building the
reward: model creation, weights, tokenizer) are reported too; importing open_clip is timed apart.
The machine is shared and 2 threads suffer most from other load: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from rlalign.rewards.aesthetic import AestheticScore
from rlalign.rewards.clip import ClipScore
from safetensors.torch import save_file

from rlalign.shapes import render_batch, sample_scenes
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info, median_seconds

COLUMNS = ["reward", "model", "parameters", "batch", "images_per_s", "ms_per_batch", "load_s"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-vit-b-32", action="store_true", help="leave out the 151M-parameter row")
    parser.add_argument("--out", default="outputs/bench/rewards.json")
    return parser.parse_args(argv)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def timed_build(build) -> tuple[object, float]:
    start = time.perf_counter()
    reward = build()
    return reward, time.perf_counter() - start


def row(name: str, model: str, reward, prompts: list, completions, kwargs: dict, load_s: float,
        parameters: int, repeats: int) -> dict:
    batch = len(prompts)
    seconds = median_seconds(lambda: reward(prompts, completions, **kwargs), repeats=repeats, warmup=1)
    return {"reward": name, "model": model, "parameters": parameters, "batch": batch,
            "images_per_s": batch / seconds, "ms_per_batch": 1000 * seconds, "load_s": load_s}


def random_vit_b_32(folder: Path) -> tuple[Path, int]:
    """ViT-B-32 with open_clip's random initialisation, written as a local weights file."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")  # no `pretrained`: nothing is downloaded
    path = folder / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    scenes = sample_scenes("heldout", args.batch_size, seed=2024)
    images_B3HW, prompts = render_batch(scenes), [scene.prompt for scene in scenes]
    rows = []
    _, import_s = timed_build(lambda: __import__("open_clip"))  # paid once per process, kept out of load_s

    clip, load_s = timed_build(lambda: ClipScore())
    parameters = sum(p.numel() for p in clip.clip.model.parameters())
    rows.append(row("clip_score", "builtin:shapes-clip", clip, prompts, images_B3HW, {}, load_s, parameters, args.repeats))
    rows.append(row("clip_score (captions)", "builtin:shapes-clip", clip, [""] * len(prompts), prompts,
                    {"images": images_B3HW}, 0.0, parameters, args.repeats))
    aesthetic, load_s = timed_build(lambda: AestheticScore())
    # What the aesthetic reward runs: CLIP's image tower and the MLP (the text tower stays idle).
    parameters = sum(p.numel() for module in (aesthetic.clip.model.visual, aesthetic.mlp) for p in module.parameters())
    rows.append(row("aesthetic", "builtin:shapes-aesthetic", aesthetic, prompts, images_B3HW, {}, load_s,
                    parameters, args.repeats))
    if not args.skip_vit_b_32:
        with tempfile.TemporaryDirectory() as folder:
            path, parameters = random_vit_b_32(Path(folder))
            vit, load_s = timed_build(lambda: ClipScore(architecture="ViT-B-32", weights=str(path)))
            rows.append(row("clip_score", "ViT-B-32 (random weights)", vit, prompts, images_B3HW, {}, load_s,
                            parameters, args.repeats))

    print(records_table(rows, COLUMNS))
    print(f"(importing open_clip took {import_s:.1f}s, not counted in load_s)")
    report = {"rows": rows, "machine": {**machine_info(), "cpu_model": cpu_name()},
              "import_open_clip_s": import_s,
              "settings": {"batch_size": args.batch_size, "repeats": args.repeats, "threads": torch.get_num_threads(),
                           "inputs": "Shapes heldout renders, 32×32, with their prompts"}}
    print(f"\nwrote {write_json_atomic(args.out, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
