"""Inputs the bad-input hunt after the layout refactor (issue 11) found accepted silently or answered with
an unclear message; each is now refused with one line naming what is wrong, or recorded as given."""

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from iwlab.config import ConfigError
from iwlab.experiments import make_config
from iwlab.experiments.importance_sampling_mnist import Config as MnistConfig
from iwlab.experiments.importance_sampling_summary import table1
from iwlab.functional.metrics import weighted_accuracy
from iwlab.models import MLP
from iwlab.sampling import SamplerSpec, make_sampler
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.sampled import train_sampled


def _sampled(on_epoch):
    torch.manual_seed(0)
    x, y = torch.randn(32, 2), torch.randint(0, 2, (32,))
    model = torch.nn.Linear(2, 2)
    sampler = make_sampler("oracle", TensorDataset(x, y), 8, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return train_sampled(model, sampler, opt, iterations=4, steps_per_epoch=2, on_epoch=on_epoch)


def test_train_sampled_keeps_a_nan_metric_as_the_old_loop_did():
    recs = _sampled(lambda m, e: {"test_error": float("nan"), "other": 1.0})
    assert all(r["test_error"] != r["test_error"] and r["other"] == 1.0 for r in recs)


@pytest.mark.parametrize("name", ["train_loss", "iteration", "epoch", "time_total"])
def test_train_sampled_refuses_a_metric_that_would_overwrite_its_own(name):
    with pytest.raises(ValueError, match=f"on_epoch returned \\['{name}'\\], which train_sampled records itself"):
        _sampled(lambda m, e: {name: 1.0})


def test_train_sampled_refuses_a_non_numeric_metric():
    with pytest.raises(TypeError, match="metric 'test_error'"):
        _sampled(lambda m, e: {"test_error": "0.3"})


def test_sampler_specs_that_differ_print_differently_and_table1_keeps_both():
    a, b = SamplerSpec.parse("oracle_k0.1234567"), SamplerSpec.parse("oracle_k0.1234568")
    assert a.label != b.label and str(a) != str(b) and SamplerSpec.parse(str(a)) == a
    assert str(SamplerSpec("oracle", 0.5)) == "oracle_k0.5" and SamplerSpec("pcg", 1.0).label == "PCG k=1"
    cfg = MnistConfig(methods=(str(a), str(b)), table_epochs=(1,))
    cfg.validate()
    df = pd.DataFrame({"method": [str(a), str(b)], "epoch": 1, "name": "test_error", "value": [0.10, 0.50], "seed": 0})
    assert table1(df, cfg).shape[1] == 2


@pytest.mark.parametrize("k", [True, "0.5", None])
def test_sampler_spec_k_must_be_a_number(k):
    with pytest.raises(TypeError, match="k must be a number"):
        SamplerSpec("oracle", k)


def test_weighted_accuracy_refuses_out_of_range_targets_and_bad_weights():
    pred = torch.tensor([0, 1, 1])
    assert float(weighted_accuracy(pred, torch.tensor([0, 1, 0]), torch.tensor([0.5, 0.25]))) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 2\); got range \[-1, 1\]"):
        weighted_accuracy(pred, torch.tensor([0, 1, -1]), torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match="negative"):
        weighted_accuracy(pred, torch.tensor([0, 1, 0]), torch.tensor([-0.5, 0.25]))
    with pytest.raises(TypeError):
        weighted_accuracy(pred, torch.tensor([0, 1, 0]), torch.tensor([True, False]))


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("cifar_multiclass", ["weighted_classes=1,1"], "weighted_classes repeat: 1 is given more than once"),
        ("cifar_imbalanced", ["factors=2,2.0"], "factors repeat: 2.0 is given more than once"),
        ("cifar_imbalanced", ["subsampled=cat,cat"], "subsampled repeat: 'cat' is given more than once"),
        (
            "importance_sampling_mnist",
            ["smooth_strategies=oracle,oracle"],
            "smooth_strategies repeat: 'oracle' is given",
        ),
        ("importance_sampling_mnist", ["table_epochs=1,1"], "table_epochs repeat: 1 is given more than once"),
        ("importance_sampling_mnist", ["table_epochs=99"], r"table_epochs \[99\] lie past the last epoch"),
        ("cifar_multiclass", ["rhos=1e-40"], r"rhos must be >= 1e-30"),
    ],
)
def test_config_repeats_and_unreachable_values_are_refused(name, overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_config(name, "ci", overrides)


def test_layer_widths_may_repeat():
    assert make_config("cifar_binary", "ci", ["dense=16,16"]).dense == (16, 16)


def _mlp(g):
    return MLP(2, (), 1, generator=g)


@pytest.mark.parametrize(
    "member, kw, err, match",
    [
        (Member(seed=0, lr=True), {}, TypeError, "member 0 lr"),
        (Member(seed=0, lr="0.1"), {}, TypeError, "member 0 lr"),
        (Member(seed=0, weight_decay=True), {}, TypeError, "member 0 weight_decay"),
        (Member(seed=0), dict(momentum=True), TypeError, "momentum"),
        (Member(seed=0), dict(momentum="0.9"), TypeError, "momentum"),
        (Member(seed=0), dict(eps=True), TypeError, "eps"),
        (Member(seed=0), dict(betas=(0.9, True)), TypeError, r"betas\[1\]"),
    ],
)
def test_trainer_scalars_are_numbers(member, kw, err, match):
    with pytest.raises(err, match=match):
        EnsembleTrainer(_mlp, [member], batch_size=4, **kw)


def test_bool_class_weights_and_stop_diverged_are_refused():
    x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    t = EnsembleTrainer(_mlp, [Member(seed=0, class_weight=(True, False))], batch_size=4)
    with pytest.raises(TypeError, match="member 0: class_weight must hold numbers"):
        t.fit(x, y, epochs=1, progress=False)
    t = EnsembleTrainer(_mlp, [Member(seed=0)], batch_size=4)
    with pytest.raises(TypeError, match="stop_diverged must be True or False"):
        t.fit(x, y, epochs=1, progress=False, stop_diverged="no")


def test_a_second_fit_on_other_data_is_refused():
    x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    t = EnsembleTrainer(_mlp, [Member(seed=0)], batch_size=4)
    t.fit(x, y, epochs=1, progress=False)
    with pytest.raises(ValueError, match="continues this trainer's earlier fit, which had other data"):
        t.fit(x * 2, y, epochs=2, progress=False)
    t.fit(x, y, epochs=2, progress=False)  # the same data continues
    assert t.epoch == 2


def test_a_damaged_ensemble_state_is_refused():
    x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    a = EnsembleTrainer(_mlp, [Member(seed=0), Member(seed=1)], batch_size=4)
    a.fit(x, y, epochs=1, progress=False)
    state = a.state_dict()
    state["job"]["generators"] = state["job"]["generators"][:1]
    b = EnsembleTrainer(_mlp, [Member(seed=0), Member(seed=1)], batch_size=4)
    with pytest.raises(ValueError, match="holds 1 generators .* for an ensemble of 2 members: it is damaged"):
        b.load_state_dict(state)


@pytest.mark.parametrize("name", ["synthetic", "cifar_binary"])
def test_the_renamed_l2_key_points_to_weight_decay(name):
    with pytest.raises(ConfigError, match="unknown config key 'l2'. It was renamed 'weight_decay'"):
        make_config(name, "quick", ["l2=0"])


def test_train_sampled_resumed_with_fewer_iterations_says_so_in_iterations(tmp_path):
    x, y = torch.randn(32, 2), torch.randint(0, 2, (32,))

    def go(iterations):
        model = torch.nn.Linear(2, 2)
        sampler = make_sampler("oracle", TensorDataset(x, y), 8, seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return train_sampled(
            model, sampler, opt, iterations=iterations, steps_per_epoch=5, checkpoint_path=tmp_path / "c"
        )

    go(20)
    with pytest.raises(ValueError, match=r"is at iteration 20 \(epoch 4\) but train_sampled\(iterations=8\)"):
        go(8)
