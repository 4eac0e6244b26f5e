"""`shapes_detector`: the learned GenEval-style reward (rewards/shapes_detector.py, docs/rewards.md)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rlalign.rewards.registry import build_reward
from rlalign.rewards.shapes_detector import (
    CELL,
    GRID,
    HEAD_CHANNELS,
    ShapesDetector,
    ShapesDetectorReward,
    decode,
    detection_loss,
    load_detector,
    save_detector,
    targets,
)

from rlalign.config import RewardSpec
from rlalign.shapes import CATEGORIES, COLOURS, SHAPES, render_batch, sample_category_scenes
from rlalign.shapes.verify import verify_image

ROOT = Path(__file__).resolve().parents[2]


def head_output(cells: dict[tuple[int, int], tuple[str, str, float, float, float]]) -> torch.Tensor:
    """A hand-made head output [1, 15, 8, 8]: at (row, col) an object (shape, colour, offset x, offset y, side)."""
    out_CGG = torch.zeros(sum(HEAD_CHANNELS.values()), GRID, GRID)
    out_CGG[0] = -10.0  # objectness logit: nothing anywhere
    for (row, col), (shape, colour, dx, dy, side) in cells.items():
        out_CGG[0, row, col] = 10.0
        out_CGG[1 + SHAPES.index(shape), row, col] = 5.0
        out_CGG[4 + COLOURS.index(colour), row, col] = 5.0
        out_CGG[12, row, col], out_CGG[13, row, col] = math.log(dx / (1 - dx)), math.log(dy / (1 - dy))  # logit of the offset
        out_CGG[14, row, col] = math.log(side)
    return out_CGG[None]


def test_decode_reads_cells_back_into_objects():
    # A red circle centred in cell (row 1, col 6) at offset (0.25, 0.5): cx = (6 + 0.25) · 4 = 25, cy = (1 + 0.5) · 4 = 6.
    out = head_output({(1, 6): ("circle", "red", 0.25, 0.5, 10.0), (5, 2): ("triangle", "blue", 0.5, 0.5, 8.0)})
    objects = sorted(decode(out)[0], key=lambda o: o.cx)
    assert [(o.shape, o.colour) for o in objects] == [("triangle", "blue"), ("circle", "red")]
    assert objects[1].cx == pytest.approx(25.0) and objects[1].cy == pytest.approx(6.0)
    assert objects[1].area == pytest.approx(100.0) and objects[0].area == pytest.approx(64.0)  # side²


def test_decode_keeps_only_local_maxima_above_the_threshold():
    out = head_output({(3, 3): ("square", "green", 0.5, 0.5, 9.0)})
    out[0, 0, 3, 4] = 8.0  # a weaker neighbour of the peak: suppressed
    out[0, 0, 7, 7] = -0.1  # below the 0.5 threshold (sigmoid(-0.1) < 0.5)
    assert len(decode(out)[0]) == 1
    assert len(decode(out, threshold=0.45)[0]) == 2  # a lower threshold admits the far cell, never the neighbour


def test_targets_put_each_object_in_the_cell_of_its_box_centre():
    scenes = sample_category_scenes("all", 12, seed=3)
    target = targets([*scenes, None])
    assert target["objectness"][-1].sum() == 0  # an empty canvas
    for b, scene in enumerate(scenes):
        assert int(target["objectness"][b].sum()) == len(scene.spec.objects)  # one cell per object
        place = scene.placements[0]
        row, col = int(place.cy // CELL), int(place.cx // CELL)
        assert target["objectness"][b, row, col] == 1
        assert (col + target["offset"][b, 0, row, col]) * CELL == pytest.approx(place.cx, abs=1e-5)
        assert target["log_side"][b, row, col] == pytest.approx(math.log(place.size))


def test_the_loss_is_low_on_a_perfect_head_and_high_on_a_blind_one():
    scenes = sample_category_scenes("all", 4, seed=5)
    target = targets(scenes)
    perfect = torch.cat([head_output({(r, c): (scene.spec.objects[i].shape, scene.colours[i],
                                               float(target["offset"][b, 0, r, c]), float(target["offset"][b, 1, r, c]),
                                               scene.placements[i].size)
                                      for i, (r, c) in enumerate((int(p.cy // CELL), int(p.cx // CELL))
                                                                 for p in scene.placements)})
                         for b, scene in enumerate(scenes)])
    assert detection_loss(perfect, target)["total"] < 0.1
    assert detection_loss(torch.zeros_like(perfect), target)["total"] > 3.0


def test_save_and_load_round_trip_and_refuse_other_files(tmp_path):
    detector = ShapesDetector(width=8)
    save_detector(detector, tmp_path / "d.safetensors")
    loaded = load_detector(str(tmp_path / "d.safetensors"))
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), detector.half().float().eval()(images))  # fp16 on disk
    with pytest.raises(ValueError, match="not a Shapes detector file"):
        load_detector("builtin:shapes-aesthetic")
    with pytest.raises(FileNotFoundError, match="args.weights"):
        load_detector(str(tmp_path / "missing.safetensors"))


def test_the_reward_refuses_bad_input_with_a_clear_message():
    reward = ShapesDetectorReward()
    images = render_batch(sample_category_scenes("all", 2, seed=1))
    with pytest.raises(ValueError, match="not one"):
        reward(["a red circle", "a purple elephant"], images)
    with pytest.raises(ValueError, match="2 prompts for 3 images"):
        reward(["a red circle", "a square"], torch.cat([images, images[:1]]))
    with pytest.raises(ValueError, match="text completions"):
        reward(["a red circle"], ["a red circle"])
    with pytest.raises(ValueError, match="metric"):
        ShapesDetectorReward(metric="f1")


def test_the_shipped_detector_reads_true_renders_as_the_verifier_does():
    """On fresh renders of every category the verifier is exact (docs/shapes.md); the detector must
    agree on at least 97% per category (it was trained on other seeds)."""
    scenes = sample_category_scenes("all", 360, seed=12345)
    images, prompts = render_batch(scenes), [s.prompt for s in scenes]
    reward = build_reward(RewardSpec(name="shapes_detector", args={"metric": "exact"}))
    exact = reward(prompts, images)
    for category in CATEGORIES:
        chosen = [e for e, s in zip(exact, scenes) if s.spec.category == category]
        assert sum(chosen) / len(chosen) >= 0.97, category
    assert all(verify_image(p, image).exact for p, image in zip(prompts[:20], images[:20]))
    score = build_reward(RewardSpec(name="shapes_detector"))(prompts[:8], torch.zeros(8, 3, 32, 32))
    assert all(0.0 <= s < 1.0 for s in score)  # a blank canvas fails every prompt (partial credit at most)


@pytest.mark.slow
def test_quick_training_run_writes_a_loadable_detector_and_report(tmp_path):
    out = tmp_path / "detector.safetensors"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_shapes_detector.py"), "--quick",
                             "--threads", "1", "--out", str(out)], check=False, capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["hyperparameters"]["quick"] and report["training"]["history"][-1]["step"] == 30
    assert [row["case"] for row in report["accuracy"]] == ["true renders", "tokenizer redraws"]
    assert {row["measure"] for row in report["agreement"]} == {"verifier exact", "detector exact", "agreement"}
    assert load_detector(str(out)).width == 32


def test_the_reward_never_uses_the_verifiers_eyes(monkeypatch):
    """Only the rules are shared: the verifier's image reading must not run inside the trained reward."""
    import rlalign.shapes.verify as verifier

    def forbidden(*_, **__):
        raise AssertionError("the verifier's detect_objects ran inside the trained reward")

    monkeypatch.setattr(verifier, "detect_objects", forbidden)
    scenes = sample_category_scenes("all", 6, seed=2)
    scores = ShapesDetectorReward()([s.prompt for s in scenes], render_batch(scenes))
    assert len(scores) == 6 and all(0.0 <= s <= 1.0 for s in scores)
