"""Looking at a trained ensemble: logits, predictions, single members as ordinary modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from iwlab.models.mlp import MLP
from iwlab.train import func_backend
from iwlab.train.stacked import mlp_forward


class EnsembleViews:
    """Read-only views of an :class:`~iwlab.train.ensemble.EnsembleTrainer` (its base class)."""

    M: int
    backend: str
    binary: bool
    device: torch.device
    template: Any
    params: Any
    buffers: dict[str, Tensor]

    def _check_member(self, i: object) -> None:
        """Refuse a member index that is not an int in ``[0, M)`` (no negative indices, no bools)."""
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"member index must be an int, got {i!r}")
        if not 0 <= i < self.M:
            raise IndexError(f"member {i} out of range for an ensemble of {self.M}")

    def _param_list(self) -> list[Tensor]:
        return self.params if isinstance(self.params, list) else list(self.params.values())

    @torch.no_grad()
    def logits(self, x: Tensor, chunk: int = 8192, per_member: bool = False) -> Tensor:
        """Evaluation-mode logits of every member: ``(M, N, out)``.

        ``x`` is ``(N, ...)`` shared by all members, or ``(M, N, ...)`` with ``per_member=True``. The
        func backend runs the module in eval mode: BatchNorm uses each member's running statistics and
        dropout is off.

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> trainer.logits(x).shape  # (M, N, out)
            torch.Size([2, 16, 1])
        """
        x = x.to(self.device)
        parts = []
        for s in range(0, x.shape[1 if per_member else 0], chunk):
            if per_member:
                xc = x[:, s : s + chunk]
            else:
                xc = x[s : s + chunk]
            if self.backend == "stacked":
                xb = xc if per_member else xc.unsqueeze(0).expand(self.M, *xc.shape)
                parts.append(mlp_forward(self.params, xb, None, 1.0)[0])
            else:
                parts.append(func_backend.forward(self.template, self.params, self.buffers, xc, shared=not per_member))
        return torch.cat(parts, dim=1)

    def predict(self, x: Tensor, chunk: int = 8192, per_member: bool = False) -> Tensor:
        """Predicted class of every member, ``(M, N)`` int64.

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> (trainer.predict(x) == 1).float().mean(1).shape  # fraction predicted as class 1, per member
            torch.Size([2])
        """
        z = self.logits(x, chunk, per_member)
        return (z.squeeze(-1) > 0).long() if self.binary else z.argmax(-1)

    def member_module(self, i: int) -> nn.Module:
        """A standalone copy of member ``i`` as an ordinary ``nn.Module`` (for inspection or export).

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> torch.equal(trainer.member_module(1)(x), trainer.logits(x)[1])
            True
        """
        self._check_member(i)
        if self.backend == "stacked":
            t = self.template
            mod = MLP(t.in_dim, t.hidden, t.out_dim, t.dropout, bias=t.bias).to(self.params[0].dtype)
            with torch.no_grad():
                for li, layer in enumerate(mod.layers):
                    layer.weight.copy_(self.params[2 * li][i].t())
                    if layer.bias is not None:
                        layer.bias.copy_(self.params[2 * li + 1][i])
            return mod
        raise NotImplementedError("member_module is available for the stacked backend; see member_state_dict")

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """Member ``i``'s parameters and buffers as an ``nn.Module`` state dict (copies, on the CPU).

        For the func backend, ``model_fn(g).load_state_dict(trainer.member_state_dict(i))`` rebuilds
        member ``i`` (BatchNorm running statistics included) as an ordinary module.

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> net = MLP(2, (), 1)
            >>> net.load_state_dict(trainer.member_state_dict(0))
            <All keys matched successfully>
        """
        self._check_member(i)
        if self.backend == "stacked":
            return {k: v.detach().clone() for k, v in self.member_module(i).state_dict().items()}
        out = {k: v[i].detach().cpu().clone() for k, v in self.params.items()}
        out.update({k: v[i].detach().cpu().clone() for k, v in self.buffers.items()})
        return out

    def linear_weights(self) -> tuple[Tensor, Tensor]:
        """For logistic regression: ``(w (M, d), b (M,))`` of the binary logit.

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> w, b = trainer.linear_weights()
            >>> w.shape, b.shape
            (torch.Size([2, 2]), torch.Size([2]))
        """
        if self.backend != "stacked" or len(self.params) != 2 or not self.binary:
            raise ValueError("linear_weights() needs a binary logistic-regression ensemble")
        return self.params[0][..., 0], self.params[1][..., 0]

    def param_norm(self) -> Tensor:
        """L2 norm of all parameters of each member, ``(M,)``.

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> trainer.param_norm().shape
            torch.Size([2])
        """
        sq = sum(p.reshape(self.M, -1).pow(2).sum(1) for p in self._param_list())
        return sq.sqrt()
