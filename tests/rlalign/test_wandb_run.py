"""One wandb run per training run: a resume continues the run whose id `output_dir/wandb_run_id` keeps
(offline: a new offline-run-* directory per process, all with that id), and each evaluation's grids
(images) or text samples (tables) go to wandb while metrics.jsonl keeps scalars only."""

import json
import re
from pathlib import Path

import pytest
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import RUN_ID_FILE, MetricsLogger, read_metrics

OFFLINE = {"logging.wandb_mode": "offline"}
GOLDEN_EDITFLOW = Path(__file__).resolve().parents[2].parent / "shared" / "golden" / "editflow" / "model"


@pytest.fixture(autouse=True)
def wandb_in_tmp(tmp_path, monkeypatch):
    """Every wandb directory under tmp_path; offline whatever the environment says."""
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / variable.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def segments(run: Path) -> list[Path]:
    """The offline-run-* directories of a run directory, oldest first (a name starts with its time)."""
    return sorted((run / "wandb").glob("offline-run-*"))


def media(segment: Path, kind: str) -> list[str]:
    """Paths (relative to files/media/<kind>) of the media files a run segment logged."""
    root = segment / "files" / "media" / kind
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_resumed_run_continues_the_same_wandb_run_and_logs_each_evaluations_grid(tmp_path, tiny_checkpoint):
    Trainer(tiny_config(tmp_path, tiny_checkpoint, **OFFLINE)).run(stop_after=2)
    run = tmp_path / "run"
    run_id = (run / RUN_ID_FILE).read_text().strip()
    assert len(run_id) == 8 and [re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}", s.name) is not None
                                 for s in segments(run)] == [True]

    Trainer(tiny_config(tmp_path, tiny_checkpoint, **OFFLINE), resume=str(run)).run()
    assert (run / RUN_ID_FILE).read_text().strip() == run_id
    first, resumed = segments(run)
    for segment in (first, resumed):  # wandb's own record of each process: one file named by the run id
        # offline-run-<time>-<id>, with -1, -2, ... when two processes start within one second
        assert re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", segment.name)
        assert [p.name for p in segment.glob("*.wandb")] == [f"run-{run_id}.wandb"]
        assert run_id.encode() in (segment / f"run-{run_id}.wandb").read_bytes()
    # Evaluations at step 0 (the first process) and step 4 (= train.steps, the resumed one): their grids.
    assert (run / "samples" / "step_000000_tiny.png").is_file() and (run / "samples" / "step_000004_tiny.png").is_file()
    for segment, step in ((first, 0), (resumed, 4)):
        images = media(segment, "images")
        assert len(images) == 1 and images[0].startswith(f"samples/tiny_{step}_") and images[0].endswith(".png")
    assert all(not key.startswith(("samples/", "completions/")) for r in read_metrics(run / "metrics.jsonl")
               for key in r)  # media go to wandb only


def test_a_fresh_logger_takes_a_new_id_and_a_resumed_one_keeps_it(tmp_path):
    with MetricsLogger(tmp_path, wandb_mode="offline") as logger:
        first = logger._run.id
    assert (tmp_path / RUN_ID_FILE).read_text().strip() == first
    with MetricsLogger(tmp_path, wandb_mode="offline", resume=True) as logger:
        assert logger._run.id == first
    with MetricsLogger(tmp_path, wandb_mode="offline") as logger:  # not a resume: a run of its own
        assert logger._run.id != first and (tmp_path / RUN_ID_FILE).read_text().strip() == logger._run.id


def test_a_resume_without_an_id_file_starts_one(tmp_path):
    with MetricsLogger(tmp_path, wandb_mode="offline", resume=True) as logger:
        assert (tmp_path / RUN_ID_FILE).read_text().strip() == logger._run.id


def test_disabled_wandb_writes_no_id_and_ignores_media(tmp_path):
    with MetricsLogger(tmp_path, wandb_mode="disabled", resume=True) as logger:
        logger.log_media(0, images={"x": tmp_path / "missing.png"}, tables={"x": (["a"], [["b"]])})
    assert not (tmp_path / RUN_ID_FILE).exists() and not (tmp_path / "wandb").exists()


def test_log_media_logs_a_text_table_to_wandb_only(tmp_path):
    rows = [["w5 w6", "w7", "w7 w8"], ["w9", "w10", "w9"]]
    with MetricsLogger(tmp_path, wandb_mode="offline") as logger:
        logger.log({"eval/rows/exact": 0.5}, step=3)
        logger.log_media(3, tables={"rows": (["prompt", "base", "adapter"], rows)})
        segment = logger.wandb_dir
    [table] = media(segment, "table")
    assert table.startswith("completions/rows_3_") and table.endswith(".table.json")
    logged = json.loads((segment / "files" / "media" / "table" / table).read_text())
    assert logged["columns"] == ["prompt", "base", "adapter"] and logged["data"] == rows
    assert [set(r) for r in read_metrics(tmp_path / "metrics.jsonl")] == [{"step", "time", "eval/rows/exact"}]


@pytest.mark.skipif(not (GOLDEN_EDITFLOW / "config.json").is_file(), reason="golden Edit Flow checkpoint not found")
def test_a_text_family_logs_its_eval_samples_as_tables(tmp_path):
    from rlalign.config import load_config

    rows = [{"prompt": f"w{5 + i} w{6 + i}", "solution": f"w{7 + i}"} for i in range(3)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = load_config({
        "policy": {"kind": "edit_flow", "checkpoint": str(GOLDEN_EDITFLOW),
                   "edit_flow": {"tau": 0.25, "mask_length": 2, "max_length": 16}, "lora": {"rank": 4}},
        "prompts": {"train": f"jsonl:{tmp_path / 'rows.jsonl'}", "eval": {"rows": f"jsonl:{tmp_path / 'rows.jsonl'}"},
                    "eval_samples_per_prompt": 2},
        "rewards": {"functions": [{"name": "rlalign.rewards.examples:exact_match", "label": "match"}], "eval": []},
        "grpo": {"group_size": 2, "prefix_steps": 2},
        "train": {"steps": 1, "prompts_per_step": 2, "micro_batch_size": 4},
        "logging": {"wandb_mode": "offline", "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    })
    Trainer(cfg).run()
    run = tmp_path / "run"
    samples = json.loads((run / "samples" / "step_000001_rows.json").read_text())
    assert [s["prompt"] for s in samples] == [r["prompt"] for r in rows]
    assert all(isinstance(s["base"], str) and isinstance(s["adapter"], str) for s in samples)
    [segment] = segments(run)
    tables = media(segment, "table")
    assert [t.split("_")[0] + "_" + t.split("_")[1] for t in tables] == ["completions/rows_0", "completions/rows_1"]
    logged = json.loads((segment / "files" / "media" / "table" / tables[-1]).read_text())
    assert logged["columns"] == ["prompt", "base", "adapter"]
    assert logged["data"] == [[s["prompt"], s["base"], s["adapter"]] for s in samples]
