"""Smoke tier: every CLI command runs end to end as a user would call it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlalign.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def rlalign(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rlalign.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_commands_are_listed():
    assert {"config", "showcase"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    result = rlalign(*([command] if command else []), "--help")
    assert result.returncode == 0 and "usage: rlalign" in result.stdout


def test_config_prints_the_resolved_config():
    result = rlalign("config", "configs/examples/custom_reward.yaml", "grpo.group_size=4")
    assert result.returncode == 0, result.stderr
    assert "group_size: 4" in result.stdout and "samples_per_step=16" in result.stdout


def test_config_explain_prints_documentation():
    result = rlalign("config", "configs/examples/custom_reward.yaml", "--explain")
    assert "grpo.group_size = 8" in result.stdout and "advantages compare samples within a group" in result.stdout


def test_config_error_exits_2_naming_the_key():
    result = rlalign("config", "configs/examples/custom_reward.yaml", "grpo.group_size=1")
    assert result.returncode == 2 and "'grpo.group_size'" in result.stderr and "Traceback" not in result.stderr


def test_config_checks_prefix_steps_against_the_policys_steps():
    # T comes from the checkpoint's metadata (the built-in generator has 6 scales) or from
    # policy.insertion.steps, without loading any weights.
    result = rlalign("config", "configs/shapes_nextscale.yaml", "grpo.prefix_steps=7")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'grpo.prefix_steps' = 7" in result.stderr and "T = 6" in result.stderr
    result = rlalign("config", "configs/shapes_insertion.yaml", "policy.insertion.steps=4", "grpo.prefix_steps=5")
    assert result.returncode == 2 and "T = 4" in result.stderr
    assert rlalign("config", "configs/shapes_nextscale.yaml", "grpo.prefix_steps=6").returncode == 0


def test_showcase_writes_grid_and_report(tmp_path):
    result = rlalign("showcase", "--out", str(tmp_path), "--count", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["splits"]["heldout"]["true_prompt"]["exact_match"] == 1.0
    assert report["splits"]["train"]["other_prompt"]["exact_match"] <= 0.25
    assert (tmp_path / "showcase.png").stat().st_size > 1000
    assert "exact match" in result.stdout


SCORE_CONFIG = """\
# Purpose: smoke test of `rlalign score`: one trained custom reward, the Shapes verifier for --eval.
# Launch:  rlalign score THIS_FILE FOLDER [--eval] [--per-item]
rewards:
  functions:
    - name: rlalign.rewards.examples:saturation
      label: saturation
  eval:
    - name: shapes_eval
      args: {metric: exact}
"""


def _write_shapes_folder(folder: Path) -> None:
    """Six true Shapes renders as PNGs with prompts.json, except 02.png gets scene 3's prompt."""
    from PIL import Image

    from rlalign.shapes import render_batch, sample_scenes

    scenes = sample_scenes("heldout", 6, seed=0)
    prompts = {}
    for index, (scene, image) in enumerate(zip(scenes, render_batch(scenes))):
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        Image.fromarray(pixels).save(folder / f"{index:02d}.png")
        prompts[f"{index:02d}.png"] = scenes[3].prompt if index == 2 else scene.prompt
    (folder / "prompts.json").write_text(json.dumps(prompts))


def _table_cells(line: str) -> list[str]:
    """The cells of one row of a Markdown table ([] for any other line)."""
    return [cell.strip() for cell in line.strip()[1:-1].split("|")] if line.startswith("|") else []


def test_score_prints_trained_and_eval_tables(tmp_path):
    config = tmp_path / "score.yaml"
    config.write_text(SCORE_CONFIG)
    images = tmp_path / "images"
    images.mkdir()
    _write_shapes_folder(images)

    trained = rlalign("score", str(config), str(images), "--per-item")
    assert trained.returncode == 0, trained.stderr
    assert "scored 6 images" in trained.stdout and "prompts from prompts.json" in trained.stdout
    rows = {cells[0]: cells for cells in map(_table_cells, trained.stdout.splitlines()) if cells}
    assert rows["saturation"][6] == "6" and rows["total"][2:7] == rows["saturation"][2:7]  # total = one reward
    assert {f"{index:02d}.png" for index in range(6)} <= set(rows)  # --per-item rows

    evaluation = rlalign("score", str(config), str(images), "--eval")
    assert evaluation.returncode == 0, evaluation.stderr
    verifier = next(cells for cells in map(_table_cells, evaluation.stdout.splitlines()) if cells[:1] == ["shapes_eval"])
    assert verifier[2] == "0.8333" and verifier[6] == "6"  # 5 of 6 exact: 02.png has a wrong prompt


def test_score_input_errors_exit_2(tmp_path):
    config = tmp_path / "score.yaml"
    config.write_text(SCORE_CONFIG)
    empty = rlalign("score", str(config), str(tmp_path))
    assert empty.returncode == 2 and "holds no images" in empty.stderr and "Traceback" not in empty.stderr
    (tmp_path / "a_red_circle.png").write_bytes(b"not a png")
    unreadable = rlalign("score", str(config), str(tmp_path))
    assert unreadable.returncode == 2 and "cannot read image" in unreadable.stderr
    (tmp_path / "a_red_circle.png").unlink()
    (tmp_path / "captions.txt").write_text("a red circle without a tab\n")
    captions = rlalign("score", str(config), str(tmp_path / "captions.txt"))
    assert captions.returncode == 2 and "captions.txt:1 has no TAB" in captions.stderr


def test_overrides_may_follow_the_options(capsys):
    from rlalign.cli import main

    assert main(["config", str(ROOT / "configs" / "shapes_nextscale.yaml"), "--explain", "train.steps=7"]) == 0
    assert "train.steps = 7" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a stray option is still an error
        main(["config", str(ROOT / "configs" / "shapes_nextscale.yaml"), "--no-such-option"])


def test_version_names_rlalign_and_its_main_dependencies(capsys):
    from importlib import metadata

    import rlalign
    from rlalign.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())  # argparse may wrap the line on a narrow terminal
    assert printed.startswith(f"rlalign {rlalign.__version__} (")
    for name in ("torch", "trl", "peft", "transformers", "open_clip_torch"):
        assert f"{name} {metadata.version(name)}" in printed
