"""Tests of iwlab.data.synthetic (and the training-set figure)."""

import math

import numpy as np
import pytest
import torch

from iwlab.data.synthetic import (
    DATASETS,
    SEPARABLE_PARAMS,
    make_dataset,
    make_gaussians,
    make_moons,
    make_separable,
    plane_grid,
    separable_support_corners,
    sigma_max_lr,
)
from iwlab.implicit_bias import max_margin_separator, normalized_margin
from iwlab.plots.data import plot_synthetic_datasets

NAMES = ["separable", "moons", "gaussians"]


def test_registry():
    assert sorted(DATASETS) == sorted(NAMES)
    assert DATASETS["separable"] is make_separable
    assert DATASETS["moons"] is make_moons
    assert DATASETS["gaussians"] is make_gaussians


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 7, 512])
def test_shapes_dtypes_labels_balance(name, n):
    X, y = make_dataset(name, n_per_class=n, seed=3)
    assert X.shape == (2 * n, 2) and X.dtype == torch.float32
    assert y.shape == (2 * n,) and y.dtype == torch.int64
    assert torch.isfinite(X).all()
    # positives first, then negatives, exactly balanced
    assert torch.equal(y[:n], torch.ones(n, dtype=torch.int64))
    assert torch.equal(y[n:], torch.zeros(n, dtype=torch.int64))
    assert int((y == 1).sum()) == int((y == 0).sum()) == n


@pytest.mark.parametrize("name", NAMES)
def test_seed_determinism(name):
    X1, y1 = make_dataset(name, n_per_class=64, seed=5)
    X2, y2 = make_dataset(name, n_per_class=64, seed=5)
    X3, _ = make_dataset(name, n_per_class=64, seed=6)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.allclose(X1, X3)


def test_make_dataset_matches_generators_and_kwargs():
    for name, fn in DATASETS.items():
        Xa, ya = make_dataset(name, n_per_class=16, seed=2)
        Xb, yb = fn(n_per_class=16, seed=2)
        assert torch.equal(Xa, Xb) and torch.equal(ya, yb)
    Xa, _ = make_dataset("moons", n_per_class=16, seed=2, noise=0.0)
    Xb, _ = make_moons(16, noise=0.0, seed=2)
    assert torch.equal(Xa, Xb)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        make_dataset("spirals")
    msg = str(exc.value)
    assert "spirals" in msg
    for name in NAMES:
        assert name in msg


def test_bad_n_per_class():
    with pytest.raises(ValueError):
        make_separable(0)


def test_separable_construction():
    """Negatives are the rotated + translated positives; positives respect the truncation."""
    n = 512
    X, _ = make_separable(n, seed=11)
    p = SEPARABLE_PARAMS
    pos, neg = X[:n].double(), X[n:].double()
    mean = torch.tensor(p["mean"], dtype=torch.float64)
    std = torch.tensor(p["std"], dtype=torch.float64)
    z = (pos - mean) / std
    assert z.abs().max() <= p["truncation"] + 1e-5
    # truncated normal of +-2 std: sample std is ~0.88 of the untruncated one
    assert torch.allclose(z.std(0), torch.full((2,), 0.88, dtype=torch.float64), atol=0.06)
    assert torch.allclose(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.1)
    c, s = math.cos(p["angle"]), math.sin(p["angle"])
    R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    expected = pos @ R.T + torch.tensor(p["translation"], dtype=torch.float64)
    assert torch.allclose(neg, expected, atol=1e-6)
    # roughly within [-2, 2]^2
    assert X.abs().max() < 2.0


