"""The shared scalar checks: integers, reals and seeds get one-line errors naming the argument."""

import numpy as np
import pytest
import torch

import iwlab.functional
import iwlab.functional.losses
from iwlab.functional.checks import check_choice, check_int, check_real, check_seed, check_weights, fmt_index


@pytest.mark.parametrize("v", [3, np.int64(3), torch.tensor(3)])
def test_integer_likes_are_ints(v):
    assert check_int(v, "n") == 3 and type(check_int(v, "n")) is int


@pytest.mark.parametrize("v", [True, 2.5, 3.0, "3", None, torch.tensor(3.0)])
def test_non_integers_are_refused_naming_the_argument(v):
    with pytest.raises(TypeError, match=r"^epochs must be an integer >= 1, got "):
        check_int(v, "epochs", minimum=1)


def test_minimum():
    with pytest.raises(ValueError, match=r"^epochs must be an integer >= 1, got 0$"):
        check_int(0, "epochs", minimum=1)


@pytest.mark.parametrize("v", [True, "1", None, torch.tensor([1.0, 2.0]), 1j])
def test_reals(v):
    assert check_real(np.float32(0.5), "k") == 0.5
    with pytest.raises(TypeError, match=r"^k must be a real number"):
        check_real(v, "k")


@pytest.mark.parametrize("v, err", [(-1, ValueError), (2**63, ValueError), (1.7, TypeError), (False, TypeError)])
def test_seeds(v, err):
    assert check_seed(2**63 - 1) == 2**63 - 1
    with pytest.raises(err, match="^member 0 seed must be"):
        check_seed(v, "member 0 seed")


def test_choice():
    check_choice("sum", "reduction", ("none", "sum"))
    with pytest.raises(ValueError, match=r"^reduction must be one of 'none', 'sum'; got 'avg'$"):
        check_choice("avg", "reduction", ("none", "sum"))


@pytest.mark.parametrize(
    "mask, note",
    [
        (torch.tensor(True), ""),
        (torch.tensor([False, True]), " at index 1"),
        (torch.eye(2, dtype=torch.bool), " at index (0, 0)"),
    ],
)
def test_fmt_index(mask, note):
    assert fmt_index(mask) == note


def test_check_weights_public_paths():
    # the losses' module and the package re-export the one function (old import paths stay valid)
    assert iwlab.functional.losses.check_weights is check_weights
    assert iwlab.functional.check_weights is check_weights
    with pytest.raises(ValueError, match=r"^w is all zeros \(shape \(2,\)\)"):
        check_weights(torch.zeros(2), name="w")
