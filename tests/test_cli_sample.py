"""Smoke tier: `rlalign sample` end to end with the built-in generator, with and without an adapter."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from rlalign.cli import main
from rlalign.config import PolicyConfig
from rlalign.policies import load_policy

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "examples" / "custom_reward.yaml"


def rlalign(*args):
    return subprocess.run([sys.executable, "-m", "rlalign.cli", *args], check=False, capture_output=True, text=True, cwd=ROOT)


def test_sample_writes_a_labelled_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = rlalign("sample", str(CONFIG), "--prompts", "a red circle on the left", "a blue square above a green circle",
                     "--samples", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "6 samples of 2 prompts, base model" in result.stdout
    width, height = Image.open(out).size
    assert width > 3 * 32 and height > 2 * 32  # 3 columns × 2 rows of upscaled tiles with labels


def test_sample_with_an_adapter_and_a_prompt_source(tmp_path, capsys):
    policy = load_policy(PolicyConfig())
    policy.save_adapter(tmp_path / "adapter")
    out = tmp_path / "grid.png"
    code = main(["sample", str(CONFIG), "--prompts", "shapes-eval:heldout", "--prefix-steps", "2",
                 "--adapter", str(tmp_path / "adapter"), "--out", str(out)])
    assert code == 0 and out.is_file()
    assert "147 samples of 147 prompts, adapter" in capsys.readouterr().out


def test_sample_reads_prompt_rows_and_an_adapter_path_under_home(tmp_path, capsys, monkeypatch):
    """jsonl: rows label the grid with their "prompt" (the image model used to refuse rows); a quoted `~` in
    --adapter is the home directory, as in the config's paths."""
    load_policy(PolicyConfig()).save_adapter(tmp_path / "adapter")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a red circle", "solution": "red"}\n')
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "grid.png"
    assert main(["sample", str(CONFIG), "--prompts", f"jsonl:{tmp_path / 'rows.jsonl'}", "--adapter", "~/adapter",
                 "--prefix-steps", "2", "--out", str(out)]) == 0
    assert f"adapter {tmp_path / 'adapter'} on steps 1..2" in capsys.readouterr().out and out.is_file()


def test_sample_of_a_text_family_writes_a_markdown_table(tmp_path, capsys):
    out = tmp_path / "samples.png"
    code = main(["sample", "configs/editflow_text.yaml", "--prompts", "sums:heldout", "--samples", "2",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "50 samples of 25 prompts, base model" in printed
    table = (tmp_path / "samples.md").read_text().splitlines()
    assert table[0] == "| prompt | sample |" and len(table) == 2 + 50
    assert table[2].startswith("| write 4 as a sum of 2 digits | \\boxed{")


def test_sample_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["sample", str(CONFIG), "--prompts", "a red circle", "--prefix-steps", "9"]) == 2
    assert "prefix_steps must be 1..6" in capsys.readouterr().err
    assert main(["sample", str(CONFIG), "--prompts", "a red circle", "--adapter", str(tmp_path)]) == 2
    assert "holds no peft adapter" in capsys.readouterr().err


def test_prompt_words_the_text_encoder_does_not_know_are_refused(tmp_path, capsys):
    # "dragon" is not in the built-in generator's vocabulary: it would read as <unk>, and the image
    # would be conditioned on "a purple <unk>". Refused, naming the word, unless explicitly allowed.
    assert main(["sample", str(CONFIG), "--prompts", "a purple dragon", "--out", str(tmp_path / "g.png")]) == 2
    error = capsys.readouterr().err
    assert "--prompts: 1 word(s) the text encoder does not know, e.g. in 'a purple dragon': dragon" in error
    assert "Known words:" in error and "prompts.allow_unknown_words=true" in error
    assert not (tmp_path / "g.png").exists()
    assert main(["sample", str(CONFIG), "prompts.allow_unknown_words=true", "--prompts", "a purple dragon",
                 "--samples", "1", "--out", str(tmp_path / "g.png")]) == 0


def test_training_refuses_unknown_words_in_a_prompt_file_at_start(tmp_path):
    from rlalign.config import load_config
    from rlalign.training.trainer import Trainer

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na glowing dragon\n")
    cfg = load_config(CONFIG, [f"prompts.train=file:{prompts}", f"output_dir={tmp_path / 'run'}",
                               "logging.wandb_mode=disabled"])
    with pytest.raises(ValueError, match=r"prompts.train \(file:.*dragon, glowing"):
        Trainer(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before anything is written


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"])
def test_a_garbage_or_directory_checkpoint_is_one_clear_line(tmp_path, capsys, content):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(content)
    assert main(["sample", str(CONFIG), f"policy.checkpoint={bad}", "--prompts", "a red circle"]) == 2
    error = capsys.readouterr().err
    assert f"{bad} is not a readable safetensors file" in error and "Traceback" not in error
    assert main(["sample", str(CONFIG), f"policy.checkpoint={tmp_path}", "--prompts", "a red circle"]) == 2
    assert "is a directory; give the .safetensors file itself" in capsys.readouterr().err


def test_a_garbage_var_state_dict_names_the_file(tmp_path):
    from rlalign.policies.next_scale.var_import import CheckpointMismatchError, load_state_dict_file

    for name in ("var.pth", "var.safetensors"):
        (tmp_path / name).write_bytes(b"\x80\x04garbage")
        with pytest.raises(CheckpointMismatchError, match=f"{name} cannot be read as a .* state dict"):
            load_state_dict_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_state_dict_file(tmp_path)


def test_load_adapter_reads_a_home_relative_directory(tmp_path, monkeypatch):
    """`~/adapter` loads the adapter saved there: a fresh policy ends with its (non-zero) LoRA weights."""
    monkeypatch.setenv("HOME", str(tmp_path))
    policy = load_policy(PolicyConfig())
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in policy.trainable_parameters():
            parameter.copy_(torch.randn_like(parameter))
    policy.save_adapter(tmp_path / "adapter")
    saved = [p.detach().cpu().clone() for p in policy.trainable_parameters()]
    fresh = load_policy(PolicyConfig())
    defaults = [p.detach().cpu().clone() for p in fresh.trainable_parameters()]
    fresh.load_adapter("~/adapter")  # Python callers get what the CLI's --adapter gets
    loaded = [p.detach().cpu() for p in fresh.trainable_parameters()]
    assert len(loaded) == len(saved) > 0
    assert all(torch.equal(a, b) for a, b in zip(loaded, saved))
    assert not any(torch.equal(a, b) for a, b in zip(saved, defaults))  # the load changed every tensor
