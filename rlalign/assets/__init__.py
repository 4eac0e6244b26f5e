"""The built-in assets shipped with rlalign (weights and their training reports) and how a
`builtin:NAME` checkpoint name resolves to one of them. Every asset path in the project comes from here."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent

REBUILD_HINTS = {
    "shapes-nextscale": "python scripts/pretrain_shapes.py",
    "shapes-captioner": "python scripts/pretrain_shapes_captioner.py",
    "shapes-clip": "python scripts/train_shapes_rewards.py",
    "shapes-aesthetic": "python scripts/train_shapes_rewards.py",
    "shapes-detector": "python scripts/train_shapes_detector.py",
    "text-editflow": "python scripts/pretrain_text_editflow.py",
}
"""The script that reproduces each built-in asset."""


def resolve_checkpoint(checkpoint: str) -> Path:
    """`builtin:NAME` → rlalign/assets/NAME.safetensors; anything else is a local path."""
    if checkpoint.startswith("builtin:"):
        name = checkpoint.split(":", 1)[1]
        path = ASSETS_DIR / f"{name}.safetensors"
        if not path.is_file():
            shipped = sorted(p.stem for p in ASSETS_DIR.glob("*.safetensors"))
            hint = REBUILD_HINTS.get(name, "one of the scripts/ that build the built-in assets")
            raise FileNotFoundError(f"built-in checkpoint {checkpoint!r} is not in {ASSETS_DIR} (shipped: "
                                    f"{shipped or 'none'}); reproduce it with `{hint}`")
        return path
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} is a directory; give the .safetensors file itself "
                                "or builtin:NAME")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist; give a local file or builtin:NAME")
    return path




def resolve_checkpoint_dir(checkpoint: str) -> Path:
    """`builtin:NAME` → the directory rlalign/assets/NAME/; anything else is a local directory (a
    Hugging Face-style checkpoint: config.json, weights, tokenizer files)."""
    if checkpoint.startswith("builtin:"):
        name = checkpoint.split(":", 1)[1]
        path = ASSETS_DIR / name
        if not (path / "config.json").is_file():
            hint = REBUILD_HINTS.get(name, "one of the scripts/ that build the built-in assets")
            raise FileNotFoundError(f"built-in checkpoint directory {checkpoint!r} is not in {ASSETS_DIR}; "
                                    f"reproduce it with `{hint}`")
        return path
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} is not a directory; give the directory that holds "
                                "config.json, the weights and the tokenizer (or builtin:NAME)")
    return path
