"""The text encoder's pooling: `flatten` keeps word order (which colour goes with which shape, and
the order of a relation), `mean` is the bag of the first built-in generator; configs round-trip."""

import pytest
import torch
from support.next_scale import WORDS

from rlalign.policies.next_scale.conditioning import PromptEncoder

SWAPPED = ["a red circle above a blue square", "a blue square above a red circle"]
REBOUND = ["a red circle above a blue square", "a red square above a blue circle"]


def encoder(pooling):
    torch.manual_seed(0)
    return PromptEncoder(WORDS, cond_dim=16, width=32, depth=1, num_heads=2, pooling=pooling)


def test_flatten_pooling_is_one_linear_slot_per_word_position():
    flat = encoder("flatten")
    assert flat.out.in_features == 32 * flat.max_words
    with torch.no_grad():
        cond_BD = flat(SWAPPED + REBOUND)
    assert cond_BD.shape == (4, 16)
    # Reordering the objects or re-binding colours to shapes gives another condition; padding
    # positions contribute nothing (their states are zeroed), so the Linear sees only real words.
    assert (cond_BD[0] - cond_BD[1]).abs().max() > 1e-3
    assert (cond_BD[2] - cond_BD[3]).abs().max() > 1e-3
    with torch.no_grad():
        flat.out.weight[:, 32 * 7:] = 100.0  # columns of word positions 8..16: padding for 7-word prompts
        torch.testing.assert_close(flat(SWAPPED), cond_BD[:2])


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
def test_config_round_trips(pooling):
    first = encoder(pooling)
    again = PromptEncoder(**first.config())
    again.load_state_dict(first.state_dict())
    torch.testing.assert_close(again(SWAPPED), first(SWAPPED))


def test_a_config_without_pooling_is_mean_and_a_bad_one_is_refused():
    config = encoder("mean").config()
    del config["pooling"]
    assert PromptEncoder(**config).pooling == "mean"
    with pytest.raises(ValueError, match="pooling must be one of"):
        PromptEncoder(WORDS, cond_dim=16, pooling="max")
