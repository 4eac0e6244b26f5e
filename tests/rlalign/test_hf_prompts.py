"""The `hf:` prompt source: Hugging Face `datasets` data read as TRL rows, exactly as `jsonl:` rows, from
save_to_disk directories, data files and the local Hub cache, strictly offline; and every error it names."""

import json
import os
import shutil
import socket

import datasets
import datasets.config
import huggingface_hub.constants
import pytest
from rlalign.rewards.worker import RewardWorker

from rlalign.config import ConfigError, RewardSpec, load_config
from rlalign.tasks import parse_prompt_source, prompts_from_arguments
from rlalign.tasks.hf import datasets_cache, offline, parse_hf_argument

COLUMNS = {"prompt": ["1 + 1 =", "2 + 3 =", "4 + 4 ="], "solution": ["2", "5", "8"], "level": [1, 2, 2]}
ROWS = [dict(zip(COLUMNS, values)) for values in zip(*COLUMNS.values())]
EXACT = "rlalign.rewards.examples:exact_match"
SEEN: dict = {}


def record_columns(prompts, completions, **columns):
    """A reward that keeps what it was called with."""
    SEEN.update(prompts=prompts, columns=columns)
    return [0.0] * len(completions)


@pytest.fixture(autouse=True)
def isolated_offline(tmp_path, monkeypatch):
    """A private, empty HF_HOME (the real cache is never touched) and no network: any connect fails the test."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    attempts = []

    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"test: network access to {address} refused")
        return real_connect(self, address, *args, **kwargs)

    def resolve(host, *args, **kwargs):
        attempts.append(host)
        raise OSError(f"test: looking up {host} refused")

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    yield
    assert not attempts, f"hf: tried to reach the network: {attempts}"


def jsonl_rows(tmp_path, rows=ROWS):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return parse_prompt_source(f"jsonl:{path}").all()


def test_save_to_disk_dataset_and_dataset_dict_give_jsonl_rows(tmp_path):
    datasets.Dataset.from_dict(COLUMNS).save_to_disk(tmp_path / "one")
    both = datasets.DatasetDict({"train": datasets.Dataset.from_dict(COLUMNS),
                                 "test": datasets.Dataset.from_dict({k: v[:1] for k, v in COLUMNS.items()})})
    both.save_to_disk(tmp_path / "both")
    source = parse_prompt_source(f"hf:{tmp_path / 'one'}", task="sums")
    assert source.all() == ROWS == jsonl_rows(tmp_path)
    assert source.task == "sums" and source.fixed is not None
    assert parse_prompt_source(f"hf:{tmp_path / 'both'}:train").all() == ROWS
    assert parse_prompt_source(f"hf:{tmp_path / 'both'}:test").all() == ROWS[:1]


@pytest.mark.parametrize("suffix, write", [
    (".jsonl", lambda d, p: d.to_json(p)),
    (".json", lambda d, p: d.to_json(p, lines=False)),
    (".csv", lambda d, p: d.to_csv(p, index=False)),
    (".parquet", lambda d, p: d.to_parquet(p)),
])
def test_data_files_give_jsonl_rows(tmp_path, suffix, write):
    path = tmp_path / f"rows{suffix}"
    write(datasets.Dataset.from_dict(COLUMNS), str(path))
    rows = parse_prompt_source(f"hf:{path}").all()
    if suffix == ".csv":  # CSV columns are typed by inference: "2" comes back as 2
        rows = [{**row, "solution": str(row["solution"])} for row in rows]
    assert rows == ROWS
    assert parse_prompt_source(f"hf:{path}:train").all() == parse_prompt_source(f"hf:{path}").all()
    assert (tmp_path / "hf_home" / "datasets").is_dir()  # datasets' own cache, under the private HF_HOME


def test_the_column_option_picks_the_prompt_column(tmp_path):
    columns = {"question": COLUMNS["prompt"], "solution": COLUMNS["solution"]}
    datasets.Dataset.from_dict(columns).save_to_disk(tmp_path / "q")
    rows = parse_prompt_source(f"hf:{tmp_path / 'q'}?column=question").all()
    assert rows == [{"prompt": p, "solution": s} for p, s in zip(columns["question"], columns["solution"])]
    assert list(rows[0]) == ["prompt", "solution"]


def test_columns_reach_the_rewards_as_keywords(tmp_path):
    datasets.Dataset.from_dict(COLUMNS).to_parquet(str(tmp_path / "rows.parquet"))
    prompts = parse_prompt_source(f"hf:{tmp_path / 'rows.parquet'}").all()
    worker = RewardWorker([RewardSpec(name=EXACT), RewardSpec(name=f"{__name__}:record_columns")])
    result = worker.score(prompts, ["2", "6", " 8 "])
    assert result.per_reward[EXACT].tolist() == [1.0, 0.0, 1.0]
    assert SEEN["prompts"] == COLUMNS["prompt"]
    assert {name: SEEN["columns"][name] for name in ("solution", "level")} == {"solution": ["2", "5", "8"],
                                                                               "level": [1, 2, 2]}


def test_conversational_prompts_are_kept_as_they_are(tmp_path):
    chats = [[{"role": "user", "content": "1 + 1 ="}], [{"role": "user", "content": "2 + 3 ="}]]
    datasets.Dataset.from_dict({"prompt": chats, "solution": ["2", "5"]}).save_to_disk(tmp_path / "chat")
    rows = parse_prompt_source(f"hf:{tmp_path / 'chat'}").all()
    assert rows == [{"prompt": chat, "solution": s} for chat, s in zip(chats, ["2", "5"])]
    assert rows == jsonl_rows(tmp_path, rows)


def fake_hub_cache(tmp_path, name, config="default"):
    """The layout `datasets.load_dataset(name, config)` leaves in the datasets cache after a download:
    OWNER___NAME/CONFIG/VERSION/HASH/{NAME-SPLIT.arrow, dataset_info.json}, built here from local files."""
    files = {}
    for split, count in (("train", 3), ("test", 1)):
        files[split] = str(tmp_path / f"{split}.jsonl")
        datasets.Dataset.from_dict({k: v[:count] for k, v in COLUMNS.items()}).to_json(files[split])
    with offline():  # load_dataset pings a download counter online, even for local files
        datasets.load_dataset("json", data_files=files, cache_dir=str(tmp_path / "build"))
    built = next(path for path in (tmp_path / "build" / "json").glob("*/*/*") if path.is_dir())
    owner, dataset = name.split("/")
    target = datasets_cache() / f"{owner}___{dataset}" / config / "0.0.0" / "abc123"
    target.mkdir(parents=True)
    for split in files:
        shutil.copy(built / f"json-{split}.arrow", target / f"{dataset}-{split}.arrow")
    info = json.loads((built / "dataset_info.json").read_text())
    info.update(config_name=config, dataset_name=dataset, builder_name=dataset)
    (target / "dataset_info.json").write_text(json.dumps(info))


def test_a_cached_hub_dataset_is_read_offline(tmp_path):
    fake_hub_cache(tmp_path, "fake-user/tiny-sums", config="main")
    assert parse_prompt_source("hf:fake-user/tiny-sums:train").all() == ROWS
    assert parse_prompt_source("hf:fake-user/tiny-sums:test?config=main").all() == ROWS[:1]
    with pytest.raises(ValueError, match="several splits \\(train, test\\); choose one"):
        parse_prompt_source("hf:fake-user/tiny-sums")
    with pytest.raises(ValueError, match="could not load 'fake-user/tiny-sums' from the local cache"):
        parse_prompt_source("hf:fake-user/tiny-sums:train?config=other")


def test_an_uncached_hub_name_fails_without_the_network(tmp_path):
    flags = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))
    cache = str(tmp_path / "hf_home" / "datasets")
    with pytest.raises(FileNotFoundError, match=r"'no-such-user/no-such-dataset' is not in the local cache") as info:
        parse_prompt_source("hf:no-such-user/no-such-dataset:train")
    message = str(info.value)
    assert cache in message and "never downloads" in message and "save_to_disk" in message
    assert "datasets.load_dataset('no-such-user/no-such-dataset')" in message
    # offline mode was on for the call only
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE,
            os.environ.get("HF_HUB_OFFLINE")) == flags


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict (train/test), a single Dataset, an empty one and ones with awkward columns, saved to disk."""
    tmp_path = tmp_path_factory.mktemp("saved")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(COLUMNS),
                          "test": datasets.Dataset.from_dict(COLUMNS)}).save_to_disk(tmp_path / "both")
    datasets.Dataset.from_dict(COLUMNS).save_to_disk(tmp_path / "one")
    datasets.Dataset.from_dict({"prompt": [], "solution": []}).save_to_disk(tmp_path / "empty")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(COLUMNS),
                          "test": datasets.Dataset.from_dict({"prompt": []})}).save_to_disk(tmp_path / "no_test")
    datasets.Dataset.from_dict({"prompt": ["p"], "completions": ["c"]}).save_to_disk(tmp_path / "reserved")
    datasets.Dataset.from_dict({"prompts": ["p"], "solution": ["s"]}).save_to_disk(tmp_path / "plural")
    (tmp_path / "plain").mkdir()
    (tmp_path / "notes.txt").write_text("a prompt\n")
    return tmp_path


