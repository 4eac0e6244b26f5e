"""The built-in assets shipped with rlalign (weights and their training reports) and how a
`builtin:NAME` checkpoint name resolves to one of them. Every asset path in the project comes from here."""

from __future__ import annotations

import difflib
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


def shipped() -> list[str]:
    """Every built-in asset name: weights files (NAME.safetensors) and checkpoint directories (NAME/)."""
    files = {p.stem for p in ASSETS_DIR.glob("*.safetensors")}
    dirs = {p.name for p in ASSETS_DIR.iterdir() if p.is_dir() and (p / "config.json").is_file()}
    return sorted(files | dirs)


def _missing_builtin(checkpoint: str, name: str, what: str) -> FileNotFoundError:
    """What to say about a `builtin:NAME` that is not there: a known asset's rebuild command, or a near name."""
    if name in REBUILD_HINTS:
        return FileNotFoundError(f"built-in {what} {checkpoint!r} is not in {ASSETS_DIR}; reproduce it with "
                                 f"`{REBUILD_HINTS[name]}`")
    near = difflib.get_close_matches(name, shipped(), n=1)
    return FileNotFoundError(f"there is no built-in {what} {checkpoint!r}"
                             + (f" (did you mean 'builtin:{near[0]}'?)" if near else "")
                             + f"; the built-in ones: {', '.join('builtin:' + n for n in shipped()) or 'none'}")


def resolve_checkpoint(checkpoint: str) -> Path:
    """`builtin:NAME` → rlalign/assets/NAME.safetensors; anything else is a local path."""
    if checkpoint.startswith("builtin:"):
        name = checkpoint.split(":", 1)[1]
        path = ASSETS_DIR / f"{name}.safetensors"
        if not path.is_file():
            if (ASSETS_DIR / name / "config.json").is_file():
                raise FileNotFoundError(f"built-in checkpoint {checkpoint!r} is a checkpoint directory, read by a "
                                        "family that takes one (policy.kind: edit_flow)")
            raise _missing_builtin(checkpoint, name, "checkpoint")
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
            raise _missing_builtin(checkpoint, name, "checkpoint directory")
        return path
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} is not a directory; give the directory that holds "
                                "config.json, the weights and the tokenizer (or builtin:NAME)")
    return path
