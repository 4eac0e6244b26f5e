"""scripts/compare_runs.py: two runs with the same seed are identical value for value and byte for byte;
another seed is reported as different."""

import importlib.util
from pathlib import Path

import pytest
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.evaluation.run_report import write_summary
from rlalign.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    checkpoint = save_tiny_checkpoint(root)
    runs = []
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        cfg = tiny_config(root / name, checkpoint, steps=2, seed=seed)
        Trainer(cfg).run()
        write_summary(cfg.output_dir)
        runs.append(Path(cfg.output_dir))
    return runs


def test_the_same_seed_twice_is_identical(three_runs):
    differences, compared = compare_runs.compare(three_runs[0], three_runs[1])
    assert differences == [] and compared > 50


def test_another_seed_is_reported(three_runs):
    differences, _ = compare_runs.compare(three_runs[0], three_runs[2])
    assert any(line.startswith("final adapters differ") for line in differences)
    assert any(line.startswith("step ") for line in differences)
