"""The verifier: hand-built scenes with hand-counted checks, robustness, and acceptance rates."""

import numpy as np
import pytest
import torch
from rlalign.rewards.shapes_eval import shapes_eval

from rlalign.shapes import ObjectSpec, Placement, Scene, SceneSpec, render, render_batch, sample_scenes
from rlalign.shapes.verify import detect_objects, verify_caption, verify_image


def single(colour, shape, position, cx, cy, size=11.0):
    return Scene(SceneSpec((ObjectSpec(colour, shape),), position), (Placement(cx, cy, size),))


def pair(first, second, relation, p1, p2):
    spec = SceneSpec((ObjectSpec(*first), ObjectSpec(*second)), relation)
    return Scene(spec, (Placement(*p1), Placement(*p2)))


RED_CIRCLE_LEFT = single("red", "circle", "left", 8.5, 16.0)
RED_LEFT_OF_BLUE = pair(("red", "circle"), ("blue", "square"), "left_of", (8, 16, 9), (24, 17, 9))


def test_true_prompt_meets_every_check():
    verdict = verify_image("a red circle on the left", render(RED_CIRCLE_LEFT))
    assert verdict.exact and verdict.score == 1.0 and len(verdict.checks) == 4


@pytest.mark.parametrize(
    "prompt, failed",
    [
        ("a red circle on the right", "position: right"),  # 3 of 4 checks: colour, shape, extra
        ("a red square on the left", "red square: shape"),  # 3 of 4: colour, position, extra
    ],
)
def test_one_wrong_attribute_costs_one_check_of_four(prompt, failed):
    verdict = verify_image(prompt, render(RED_CIRCLE_LEFT))
    assert not verdict.exact and verdict.score == 0.75
    assert [name for name, ok in verdict.checks.items() if not ok] == [failed]


def test_wrong_colour_fails_only_the_colour():
    # The circle on the left is matched to the named object: shape, position and count hold, the
    # colour does not -> 3 of 4.
    verdict = verify_image("a green circle on the left", render(RED_CIRCLE_LEFT))
    assert verdict.score == 0.75 and [n for n, ok in verdict.checks.items() if not ok] == ["green circle: colour"]


def test_extra_object_is_caught():
    # The red circle is on the left, but a blue square is there too: 3 of 4 checks.
    verdict = verify_image("a red circle on the left", render(RED_LEFT_OF_BLUE))
    assert verdict.score == 0.75 and not verdict.checks["no extra objects"]


def test_swapped_relation_fails_only_the_relation():
    # 6 checks: 2 colours + 2 shapes + relation + extra; only the relation fails -> 5/6.
    verdict = verify_image("a blue square to the left of a red circle", render(RED_LEFT_OF_BLUE))
    assert verdict.score == pytest.approx(5 / 6)
    assert not verdict.checks["relation: left_of"]


def test_empty_image_scores_zero():
    assert verify_image("a red circle on the left", torch.zeros(3, 32, 32)).score == 0.0


def test_touching_objects_of_different_colours_are_told_apart():
    touching = pair(("yellow", "square"), ("blue", "square"), "left_of", (11, 16, 10), (21, 16, 10))
    seen = sorted((o.colour, o.shape) for o in detect_objects(render(touching)))
    assert seen == [("blue", "square"), ("yellow", "square")]


def test_dim_off_palette_objects_still_verify():
    # Generated images rarely hit the palette exactly: 70% brightness must still pass.
    assert verify_image("a red circle to the left of a blue square", 0.7 * render(RED_LEFT_OF_BLUE)).exact


def test_larger_images_are_area_resized():
    big = torch.nn.functional.interpolate(render(RED_CIRCLE_LEFT)[None], scale_factor=4, mode="nearest")[0]
    assert verify_image("a red circle on the left", big).exact


def test_caption_checks():
    assert verify_caption("a red circle to the left of a blue square", RED_LEFT_OF_BLUE).exact
    assert verify_caption("a blue square to the right of a red circle", RED_LEFT_OF_BLUE).exact
    assert verify_caption("a red circle on the right of", RED_LEFT_OF_BLUE).score == 0.0  # outside the grammar
    # "a red circle": shape and colour hold, but the scene has a second object -> 2 of 3
    assert verify_caption("a red circle", RED_LEFT_OF_BLUE).score == pytest.approx(2 / 3)
    assert verify_caption("a red circle on the left", RED_LEFT_OF_BLUE).score == 0.75  # misses the square


def free(objects, placements):
    """A scene with a free layout: objects are (colour drawn, shape, named colour or None)."""
    spec = SceneSpec(tuple(ObjectSpec(named, shape) for _, shape, named in objects))
    return Scene(spec, tuple(Placement(*p) for p in placements), tuple(c for c, _, _ in objects))


