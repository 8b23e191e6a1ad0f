"""The paper's loss predictor (§3.3 and §4): loss history + class -> next loss.

Two stacked LSTMs (hidden size 32) read an example's last <= 10 observed losses (1-D features); the
class label is embedded in R^32 and concatenated with the last hidden state; a linear layer maps the
64-d feature to the predicted loss. An example with no history yet gets a zero history feature, so
its prediction is a learned per-class baseline.

The LSTM reads every padded history in full (H steps) and the feature of example i is its top-layer
output at step ``lengths[i] - 1``: an LSTM is causal, so that output is exactly the state after the
first ``lengths[i]`` losses, the same as packing the sequences, but with no lengths copied to the host
(``pack_padded_sequence`` needs them on the CPU, a device sync every step).

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

        ``history[i, :lengths[i]]`` are example i's last observed losses, oldest first; entries past
        ``lengths[i]`` are ignored. All three live on the predictor's device; nothing is synchronized.
        """
        P = history.shape[0]
        out, _ = self.lstm(history.unsqueeze(-1))  # (P, H, hidden): top layer after each step
        last = (lengths - 1).clamp(min=0).reshape(P, 1, 1).expand(P, 1, out.shape[-1])  # (P, 1, hidden)
        feat = out.gather(1, last).reshape(P, -1)  # (P, hidden): state after lengths[i] steps
        feat = feat * (lengths > 0).to(feat.dtype).unsqueeze(-1)  # no history: zero feature
        z = torch.cat([feat, self.embed(labels)], dim=-1)  # (P, 2 * hidden)
        return self.out(z).reshape(P)
