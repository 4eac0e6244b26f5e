"""configs/var_d16.yaml is a working GRPO recipe for an official VAR checkpoint: the same file, with
only its paths and sizes pointed at the golden tiny VAR (reference key names), trains for real —
class-id prompts, CLIP on "a photo of a {class}." texts, the LAION-layout aesthetic, LoRA on the
first m scales — and its architecture block has exactly the importer's keys."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from rlalign.rewards.clip import ClipScore

from rlalign.config import load_config
from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT.parent / "shared" / "golden" / "var"
CLASS_NAMES = ["red circle", "blue square", "green triangle", "yellow square", "purple circle",
               "orange triangle", "cyan circle", "white square", "red square", "blue triangle"]


def var_recipe() -> dict:
    return yaml.safe_load((ROOT / "configs" / "var_d16.yaml").read_text())


def test_the_recipe_architecture_has_exactly_the_importer_keys():
    golden = json.loads((GOLDEN_DIR / "config.json").read_text())
    architecture = var_recipe()["policy"]["architecture"]
    assert set(architecture) == set(golden)
    # VAR-d16's documented shape: width 64·depth, heads = depth, 10 scales ending at 16 (256 px / 16).
    assert architecture["embed_dim"] == 64 * architecture["depth"] and architecture["num_heads"] == architecture["depth"]
    assert architecture["patch_nums"][-1] * 2 ** (len(architecture["vae_ch_mult"]) - 1) == architecture["image_size"]


@pytest.mark.slow
def test_the_recipe_trains_on_the_golden_var(tmp_path):
    recipe = var_recipe()
    policy = recipe["policy"]
    policy.update(checkpoint=str(GOLDEN_DIR / "var.safetensors"), vae_checkpoint=str(GOLDEN_DIR / "vae.safetensors"),
                  architecture=json.loads((GOLDEN_DIR / "config.json").read_text()), top_k=16)
    names = tmp_path / "class_names.txt"
    names.write_text("\n".join(CLASS_NAMES) + "\n")
    clip, aesthetic = recipe["rewards"]["functions"]
    clip["args"].update(architecture="shapes-clip", weights="builtin:shapes-clip", class_names=str(names))
    aesthetic["args"] = {"weights": "builtin:shapes-aesthetic"}
    recipe["prompts"] = {"train": "classes:0-9", "eval": {"classes": "classes:0,1"}, "eval_samples_per_prompt": 2}
    recipe["grpo"].update(group_size=4, prefix_steps=2)
    recipe["train"].update(steps=2, prompts_per_step=2, micro_batch_size=8, eval_every=0, save_every=0)
    recipe.update(logging={"wandb_mode": "disabled", "progress_bar": False}, output_dir=str(tmp_path / "run"))
    trainer = Trainer(load_config(recipe))
    lora_before = {k: v.clone() for k, v in trainer.policy.adapter_state().items()}
    trainer.run()
    steps = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "time/step" in r]
    assert len(steps) == 2
    assert all(abs(r["rewards/clip/mean"]) <= 1 for r in steps)
    assert max(r["debug/max_abs_logratio_first_iter"] for r in steps) <= 1e-5
    after = trainer.policy.adapter_state()
    assert any(not torch.equal(lora_before[k], after[k]) for k in after)


@pytest.fixture(scope="module")
def clip_with_names():
    return ClipScore(class_names=CLASS_NAMES[:3], prompt_template="a {} in the center")


def test_class_ids_become_template_texts(clip_with_names):
    images = torch.rand(3, 3, 32, 32)
    texts = ["a red circle in the center", "a blue square in the center", "a green triangle in the center"]
    by_text = clip_with_names(texts, images)
    assert clip_with_names([0, "1", 2], images) == by_text  # ints and digit strings are class ids
    assert clip_with_names.prompt_texts(["a cat", 1]) == ["a cat", texts[1]]


def test_class_id_errors_say_what_to_set(clip_with_names, tmp_path):
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="has no name: args.class_names lists 3 classes"):
        clip_with_names([7], images)
    with pytest.raises(ValueError, match="set args.class_names"):
        ClipScore()([0], images)
    with pytest.raises(FileNotFoundError, match="one class name per line"):
        ClipScore(class_names=str(tmp_path / "missing.txt"))
    blank = tmp_path / "blank.txt"
    blank.write_text("goldfish\n\nshark\n")
    with pytest.raises(ValueError, match="no blank lines"):
        ClipScore(class_names=str(blank))
    with pytest.raises(ValueError, match="must contain"):
        ClipScore(prompt_template="a photo")
