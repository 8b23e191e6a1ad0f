"""Fine-tuning a sequence-pair classifier (any Hugging Face model) as a job of the one training loop.

The batch source is :func:`~iwlab.train.batches.length_grouped_batches` over tokenized pairs, padded per
batch (:func:`~iwlab.models.text.pad_batch`); the step is :func:`module_step`, the single-module step
shared with :func:`~iwlab.train.sampled.train_sampled`: the class-weighted cross-entropy of
:func:`~iwlab.functional.losses.weighted_cross_entropy` minimized by one optimizer step.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from iwlab.models.text import TokenizedPairs
    >>> from iwlab.train.fit import fit
    >>> pairs = TokenizedPairs([[1, 5, 2], [1, 6, 7, 2], [1, 2]], [[0] * 3, [0] * 4, [0] * 2], [1, 0, 1])
    >>> class Tiny(torch.nn.Module):  # a stand-in for a Hugging Face model: returns .logits
    ...     def __init__(self): super().__init__(); self.emb = torch.nn.EmbeddingBag(8, 2)
    ...     def forward(self, input_ids, attention_mask): return SimpleNamespace(logits=self.emb(input_ids))
    >>> model = Tiny()
    >>> job = TextClassifierJob(model, torch.optim.SGD(model.parameters(), lr=0.1), pairs, batch_size=2,
    ...                         class_weight=torch.tensor([1.0, 0.5]), seed=0)
    >>> [name for _, _, name, _ in fit(job, epochs=1, eval_epochs=[1]).rows]
    ['train_loss', 'train_acc']
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from iwlab.functional.losses import weighted_cross_entropy
from iwlab.models.text import TokenizedPairs, pad_batch
from iwlab.train.batches import length_grouped_batches, sorted_batches
from iwlab.train.fit import Clock


def module_step(optimizer: torch.optim.Optimizer, logits: Tensor, y: Tensor, **loss_kw: Any) -> Tensor:
    """One optimizer step on the weighted cross-entropy of ``logits`` ``(B, C)`` and labels ``y`` ``(B,)``.

    ``loss_kw`` go to :func:`~iwlab.functional.losses.weighted_cross_entropy` (``class_weight``,
    ``sample_weight``, ``normalization``, ``validate``). Returns the detached loss (a 0-dim tensor).
    """
    loss = weighted_cross_entropy(logits, y, **loss_kw)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def accepts_token_types(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``token_type_ids`` (BERT does; DistilBERT, RoBERTa-style models do not)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def _inputs(pairs: TokenizedPairs, idx: Tensor, pad_id: int, types: bool, device: torch.device) -> dict[str, Tensor]:
    inputs = pad_batch(pairs, idx, pad_id)
    if not types:
        inputs.pop("token_type_ids")
    return {k: v.to(device) for k, v in inputs.items()}


@torch.no_grad()
def predict_logits(
    model: nn.Module, pairs: TokenizedPairs, batch_size: int, device: torch.device | str, pad_id: int, types: bool
) -> Tensor:
    """Logits ``(N, 2)`` float32 on the CPU of all pairs, in eval mode; batches of similar length (less padding).

    Example::

        predict_logits(model, test_pairs, 128, "cpu", tok.pad_token_id, True).argmax(1)  # (N,) predictions
    """
    model.eval()
    out = torch.empty(len(pairs), 2)
    for idx in sorted_batches(pairs.lengths, batch_size):
        out[idx] = model(**_inputs(pairs, idx, pad_id, types, torch.device(device))).logits.float().cpu()
    return out


class TextClassifierJob:
    """One sequence-pair classifier fine-tuned with class weights (a :class:`~iwlab.train.fit.Job`).

    Parameters:
        model: returns an object with ``.logits`` ``(B, 2)`` from ``input_ids``, ``attention_mask`` (and
            ``token_type_ids`` when its ``forward`` takes them).
        optimizer: over the model's parameters.
        pairs: the tokenized training pairs with labels.
        batch_size: pairs per step.
        class_weight: ``(2,)`` float weights of the two classes, on the model's device.
        seed: seeds the shuffling generator (dropout draws from torch's global RNG, which the loop saves).
        normalization: ``"batch_size"`` (IW-ERM ``(1/B) sum_i w_i l_i``) or ``"weight_sum"``.
        group_by_length: batches of similar-length pairs (see :func:`length_grouped_batches`).
        pad_id: the tokenizer's padding id.
        train_metrics: ``"eval"`` (a pass over the training pairs in eval mode at evaluation epochs) or
            ``"running"`` (averages over the epoch's minibatches, in train mode).
        evaluate_fn: ``fn(model) -> {name: value}`` extra metrics (e.g. on test pairs), model in eval mode.
        eval_batch_size: pairs per evaluation batch.
        device: where the model lives.
        spec: settings the checkpoint records beyond the model's parameter shapes.

    Evaluation records ``evaluate_fn``'s metrics, ``train_loss`` (the weighted objective), ``train_acc``
    and ``seconds`` (wall time of the epoch, training plus evaluation) when ``evaluate_fn`` is given.
    """

    M = 1
    uses_global_rng = True  # dropout

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        pairs: TokenizedPairs,
        *,
        batch_size: int,
        class_weight: Tensor,
        seed: int,
        normalization: Literal["batch_size", "weight_sum"] = "batch_size",
        group_by_length: bool = True,
        pad_id: int = 0,
        train_metrics: Literal["eval", "running"] = "eval",
        evaluate_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        eval_batch_size: int = 128,
        device: torch.device | str = "cpu",
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        self.model, self.optimizer, self.pairs = model, optimizer, pairs
        self.batch_size, self.class_weight, self.normalization = batch_size, class_weight, normalization
        self.group_by_length, self.pad_id, self.train_metrics = group_by_length, pad_id, train_metrics
        self.evaluate_fn, self.eval_batch_size = evaluate_fn, eval_batch_size
        self.device = torch.device(device)
        self.types = accepts_token_types(model)
        self.generator = torch.Generator().manual_seed(seed)  # shuffling
        self._spec = {**(spec or {}), "model": {n: [list(p.shape), str(p.dtype)] for n, p in model.named_parameters()}}
        self._loss_sum, self._correct, self._t0 = 0.0, 0, 0.0

    def spec(self) -> dict[str, Any]:
        return self._spec

    def training_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    def train_epoch(self, epoch: int, clock: Clock) -> None:
        self._t0 = time.monotonic()
        clock.start()
        self.model.train()
        loss_sum, correct = 0.0, 0
        batches = length_grouped_batches(self.pairs.lengths, self.batch_size, self.generator, self.group_by_length)
        for idx in batches:
            inputs = _inputs(self.pairs, idx, self.pad_id, self.types, self.device)
            yb = self.pairs.labels[idx].to(self.device)
            logits = self.model(**inputs).logits
            loss = module_step(
                self.optimizer,
                logits,
                yb,
                class_weight=self.class_weight,
                normalization=self.normalization,
                validate=False,
            )
            loss_sum += float(loss) * len(idx)
            correct += int((logits.detach().argmax(1) == yb).sum())
        self._loss_sum, self._correct = loss_sum, correct
        clock.stop("training")

    def finite(self) -> Tensor:
        return torch.tensor([math.isfinite(self._loss_sum)])

    def freeze(self, members: Tensor) -> None:  # one model: the loop stops instead
        raise AssertionError("a single model stops on divergence")

    def evaluate(self, epoch: int) -> dict[str, float]:
        out = dict(self.evaluate_fn(self.model)) if self.evaluate_fn is not None else {}
        n = len(self.pairs)
        if self.train_metrics == "eval":
            z = predict_logits(self.model, self.pairs, self.eval_batch_size, self.device, self.pad_id, self.types)
            cw = self.class_weight.cpu()
            out["train_loss"] = float(
                weighted_cross_entropy(z, self.pairs.labels, class_weight=cw, normalization=self.normalization)
            )
            out["train_acc"] = float((z.argmax(1) == self.pairs.labels).float().mean())
        else:
            out["train_loss"], out["train_acc"] = self._loss_sum / n, self._correct / n
        if self.evaluate_fn is not None:
            out["seconds"] = time.monotonic() - self._t0
        return out