@pytest.mark.parametrize("argument, error, message", [
    ("both", ValueError, r"has several splits \(train, test\); choose one, e.g. hf:.*both:train"),
    ("both:validation", ValueError, r"has no split 'validation'; its splits: train, test"),
    ("one:test", ValueError, r"is one Dataset \(saved without splits\), it has no split 'test'"),
    ("one?column=question", ValueError, r"has no column 'question'; its columns: prompt, solution, level"),
    ("one?column=solution", ValueError, r"has a 'prompt' column besides the chosen 'solution'"),
    ("reserved", ValueError, r"column\(s\) \['completions'\], which would collide with the reward call's own"),
    ("plural", ValueError, r"column\(s\) \['prompts'\], which would collide"),
    ("empty", ValueError, r"'.*empty' holds no rows"),
    ("no_test:test", ValueError, r"split 'test' of '.*no_test' holds no rows"),
    ("missing", FileNotFoundError, r"'.*missing' does not exist"),
    ("missing.jsonl", FileNotFoundError, r"'.*missing.jsonl' does not exist"),
    ("plain", ValueError, r"was not written by Dataset.save_to_disk or DatasetDict.save_to_disk"),
    ("notes.txt", ValueError, r"is not a .jsonl, .json, .csv, .parquet file"),
    ("one?split=train", ValueError, r"option 'split=train' is not one of column=NAME, config=NAME"),
    ("one?config=main", ValueError, r"config=main picks a configuration of a Hub dataset"),
    ("both:", ValueError, r"names no split after ':'"),
])
def test_errors_name_what_was_asked_and_what_there_is(saved, argument, error, message):
    with pytest.raises(error, match=message):
        parse_prompt_source(f"hf:{saved / argument}")


