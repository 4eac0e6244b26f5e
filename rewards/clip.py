"""`clip_score`: cosine similarity between CLIP embeddings of an image and a text (docs/rewards.md).

Any open_clip architecture loads from a local weights file through open_clip's own functions
(`create_model(arch, pretrained=<file>)`, `get_tokenizer(arch)`), so the built-in `shapes-clip`
and a real ViT-B-32 checkpoint take one code path. Nothing is ever downloaded: `weights` must be
an existing file (or `builtin:NAME`), never an open_clip pretrained tag.

Images are preprocessed as tensors, following the model's own preprocess config
(`model.visual.preprocess_cfg`: size, resize mode, interpolation, mean, std): the same geometry
as open_clip's PIL pipeline, antialiased resizing in torch, no PIL round trip (so no uint8
quantisation; see docs/rewards.md for the measured difference).

The score is the cosine similarity in [-1, 1] by default; `use_logit_scale: true` multiplies it
by the model's learned temperature exp(logit_scale) (≈100 for OpenAI CLIP), the scale of CLIP's
own logits. GRPO standardises rewards within a group, so the scale matters only when this reward
is summed with others (`rewards.combine`), where the spec's weight plays the same role.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rlalign.rewards.builtin_models import SHAPES_CLIP, ensure_registered

from rlalign.assets import resolve_checkpoint

# ---------------------------------------------------------------------------------------------
# Loading (cached per architecture, weights file and device)
# ---------------------------------------------------------------------------------------------


@dataclass
class ClipModel:
    """An open_clip model in eval mode with its tokenizer and image preprocessing config."""

    architecture: str
    weights: str
    model: torch.nn.Module
    tokenizer: Any
    preprocess_cfg: dict
    device: torch.device

    @torch.no_grad()
    def encode_images(self, images_B3HW: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """L2-normalised image embeddings [B, D] (float32, on the CPU) of images in [0, 1]."""
        images_B3HW = as_image_batch(images_B3HW)
        chunks = []
        for start in range(0, images_B3HW.shape[0], batch_size):
            pixels = preprocess_images(images_B3HW[start:start + batch_size].to(self.device), self.preprocess_cfg)
            chunks.append(self.model.encode_image(pixels, normalize=True).float().cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """L2-normalised text embeddings [N, D]; each distinct text is encoded once."""
        unique = list(dict.fromkeys(texts))
        chunks = []
        for start in range(0, len(unique), batch_size):
            tokens = self.tokenizer(unique[start:start + batch_size]).to(self.device)
            chunks.append(self.model.encode_text(tokens, normalize=True).float().cpu())
        by_text = dict(zip(unique, torch.cat(chunks)))
        return torch.stack([by_text[text] for text in texts])

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().clamp(max=100.0))


_CACHE: dict[tuple[str, str, str], ClipModel] = {}


def resolve_weights(weights: str, arg: str = "weights", reward: str = "clip_score") -> Path:
    """A local weights file from a path or `builtin:NAME`, with an error naming the argument."""
    try:
        return resolve_checkpoint(str(weights))
    except FileNotFoundError as error:
        hint = ("rebuild the built-in reward models with `python scripts/train_shapes_rewards.py`"
                if str(weights).startswith("builtin:") else
                "give the path of a local file (nothing is downloaded; see docs/rewards.md for real CLIP weights)")
        raise FileNotFoundError(f"{reward}: args.{arg} = {weights!r} is not a file ({error}); {hint}") from None


def _check_architecture(architecture: str, arg: str, reward: str) -> None:
    import open_clip

    if architecture.startswith("hf-hub:"):
        raise ValueError(f"{reward}: args.{arg} = {architecture!r} would download from the Hugging Face hub; "
                         "download the repository yourself and use 'local-dir:/path/to/it'")
    if architecture.startswith("local-dir:"):
        return
    ensure_registered(architecture)
    known = open_clip.list_models()
    if architecture not in known:
        close = difflib.get_close_matches(architecture, known, n=5)
        raise ValueError(f"{reward}: args.{arg} = {architecture!r} is not an open_clip architecture"
                         f"{'; did you mean ' + ', '.join(close) + '?' if close else ''} "
                         f"(open_clip.list_models() lists all {len(known)}; the built-in one is {SHAPES_CLIP!r})")


def load_clip(architecture: str, weights: str | None, device: str = "cpu", *,
              arg_prefix: str = "", reward: str = "clip_score") -> ClipModel:
    """An open_clip model from local weights, cached so that building a reward twice loads once.

    `architecture` is an open_clip model name (or `local-dir:/path` holding open_clip_config.json
    and the weights, in which case `weights` must be None); `weights` a file or `builtin:NAME`.
    """
    import open_clip

    arch_arg, weights_arg = f"{arg_prefix}architecture", f"{arg_prefix}weights"
    _check_architecture(architecture, arch_arg, reward)
    if architecture.startswith("local-dir:"):
        if weights is not None:
            raise ValueError(f"{reward}: a 'local-dir:' {arch_arg} holds its own weights; leave args.{weights_arg} out")
        folder = Path(architecture.removeprefix("local-dir:")).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"{reward}: args.{arch_arg} = {architecture!r} has no open_clip_config.json")
        path = folder
    elif weights is None:
        raise ValueError(f"{reward}: args.{weights_arg} is required for {arch_arg} {architecture!r}: "
                         "a local open_clip checkpoint (.safetensors, .bin, .pt); see docs/rewards.md")
    else:
        path = resolve_weights(weights, weights_arg, reward)
    key = (architecture, str(path), str(torch.device(device)))
    if key not in _CACHE:
        try:
            if architecture.startswith("local-dir:"):
                model = open_clip.create_model(architecture, device=device, require_pretrained=True)
            else:
                model = open_clip.create_model(architecture, pretrained=str(path), device=device)
        except RuntimeError as error:
            raise ValueError(f"{reward}: args.{weights_arg} = {str(path)!r} does not fit args.{arch_arg} = "
                             f"{architecture!r}: {str(error)[:600]}") from None
        model.eval().requires_grad_(False)
        preprocess_cfg = dict(model.visual.preprocess_cfg)
        _CACHE[key] = ClipModel(architecture, str(path), model, open_clip.get_tokenizer(architecture),
                                preprocess_cfg, torch.device(device))
    return _CACHE[key]


# ---------------------------------------------------------------------------------------------
# Preprocessing on tensors (open_clip's eval transform, without PIL)
# ---------------------------------------------------------------------------------------------


def is_image_batch(completions: Any) -> bool:
    """Whether completions are images (a tensor, or a list of tensors) rather than texts."""
    return isinstance(completions, torch.Tensor) or bool(len(completions) and isinstance(completions[0], torch.Tensor))


def as_image_batch(images: Any) -> torch.Tensor:
    """Images as float [B, 3, H, W] in [0, 1] (uint8 is rescaled; a list of [3, H, W] is stacked)."""
    if isinstance(images, (list, tuple)):
        images = torch.stack([torch.as_tensor(image) for image in images])
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images [B, 3, H, W] in [0, 1], got {shape}")
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def _resized_size(height: int, width: int, target_hw: tuple[int, int], mode: str) -> tuple[int, int]:
    """Size before cropping, as open_clip's Resize / ResizeKeepRatio compute it."""
    target_h, target_w = target_hw
    if mode == "squash":
        return target_h, target_w
    if mode == "shortest" and target_h == target_w:  # torchvision Resize(int): shorter edge -> size
        if width <= height:
            return int(target_w * height / width), target_w
        return target_h, int(target_h * width / height)
    ratios = (height / target_h, width / target_w)  # ResizeKeepRatio (longest=0 or 1)
    ratio = max(ratios) if mode == "longest" else min(ratios)
    return round(height / ratio), round(width / ratio)


