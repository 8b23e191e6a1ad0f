"""iwlab.functional.metrics: agreement between models (Byrd & Lipton Sec. 4.1) and the class-weighted accuracy."""

import numpy as np
import pytest
import torch

from iwlab.functional.metrics import agreement, agreement_per_member, grid_index, member_grid, weighted_accuracy
from iwlab.functional.weighting import one_class_share_weights


def test_agreement_by_hand():
    # 2 weightings x 3 seeds x 4 examples
    p = np.array(
        [
            [[1, 1, 0, 0], [1, 0, 0, 1], [1, 0, 0, 1]],  # majority: 1 0 0 1
            [[0, 1, 0, 1], [0, 1, 1, 1], [0, 1, 1, 0]],  # majority: 0 1 1 1
        ]
    )
    seeds, weights = agreement_per_member(p)
    # seed agreement with the weighting's majority, per model
    np.testing.assert_allclose(seeds, [[0.5, 1.0, 1.0], [0.75, 1.0, 0.75]])
    # modal label over the two majority votes (ties -> 0): 0 0 0 1; each weighting's agreement with it
    np.testing.assert_allclose(weights, [0.75, 0.5])
    a = agreement(p)
    assert a["across_seeds"] == pytest.approx((0.5 + 1 + 1 + 0.75 + 1 + 0.75) / 6)
    # per example, the fraction of weightings giving the modal label: 1/2, 1/2, 1/2, 2/2
    assert a["across_weightings"] == pytest.approx(np.mean([0.5, 0.5, 0.5, 1.0]))
    # three classes and one seed: majority = the prediction itself
    q = np.array([[[2, 0]], [[2, 1]], [[1, 1]]])
    assert agreement(q) == {"across_weightings": pytest.approx((2 / 3 + 2 / 3) / 2), "across_seeds": 1.0}


def test_weighted_accuracy_by_hand():
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([[0, 1, 1, 2, 0, 0], [0, 0, 0, 2, 2, 2]])
    v = torch.tensor([0.5, 0.2, 0.1])
    want = [(0.5 * 1 + 0.2 * 1 + 0.1 * 1) / (0.5 * 2 + 0.2 + 0.1 * 3), (0.5 * 2 + 0.1 * 3) / 1.5]
    torch.testing.assert_close(weighted_accuracy(pred, y, v), torch.tensor(want))
    per_member = torch.stack([v, torch.tensor([1.0, 1.0, 1.0])])
    torch.testing.assert_close(weighted_accuracy(pred, y, per_member), torch.tensor([want[0], 5 / 6]))
    w = one_class_share_weights(0.9, 3)
    assert w[3] == 0.9 and all(abs(x - 0.1 / 9) < 1e-12 for i, x in enumerate(w) if i != 3)
    assert one_class_share_weights(0.1, 0) == (pytest.approx(0.1),) * 10


def test_member_grid_places_each_model_by_weight_and_seed():
    preds = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    grid = member_grid(preds, [4.0, 0.25, 4.0, 0.25], [7, 7, 3, 3])  # weights and seeds in any order
    assert grid.shape == (2, 2, 2) and grid[1, 1].tolist() == [1, 1] and grid[0, 0].tolist() == [0, 0]
    assert grid_index([4.0, 0.25], [7, 7]) == {(4.0, 7): (1, 0), (0.25, 7): (0, 0)}
    with pytest.raises(ValueError, match="exactly one model per"):
        member_grid(preds[:3], [4.0, 0.25, 4.0], [7, 7, 3])  # (0.25, 3) missing
    with pytest.raises(ValueError, match="shape"):
        agreement(preds)  # 2-D: not a (W, S, N) grid
