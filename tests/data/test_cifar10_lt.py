"""iwlab.data.cifar10_lt: CIFAR-10-LT (Cao et al. 2019) counts, draws and the task built from CIFAR-10 arrays."""

import math

import numpy as np
import pytest
import torch

from iwlab.data import cifar10 as C
from iwlab.data import cifar10_lt as LT


@pytest.fixture(scope="module")
def arrays():
    return C.make_fixture(n_train_per_class=20, n_test_per_class=4, seed=3)


def _ldam_counts(img_max, imb_factor, imb_type, cls_num=10):
    """A port of get_img_num_per_cls (kaidic/LDAM-DRW imbalance_cifar.py), the reference for the rounding."""
    out = []
    if imb_type == "exp":
        for cls_idx in range(cls_num):
            out.append(int(img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))))
    else:
        out += [int(img_max)] * (cls_num // 2) + [int(img_max * imb_factor)] * (cls_num // 2)
    return out


def _ldam_indices(targets, img_num_per_cls, rand_number):
    """A port of gen_imbalanced_data with its global-seeded numpy; the global state is restored afterwards."""
    state = np.random.get_state()
    try:
        np.random.seed(rand_number)
        kept = []
        for the_class, the_img_num in zip(np.unique(targets), img_num_per_cls, strict=True):
            idx = np.where(targets == the_class)[0]
            np.random.shuffle(idx)
            kept.append(idx[:the_img_num])
        return np.concatenate(kept)
    finally:
        np.random.set_state(state)


def test_real_data_counts_from_synthetic_labels():
    """CIFAR-10 (5000 per class), imbalance 100: the published CIFAR-10-LT sizes, 12406 images in all."""
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 5000))  # labels in a mixed order
    idx, counts = LT.long_tailed_indices(y, imbalance=100)
    expected = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert counts.tolist() == expected and int(counts.sum()) == 12406
    assert [math.floor(5000 * 100.0 ** (-c / 9.0)) for c in range(10)] == expected  # the paper's formula
    assert np.bincount(y[idx], minlength=10).tolist() == expected
    assert len(np.unique(idx)) == len(idx) == 12406  # no image twice
    # image for image what LDAM-DRW keeps (seed 0 is their default rand_number)
    assert np.array_equal(idx, _ldam_indices(y, expected, 0))
    idx7, _ = LT.long_tailed_indices(y, imbalance=100, seed=7)
    assert np.array_equal(idx7, _ldam_indices(y, expected, 7))


@pytest.mark.parametrize("imbalance", [1, 2, 10, 50, 100, 3, 7, 1.5, 19.5])
def test_counts_against_hand_formulas(imbalance):
    for n_max in [n for n in (5000, 500, 37, 20) if n >= imbalance]:  # smaller n_max: an empty tail, refused
        exp = LT.long_tailed_counts(n_max, imbalance, "exponential")
        step = LT.long_tailed_counts(n_max, imbalance, "step")
        assert exp.dtype == np.int64 and step.dtype == np.int64
        assert exp.tolist() == _ldam_counts(n_max, 1.0 / imbalance, "exp")
        assert step.tolist() == _ldam_counts(n_max, 1.0 / imbalance, "step")
        # the textbook float64 forms floor(n_max * imbalance^(-c/(C-1))) and n_max / imbalance agree on this grid
        assert exp.tolist() == [math.floor(n_max * float(imbalance) ** (-c / 9.0)) for c in range(10)]
        assert step.tolist() == [n_max] * 5 + [math.floor(n_max / imbalance)] * 5
        assert exp[0] == n_max and bool((np.diff(exp) <= 0).all())


def test_counts_other_class_numbers():
    """CIFAR-100-LT sizes (C = 100) follow the same loop."""
    c100 = LT.long_tailed_counts(500, 100, n_classes=100)
    assert c100.tolist() == _ldam_counts(500, 0.01, "exp", 100) and c100[-1] == 5
    assert LT.long_tailed_counts(500, 10, "step", n_classes=100).tolist() == [500] * 50 + [50] * 50


@pytest.mark.parametrize("profile", LT.PROFILES)
def test_task_counts_images_and_test_set(arrays, profile):
    before = {k: v.copy() for k, v in vars(arrays).items()}
    t = LT.long_tailed_task(arrays, imbalance=10, profile=profile, seed=2, size=16)
    want = _ldam_counts(20, 0.1, "exp" if profile == "exponential" else "step")
    assert t.class_counts.dtype == torch.int64 and t.class_counts.tolist() == want
    assert torch.bincount(t.y_train, minlength=10).tolist() == want
    assert t.y_train.dtype == torch.int64 and t.x_train.dtype == torch.float32
    assert t.x_train.shape == (sum(want), 3, 16, 16)
    assert t.imbalance == 10.0 and isinstance(t.imbalance, float) and t.profile == profile
    # each row is the image LDAM-DRW's procedure keeps, normalized as to_tensor does
    ref = _ldam_indices(arrays.y_train, want, 2)
    assert torch.equal(t.x_train, C.to_tensor(arrays.x_train[ref], 16))
    assert torch.equal(t.y_train, torch.from_numpy(arrays.y_train[ref]))
    # the test set: all of it, in order, untouched
    assert torch.equal(t.x_test, C.to_tensor(arrays.x_test, 16))
    assert torch.equal(t.y_test, torch.from_numpy(arrays.y_test))
    for k, v in vars(arrays).items():
        assert np.array_equal(v, before[k]), k  # the caller's arrays are not shuffled in place