def _center_crop_or_pad(images_B3HW: torch.Tensor, target_hw: tuple[int, int], fill: float) -> torch.Tensor:
    """torchvision's centre crop (with its rounding), padding first where the image is smaller."""
    target_h, target_w = target_hw
    height, width = images_B3HW.shape[-2:]
    pad_w, pad_h = max(target_w - width, 0), max(target_h - height, 0)
    if pad_w or pad_h:
        images_B3HW = F.pad(images_B3HW, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2), value=fill)
        height, width = images_B3HW.shape[-2:]
    top, left = round((height - target_h) / 2.0), round((width - target_w) / 2.0)
    return images_B3HW[..., top:top + target_h, left:left + target_w]


def preprocess_images(images_B3HW: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Resize, crop/pad and normalise images [B, 3, H, W] in [0, 1] as open_clip's eval transform does.

    Resizing is antialiased (torch's antialiased bicubic uses PIL's kernel, a = -0.5), one axis at
    a time as PIL does, clamped to [0, 1] after each pass as PIL's uint8 images are. Unlike PIL
    nothing is rounded to 1/255, so results differ by about one grey level at most.
    """
    size = cfg["size"]
    target_hw = (size, size) if isinstance(size, int) else tuple(size)
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "longest", "squash"):
        raise ValueError(f"unknown resize_mode {mode!r} in the model's preprocess config")
    height, width = images_B3HW.shape[-2:]
    resized_hw = _resized_size(height, width, target_hw, mode)
    interpolation = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
    # PIL resamples the width first, then the height, clipping to [0, 255] in between; bicubic
    # overshoot at sharp edges makes that clip matter (up to 20/255 if both passes ran at once).
    for size_hw in ((height, resized_hw[1]), resized_hw):
        if size_hw != tuple(images_B3HW.shape[-2:]):
            images_B3HW = F.interpolate(images_B3HW, size=size_hw, mode=interpolation, align_corners=False,
                                        antialias=True).clamp(0.0, 1.0)
    images_B3HW = _center_crop_or_pad(images_B3HW, target_hw, cfg.get("fill_color", 0) / 255.0)
    mean_3 = torch.tensor(cfg["mean"], dtype=images_B3HW.dtype, device=images_B3HW.device)
    std_3 = torch.tensor(cfg["std"], dtype=images_B3HW.dtype, device=images_B3HW.device)
    return (images_B3HW - mean_3[:, None, None]) / std_3[:, None, None]


# ---------------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------------


def caption_images(prompts: list, images: Any = None) -> torch.Tensor:
    """The images that captions describe: `images=`, else the prompts when they are images: tensors
    [3, H, W], or objects with an `image()` method returning one (a task's image prompts, such as the
    Shapes world's Scene, which renders itself)."""
    if images is not None:
        return as_image_batch(images)
    if isinstance(prompts, torch.Tensor) or (len(prompts) and isinstance(prompts[0], torch.Tensor)):
        return as_image_batch(prompts)
    if len(prompts) and all(callable(getattr(p, "image", None)) for p in prompts):
        return torch.stack([p.image() for p in prompts])  # a captioner's prompts are what it describes
    raise ValueError("clip_score on captions needs the images they describe: pass images=[B,3,H,W], or give "
                     "image prompts (tensors, or objects with an image() method such as a Shapes Scene)")


def read_class_names(class_names: str | list[str]) -> list[str]:
    """Class names by id: a list, or a text file with one name per line (line i names class i)."""
    if isinstance(class_names, (list, tuple)):
        names = [str(name) for name in class_names]
    else:
        path = Path(str(class_names)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"clip_score: args.class_names = {class_names!r} is not a file; give a text "
                                    "file with one class name per line (line i names class i), or a list")
        names = [line.strip() for line in path.read_text().splitlines()]
    if not names or any(not name for name in names):
        raise ValueError(f"clip_score: args.class_names ({class_names!r}) must name every class, one per line, "
                         "with no blank lines")
    return names


def is_class_id(prompt: Any) -> bool:
    """Class-conditional prompts are ints or digit strings (`classes:A-B`)."""
    return (isinstance(prompt, int) and not isinstance(prompt, bool)) or (isinstance(prompt, str) and prompt.isdigit())


class ClipScore:
    """TRL-style reward: CLIP similarity of each image to its prompt, or of each caption to its image.

    The constructor is the registry's factory (`rlalign.rewards.clip:ClipScore()`): a spec's `args` are its
    keyword arguments, checked against its signature, and the model loads now so errors come early.
    Class-id prompts (a class-conditional VAR) are turned into text as
    `prompt_template.format(class_names[id])`, e.g. "a photo of a goldfish.".
    """

    __name__ = "clip_score"

    def __init__(self, architecture: str = SHAPES_CLIP, weights: str | None = None, device: str = "cpu",
                 batch_size: int = 32, use_logit_scale: bool = False, class_names: str | list[str] | None = None,
                 prompt_template: str = "a photo of a {}."):
        if "{}" not in prompt_template:
            raise ValueError(f"clip_score: args.prompt_template must contain '{{}}' for the class name, "
                             f"got {prompt_template!r}")
        self.class_names = read_class_names(class_names) if class_names is not None else None
        self.prompt_template = prompt_template
        if weights is None and architecture == SHAPES_CLIP:
            weights = f"builtin:{SHAPES_CLIP}"
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"clip_score: args.batch_size must be a positive integer, got {batch_size!r}")
        self.clip = load_clip(architecture, weights, device)
        self.batch_size = batch_size
        self.use_logit_scale = bool(use_logit_scale)

    def __call__(self, prompts: list, completions: Any, images: Any = None, **_) -> list[float]:
        if is_image_batch(completions):
            texts, pixels = self.prompt_texts(list(prompts)), as_image_batch(completions)
        else:
            texts, pixels = list(completions), caption_images(prompts, images)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("clip_score compares images with texts: prompts (or caption completions) must be strings")
        if len(texts) != pixels.shape[0]:
            raise ValueError(f"clip_score got {len(texts)} texts for {pixels.shape[0]} images")
        image_BD = self.clip.encode_images(pixels, self.batch_size)
        text_BD = self.clip.encode_texts(texts, self.batch_size)
        scores_B = (image_BD * text_BD).sum(dim=-1)
        if self.use_logit_scale:
            scores_B = scores_B * self.clip.logit_scale
        return scores_B.tolist()

    def prompt_texts(self, prompts: list) -> list:
        """Prompts as CLIP texts: class ids through the class names and template, strings unchanged."""
        if not any(is_class_id(p) for p in prompts):
            return prompts
        if self.class_names is None:
            raise ValueError("clip_score got class-id prompts (a class-conditional model): set args.class_names "
                             "to a file with one class name per line (and optionally args.prompt_template)")
        texts = []
        for prompt in prompts:
            if not is_class_id(prompt):
                texts.append(prompt)
            elif int(prompt) >= len(self.class_names):
                raise ValueError(f"clip_score: class id {prompt} has no name: args.class_names lists "
                                 f"{len(self.class_names)} classes")
            else:
                texts.append(self.prompt_template.format(self.class_names[int(prompt)]))
        return texts