def test_separable_by_construction_corners():
    """The truncation boxes of the two classes are disjoint with a margin, whatever the seed."""
    Xc, yc = separable_support_corners()
    w, b = max_margin_separator(Xc, yc, bias="free")
    gamma = 1.0 / float(w.norm())
    assert gamma > 0.05  # guaranteed geometric margin (half-gap) of the bounding boxes
    # every sample lies inside the corresponding box
    X, y = make_separable(512, seed=0)
    n = 512
    lo, hi = Xc[:4].min(0).values, Xc[:4].max(0).values
    assert ((X[:n] >= lo - 1e-6) & (X[:n] <= hi + 1e-6)).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_separable_is_separable(seed):
    X, y = make_separable(512, seed=seed)
    s = (2 * y - 1).double()
    Xd = X.double()
    for bias in ["homogeneous", "free"]:
        w, b = max_margin_separator(X, y, bias=bias)
        margins = s * (Xd @ w + b)
        assert margins.min() >= 1 - 1e-6
        assert margins.min() == pytest.approx(1.0, abs=1e-9)
        # visible but modest gap (geometric half-gap of the free SVM)
        if bias == "free":
            assert 0.05 < 1.0 / float(w.norm()) < 0.4
    assert normalized_margin(w, b, X, y) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "make",
    [
        lambda seed: make_moons(512, noise=0.2, seed=seed),
        lambda seed: make_gaussians(512, seed=seed),
    ],
    ids=["moons", "gaussians"],
)
def test_nonseparable(make, seed):
    X, y = make(seed)
    for bias in ["homogeneous", "free"]:
        with pytest.raises(ValueError, match="not linearly separable"):
            max_margin_separator(X, y, bias=bias)


def test_moons_geometry():
    # noise-free moons lie exactly on the two (shifted) half circles, centred at the origin
    n = 100
    X, _ = make_moons(n, noise=0.0, seed=0)
    X = X.double() + torch.tensor([0.5, 0.25], dtype=torch.float64)
    pos, neg = X[:n], X[n:]
    assert torch.allclose(neg.norm(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-6)
    assert (neg[:, 1] >= -1e-6).all()
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose((pos - centre).norm(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-6)
    assert (pos[:, 1] <= 0.5 + 1e-6).all()
    Xn, _ = make_moons(512, noise=0.2, seed=0)
    assert Xn.double().mean(0).abs().max() < 0.1


def test_gaussians_moments():
    n = 4096
    X, _ = make_gaussians(n, distance=3.0, std=0.5, seed=0)
    pos, neg = X[:n].double(), X[n:].double()
    assert torch.allclose(pos.mean(0), torch.tensor([1.5, 0.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(neg.mean(0), torch.tensor([-1.5, 0.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(pos.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.03)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_sigma_max_lr(seed):
    X, _ = make_separable(512, seed=seed)
    expected = 1.0 / float(torch.linalg.svdvals(X.double())[0])
    assert sigma_max_lr(X) == pytest.approx(expected, rel=1e-10)
    assert sigma_max_lr(X) == pytest.approx(1.0 / np.linalg.svd(X.numpy(), compute_uv=False)[0])
    assert 0.02 <= sigma_max_lr(X) <= 0.1


def test_sigma_max_lr_known():
    assert sigma_max_lr(torch.tensor([[3.0, 0.0], [0.0, 4.0]])) == pytest.approx(0.25)
    assert isinstance(sigma_max_lr(torch.eye(3)), float)


def test_plot_writes_png(tmp_path):
    sets = {name: make_dataset(name, 128, seed=1) for name in NAMES}
    out = plot_synthetic_datasets(tmp_path / "sub" / "synthetic.png", sets, seed=1)
    assert out == tmp_path / "sub" / "synthetic.png"
    data = out.read_bytes()
    assert len(data) > 10_000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_synthetic_datasets(tmp_path / "empty.png", {})


def test_plane_grid_covers_the_data_with_a_margin():
    X = torch.tensor([[0.0, -1.0], [2.0, 1.0]])
    g, (x0, x1, y0, y1) = plane_grid(X, 5)
    assert g.shape == (25, 2) and g.dtype == torch.float32
    assert (x0, x1, y0, y1) == (-0.5, 2.5, -1.5, 1.5)
    assert g[0].tolist() == [-0.5, -1.5] and g[1].tolist() == [0.25, -1.5]  # x varies fastest
    for bad in (torch.zeros(0, 2), torch.zeros(3, 3)):
        with pytest.raises(ValueError, match="shape"):
            plane_grid(bad, 5)
    with pytest.raises(ValueError, match="size"):
        plane_grid(X, 1)
