"""The Python API (rlalign/api.py, docs/api.md): TRL's GRPOTrainer shape, callables and registered names
mixed, TRL's reward keywords (trainer_state, log_metric, log_extra), async rewards run together."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from support.next_scale import PROMPTS
from support.training import save_tiny_checkpoint, tiny_config

from rlalign import GRPOTrainer
from rlalign.config import to_dict
from rlalign.utils.metrics import read_metrics

STEPS = 2


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def base_config(tmp_path, checkpoint) -> dict:
    values = to_dict(tiny_config(tmp_path, checkpoint, steps=STEPS))
    values["train"]["eval_every"] = STEPS
    return values


def test_notebook_and_async_rewards_train_beside_a_registered_one(tmp_path, tiny_checkpoint):
    """A reward defined here (not importable), two async rewards that can only finish together (each
    waits for the other's event: run one after the other they would never return) and a registered name
    train one run; TRL's keywords reach the rewards that take them."""
    seen_steps, first, second = [], asyncio.Event(), asyncio.Event()

    def brightness(prompts, completions, trainer_state, log_metric, log_extra, **kwargs):
        seen_steps.append(trainer_state.global_step)
        values = completions.mean(dim=(1, 2, 3))  # [B] mean pixel
        log_metric("brightness_max", float(values.max()))
        log_extra("brightness", values.tolist())
        return values.tolist()

    async def waits_for_second(prompts, completions, **kwargs):
        first.set()
        await asyncio.wait_for(second.wait(), timeout=60)  # a guard against a hang, not a stand-in
        return [0.5] * len(completions)

    async def waits_for_first(prompts, completions, **kwargs):
        second.set()
        await asyncio.wait_for(first.wait(), timeout=60)
        first.clear()  # so the next batch waits again
        second.clear()
        return [1.0] * len(completions)

    out = tmp_path / "run"
    trainer = GRPOTrainer(base_config(tmp_path, tiny_checkpoint),
                          reward_funcs=[brightness, waits_for_second, waits_for_first, "rlalign.rewards.examples:saturation"],
                          reward_weights=[1.0, 0.0, 0.0, 0.5], prompts=PROMPTS[:2], eval_prompts={"tiny": PROMPTS},
                          task="shapes", output_dir=out)
    summary = trainer.train()
    assert summary["steps"] == STEPS
    records = read_metrics(out / "metrics.jsonl")
    steps = [r for r in records if "time/step" in r]
    for label in ("brightness", "waits_for_second", "waits_for_first", "rlalign.rewards.examples:saturation"):
        assert all(f"rewards/{label}/mean" in r for r in steps), label
    assert [r["rewards/waits_for_first/mean"] for r in steps] == [1.0] * STEPS
    assert 0 in seen_steps and STEPS - 1 in seen_steps  # global_step: the steps finished before, as in TRL
    assert all(0 <= r["brightness_max"] <= 1 for r in steps)  # log_metric, averaged per step
    extras = [json.loads(line) for line in (out / "reward_extras.jsonl").read_text().splitlines()]
    assert [e["step"] for e in extras] == list(range(1, STEPS + 1))
    assert len(extras[0]["brightness"]) == len(extras[0]["prompt"]) == 2 * 4  # prompts_per_step × group
    assert "eval/tiny/exact" in records[-1] or any("eval/tiny/exact" in r for r in records)
    saved = (out / "inputs").glob("train-*.txt")
    assert [p.read_text().splitlines() for p in saved] == [PROMPTS[:2]]


def test_a_run_with_a_callable_says_how_to_resume_it(tmp_path, tiny_checkpoint, monkeypatch):
    from rlalign.cli import main

    def constant(completions, **kwargs):
        return [1.0] * len(completions)

    out = tmp_path / "run"
    GRPOTrainer(base_config(tmp_path, tiny_checkpoint), reward_funcs=[constant, "rlalign.rewards.examples:saturation"],
                output_dir=out).trainer.run(stop_after=1)
    saved = out / "checkpoints" / "step_000001" / "config.yaml"
    assert main(["train", str(saved), "--resume", str(out)]) == 2  # the CLI cannot rebuild the function
    monkeypatch.setenv("HOME", str(tmp_path))  # `~` and $VARS in resume and output_dir, as in a config's paths
    resumed = GRPOTrainer(base_config(tmp_path, tiny_checkpoint), reward_funcs=[constant, "rlalign.rewards.examples:saturation"],
                          resume="~/run", output_dir="$HOME/run")
    assert resumed.config.output_dir == str(out)
    resumed.train()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "time/step" in r] == [1, 2]


