import pytest
import torch
import torch.nn.functional as F

from iwlab.models import LSTMLanguageModel


def _g(s=0):
    return torch.Generator().manual_seed(s)


def test_parameter_count_by_hand():
    v, e, h = 10_000, 64, 256
    embed = (v + 1) * e  # the pad row makes the paper's 10,001
    lstm1 = 4 * h * (e + h) + 2 * 4 * h  # PyTorch keeps two bias vectors (b_ih, b_hh)
    lstm2 = 4 * h * (h + h) + 2 * 4 * h
    out = (h + 1) * v
    assert (embed, lstm1, lstm2, out) == (640_064, 329_728, 526_336, 2_570_000)
    lm = LSTMLanguageModel(generator=_g())
    assert sum(p.numel() for p in lm.parameters()) == embed + lstm1 + lstm2 + out == 4_066_128
    assert lm.pad_index == 10_000 and lm.lstm.num_layers == 2 and lm.lstm.dropout == 0.5 and lm.drop.p == 0.5


def test_shapes_and_seeding():
    a = LSTMLanguageModel(vocab_size=30, embed_dim=8, hidden=16, generator=_g(1))
    b = LSTMLanguageModel(vocab_size=30, embed_dim=8, hidden=16, generator=_g(1))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    x = torch.randint(0, 30, (5, 20), generator=_g(2))
    x[0, :15] = 30  # left padding
    a.eval()
    out = a(x)
    assert out.shape == (5, 30) and out.dtype == torch.float32
    assert torch.equal(out, b.eval()(x))


def test_padding_is_masked():
    lm = LSTMLanguageModel(vocab_size=30, embed_dim=8, hidden=16, generator=_g(1)).eval()
    x = torch.randint(0, 30, (4, 10), generator=_g(3))
    lengths = [10, 1, 4, 7]
    for i, n in enumerate(lengths):
        x[i, : 10 - n] = lm.pad_index
    with torch.no_grad():
        batched = lm(x)
        for i, n in enumerate(lengths):
            alone = lm(x[i : i + 1, 10 - n :])  # the same words, no padding at all
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-5, atol=1e-5)


def test_all_padding_is_an_error():
    lm = LSTMLanguageModel(vocab_size=5, embed_dim=2, hidden=3)
    with pytest.raises(ValueError, match="at least one word"):
        lm(torch.tensor([[5, 5], [1, 2]]))


def test_overfits_a_tiny_corpus():
    torch.manual_seed(0)
    lm = LSTMLanguageModel(vocab_size=12, embed_dim=16, hidden=32, dropout=0.0, generator=_g())
    x = torch.randint(0, 12, (24, 6), generator=_g(5))
    x[::2, :3] = lm.pad_index
    y = torch.randint(0, 12, (24,), generator=_g(6))
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    fitted = False
    for step in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(lm(x), y, reduction="none")  # per-example losses
        assert loss.shape == (24,)
        loss.mean().backward()
        opt.step()
        if step % 10 == 9:
            with torch.no_grad():
                fitted = bool((lm(x).argmax(1) == y).all())
            if fitted:
                break
    assert fitted
