"""The Shapes grammar: every spec round-trips through its prompt; bad text fails clearly."""

import itertools

import pytest

from rlalign.shapes import (
    COLOURS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    ObjectSpec,
    PromptParseError,
    SceneSpec,
    parse_prompt,
)


def all_specs():
    objects = [ObjectSpec(c, s) for c in COLOURS for s in SHAPES]
    for obj, position in itertools.product(objects, POSITIONS):
        yield SceneSpec((obj,), position)
    for first, second, relation in itertools.product(objects, objects, RELATIONS):
        if first.colour != second.colour:
            yield SceneSpec((first, second), relation)


def test_every_spec_round_trips_through_its_prompt():
    specs = list(all_specs())
    # 24 pairs × 5 positions + ordered pairs of distinct colours (24·21) × 2 relations
    assert len(specs) == 24 * 5 + 24 * 21 * 2
    for spec in specs:
        assert parse_prompt(spec.prompt) == spec


def test_prompts_read_naturally():
    assert SceneSpec((ObjectSpec("orange", "square"),), "top").prompt == "an orange square at the top"
    pair = SceneSpec((ObjectSpec("red", "circle"), ObjectSpec("blue", "triangle")), "left_of")
    assert pair.prompt == "a red circle to the left of a blue triangle"


def test_mirrored_relations_are_normalised():
    left = parse_prompt("a blue square to the right of a red circle")
    assert left == SceneSpec((ObjectSpec("red", "circle"), ObjectSpec("blue", "square")), "left_of")
    above = parse_prompt("a green circle below a white square")
    assert above == SceneSpec((ObjectSpec("white", "square"), ObjectSpec("green", "circle")), "above")


def test_parser_forgives_case_spacing_and_final_period():
    assert parse_prompt("  A Red   Circle on the LEFT. ") == SceneSpec((ObjectSpec("red", "circle"),), "left")


@pytest.mark.parametrize(
    "text, named",
    [("a pink circle on the left", "pink"), ("a red hexagon on the left", "hexagon"), ("draw me a cat", "draw me a cat")],
)
def test_parse_errors_name_the_problem(text, named):
    with pytest.raises(PromptParseError, match=named):
        parse_prompt(text)


def test_every_category_spec_round_trips_and_knows_its_category():
    from rlalign.shapes import CATEGORIES, category_specs, surface_forms

    for category in CATEGORIES:
        for spec in category_specs(category, "all"):
            assert spec.category == category
            for form in surface_forms(spec):
                assert parse_prompt(form) == spec, form


@pytest.mark.parametrize(
    "text, category, count",
    [
        ("a triangle", "single_object", 1),
        ("a circle and a square", "two_object", 2),
        ("four squares", "counting", 4),
        ("two red circles", "counting", 2),
        ("a purple circle", "colors", 1),
        ("a purple circle on the left", "colors", 1),
        ("a circle to the right of a square", "position", 2),
        ("a red circle below a blue square", "position", 2),
        ("a red circle and a blue square", "color_attr", 2),
    ],
)
def test_the_six_geneval_categories_parse(text, category, count):
    spec = parse_prompt(text)
    assert spec.category == category and len(spec.objects) == count


def test_open_attributes_stay_open():
    spec = parse_prompt("three triangles")
    assert spec.objects == (ObjectSpec(None, "triangle"),) * 3 and spec.layout == "free"
    assert spec.pairs == ()  # an uncoloured object names no colour–shape pair
    assert parse_prompt("a circle and a square").prompt == "a circle and a square"


def test_a_pair_of_identical_objects_asks_for_a_count():
    with pytest.raises(PromptParseError, match="two squares"):
        parse_prompt("a square and a square")
    with pytest.raises(ValueError, match="one kind of object"):
        SceneSpec((ObjectSpec(None, "circle"), ObjectSpec(None, "square"), ObjectSpec(None, "circle")))
