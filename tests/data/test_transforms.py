import pytest
import torch

from iwlab.data.transforms import flip_shift, random_flip_shift


def _reference(x, flip, dy, dx):
    out = torch.zeros_like(x)
    _, _, h, w = x.shape
    for i in range(len(x)):
        xi = x[i].flip(-1) if flip[i] else x[i]
        for r in range(h):
            for c in range(w):
                rr, cc = r - int(dy[i]), c - int(dx[i])
                if 0 <= rr < h and 0 <= cc < w:
                    out[i, :, r, c] = xi[:, rr, cc]
    return out


def test_flip_shift_matches_a_loop():
    x = torch.randn(4, 3, 6, 7)
    flip = torch.tensor([True, False, True, False])
    dy, dx = torch.tensor([2, -1, 0, 0]), torch.tensor([-3, 1, 0, 2])
    assert torch.equal(flip_shift(x, flip, dy, dx), _reference(x, flip, dy, dx))


def test_random_flip_shift_is_seeded_and_batched():
    x = torch.randn(64, 3, 32, 32)
    a = random_flip_shift(x, torch.Generator().manual_seed(5))
    b = random_flip_shift(x, torch.Generator().manual_seed(5))
    c = random_flip_shift(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    # redraw the same parameters and compare against the loop
    g = torch.Generator().manual_seed(5)
    flip = torch.rand(64, generator=g) < 0.5
    dy = torch.randint(-3, 4, (64,), generator=g)
    dx = torch.randint(-3, 4, (64,), generator=g)
    assert 10 < int(flip.sum()) < 54 and int(dy.abs().max()) == 3
    assert torch.equal(a[:8], _reference(x[:8], flip[:8], dy[:8], dx[:8]))


def test_no_shift_no_flip_is_identity_and_input_untouched():
    x = torch.randn(5, 1, 4, 4)
    x0 = x.clone()
    y = random_flip_shift(x, torch.Generator().manual_seed(0), max_shift=0, flip_p=0.0)
    assert torch.equal(y, x) and torch.equal(x, x0) and y.data_ptr() != x.data_ptr()
    z = random_flip_shift(x, torch.Generator().manual_seed(0), max_shift=0, flip_p=1.0)
    assert torch.equal(z, x.flip(-1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_shift"):
        random_flip_shift(torch.zeros(1, 1, 4, 4), None, max_shift=-1)
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_flip_shift(torch.zeros(4, 4), None)