THREE_SQUARES = free([("red", "square", None), ("blue", "square", None), ("white", "square", None)],
                     [(8, 8, 8), (24, 8, 8), (16, 24, 8)])
RED_CIRCLE_AND_BLUE_TRIANGLE = free([("red", "circle", "red"), ("blue", "triangle", "blue")],
                                    [(9, 22, 9), (23, 10, 9)])


def test_counting_needs_exactly_that_many():
    image = render(THREE_SQUARES)
    assert verify_image("three squares", image).exact
    # "two squares": two shape checks hold, "no extra objects" fails (3 seen) -> 2 of 3
    two = verify_image("two squares", image)
    assert two.score == pytest.approx(2 / 3) and not two.checks["no extra objects"]
    # "four squares": three of four shape checks hold (one object is missing), count fails -> 3/5
    assert verify_image("four squares", image).score == pytest.approx(3 / 5)
    assert not verify_image("three circles", image).exact


def test_uncoloured_prompts_accept_any_colour_and_layout():
    image = render(RED_CIRCLE_AND_BLUE_TRIANGLE)
    assert verify_image("a circle and a triangle", image).exact
    assert verify_image("a triangle and a circle", image).exact
    # The triangle is 14 px right of and 12 px above the circle: the horizontal axis dominates.
    assert verify_image("a triangle to the right of a circle", image).exact
    assert not verify_image("a triangle to the left of a circle", image).exact
    assert not verify_image("a triangle above a circle", image).exact
    # "a circle": the circle matches, but a second object is there -> 1 of 2
    assert verify_image("a circle", image).score == 0.5


def test_colour_attribution_is_bound_to_the_shape():
    image = render(RED_CIRCLE_AND_BLUE_TRIANGLE)
    assert verify_image("a red circle and a blue triangle", image).exact
    # Swapped binding: shapes and count hold, both colour checks fail -> 3 of 5
    swapped = verify_image("a blue circle and a red triangle", image)
    assert swapped.score == pytest.approx(3 / 5)
    assert sorted(n for n, ok in swapped.checks.items() if not ok) == ["blue circle: colour", "red triangle: colour"]


def test_reward_function_follows_trl_convention():
    images = render_batch([RED_CIRCLE_LEFT, RED_LEFT_OF_BLUE])
    prompts = ["a red circle on the left", "a red circle on the left"]
    assert shapes_eval(prompts, images) == [1.0, 0.75]
    assert shapes_eval(prompts, images, metric="exact") == [1.0, 0.0]
    captions = ["a red circle on the left", "a blue square above a red circle"]
    assert shapes_eval([None, None], captions, scenes=[RED_CIRCLE_LEFT, RED_LEFT_OF_BLUE], metric="exact") == [1.0, 0.0]


def test_reward_function_bad_input_is_named():
    with pytest.raises(ValueError, match="2 prompts for 1 images"):
        shapes_eval(["a", "b"], torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="needs the true scenes"):
        shapes_eval([None], ["a red circle on the left"])
    with pytest.raises(ValueError, match="only judge Shapes prompts"):
        shapes_eval(["a photo of a cat"], torch.zeros(1, 3, 32, 32))


def test_acceptance_rates_on_random_scenes():
    # A smaller version of scripts/verifier_accuracy.py (2,000 samples there) to guard regressions.
    scenes = sample_scenes("all", 300, seed=11)
    images = render_batch(scenes)
    noisy = (images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    rng = np.random.default_rng(0)
    others = [scenes[(i + 1 + rng.integers(299)) % 300].prompt for i in range(300)]
    truth = np.mean([verify_image(s.prompt, im).exact for s, im in zip(scenes, images)])
    noise = np.mean([verify_image(s.prompt, im).exact for s, im in zip(scenes, noisy)])
    wrong = np.mean([verify_image(o, im).exact for o, s, im in zip(others, scenes, images) if o != s.prompt])
    assert truth >= 0.99 and noise >= 0.95 and wrong <= 0.05



def test_the_shapes_task_judges_a_prompt_row_by_its_prompt():
    """jsonl: rows judged by prompts.task=shapes: the verifier reads each row's "prompt" (it used to read the
    row's text, `{'prompt': ...`, as an unknown word)."""
    from rlalign.tasks import resolve_task

    images = render(RED_CIRCLE_LEFT)[None]
    task = resolve_task("shapes")
    as_row = task.verdicts([{"prompt": "a red circle on the left", "solution": "x"}], images)
    as_text = task.verdicts(["a red circle on the left"], images)
    assert as_row == as_text and as_row[0][0].exact
