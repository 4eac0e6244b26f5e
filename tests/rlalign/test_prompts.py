"""Prompt sources: every accepted form, the errors for the rest, and deterministic draws."""

import pytest

from rlalign.shapes import eval_prompts, parse_prompt
from rlalign.tasks import parse_prompt_source, prompts_from_arguments


def test_fixed_sources_list_their_prompts(tmp_path):
    assert parse_prompt_source("shapes-eval:heldout").all() == list(eval_prompts("heldout"))
    assert parse_prompt_source("classes:3-6").all() == [3, 4, 5, 6]
    assert parse_prompt_source("classes:7,1,9").all() == [7, 1, 9]
    path = tmp_path / "prompts.txt"
    path.write_text("# a comment\na red circle\n\n  a blue square  \n")
    assert parse_prompt_source(f"file:{path}").all() == ["a red circle", "a blue square"]


def test_shapes_source_samples_the_split_and_is_deterministic():
    source = parse_prompt_source("shapes:train")
    first, again, other = source.draw(32, seed=1), source.draw(32, seed=1), source.draw(32, seed=2)
    assert first == again and first != other
    assert all(parse_prompt(p) for p in first)
    with pytest.raises(ValueError, match="endless"):
        source.all()


def test_fixed_draws_walk_a_permutation_per_pass():
    source = parse_prompt_source("classes:0-9")
    drawn = source.draw(25, seed=0)
    # Each pass of 10 is a permutation, so the first 20 draws hold every id exactly twice.
    assert sorted(drawn[:10]) == list(range(10)) and sorted(drawn[10:20]) == list(range(10))
    assert drawn == source.draw(25, seed=0) and drawn != source.draw(25, seed=1)


@pytest.mark.parametrize("spec, message", [
    ("heldout", "not one of"),
    ("shapes:validation", "split must be one of"),
    ("shapes-eval:all", "train and heldout"),
    ("classes:a-b", "integer ids"),
    ("file:/no/such/file.txt", "does not exist"),
])
def test_bad_sources_name_the_accepted_forms(spec, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_prompt_source(spec)


def test_cli_arguments_are_a_source_or_literal_prompts():
    assert prompts_from_arguments(["classes:1-2"]) == [1, 2]
    assert prompts_from_arguments(["a red circle", "a blue square"]) == ["a red circle", "a blue square"]
    assert len(prompts_from_arguments(["shapes:heldout"])) == 8


@pytest.mark.parametrize("row, message", [
    ('{"prompt": ""}', "the prompt is empty"),
    ('{"prompt": 5}', r"the prompt is a number \(5\)"),
    ('{"prompt": null}', r"the prompt is null"),
    ('{"prompt": [{"role": "user", "content": "  "}]}', r"message 0 of the prompt has a \"content\" that is empty"),
    ('{"prompt": [{"role": "user", "content": 5}]}', r"message 0 .* is a number, not text"),
    ('{"prompt": "ok", "prompts": 1}', r"column\(s\) \['prompts'\] take the names rewards are called with"),
    ('{"prompt": "ok", "completion_ids": [1]}', r"\['completion_ids'\]"),
])
def test_a_jsonl_row_with_an_unusable_prompt_or_column_is_named(tmp_path, row, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(ValueError, match=rf"rows.jsonl:1: .*{message}"):
        parse_prompt_source(f"jsonl:{path}")


def test_prompt_files_drop_a_byte_order_mark_and_name_other_encodings(tmp_path):
    """Windows editors start UTF-8 files with a BOM: it is not part of the first prompt (it used to be, silently,
    in file:, and refused as "Unexpected UTF-8 BOM" in jsonl:); a Latin-1 file names its byte."""
    (tmp_path / "p.txt").write_bytes("\ufeffa red circle\r\na blue square\r\n".encode())
    (tmp_path / "rows.jsonl").write_bytes('\ufeff{"prompt": "a red circle"}\n'.encode())
    assert parse_prompt_source(f"file:{tmp_path / 'p.txt'}").all() == ["a red circle", "a blue square"]
    assert parse_prompt_source(f"jsonl:{tmp_path / 'rows.jsonl'}").all() == [{"prompt": "a red circle"}]
    (tmp_path / "latin.txt").write_bytes(b"a red caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin.txt' is not UTF-8 text \(byte 0xe9 at offset 9\); save it as UTF-8"):
        parse_prompt_source(f"file:{tmp_path / 'latin.txt'}")


def test_prompt_paths_expand_variables_and_name_an_unset_one(tmp_path, monkeypatch):
    import datasets  # hf: reads the same paths

    (tmp_path / "p.txt").write_text("a red circle\n")
    datasets.Dataset.from_dict({"prompt": ["a red circle"]}).to_json(str(tmp_path / "rows.jsonl"))
    monkeypatch.setenv("PROMPTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    assert parse_prompt_source("file:${PROMPTS_DIR}/p.txt").all() == ["a red circle"]
    assert parse_prompt_source("hf:$PROMPTS_DIR/rows.jsonl").all() == [{"prompt": "a red circle"}]
    monkeypatch.delenv("PROMPTS_DIR")
    with pytest.raises(FileNotFoundError, match=r"names environment variable\(s\) PROMPTS_DIR that are not set"):
        parse_prompt_source("jsonl:$PROMPTS_DIR/rows.jsonl")
    with pytest.raises(FileNotFoundError, match="names no file after its kind"):
        parse_prompt_source("file:")


def test_allowing_unknown_words_waives_only_them():
    """prompts.allow_unknown_words passes the waiver to the family's own check, which still runs its other
    checks; a family whose check takes no waiver is not checked when unknown words are allowed."""
    from rlalign.tasks import check_prompt_words

    calls = []

    class Waiving:
        def check_prompts(self, prompts, *, where, allow_unknown_words=False):
            calls.append((where, allow_unknown_words))

    class Strict:
        def check_prompts(self, prompts, *, where):
            calls.append((where, "strict"))

    check_prompt_words(Waiving(), {"prompts.train": ["a"]}, allow_unknown=True)
    check_prompt_words(Waiving(), {"prompts.eval": ["a"]}, allow_unknown=False)
    check_prompt_words(Strict(), {"--prompts": ["a"]}, allow_unknown=True)
    check_prompt_words(Strict(), {"--prompts": ["a"]}, allow_unknown=False)
    assert calls == [("prompts.train", True), ("prompts.eval", False), ("--prompts", "strict")]
