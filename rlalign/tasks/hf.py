"""The `hf:` prompt source: prompts held as Hugging Face `datasets` data, as TRL users hold them.

    hf:SOURCE[:SPLIT][?column=NAME&config=NAME]

SOURCE is, in this order:
  - a directory written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk` (`datasets.load_from_disk`);
  - a data file `.jsonl`, `.json`, `.csv` or `.parquet` (`datasets.load_dataset("json" | "csv" |
    "parquet", data_files=...)`, whose one split is `train`);
  - else a Hub name (`NAME` or `OWNER/NAME`) of a dataset already in the local datasets cache
    ($HF_DATASETS_CACHE, else $HF_HOME/datasets, else ~/.cache/huggingface/datasets), read strictly offline:
    nothing is ever downloaded at run time. Download it once beforehand (`datasets.load_dataset(NAME)` with
    network access), or save it with `save_to_disk` and name the directory.

`:SPLIT` (after the last colon, unless the whole of SOURCE:SPLIT is an existing path) picks a split; it may be
left out when the data has one split only. Options, after `?`, joined by `&`:
  column=NAME   the prompt column (default "prompt"); it becomes the rows' "prompt"
  config=NAME   a Hub dataset's configuration (`load_dataset`'s second argument, e.g. "main" for openai/gsm8k)

Rows are exactly `jsonl:` rows: {"prompt": ..., every other column: ...}; rewards get the other columns as
keyword lists, as TRL's GRPOTrainer passes its dataset columns. A conversational prompt (a list of messages)
is kept as it is, as `jsonl:` keeps it: rewards get it unchanged, and rlalign's text policies, which take
text prompts, refuse it when they meet it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlalign.tasks.rows import RESERVED_COLUMNS, check_row_prompt
from rlalign.utils.files import expand_path, user_path

FORM = "hf:PATH_OR_NAME[:SPLIT][?column=NAME]"
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
OPTIONS = ("column", "config")
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class HfRequest:
    """A parsed `hf:` argument: where the data is, which split and which column hold the prompts."""

    source: str
    split: str | None = None
    column: str = "prompt"
    config: str | None = None


def read_hf(spec: str, argument: str) -> list[dict]:
    """The rows of an `hf:` source (see the module docstring); `spec` names the source in errors."""
    request = parse_hf_argument(spec, argument)
    try:
        import datasets  # noqa: F401 - a dependency of trl; imported here so that rlalign.tasks stays light
    except ImportError:
        raise ImportError(f"prompt source {spec!r} needs Hugging Face datasets: pip install datasets") from None
    with offline():
        data = _load(request, spec)
        dataset, where = _select_split(data, request, spec)
        return _rows(dataset, request.column, spec, where)


def parse_hf_argument(spec: str, argument: str) -> HfRequest:
    """SOURCE[:SPLIT][?OPTION=VALUE&...] -> HfRequest; a bad argument fails naming the form."""
    body, _, query = argument.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if key not in OPTIONS or not sep or not value:
            raise ValueError(f"prompt source {spec!r}: option {item!r} is not one of "
                             f"{', '.join(f'{name}=NAME' for name in OPTIONS)} (form: {FORM})")
        options[key] = value
    source, split = body, None
    if not Path(expand_path(body)[0]).exists():  # a Hub name with a :SPLIT is no path: nothing refused here
        head, sep, tail = body.rpartition(":")
        if sep and "/" not in tail and "\\" not in tail:
            if not tail:
                raise ValueError(f"prompt source {spec!r} names no split after ':' (form: {FORM})")
            source, split = head, tail
    if not source:
        raise ValueError(f"prompt source {spec!r} names no dataset (form: {FORM}, e.g. hf:./my_data:train)")
    return HfRequest(source, split, options.get("column", "prompt"), options.get("config"))


def datasets_cache() -> Path:
    """Where `datasets` keeps the datasets it prepared, read from the environment now (as datasets.config
    reads it at import): $HF_DATASETS_CACHE, else $HF_HOME/datasets, else ~/.cache/huggingface/datasets."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "datasets"


@contextmanager
def offline() -> Iterator[None]:
    """Hugging Face Hub access off for the block (the variables, and the flags datasets and huggingface_hub read
    them into at import), quiet progress bars and logs; everything is restored afterwards."""
    import datasets
    import datasets.config
    import huggingface_hub.constants as hub

    environment = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    flags = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE)
    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    os.environ.update({name: "1" for name in OFFLINE_VARIABLES})
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE = flags
        if bars:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(verbosity)


def _load(request: HfRequest, spec: str) -> Any:
    """A Dataset or DatasetDict from a save_to_disk directory, a data file or the local Hub cache."""
    path = Path(user_path(request.source, "prompt source hf:"))  # ~ and $VARS, as file: and jsonl: (a Hub name has neither)
    if request.config is not None and path.exists():
        raise ValueError(f"prompt source {spec!r}: config={request.config} picks a configuration of a Hub dataset; "
                         f"{request.source!r} is a local path")
    if path.is_dir():
        return _load_saved(path, spec)
    if path.is_file():
        return _load_file(path, spec)
    if path.suffix.lower() in FILE_BUILDERS or not HUB_NAME.fullmatch(request.source):
        raise FileNotFoundError(f"prompt source {spec!r}: {request.source!r} does not exist (hf: takes a directory "
                                f"written by save_to_disk, a {'/'.join(FILE_BUILDERS)} file or a cached Hub name)")
    return _load_cached(request, spec)


