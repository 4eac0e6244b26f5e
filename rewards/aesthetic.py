"""`aesthetic`: the LAION improved-aesthetic-predictor MLP on CLIP image embeddings (docs/rewards.md).

The predictor (github.com/christophschuhmann/improved-aesthetic-predictor) is a 5-layer MLP
without activations, applied to the L2-normalised CLIP image embedding; its official weights
(`sac+logos+ava1-l14-linearMSE.pth`, for OpenAI ViT-L/14, D = 768) are a plain state dict whose
keys follow the module layout below. Any file in that layout loads here (`.pth` / `.pt` / `.bin`
via torch.load with weights_only, or `.safetensors`), as does the built-in
`builtin:shapes-aesthetic` trained on `shapes-clip` embeddings. Scores are on the predictor's
own scale (LAION's ≈1–10; the built-in one is trained to give ≈10 for clean renders and ≈1 for
heavily damaged ones).
"""

from __future__ import annotations

from typing import Any

import torch
from rlalign.rewards.builtin_models import SHAPES_CLIP
from rlalign.rewards.clip import as_image_batch, is_image_batch, load_clip, resolve_weights
from rlalign.utils.files import readable
from safetensors.torch import load_file, save_file
from torch import nn

HIDDEN_SIZES = (1024, 128, 64, 16, 1)
"""Output sizes of the five Linear layers at Sequential indices 0, 2, 4, 6, 7 (dropouts at 1, 3, 5)."""
LINEAR_INDICES = (0, 2, 4, 6, 7)
LAION_INPUT_SIZE = 768
"""D of LAION's official predictor (OpenAI ViT-L/14), assumed only where a file has no 2-D `layers.0.weight`."""


class AestheticMLP(nn.Module):
    """Exactly LAION's layout: `layers.{0,2,4,6,7}` Linear, dropouts in between, no activations."""

    def __init__(self, input_size: int):
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings_BD: torch.Tensor) -> torch.Tensor:
        """Scores [B, 1] of L2-normalised CLIP image embeddings [B, D]."""
        return self.layers(embeddings_BD)


def expected_layout(input_size: int | str = "D") -> dict[str, tuple]:
    """The official state-dict keys and shapes for embedding size `input_size`."""
    layout, previous = {}, input_size
    for index, size in zip(LINEAR_INDICES, HIDDEN_SIZES):
        layout[f"layers.{index}.weight"] = (size, previous)
        layout[f"layers.{index}.bias"] = (size,)
        previous = size
    return layout


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        state = load_file(readable(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # Lightning-style wrapper
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TypeError(f"aesthetic weights {path} hold a {type(state).__name__}, not a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_aesthetic_mlp(weights: str, arg: str = "weights") -> AestheticMLP:
    """The predictor from a file in LAION's layout (or `builtin:NAME`), in eval mode, float32.

    D is read from `layers.0.weight`; `load_state_dict(strict=True)` then checks the rest of the
    layout (every key present, none extra, every shape right), and its complaint becomes one
    message naming the file.
    """
    path = str(resolve_weights(weights, arg, "aesthetic"))
    state = _read_state_dict(path)
    first = state.get("layers.0.weight")
    input_size = int(first.shape[1]) if isinstance(first, torch.Tensor) and first.ndim == 2 else LAION_INPUT_SIZE
    mlp = AestheticMLP(input_size)
    try:
        mlp.load_state_dict(state, strict=True)  # copies into the float32 parameters
    except RuntimeError as error:
        raise ValueError(_layout_error(weights, path, arg, input_size, error)) from None
    return mlp.eval().requires_grad_(False)


def _layout_error(weights: str, path: str, arg: str, input_size: int, error: RuntimeError) -> str:
    """torch's missing / unexpected keys and size mismatches, with the expected layout and the fix."""
    # After its header line torch lists each problem on a line of its own.
    details = "; ".join(line.strip().rstrip(".") for line in str(error).splitlines()[1:] if line.strip())
    expected = ", ".join(f"{key} {list(shape)}" for key, shape in expected_layout(input_size).items())
    where = f"{weights!r}" if str(weights) == path else f"{weights!r} ({path})"
    return (f"aesthetic: args.{arg} = {where} is not in LAION's aesthetic-predictor layout: "
            f"{details[:800]}{' ...' if len(details) > 800 else ''}. Expected exactly {{{expected}}}. "
            "Give the predictor's own state dict in this layout (as LAION's sac+logos+ava1-l14-linearMSE.pth; "
            "a 'state_dict' wrapper and a 'module.' prefix are removed), not another model's checkpoint")


def save_aesthetic_mlp(mlp: AestheticMLP, path: str, metadata: dict[str, str] | None = None) -> None:
    """Write the predictor as fp16 safetensors in the official layout."""
    state = {key: value.detach().to(torch.float16).contiguous() for key, value in mlp.state_dict().items()}
    save_file(state, path, metadata={"format": "laion-aesthetic-mlp", **(metadata or {})})


_MLPS: dict[tuple[str, str], AestheticMLP] = {}


class AestheticScore:
    """TRL-style reward: the predictor's score of each image (prompts are not used).

    The constructor is the registry's factory (`rlalign.rewards.aesthetic:AestheticScore()`): a spec's
    `args` are its keyword arguments, and both models load now so errors come early.
    """

    __name__ = "aesthetic"

    def __init__(self, weights: str = "builtin:shapes-aesthetic", clip_architecture: str = SHAPES_CLIP,
                 clip_weights: str | None = None, device: str = "cpu", batch_size: int = 32):
        if clip_weights is None and clip_architecture == SHAPES_CLIP:
            clip_weights = f"builtin:{SHAPES_CLIP}"
        self.clip = load_clip(clip_architecture, clip_weights, device, arg_prefix="clip_", reward="aesthetic")
        key = (str(resolve_weights(weights, "weights", "aesthetic")), str(torch.device(device)))
        if key not in _MLPS:
            _MLPS[key] = load_aesthetic_mlp(weights).to(device)
        self.mlp = _MLPS[key]
        embed_dim = getattr(self.clip.model.visual, "output_dim", None)
        if embed_dim is not None and embed_dim != self.mlp.input_size:
            raise ValueError(f"aesthetic: args.weights {weights!r} expects {self.mlp.input_size}-d CLIP embeddings but "
                             f"{clip_architecture!r} gives {embed_dim}-d ones (LAION's official file needs ViT-L-14)")
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, prompts: list, completions: Any, **_) -> list[float]:
        if not is_image_batch(completions):
            raise ValueError("aesthetic scores images [B, 3, H, W]; it does not apply to text completions")
        embeddings_BD = self.clip.encode_images(as_image_batch(completions), self.batch_size)
        return self.mlp(embeddings_BD.to(self.clip.device))[:, 0].float().cpu().tolist()
