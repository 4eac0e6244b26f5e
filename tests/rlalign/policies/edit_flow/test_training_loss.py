"""The Edit Flow training loss of the built-in model's pretraining: alignment, corruption and the loss by hand."""

import math

import numpy as np
import torch

from rlalign.policies.edit_flow.training import corrupt, edit_flow_loss

MASK, WIDTH, VOCAB = 4, 8, 8
PROMPT = [2, 5]  # BOS, one prompt token


def corrupt_at(t, answer, mask_length):
    return corrupt([PROMPT], [answer], mask_id=MASK, mask_length=mask_length, width=WIDTH, vocab_size=VOCAB,
                   t_B=np.array([t]), rng=np.random.default_rng(0))


def test_at_t0_every_edit_is_needed_and_at_t1_none():
    # Answer [6, 7] against 3 MASKs: columns MASK→6 and MASK→7 (substitutions), MASK→∅ (a deletion).
    start = corrupt_at(0.0, [6, 7], 3)
    assert start.tokens_BW[0, :5].tolist() == [2, 5, MASK, MASK, MASK] and start.lengths_B.tolist() == [5]
    assert start.sub_token_BW[0, :5].tolist() == [-1, -1, 6, 7, -1]
    assert start.delete_BW[0, :5].tolist() == [False, False, False, False, True]
    assert start.ins_counts_BWV.sum() == 0
    done = corrupt_at(1.0, [6, 7], 3)
    assert done.tokens_BW[0, :4].tolist() == [2, 5, 6, 7] and done.lengths_B.tolist() == [4]
    assert (done.sub_token_BW < 0).all() and not done.delete_BW.any() and done.ins_counts_BWV.sum() == 0


def test_answers_longer_than_the_masks_need_insertions_after_the_last_present_token():
    # Answer [6, 7, 3, 1] against 2 MASKs: two substitutions, then ∅→3 and ∅→1 after the second MASK.
    start = corrupt_at(0.0, [6, 7, 3, 1], 2)
    assert start.tokens_BW[0, :4].tolist() == [2, 5, MASK, MASK]
    assert start.ins_counts_BWV[0, 3, 3] == 1 and start.ins_counts_BWV[0, 3, 1] == 1
    assert start.ins_counts_BWV.sum() == 2


def test_loss_by_hand():
    targets = corrupt_at(0.0, [6, 7], 3)
    # Every rate 1 (log 1 = 0) and flat logits (log q = −log 8). Rate sum: three open positions with
    # sub + del = 2 each, and four open gaps (after the prompt's last token and later) with ins = 1:
    # 6 + 4 = 10. Needed: two substitutions (−log 1 − log q = log 8 each) and a deletion (−log 1 = 0).
    outputs = {name: torch.ones(1, WIDTH) for name in ("sub_rate_hat", "del_rate_hat", "ins_rate_hat")}
    outputs |= {"sub_logits": torch.zeros(1, WIDTH, VOCAB), "ins_logits": torch.zeros(1, WIDTH, VOCAB)}
    losses = edit_flow_loss(outputs, targets)
    assert math.isclose(losses["loss"].item(), 10 + 2 * math.log(8), rel_tol=1e-6)
    assert math.isclose(losses["token"].item(), 2 * math.log(8), rel_tol=1e-6)
    # Halving the deletion rate at the position that needs one: rate sum −0.5, −log del = +log 2.
    outputs["del_rate_hat"] = outputs["del_rate_hat"].clone()
    outputs["del_rate_hat"][0, 4] = 0.5
    assert math.isclose(edit_flow_loss(outputs, targets)["loss"].item(), 9.5 + 2 * math.log(8) + math.log(2),
                        rel_tol=1e-6)
