"""iwlab.train.evaluators: the metric callbacks equal the hand-written closures they replaced, number for number."""

import torch

from iwlab.functional.losses import weighted_binary_cross_entropy, weighted_cross_entropy
from iwlab.functional.metrics import weighted_accuracy
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.evaluators import (
    accuracy,
    combine,
    fit_metrics,
    fraction_predicted,
    held_out_metrics,
    mask_diverged,
    member_class_weights,
)


def _trainer(n_out, class_weights):
    members = [Member(seed=s, class_weight=cw, lr=0.1) for s, cw in enumerate(class_weights)]
    return EnsembleTrainer(lambda g: MLP(4, (8,), n_out, generator=g), members, batch_size=4)


def test_binary_fit_metrics_equal_the_closure_bitwise():
    x, y = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 6)
    tr = _trainer(1, [(1.0, 0.25), (0.25, 1.0)])
    tr.fit(x, y, epochs=1, progress=False)
    out = fit_metrics(x, y, normalization="batch_size")(tr, 1)
    z = tr.logits(x).squeeze(-1)
    cw = torch.tensor([m.class_weight for m in tr.members], dtype=torch.float32)
    want = weighted_binary_cross_entropy(z, y.float(), class_weight=cw, normalization="batch_size", validate=False)
    assert torch.equal(out["train_loss"], want)
    assert torch.equal(out["train_acc"], ((z > 0).long() == y).float().mean(1))
    assert torch.equal(member_class_weights(tr), cw)


def test_multiclass_fit_and_held_out_metrics_equal_the_closure_bitwise():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(15, 4, generator=g), torch.tensor([0, 1, 2] * 5)
    xt, yt = torch.randn(9, 4, generator=g), torch.tensor([0, 0, 1, 1, 1, 0, 0, 1, 0])  # class 2 absent
    cw = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    tr = _trainer(3, cw.tolist())
    tr.fit(x, y, epochs=1, progress=False)
    out = combine(
        fit_metrics(x, y, class_weight=cw, normalization="weight_sum"),
        held_out_metrics(xt, yt, class_weight=cw, per_class=True),
    )(tr, 1)
    assert list(out) == ["train_loss", "train_acc", "test_acc", "weighted_acc", "acc_class0", "acc_class1"]
    z, pt = tr.logits(x), tr.predict(xt)
    want = weighted_cross_entropy(z, y, class_weight=cw, normalization="weight_sum", validate=False)
    assert torch.equal(out["train_loss"], want)
    assert torch.equal(out["train_acc"], (z.argmax(-1) == y).float().mean(1))
    assert torch.equal(out["test_acc"], (pt == yt).float().mean(1))
    assert torch.equal(out["weighted_acc"], weighted_accuracy(pt, yt, cw))
    assert torch.equal(out["acc_class1"], (pt[:, yt == 1] == 1).float().mean(1))


def test_fraction_accuracy_and_masking():
    pred = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert torch.equal(fraction_predicted(pred, 1), pred.float().mean(1))
    assert accuracy(pred, torch.tensor([1, 1, 0, 0])).tolist() == [1.0, 0.75]
    out = {"a": torch.tensor([0.5, 0.25])}
    assert mask_diverged(out, torch.tensor([-1, -1])) is out  # nothing diverged: unchanged, no copy
    masked = mask_diverged(out, torch.tensor([-1, 2]))
    assert masked["a"].dtype == torch.float64 and masked["a"][0] == 0.5 and masked["a"][1].isnan()