def test_the_cli_error_for_a_callable_run_names_the_api(tmp_path, tiny_checkpoint, capsys):
    from rlalign.cli import main

    out = tmp_path / "run"
    GRPOTrainer(base_config(tmp_path, tiny_checkpoint), reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
                output_dir=out).trainer.run(stop_after=1)
    saved = out / "checkpoints" / "step_000001" / "config.yaml"
    assert main(["train", str(saved), "--resume", str(out)]) == 2
    assert "Python function given to rlalign's Python API" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"reward_funcs": []}, "reward_funcs is empty"),
    ({"reward_funcs": ["clip_score"], "reward_weights": [1.0, 2.0]}, "2 entries for 1 reward_funcs"),
    ({"reward_weights": [1.0]}, "reward_weights needs reward_funcs"),
    ({"reward_funcs": [42]}, r"reward_funcs\[0\] is a int"),
    ({"prompts": ["a red circle", {"prompt": "x"}]}, "one kind per list"),
    ({"prompts": ["two\nlines"]}, "spans lines"),
    ({"prompts": ["a\rb"]}, "spans lines"),
    ({"prompts": [" padded "]}, "surrounding spaces"),
    ({"prompts": {"train": ["a red circle"]}}, r"pick one split \(dataset\['train'\]\)"),
    ({"overrides": "train.steps=3"}, "not one string"),
])
def test_bad_arguments_get_clear_errors(tmp_path, tiny_checkpoint, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        GRPOTrainer(base_config(tmp_path, tiny_checkpoint), **kwargs)


def test_two_rewards_of_one_name_are_refused(tmp_path, tiny_checkpoint):
    def score(completions, **kwargs):
        return [0.0] * len(completions)

    other = score
    with pytest.raises(ValueError, match="two reward functions are named 'score'"):
        GRPOTrainer(base_config(tmp_path, tiny_checkpoint), reward_funcs=[score, other])


def test_trls_documented_example_rewards_run_unchanged():
    """Example 3 (a reference column) and example 5 (async) of TRL's GRPO documentation
    (docs/source/grpo_trainer.md, "Using a custom reward function"), copied as the docs give them,
    through rlalign's RewardWorker with the docs' own inputs and expected values."""
    import re

    from rlalign.rewards.worker import RewardWorker

    def reward_func(completions, ground_truth, **kwargs):
        # Regular expression to capture content inside \boxed{}
        matches = [re.search(r"\\boxed\{(.*?)\}", completion) for completion in completions]
        contents = [match.group(1) if match else "" for match in matches]
        # Reward 1 if the content is the same as the ground truth, 0 otherwise
        return [1.0 if c == gt else 0.0 for c, gt in zip(contents, ground_truth)]

    async def async_reward_func(prompts, completions, **kwargs):
        # Simulate an I/O-bound call (e.g., HTTP request, database lookup)
        await asyncio.sleep(0.01)
        # Simple toy reward: 1.0 if the completion is non-empty, else 0.0
        return [1.0 if completion else 0.0 for completion in completions]

    specs = [{"name": "python:reward_func", "label": "reward_func"},
             {"name": "python:async_reward_func", "label": "async_reward_func"}]
    worker = RewardWorker(specs, combine=None, callables={"python:reward_func": reward_func,
                                                         "python:async_reward_func": async_reward_func})
    prompts = ["Problem: Solve the equation $2x + 3 = 7$. Solution:", "Problem: Solve the equation $3x - 5 = 10$."]
    completions = [r" The solution is \boxed{2}.", r" The solution is \boxed{6}."]
    result = worker.score([{"prompt": p, "ground_truth": g} for p, g in zip(prompts, ["2", "5"])], completions)
    assert result.per_reward["reward_func"].tolist() == [1.0, 0.0]
    assert result.per_reward["async_reward_func"].tolist() == [1.0, 1.0]
    assert torch.isfinite(torch.tensor(result.seconds["async_reward_func"]))


def test_an_adapter_describes_itself_and_sample_and_eval_take_its_m(tmp_path, tiny_checkpoint, capsys):
    """The saved adapter carries its card (base identity, family, m, T, rewards, the last evaluation) and a
    model card; peft still loads it; `rlalign sample`/`eval` use its m and say that the config differs."""
    import yaml
    from peft import PeftModel

    from rlalign.cli import main
    from rlalign.policies.next_scale.model import load_model
    from rlalign.training.adapter_card import read_card

    out = tmp_path / "run"
    trainer = GRPOTrainer(base_config(tmp_path, tiny_checkpoint), output_dir=out)  # grpo.prefix_steps: 2
    trainer.train()
    adapter = out / "checkpoints" / f"step_{STEPS:06d}" / "adapter"
    card = read_card(adapter)
    assert card["prefix_steps"] == 2 and card["num_steps"] == 6 and card["family"] == "next_scale"
    assert card["base_model"].startswith(f"{tiny_checkpoint.name}@sha256:") and str(tmp_path) not in card["base_model"]
    assert [r["name"] for r in card["rewards"]] == ["rlalign.rewards.examples:saturation"]
    assert card["evaluation"]["step"] == STEPS and "overall" in card["evaluation"]["sets"]["tiny"]
    readme = (adapter / "README.md").read_text()
    assert "first m = 2 of T = 6" in readme and "| overall |" in readme and "base_model: " in readme
    peft_config = json.loads((adapter / "adapter_config.json").read_text())
    assert peft_config["base_model_name_or_path"] == card["base_model"]
    plain = load_model(str(tiny_checkpoint)).transformer  # no rlalign policy: peft's own loader reads it
    restored = PeftModel.from_pretrained(plain, str(adapter))
    ours = trainer.trainer.policy.adapter_state()
    theirs = {k: v for k, v in restored.state_dict().items() if "lora_" in k}
    assert len(theirs) == len(ours) and all(torch.equal(ours[k], theirs[k.replace(".weight", ".default.weight")])
                                            for k in ours)

    config = tmp_path / "m4.yaml"
    values = base_config(tmp_path, tiny_checkpoint)
    values["grpo"]["prefix_steps"] = 4
    config.write_text(yaml.safe_dump(values))
    capsys.readouterr()
    assert main(["eval", str(config), "--adapter", str(adapter), "--out", str(tmp_path / "eval")]) == 0
    captured = capsys.readouterr()
    assert "trained with m = 2" in captured.err and "grpo.prefix_steps = 4: using 2" in captured.err
    assert "adapter on steps 1..2" in captured.out
    assert main(["sample", str(config), "--adapter", str(adapter), "--prompts", PROMPTS[0],
                 "--out", str(tmp_path / "s.png")]) == 0
    assert "adapter" in capsys.readouterr().out


def test_the_cli_finds_module_function_rewards_in_the_working_directory(tmp_path):
    """`rlalign` (the console script, whose own directory Python puts first on the path) reads
    `my_rewards:brightness` from the working directory, as `python -m` would, and says where it looked
    when a module is missing."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    (tmp_path / "my_rewards.py").write_text(
        "def brightness(prompts, completions, **kwargs):\n    return completions.mean(dim=(1, 2, 3)).tolist()\n")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "images" / "a red circle.png")
    config = Path(__file__).resolve().parents[1] / "configs" / "shapes_nextscale.yaml"
    rlalign = Path(sys.executable).parent / "rlalign"

    def score(reward: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(rlalign), "score", str(config), "images", f"rewards.functions=[{{name: '{reward}'}}]"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    found = score("my_rewards:brightness")
    assert found.returncode == 0, found.stderr
    assert "brightness" in found.stdout and "0.333" in found.stdout  # red: mean over R, G, B = 1/3
    missing = score("no_such_module:fn")
    assert missing.returncode == 2
    assert f"looked on the Python path: the working directory ({tmp_path})" in missing.stderr