def test_a_renamed_plural_column_is_fine_and_empty_names_fail(saved):
    assert parse_prompt_source(f"hf:{saved / 'no_test'}:train").all() == ROWS
    assert parse_prompt_source(f"hf:{saved / 'plural'}?column=prompts").all() == [{"prompt": "p", "solution": "s"}]
    with pytest.raises(ValueError, match="names no dataset"):
        parse_prompt_source("hf:")


def test_the_argument_syntax():
    assert parse_hf_argument("s", "trl-lib/tldr:test?column=text&config=main") == parse_hf_argument(
        "s", "trl-lib/tldr:test?config=main&column=text")
    request = parse_hf_argument("s", "./my_data:train?column=question")
    assert (request.source, request.split, request.column, request.config) == ("./my_data", "train", "question", None)
    assert parse_hf_argument("s", "/data/run:3/rows.jsonl").split is None  # a colon inside a path is no split


def test_a_config_with_hf_sources_loads(saved, tmp_path):
    base = {"rewards": {"functions": [{"name": EXACT}]},
            "prompts": {"train": f"hf:{saved / 'both'}:train", "eval": {"mine": f"hf:{saved / 'one'}"}}}
    cfg = load_config(base)
    assert cfg.prompts.train == f"hf:{saved / 'both'}:train"
    assert prompts_from_arguments([f"hf:{saved / 'both'}:test"]) == ROWS
    with pytest.raises(ConfigError, match=r"config key 'prompts.train' = .*has no split 'dev'"):
        load_config(base, [f"prompts.train=hf:{saved / 'both'}:dev"])
    with pytest.raises(ConfigError, match=r"config key 'prompts.eval.mine' = .*not in the local cache"):
        load_config(base, ["prompts.eval={mine: 'hf:no-such-user/no-such-dataset'}"])
