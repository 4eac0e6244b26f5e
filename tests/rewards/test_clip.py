"""clip_score with real open_clip: the built-in model's preferences, caption mode, tensor preprocessing
against open_clip's own PIL transform, loading through local files, and the errors users meet."""

import json
import shutil
from dataclasses import asdict

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from rlalign.rewards.builtin_models import SHAPES_CLIP
from rlalign.rewards.clip import ClipScore, load_clip, preprocess_images, resolve_weights
from rlalign.rewards.registry import build_reward
from safetensors.torch import load_file, save_file

from rlalign.config import RewardSpec
from rlalign.shapes import (
    GRAMMAR_WORDS,
    parse_prompt,
    render_batch,
    sample_category_scenes,
    sample_scenes,
    surface_forms,
)
from rlalign.shapes.verify import check_objects, scene_objects
from rlalign.tasks.shapes.reward_data import (
    caption_edits,
    grammar_bpe_merges,
    hard_negatives,
    mirrored,
    scene_edits,
)

SCENES = sample_scenes("heldout", 8, seed=4242)
IMAGES = render_batch(SCENES)
PROMPTS = [scene.prompt for scene in SCENES]


@pytest.fixture(scope="module")
def reward():
    return build_reward(RewardSpec(name="clip_score"))


def test_builtin_prefers_true_captions_over_other_scenes(reward):
    true = torch.tensor(reward(PROMPTS, IMAGES))
    for shift in (1, 3):
        wrong = torch.tensor(reward(PROMPTS[shift:] + PROMPTS[:shift], IMAGES))
        assert (true > wrong).all(), (true, wrong)
    assert true.abs().max() <= 1.0 + 1e-5  # cosine similarity by default


def test_builtin_notices_one_wrong_colour(reward):
    image = render_batch([SCENES[0]])  # "a red triangle at the bottom"-style prompt of a held-out pair
    spec = SCENES[0].spec
    other = next(c for c in ("red", "green", "blue", "white") if c != spec.objects[0].colour)
    wrong = SCENES[0].prompt.replace(spec.objects[0].colour, other, 1)
    true_score, wrong_score = reward([SCENES[0].prompt, wrong], image.repeat(2, 1, 1, 1))
    assert true_score > wrong_score


def test_caption_mode_scores_captions_against_their_images(reward):
    by_image = reward(PROMPTS, IMAGES)
    # A captioner's prompts are images: pass them as images=, or give image prompts: tensors, or objects
    # with an image() method (a Shapes Scene renders itself; the reward knows nothing of Shapes).
    assert reward(["describe"] * 8, PROMPTS, images=IMAGES) == pytest.approx(by_image, abs=1e-6)
    assert reward(list(IMAGES), PROMPTS) == pytest.approx(by_image, abs=1e-6)
    assert reward(SCENES, PROMPTS) == pytest.approx(by_image, abs=1e-6)
    with pytest.raises(ValueError, match="needs the images"):
        reward(["describe"] * 8, PROMPTS)


def test_logit_scale_option_multiplies_by_the_temperature(reward):
    scaled = build_reward(RewardSpec(name="clip_score", args={"use_logit_scale": True}))
    factor = reward.clip.logit_scale
    assert 1.0 < factor <= 100.0
    assert scaled(PROMPTS[:2], IMAGES[:2]) == pytest.approx([factor * s for s in reward(PROMPTS[:2], IMAGES[:2])], rel=1e-5)


def test_model_is_cached_per_architecture_weights_and_device(reward):
    again = ClipScore(architecture=SHAPES_CLIP, weights="builtin:shapes-clip", batch_size=3)
    assert again.clip is reward.clip
    assert again(PROMPTS, IMAGES) == pytest.approx(reward(PROMPTS, IMAGES), abs=1e-5)  # batching changes nothing


def test_local_torch_checkpoint_goes_through_the_same_path(tmp_path, reward):
    state = load_file(str(resolve_weights("builtin:shapes-clip")))
    torch.save({"state_dict": {k: v.float() for k, v in state.items()}}, tmp_path / "copy.pt")
    local = build_reward(RewardSpec(name="clip_score", args={"architecture": SHAPES_CLIP,
                                                             "weights": str(tmp_path / "copy.pt")}))
    assert local.clip is not reward.clip
    assert local(PROMPTS, IMAGES) == pytest.approx(reward(PROMPTS, IMAGES), abs=1e-5)


def test_shapes_clip_tokenizer_splits_grammar_words_as_clip_does():
    ours, clips = open_clip.get_tokenizer(SHAPES_CLIP), open_clip.get_tokenizer("ViT-B-32")
    for word in GRAMMAR_WORDS:
        assert [ours.decoder[i] for i in ours.encode(word)] == [clips.decoder[i] for i in clips.encode(word)]
    assert ours.vocab_size == 2 * 256 + len(grammar_bpe_merges()) + 2
    assert ours.eot_token_id == ours.vocab_size - 1  # argmax pooling finds <end_of_text>
    tokens = ours(["a photo of a zebra"])  # words outside the grammar fall back to byte pieces
    assert tokens.max() < ours.vocab_size