def _load_saved(path: Path, spec: str) -> Any:
    """`load_from_disk`, split by split: a DatasetDict comes back as {split: Dataset}."""
    if (path / "dataset_dict.json").is_file():
        names = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        return {name: _load_saved_dataset(path / name) for name in names}
    if (path / "state.json").is_file():
        return _load_saved_dataset(path)
    raise ValueError(f"prompt source {spec!r}: directory {str(path)!r} was not written by Dataset.save_to_disk "
                     "or DatasetDict.save_to_disk (it has neither dataset_dict.json nor state.json); name a "
                     f"{'/'.join(FILE_BUILDERS)} file in it instead")


def _load_saved_dataset(path: Path) -> Any:
    """One saved Dataset; an empty one (saved with no data files, which load_from_disk cannot read) as an
    empty Dataset with its columns, so that it fails as every empty source does."""
    import datasets

    if not json.loads((path / "state.json").read_text()).get("_data_files", [None]):
        features = datasets.DatasetInfo.from_directory(str(path)).features or {}
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features or None)
    return datasets.load_from_disk(str(path))


def _load_file(path: Path, spec: str) -> Any:
    import datasets

    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"prompt source {spec!r}: {str(path)!r} is not a {', '.join(FILE_BUILDERS)} file "
                         "(the data files hf: reads) nor a directory written by save_to_disk")
    try:
        return datasets.load_dataset(builder, data_files=str(path), cache_dir=str(datasets_cache()))
    except (datasets.exceptions.DatasetsError, ValueError, OSError) as error:
        raise ValueError(f"prompt source {spec!r}: datasets could not read {str(path)!r} as {builder}: "
                         f"{error.__cause__ or error}") from None


def _load_cached(request: HfRequest, spec: str) -> Any:
    """A Hub dataset from the local datasets cache only, or an error saying how to get it there."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    cache, name = datasets_cache(), request.source
    *owner, dataset_name = name.split("/")
    folder = cache / "___".join([*owner, camelcase_to_snakecase(dataset_name)])
    if not any(entry.is_dir() for entry in folder.glob("*/*/*")):
        load = f"datasets.load_dataset({name!r}{'' if request.config is None else f', {request.config!r}'})"
        raise FileNotFoundError(
            f"prompt source {spec!r}: there is no file or directory {name!r}, and the Hub dataset {name!r} is not in "
            f"the local cache (the datasets cache at {cache}); rlalign reads the Hub strictly offline and never "
            f"downloads at run time. Get it there once beforehand, with network access and the same HF_HOME / "
            f"HF_DATASETS_CACHE: python -c \"import datasets; {load}\", or save it with "
            f"{load}.save_to_disk(DIR) and use hf:DIR")
    try:
        return datasets.load_dataset(name, request.config, cache_dir=str(cache))
    except (datasets.exceptions.DatasetsError, ValueError, OSError) as error:
        hint = "" if request.config else "; ?config=NAME picks one of a dataset's configurations"
        raise ValueError(f"prompt source {spec!r}: could not load {name!r} from the local cache ({cache}): "
                         f"{error}{hint}") from None


def _select_split(data: Any, request: HfRequest, spec: str) -> tuple[Any, str]:
    """The Dataset of the requested split (or of the only one), and how errors name it."""
    import datasets

    if isinstance(data, datasets.Dataset):
        own = str(data.split) if data.split is not None else None
        if request.split is not None and request.split != own:
            raise ValueError(f"prompt source {spec!r}: {request.source!r} is one Dataset "
                             f"({f'split {own!r}' if own else 'saved without splits'}), it has no split "
                             f"{request.split!r}; leave :SPLIT out")
        return data, repr(request.source)
    names = list(data)
    if not names:
        raise ValueError(f"prompt source {spec!r}: {request.source!r} holds no splits, so no rows")
    if request.split is None:
        if len(names) > 1:
            raise ValueError(f"prompt source {spec!r}: {request.source!r} has several splits ({', '.join(names)}); "
                             f"choose one, e.g. hf:{request.source}:{names[0]}")
        return data[names[0]], f"split {names[0]!r} of {request.source!r}"
    if request.split not in names:
        raise ValueError(f"prompt source {spec!r}: {request.source!r} has no split {request.split!r}; "
                         f"its splits: {', '.join(names)}")
    return data[request.split], f"split {request.split!r} of {request.source!r}"


def _rows(dataset: Any, column: str, spec: str, where: str) -> list[dict]:
    """TRL rows: the prompt column as "prompt", then every other column, as `jsonl:` gives them."""
    columns = list(dataset.column_names)
    if len(dataset) == 0:
        raise ValueError(f"prompt source {spec!r}: {where} holds no rows")
    reserved = [name for name in RESERVED_COLUMNS if name in columns and name != column]
    if reserved:
        raise ValueError(f"prompt source {spec!r}: {where} has column(s) {reserved}, which would collide with the "
                         "reward call's own keywords (reward(prompts=..., completions=..., **columns)); rename "
                         "them (Dataset.rename_column), or pick one as the prompt column with ?column=NAME")
    if column not in columns:
        raise ValueError(f"prompt source {spec!r}: {where} has no column {column!r}; its columns: "
                         f"{', '.join(columns)} (?column=NAME picks the prompt column)")
    if column != "prompt" and "prompt" in columns:
        raise ValueError(f"prompt source {spec!r}: {where} has a 'prompt' column besides the chosen {column!r}, "
                         "which becomes the rows' \"prompt\"; drop or rename one (Dataset.remove_columns, "
                         "Dataset.rename_column)")
    others = [name for name in columns if name != column]
    rows = [{"prompt": row[column], **{name: row[name] for name in others}} for row in dataset.to_list()]
    for number, row in enumerate(rows):
        check_row_prompt(row, f"prompt source {spec!r}: {where}, row {number}")
    return rows
