"""Katharopoulos & Fleuret's (2017, §4.3) LSTM language model for next-word prediction on PTB.

As in the authors' Keras code (``build_lstm_lm``): an embedding in R^64 of ``vocab_size + 1`` rows (the
extra row is the padding symbol, which makes the paper's "10,001"), two stacked LSTMs with 256 units,
dropout 0.5 after each LSTM layer, and a dense layer to ``vocab_size`` logits. The input is a left-padded
context ``(N, T)`` of word ids (:mod:`iwlab.data.ptb`); the output is the logits of the next word, read
from the top LSTM's hidden state after the last real word. The per-example loss is the ordinary
``F.cross_entropy(logits, y, reduction="none")``.

Padding is **masked**, as Keras' ``mask_zero=True`` did: the LSTM starts from a zero state at the first
real word and never sees a pad. Batches where every context is full (length ``T``) run the LSTM directly;
others go through ``pack_padded_sequence`` (so such batches are not ``torch.func.vmap``-able).

Initialization: every draw from the given ``torch.Generator``; PyTorch's default scales (LSTM weights
and biases uniform in +-1/sqrt(hidden), embedding N(0, 1) with a zero pad row, dense layer uniform in
+-1/sqrt(fan_in)).

Example:
    >>> lm = LSTMLanguageModel(vocab_size=50, embed_dim=8, hidden=16, generator=torch.Generator().manual_seed(0))
    >>> x = torch.tensor([[50, 50, 3, 7], [1, 2, 3, 4]])   # 50 = pad, on the left
    >>> lm(x).shape
    torch.Size([2, 50])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from iwlab.models.cnn import init_from_generator_

__all__ = ["LSTMLanguageModel"]


class LSTMLanguageModel(nn.Module):
    """Embedding(vocab+1, 64) -> LSTM(256) -> dropout .5 -> LSTM(256) -> dropout .5 -> Linear(256, vocab).

    ``pad_index`` (default ``vocab_size``) marks padding; contexts must be left-padded and hold at least
    one real word. ``num_layers`` stacked LSTMs (2, as the authors' code).

    Source: Katharopoulos & Fleuret (2017, Sec. 4.3) and their Keras ``build_lstm_lm``.

    Args:
        vocab_size: predictable words (10,000 on PTB); the embedding has ``vocab_size + 1`` rows.
        embed_dim: embedding width.
        hidden: LSTM units per layer.
        dropout: dropout after each LSTM layer.
        pad_index: the padding id in ``[0, vocab_size]`` (default ``vocab_size``).
        generator: source of every initial parameter (None: the global RNG).
        num_layers: stacked LSTM layers.

    Raises:
        ValueError: ``pad_index`` outside ``[0, vocab_size]``. Calls raise when the input is not
            ``(N, T)`` or a context is all padding.

    Example:
        >>> lm = LSTMLanguageModel(vocab_size=20, embed_dim=4, hidden=8, num_layers=1)
        >>> lm(torch.randint(0, 20, (3, 5))).shape
        torch.Size([3, 20])
    """

    def __init__(
        self,
        vocab_size: int = 10_000,
        embed_dim: int = 64,
        hidden: int = 256,
        dropout: float = 0.5,
        pad_index: int | None = None,
        generator: torch.Generator | None = None,
        *,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        pad = vocab_size if pad_index is None else pad_index
        if not 0 <= pad <= vocab_size:
            raise ValueError(f"pad_index must be in [0, vocab_size={vocab_size}], got {pad}")
        self.vocab_size = vocab_size
        self.pad_index = pad
        self.embed = nn.Embedding(vocab_size + 1, embed_dim, padding_idx=pad)
        self.lstm = nn.LSTM(
            embed_dim, hidden, num_layers=num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)
        self._init(generator)

    @torch.no_grad()
    def _init(self, generator: torch.Generator | None) -> None:
        self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=generator))
        self.embed.weight[self.pad_index].zero_()
        bound = 1.0 / math.sqrt(self.lstm.hidden_size)
        for p in self.lstm.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) * (2 * bound) - bound)
        init_from_generator_(self.out, generator)

    def features(self, x: Tensor) -> Tensor:
        """``(N, T)`` left-padded ids -> ``(N, hidden)`` top-layer state after the last real word (pre-dropout).

        Args:
            x: ``(N, T)`` int64 word ids, left-padded with ``pad_index``.

        Returns:
            ``(N, hidden)`` float32, the top LSTM's hidden state after each context's last real word.

        Raises:
            ValueError: ``x`` is not 2-D, or a context is all padding.
        """
        if x.ndim != 2:
            raise ValueError(f"expected context ids (N, T), got shape {tuple(x.shape)}")
        n, t = x.shape
        real = x != self.pad_index  # (N, T)
        lengths = real.sum(1)  # (N,)
        if n and bool((lengths == t).all()):
            _, (h, _) = self.lstm(self.embed(x))  # h: (layers, N, hidden)
            return h[-1]
        if n and bool((lengths == 0).any()):
            raise ValueError("every context needs at least one word that is not padding")
        # left padding -> right padding: row i starts at its first real word (T - len_i)
        idx = (torch.arange(t, device=x.device).view(1, t) + (t - lengths).view(n, 1)) % t  # (N, T)
        emb = self.embed(x.gather(1, idx))  # (N, T, E)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h in the original batch order
        return h[-1]

    def forward(self, x: Tensor) -> Tensor:
        """``(N, T)`` context ids -> ``(N, vocab_size)`` next-word logits.

        Args:
            x: ``(N, T)`` int64 word ids, left-padded with ``pad_index``.

        Returns:
            ``(N, vocab_size)`` float32 logits of the next word.

        Raises:
            ValueError: as :meth:`features`.
        """
        return self.out(self.drop(self.features(x)))