# --- preprocessing on tensors vs open_clip's own PIL transform ----------------------------------


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("height, width", [(30, 45), (200, 120)])  # upsampled / downsampled, non-square
def test_tensor_preprocessing_matches_open_clips_pil_transform(resize_mode, interpolation, height, width):
    cfg = asdict(PreprocessCfg(size=64, interpolation=interpolation, resize_mode=resize_mode))
    # Random texture stresses the kernels (overshoot, clipping) more than any natural image.
    pixels_HW3 = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels_HW3[8:22, 10:30] = (250, 40, 20)  # a flat patch with sharp edges, like a Shapes object
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)(Image.fromarray(pixels_HW3))
    ours = preprocess_images(torch.from_numpy(pixels_HW3).permute(2, 0, 1)[None].float() / 255.0, cfg)[0]
    assert ours.shape == reference.shape == (3, 64, 64)
    # PIL rounds to uint8 after each of its two resampling passes (fixed-point kernels too); in
    # normalised units one grey level is 1/255/std ≈ 0.015, so this allows about 2.5 levels at most.
    difference = (ours - reference).abs()
    assert difference.mean() < 0.006 and difference.max() < 0.04


def test_same_size_input_is_only_normalised():
    cfg = load_clip(SHAPES_CLIP, "builtin:shapes-clip").preprocess_cfg
    mean, std = torch.tensor(cfg["mean"])[:, None, None], torch.tensor(cfg["std"])[:, None, None]
    assert torch.equal(preprocess_images(IMAGES, cfg), (IMAGES - mean) / std)


# --- errors ------------------------------------------------------------------------------------


def test_missing_weights_file_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"args\.weights .*nowhere\.safetensors.*local file"):
        build_reward(RewardSpec(name="clip_score", args={"architecture": "ViT-B-32",
                                                         "weights": str(tmp_path / "nowhere.safetensors")}))
    with pytest.raises(FileNotFoundError, match=r"builtin:nothing.*train_shapes_rewards\.py"):
        ClipScore(weights="builtin:nothing")


def test_unknown_architecture_and_other_bad_args():
    with pytest.raises(ValueError, match=r"args\.architecture = 'ViT-B-33' is not an open_clip.*ViT-B-32"):
        ClipScore(architecture="ViT-B-33", weights="builtin:shapes-clip")
    with pytest.raises(ValueError, match=r"args\.weights is required"):
        ClipScore(architecture="ViT-B-32")
    with pytest.raises(ValueError, match="hub"):
        ClipScore(architecture="hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    with pytest.raises(ValueError, match=r"unknown args \['pretrained'\]"):
        build_reward(RewardSpec(name="clip_score", args={"pretrained": "openai"}))


def test_weights_of_another_architecture_are_refused(tmp_path):
    state = load_file(str(resolve_weights("builtin:shapes-clip")))
    state.pop("text_projection")
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"(?s)does not fit args\.architecture = 'shapes-clip'.*text_projection"):
        ClipScore(weights=str(tmp_path / "broken.safetensors"))


def test_local_dir_folder_in_hugging_face_layout_loads(tmp_path, reward):
    # What `huggingface-cli download laion/CLIP-...` leaves on disk: open_clip_config.json + weights.
    from open_clip.factory import get_model_config

    config = {"model_cfg": get_model_config(SHAPES_CLIP), "preprocess_cfg": reward.clip.preprocess_cfg}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    shutil.copy(resolve_weights("builtin:shapes-clip"), tmp_path / "open_clip_model.safetensors")
    local = ClipScore(architecture=f"local-dir:{tmp_path}")
    assert local(PROMPTS, IMAGES) == pytest.approx(reward(PROMPTS, IMAGES), abs=1e-5)
    with pytest.raises(ValueError, match="holds its own weights"):
        ClipScore(architecture=f"local-dir:{tmp_path}", weights="builtin:shapes-clip")


def test_training_captions_mirroring_is_exact_and_edits_change_the_meaning():
    scenes = sample_scenes("all", 12, seed=9)
    assert torch.equal(render_batch([mirrored(s) for s in scenes]), render_batch(scenes).flip(-1))
    for scene in scenes:
        edits = caption_edits(scene.spec)
        assert {kind for kind, _ in edits} >= {"colour", "shape"}
        assert all(spec != scene.spec and spec.prompt != scene.prompt for _, spec in edits)


def test_hard_negatives_are_true_negatives_of_distinct_kinds():
    rng = np.random.default_rng(0)
    for scene in sample_category_scenes("all", 40, seed=3):
        kinds = {kind for kind, _ in scene_edits(scene)}
        negatives = hard_negatives(scene, rng, 3)
        assert len(negatives) == 3
        # none of them is satisfied by the scene it is a negative for
        assert not any(check_objects(parse_prompt(text), scene_objects(scene)).exact for text in negatives)
        # one edit kind each while the scene has three kinds or more (a kind can edit to one prompt
        # in two surface forms, so count distinct kinds through the edits' prompts)
        edit_kind = {form: kind for kind, spec in scene_edits(scene) for form in surface_forms(spec)}
        drawn = [edit_kind[text] for text in negatives]
        assert len(set(drawn)) == min(3, len(kinds))

