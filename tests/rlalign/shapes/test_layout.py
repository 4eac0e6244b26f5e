"""Layout targets of semantic coarse scales (rlalign/shapes/layout.py) and the queries they train
(rlalign/policies/next_scale/pretraining.py: coarse_queries)."""

import torch
import torch.nn.functional as F

from rlalign.policies.next_scale.model import build_model
from rlalign.policies.next_scale.pretraining import coarse_queries, tokenizer_loss
from rlalign.shapes import COLOURS, SHAPES
from rlalign.shapes.layout import LayoutProbe, layout_targets
from rlalign.shapes.canvas import Placement
from rlalign.shapes.scene import ObjectSpec, Scene, SceneSpec
from tests.support.next_scale import TINY


def scene(*objects, named=True):
    """A scene of (colour, shape, cx, cy, size) objects, layout FREE; `named=False` leaves the colours
    out of the prompt (a counting prompt) and draws them."""
    spec = SceneSpec(tuple(ObjectSpec(colour if named else None, shape) for colour, shape, *_ in objects))
    return Scene(spec, tuple(Placement(cx, cy, size) for *_, cx, cy, size in objects),
                 None if named else tuple(colour for colour, *_ in objects))


def test_targets_of_a_lone_object_in_the_top_left_quadrant():
    # Box [4, 12] x [4, 12] lies wholly in the left half, the top half and quadrant 0 (top-left).
    targets = layout_targets([scene(("red", "circle", 8.0, 8.0, 8.0))])
    circle, red = SHAPES.index("circle"), COLOURS.index("red")
    assert targets["count"].tolist() == [0]
    halves = targets["halves_shapes"].reshape(4, len(SHAPES))  # left, right, top, bottom
    assert halves[:, circle].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert halves.sum() == 2
    assert targets["colours"][0].nonzero().flatten().tolist() == [red]
    assert targets["quadrant_shapes"][0, :, circle].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert targets["quadrant_colours"][0, :, red].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_an_object_on_the_midline_lies_on_both_sides_and_a_sliver_does_not():
    # Three squares (a counting scene), side 8:
    #   blue at x = 16 (box x [12, 20]): half of it on each side → left and right, quadrants 0 and 1;
    #   green at x = 26 (box [22, 30]): nothing left of 16 → right only;
    #   white at (18, 24) (box x [14, 22], y [20, 28]): 2/8 = 0.25 of it left of 16 → left too (the
    #   threshold is inclusive); wholly in the bottom half → quadrants 2 and 3.
    targets = layout_targets([
        scene(("blue", "square", 16.0, 8.0, 8.0), ("green", "square", 26.0, 8.0, 8.0),
              ("white", "square", 18.0, 24.0, 8.0), named=False),
        scene(("red", "circle", 13.2, 8.0, 8.0)),  # box x [9.2, 17.2]: 1.2/8 = 0.15 right of 16
    ])
    square, circle = SHAPES.index("square"), SHAPES.index("circle")
    assert targets["count"].tolist() == [2, 0]
    halves = targets["halves_shapes"].reshape(2, 4, len(SHAPES))  # left, right, top, bottom
    assert halves[0, :, square].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert halves[0, :, circle].sum() == 0
    assert targets["quadrant_shapes"][0, :, square].tolist() == [1.0, 1.0, 1.0, 1.0]
    white = COLOURS.index("white")
    assert targets["quadrant_colours"][0, :, white].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert targets["colours"][0].sum() == 3
    assert halves[1, :, circle].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_coarse_queries_are_the_quantizer_queries_and_train_only_the_encoder():
    torch.manual_seed(0)
    tokenizer = build_model(TINY).tokenizer
    f_BCHW = torch.randn(3, 8, 8, 8, requires_grad=True)
    query1_BC11, query2_BC22 = coarse_queries(tokenizer, f_BCHW, 2)
    # Scale 1 quantizes the mean latent; scale 2 the residual after the chosen 1x1 code, pooled 2x2.
    torch.testing.assert_close(query1_BC11, f_BCHW.mean(dim=(2, 3), keepdim=True))
    tokens, _ = tokenizer.quantize.quantize(f_BCHW.detach())
    explained_BCHW = tokenizer.quantize.scale_contribution(tokens[0], 0)
    torch.testing.assert_close(query2_BC22, F.avg_pool2d(f_BCHW - explained_BCHW, 4))
    # d(sum of query 1)/df = 1/64 everywhere: no path through the code choice or the codebook.
    query1_BC11.sum().backward()
    torch.testing.assert_close(f_BCHW.grad, torch.full_like(f_BCHW, 1 / 64))
    assert tokenizer.quantize.embedding.weight.grad is None


def test_the_layout_loss_reaches_the_encoder_and_is_zero_weighted_by_default():
    torch.manual_seed(0)
    tokenizer = build_model(TINY).tokenizer.requires_grad_(True)  # stage 1 trains it
    probe = LayoutProbe(tokenizer.latent_channels)
    scenes = [scene(("red", "circle", 8.0, 8.0, 8.0)), scene(("blue", "square", 20.0, 22.0, 9.0))]
    targets = layout_targets(scenes)
    images_B3HW = torch.rand(2, 3, 32, 32)

    def layout_loss(f_BCHW):
        return probe(*coarse_queries(tokenizer, f_BCHW, 2), targets)

    plain, plain_metrics, *_ = tokenizer_loss(tokenizer, images_B3HW)
    with_layout, metrics, *_ = tokenizer_loss(tokenizer, images_B3HW, auxiliary=layout_loss, auxiliary_weight=0.5)
    assert "layout" not in plain_metrics
    torch.testing.assert_close(with_layout, plain + 0.5 * torch.tensor(metrics["layout"]), rtol=1e-5, atol=1e-6)
    with_layout.backward()
    assert probe.global_head.weight.grad.abs().sum() > 0
    assert tokenizer.encoder.conv_in.weight.grad.abs().sum() > 0



def test_a_shapes_only_probe_ignores_the_colour_targets():
    torch.manual_seed(0)
    probe = LayoutProbe(8, colours=False)
    targets = layout_targets([scene(("red", "circle", 8.0, 8.0, 8.0)), scene(("blue", "square", 20.0, 22.0, 9.0))])
    query1_BC11, query2_BC22 = torch.randn(2, 8, 1, 1), torch.randn(2, 8, 2, 2)
    loss, _ = probe(query1_BC11, query2_BC22, targets)
    flipped = dict(targets, colours=1 - targets["colours"], quadrant_colours=1 - targets["quadrant_colours"])
    torch.testing.assert_close(probe(query1_BC11, query2_BC22, flipped)[0], loss)
    with_colours = LayoutProbe(8)
    with_colours.load_state_dict(probe.state_dict())
    assert not torch.allclose(with_colours(query1_BC11, query2_BC22, flipped)[0],
                              with_colours(query1_BC11, query2_BC22, targets)[0])
