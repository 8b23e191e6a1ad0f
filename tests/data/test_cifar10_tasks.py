"""iwlab.data.cifar10_tasks: Byrd & Lipton's two-class and ten-class tasks built from CIFAR-10 arrays."""

import numpy as np
import pytest
import torch

from iwlab.data import cifar10 as C
from iwlab.data import cifar10_tasks as T


@pytest.fixture
def arrays():
    return C.make_fixture(n_train_per_class=6, n_test_per_class=3, seed=1)


def test_binary_task_sets(arrays):
    t = T.binary_task(arrays, ("cat", "dog"), n_noise=7, size=16, seed=0)
    assert t.classes == ("cat", "dog")
    assert t.x_train.shape == (12, 3, 16, 16) and t.y_train.tolist() == [0] * 6 + [1] * 6
    assert t.x_test.shape[0] == 6 and t.x_other.shape[0] == 8 * 3 and t.x_noise.shape == (7, 3, 16, 16)
    cats = torch.from_numpy(np.flatnonzero(arrays.y_train == 3))
    assert torch.allclose(t.x_train[:6], C.to_tensor(arrays.x_train[cats.numpy()], 16))


def test_subsample_label_noise_and_errors(arrays):
    t = T.binary_task(arrays, ("cat", "dog"), subsample={"cat": 0.5}, n_noise=1)
    assert int((t.y_train == 0).sum()) == 3 and int((t.y_train == 1).sum()) == 6
    big = C.make_fixture(40, 1)
    noisy = T.binary_task(big, ("cat", "dog"), label_noise=0.05, n_noise=1, seed=3)
    assert int(noisy.flipped.sum()) == 4  # 5% of 40 in each class
    assert int(noisy.flipped[:40].sum()) == 2 and int(noisy.flipped[40:].sum()) == 2
    assert bool((noisy.y_train[:40][noisy.flipped[:40]] == 1).all())
    with pytest.raises(ValueError, match="left empty by subsampling"):
        T.binary_task(arrays, ("cat", "dog"), subsample={"dog": 0.01}, n_noise=1)
    with pytest.raises(ValueError, match="unknown CIFAR-10 class 'kat'"):
        T.binary_task(arrays, ("kat", "dog"))
    with pytest.raises(ValueError, match="not one of the task's classes"):
        T.binary_task(arrays, ("cat", "dog"), subsample={"truck": 0.5}, n_noise=1)


def test_subsample_count_rounds_halves_up_as_resample_does(arrays):
    """One rounding rule (iwlab.data.resample.kept_count): 6 cats at 1/4 keep round-half-up(1.5) = 2."""
    t = T.binary_task(arrays, ("cat", "dog"), subsample={"cat": 0.25}, n_noise=1)
    assert int((t.y_train == 0).sum()) == 2  # Python's round(1.5) would also give 2; 2.5 is the telling case
    t = T.binary_task(C.make_fixture(10, 1), ("cat", "dog"), subsample={"dog": 0.25}, n_noise=1)
    assert int((t.y_train == 1).sum()) == 3  # round-half-up(2.5) = 3; the old round() kept 2


def test_noise_images_seeded_and_multiclass(arrays):
    assert torch.equal(T.noise_images(4, seed=2), T.noise_images(4, seed=2))
    assert not torch.equal(T.noise_images(4, seed=2), T.noise_images(4, seed=3))
    m = T.multiclass_task(arrays, n_train_per_class=2, size=8)
    assert m.x_train.shape == (20, 3, 8, 8) and sorted(set(m.y_train.tolist())) == list(range(10))
