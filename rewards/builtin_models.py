"""The built-in CLIP of the Shapes task, `shapes-clip`, made known to open_clip (docs/rewards.md).

`shapes-clip` is an ordinary open_clip model, only small: this module registers its architecture
with open_clip's config registry under the name `shapes-clip` (from the shipped JSON), after which
`open_clip.create_model("shapes-clip", pretrained=<file>)` and `open_clip.get_tokenizer("shapes-clip")`
work exactly as for `ViT-B-32`, and the `clip_score` reward loads it through the same code path as
any real checkpoint. How the model, its tokenizer and the aesthetic model were built and trained
(their data: hard negatives, mirrored scenes, degradations) is the task's business:
rlalign/tasks/shapes/reward_data.py and scripts/train_shapes_rewards.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
from copy import deepcopy
from pathlib import Path

from rlalign.assets import ASSETS_DIR
from rlalign.utils.files import atomic_path

SHAPES_CLIP = "shapes-clip"
"""open_clip architecture name of the built-in CLIP (use with `weights: builtin:shapes-clip`)."""
SHAPES_CLIP_REPORT = ASSETS_DIR / f"{SHAPES_CLIP}.json"
"""The shipped CLIP's JSON: its open_clip config, tokenizer merges and training report."""


def _materialise_bpe(merges: list[str]) -> Path:
    """A gzip BPE file for open_clip's SimpleTokenizer (it reads a path), cached by content hash.

    The merges travel inside the asset's JSON (package data holds only .json/.safetensors); the
    file is written once per content into the temporary directory, atomically.
    """
    # No final newline: SimpleTokenizer would read the empty last line as one more (empty) merge.
    text = "\n".join(["#version: rlalign shapes-clip subset of CLIP's BPE", *merges])
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"rlalign-shapes-clip-bpe-{digest}.txt.gz"
    if not path.is_file():
        with atomic_path(path) as partial, gzip.open(partial, "wb") as handle:
            handle.write(text.encode("utf-8"))
    return path


def register_shapes_clip(config: dict | None = None) -> None:
    """Register `shapes-clip` with open_clip (from the shipped JSON unless `config` is given).

    The tokenizer's BPE path is filled in here because it is only known at run time.
    """
    from open_clip import factory

    if config is None:
        if not SHAPES_CLIP_REPORT.is_file():
            raise FileNotFoundError(
                f"{SHAPES_CLIP_REPORT} is missing, so architecture {SHAPES_CLIP!r} is unknown; "
                "rebuild the built-in reward models with `python scripts/train_shapes_rewards.py`")
        config = json.loads(SHAPES_CLIP_REPORT.read_text())["open_clip_config"]
    model_cfg = deepcopy(config["model_cfg"])
    model_cfg["text_cfg"]["tokenizer_kwargs"] = {"bpe_path": str(_materialise_bpe(config["bpe_merges"]))}
    factory._MODEL_CONFIGS[SHAPES_CLIP] = model_cfg  # open_clip's registry (add_model_config needs a file)


def ensure_registered(architecture: str) -> None:
    """Register a built-in architecture on first use; other names are open_clip's business."""
    from open_clip import factory

    if architecture == SHAPES_CLIP and SHAPES_CLIP not in factory._MODEL_CONFIGS:
        register_shapes_clip()