def test_seeds(arrays):
    a = LT.long_tailed_task(arrays, imbalance=10, seed=0, size=8)
    b = LT.long_tailed_task(arrays, imbalance=10, seed=0, size=8)
    c = LT.long_tailed_task(arrays, imbalance=10, seed=1, size=8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(a.y_train, c.y_train)  # same counts, grouped by class
    assert not torch.equal(a.x_train, c.x_train)  # other images (or order) drawn
    i0, _ = LT.long_tailed_indices(arrays.y_train, 10, seed=0)
    i1, _ = LT.long_tailed_indices(arrays.y_train, 10, seed=1)
    assert set(i0.tolist()) != set(i1.tolist())  # another subset, not just another order
    assert torch.equal(a.x_test, c.x_test)  # the full test set does not depend on the seed


def test_imbalance_one_is_balanced_and_n_max(arrays):
    t = LT.long_tailed_task(arrays, imbalance=1, size=4)
    assert t.class_counts.tolist() == [20] * 10
    t = LT.long_tailed_task(arrays, imbalance=4, n_max=8, size=4)
    assert t.class_counts.tolist() == _ldam_counts(8, 0.25, "exp")
    assert torch.bincount(t.y_train, minlength=10).tolist() == t.class_counts.tolist()


def test_test_subset(arrays):
    t = LT.long_tailed_task(arrays, imbalance=10, size=4, seed=5, n_test_per_class=2)
    assert torch.bincount(t.y_test, minlength=10).tolist() == [2] * 10
    u = LT.long_tailed_task(arrays, imbalance=3, profile="step", size=4, seed=5, n_test_per_class=2)
    assert torch.equal(t.x_test, u.x_test)  # the test draw does not depend on imbalance or profile
    x_all = C.to_tensor(arrays.x_test, 4)
    for row, label in zip(t.x_test, t.y_test, strict=True):  # every test image is a real one of its class
        hits = (x_all == row).flatten(1).all(1).nonzero().flatten().numpy()
        assert len(hits) >= 1 and int(arrays.y_test[hits[0]]) == int(label)


def test_bad_inputs_refused(arrays):
    y = arrays.y_train
    for bad in (0.5, float("nan"), float("inf"), True, "10", None):
        with pytest.raises(ValueError, match="imbalance must be a finite number >= 1"):
            LT.long_tailed_indices(y, bad)
    with pytest.raises(ValueError, match="profile must be one of exponential, step, got 'exp'"):
        LT.long_tailed_task(arrays, profile="exp")
    with pytest.raises(ValueError, match=r"imbalance=30 is too large for n_max=20: class 9 would get 0"):
        LT.long_tailed_task(arrays, imbalance=30)
    with pytest.raises(ValueError, match=r"imbalance=21 is too large for n_max=20"):
        LT.long_tailed_counts(20, 21, "step")
    with pytest.raises(ValueError, match="n_max=21 asks 21 images of class 0 .airplane., but y_train has 20"):
        LT.long_tailed_task(arrays, imbalance=10, n_max=21)
    for bad in (0, -3, True, 2.0):
        with pytest.raises(ValueError, match="n_max must be an int >= 1"):
            LT.long_tailed_indices(y, 10, n_max=bad)
    with pytest.raises(ValueError, match="n_max=None needs the same number of training images per class"):
        LT.long_tailed_indices(y[1:], 10)
    assert LT.long_tailed_indices(y[1:], 10, n_max=19)[1][0] == 19  # unequal classes are fine with n_max
    for bad in (-1, 2**32, 1.0, True):
        with pytest.raises(ValueError, match="seed must be an int"):
            LT.long_tailed_indices(y, 10, seed=bad)
    with pytest.raises(ValueError, match="y_train must hold class indices 0..9"):
        LT.long_tailed_indices(y + 1, 10)
    with pytest.raises(ValueError, match="y_train must be a 1-D integer array"):
        LT.long_tailed_indices(y.astype(float), 10)
    with pytest.raises(ValueError, match="n_test_per_class must be None or an int in 1..4"):
        LT.long_tailed_task(arrays, imbalance=10, n_test_per_class=5)
    with pytest.raises(ValueError, match="size must be an int and divide 32"):
        LT.long_tailed_task(arrays, imbalance=10, size=5)
    with pytest.raises(ValueError, match="profile 'step' needs an even n_classes"):
        LT.long_tailed_counts(20, 2, "step", n_classes=3)
    with pytest.raises(ValueError, match="long_tailed_task: arrays.x_train"):
        LT.long_tailed_task(C.CifarArrays(arrays.x_train.astype(float), y, arrays.x_test, arrays.y_test))
