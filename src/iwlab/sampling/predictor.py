"""The paper's loss predictor (§3.3 and §4): loss history + class -> next loss.

Two stacked LSTMs (hidden size 32) read an example's last <= 10 observed losses (1-D features); the
class label is embedded in R^32 and concatenated with the last hidden state; a linear layer maps the
64-d feature to the predicted loss. An example with no history yet gets a zero history feature, so
its prediction is a learned per-class baseline.

Example:
    >>> import torch
    >>> m = LossPredictor(num_classes=10)
    >>> hist, lens, y = torch.rand(4, 10), torch.tensor([0, 1, 5, 10]), torch.tensor([0, 1, 2, 3])
    >>> m(hist, lens, y).shape
    torch.Size([4])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


class LossPredictor(nn.Module):
    """``M(history, class)``: predicts an example's next training loss (paper §3.3).

    Args:
        num_classes: number of labels (the class embedding's vocabulary).
        hidden: LSTM hidden size and class-embedding size (paper: 32).
        layers: stacked LSTM layers (paper: 2).

    Example:
        >>> LossPredictor(3)(torch.zeros(2, 10), torch.tensor([0, 2]), torch.tensor([0, 2])).shape
        torch.Size([2])
    """

    def __init__(self, num_classes: int, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=layers, batch_first=True)
        self.embed = nn.Embedding(num_classes, hidden)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, history: Tensor, lengths: Tensor, labels: Tensor) -> Tensor:
        """Predicted losses (P,) from left-aligned histories (P, H), their lengths (P,) and labels (P,).

        ``history[i, :lengths[i]]`` are example i's last observed losses, oldest first.
        """
        P = history.shape[0]
        # pack so each sequence ends at its own last observation; zero-length ones are run with
        # length 1 and their state zeroed below (pack_padded_sequence rejects length 0)
        packed = pack_padded_sequence(
            history.unsqueeze(-1), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)  # h: (layers, P, hidden), in the input order
        feat = h[-1] * (lengths > 0).to(h.dtype).unsqueeze(-1)  # (P, hidden)
        z = torch.cat([feat, self.embed(labels)], dim=-1)  # (P, 2 * hidden)
        return self.out(z).reshape(P)
