"""Trainer inputs: label dtypes and soft labels, counts, empty and ragged data, and exact weight_sum
normalization (no epsilon) for weights of any common scale."""

import pytest
import torch
from reference_single import train_single
from torch import nn
from torch.utils.data import TensorDataset

from iwlab.models import MLP, init_from_generator_
from iwlab.sampling import make_sampler
from iwlab.train import EnsembleTrainer, Member, class_indices, fit_in_packs
from iwlab.train.sampled import train_sampled


def _data(n=37, n_classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    if n_classes == 2:
        y = ((x[:, 0] + 0.5 * x[:, 1]) > 0).long()
    else:
        y = torch.randint(0, n_classes, (n,), generator=g)
    return x, y


def _binary(g):
    return MLP(2, (8,), 1, dropout=0.25, generator=g)


def _multi(g):
    return MLP(2, (8,), 3, generator=g)


def _conv3(g):
    return init_from_generator_(nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3)), g)


MEMBERS = [Member(seed=0, lr=0.2, class_weight=None), Member(seed=1, lr=0.1, weight_decay=1e-2)]


def _train(model_fn, x, y, epochs=3, members=None, **kw):
    t = EnsembleTrainer(model_fn, members or MEMBERS, batch_size=8, **{k: v for k, v in kw.items() if k != "fit"})
    t.fit(x, y, epochs=epochs, progress=False, **kw.get("fit", {}))
    return t


def _equal(a, b):
    for p, q in zip(a._param_list(), b._param_list(), strict=True):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------------------------
# labels (item 13)

INT_DTYPES = [torch.int8, torch.uint8, torch.int16, torch.int32]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize(
    "model_fn, n_classes, cw",
    [(_binary, 2, (1.0, 0.25)), (_multi, 3, (1.0, 0.25, 2.0)), (_conv3, 3, (0.5, 1.0, 2.0))],
    ids=["stacked_binary", "stacked_multiclass", "func_multiclass"],
)
def test_every_integer_label_dtype_trains_like_int64(dtype, model_fn, n_classes, cw):
    x, y = _data(n_classes=n_classes)
    members = [Member(seed=0, lr=0.2, class_weight=cw), Member(seed=1, lr=0.1)]
    ref = _train(model_fn, x, y, members=members)
    _equal(_train(model_fn, x, y.to(dtype), members=members), ref)


def test_bool_labels_train_like_int64_for_a_binary_model_and_are_refused_for_multiclass():
    x, y = _data()
    _equal(_train(_binary, x, y.bool()), _train(_binary, x, y))
    with pytest.raises(TypeError, match="y is a bool tensor but the model has 3 classes"):
        _train(_multi, x, y.bool())


def test_integral_float_labels_train_like_int64():
    x, y = _data(n_classes=3)
    _equal(_train(_multi, x, y.double()), _train(_multi, x, y))


@pytest.mark.parametrize("model_fn", [_binary, _conv3], ids=["stacked", "func"])
def test_soft_labels_are_refused_with_value_and_index(model_fn):
    x, y = _data()
    yf = y.float()
    yf[3] = 0.5
    with pytest.raises(ValueError) as e:
        _train(model_fn, x, yf)
    assert str(e.value).startswith("y has a non-integer label 0.5 at index 3;")
    yn = y.float()
    yn[5] = float("nan")
    with pytest.raises(ValueError, match="y has a non-integer label nan at index 5"):
        _train(model_fn, x, yn)


def test_soft_labels_refused_per_member_with_2d_index():
    x, y = _data()
    ys = torch.stack([y, y]).float()
    ys[1, 4] = 0.25
    with pytest.raises(ValueError, match=r"non-integer label 0.25 at index \(1, 4\)"):
        _train(_binary, torch.stack([x, x]), ys, fit=dict(per_member=True))


def test_train_single_checks_labels_like_the_trainer():
    x, y = _data()
    m = Member(seed=0, lr=0.2, class_weight=(1.0, 0.5))
    ref = train_single(_binary, m, x, y, epochs=2, batch_size=8)
    for yy in (y.to(torch.int8), y.to(torch.uint8), y.bool(), y.float()):
        got = train_single(_binary, m, x, yy, epochs=2, batch_size=8)
        for p, q in zip(got.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p, q)
    yf = y.float()
    yf[2] = 0.5  # validate=False in the loss would have treated this as class 0
    with pytest.raises(ValueError, match="y has a non-integer label 0.5 at index 2"):
        train_single(_binary, m, x, yf, epochs=2, batch_size=8)
    x3, y3 = _data(n_classes=3)
    y3[0] = 3
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got range \[0, 3\]"):
        train_single(_multi, m, x3, y3, epochs=1, batch_size=8)


def test_class_indices_values():
    assert class_indices(torch.tensor([2.0, 0.0]), 3).tolist() == [2, 0]
    assert class_indices(torch.tensor([200], dtype=torch.uint8), None).dtype == torch.int64
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got range \[0, 200\]"):
        class_indices(torch.tensor([0, 200], dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match=r"got range \[-1, 1\]"):
        class_indices(torch.tensor([-1, 1], dtype=torch.int8), 2)


# ----------------------------------------------------------------------------------------------
# trainer inputs (item 14)


def test_epochs_zero_names_epochs_not_max_epoch():
    x, y = _data()
    with pytest.raises(ValueError) as e:
        _train(_binary, x, y, epochs=0)
    assert str(e.value) == "epochs must be an integer >= 1, got 0"
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="epochs must be an integer >= 1"):
            _train(_binary, x, y, epochs=bad)


def test_no_examples_is_a_clear_error():
    x, y = _data()
    with pytest.raises(ValueError, match=r"x and y have no examples \(N=0"):
        _train(_binary, x[:0], y[:0])


def test_2d_y_without_per_member_names_per_member():
    x, y = _data()
    with pytest.raises(ValueError, match="pass per_member=True") as e:
        _train(_binary, x, torch.stack([y, y]), members=MEMBERS)
    assert "\n" not in str(e.value)


def test_ragged_per_member_lists_are_refused():
    xa, ya = _data(10)
    xb, yb = _data(12, seed=1)
    with pytest.raises(ValueError) as e:
        _train(_binary, [xa, xb], [ya, yb], fit=dict(per_member=True))
    assert str(e.value) == "per_member datasets must all have N rows; got [10, 12] (x)"


def test_per_member_lists_of_equal_shape_equal_stacked_tensors():
    xa, ya = _data(21)
    xb, yb = _data(21, seed=1)
    stacked = _train(_binary, torch.stack([xa, xb]), torch.stack([ya, yb]), fit=dict(per_member=True))
    _equal(_train(_binary, [xa, xb], (ya, yb), fit=dict(per_member=True)), stacked)


def test_other_trainer_input_errors():
    x, y = _data()
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        _train(_binary, x.tolist(), y)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the model's parameters are torch.float32"):
        _train(_binary, x.double(), y)
    with pytest.raises(ValueError, match=r"x must have shape \(37, 2\) for this MLP \(in_dim=2\); got \(37, 3\)"):
        _train(_binary, torch.randn(37, 3), y)
    with pytest.raises(ValueError, match="eval_epochs entry 9 lies past epochs=3"):
        _train(_binary, x, y, fit=dict(eval_epochs=[1, 9]))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(N,\) or \(M, N\) = \(2, 37\)"):
        _train(_binary, x, y, fit=dict(sample_weight=torch.ones(3, 37)))
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        EnsembleTrainer(_binary, MEMBERS, batch_size=8.0)
    with pytest.raises(ValueError, match="backend must be"):
        EnsembleTrainer(_binary, MEMBERS, batch_size=8, backend="funk")
    with pytest.raises(ValueError, match="momentum must be finite"):
        EnsembleTrainer(_binary, MEMBERS, batch_size=8, momentum=float("nan"))


def test_fit_in_packs_input_errors():
    x, y = _data()
    kw = dict(batch_size=8, epochs=1, progress=False)
    with pytest.raises(TypeError, match="pack_size must be an integer"):
        fit_in_packs(_binary, MEMBERS, x, y, pack_size=True, **kw)
    xs, ys = torch.stack([x, x, x]), torch.stack([y, y, y])
    with pytest.raises(ValueError, match="per_member x holds 3 datasets for 2 members"):
        fit_in_packs(_binary, MEMBERS, xs, ys, pack_size=1, per_member=True, **kw)
    with pytest.raises(ValueError, match="sample_weight has 3 rows for 2 members"):
        fit_in_packs(_binary, MEMBERS, x, y, pack_size=1, sample_weight=torch.ones(3, 37), **kw)


def test_fit_in_packs_broadcasts_a_single_row_of_sample_weights():
    x, y = _data()
    sw = torch.rand(1, 37, generator=torch.Generator().manual_seed(3)) + 0.1
    kw = dict(batch_size=8, epochs=2, progress=False, sample_weight=sw)
    packs = fit_in_packs(_binary, MEMBERS, x, y, pack_size=1, **kw)
    for i, t in enumerate(packs):  # each pack trains with the one row, as a single ensemble would
        ref = _train(_binary, x, y, epochs=2, members=[MEMBERS[i]], fit=dict(sample_weight=sw[0]))
        _equal(t, ref)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(iterations=True), TypeError, "iterations must be an integer >= 1"),
        (dict(iterations=2.5), TypeError, "iterations must be an integer >= 1"),
        (dict(steps_per_epoch=0), ValueError, "steps_per_epoch must be an integer >= 1, got 0"),
        (dict(steps_per_epoch=True), TypeError, "steps_per_epoch must be an integer >= 1"),
    ],
)
def test_train_sampled_counts(kw, err, match):
    ds = TensorDataset(torch.randn(16, 2), torch.randint(0, 2, (16,)))
    model = nn.Linear(2, 2)
    args = {"iterations": 4, "steps_per_epoch": 2, **kw}
    with pytest.raises(err, match=match):
        train_sampled(model, make_sampler("uniform", ds, 4), torch.optim.SGD(model.parameters(), lr=0.1), **args)


# ----------------------------------------------------------------------------------------------
# weight_sum normalization is exact (item 7)


@pytest.mark.parametrize("scale", [1e-35, 1e38], ids=["tiny", "huge"])
@pytest.mark.parametrize("model_fn", [_binary, _conv3], ids=["stacked", "func"])
def test_weight_sum_is_invariant_to_a_common_scale_of_the_weights(scale, model_fn):
    """(s, s) class weights under weight_sum train as (1, 1): sum_i w_i l_i / sum_i w_i does not depend on s.

    Old code clamped the batch sum at 1e-30 (tiny weights: steps 1e-5 too small) and let a sum of
    huge weights overflow to inf (every step 0).
    """
    n_classes = 2 if model_fn is _binary else 3
    x, y = _data(n_classes=n_classes)
    kw = dict(batch_size=8, normalization="weight_sum")

    def members(s):
        return [Member(seed=0, lr=0.2, class_weight=(s,) * n_classes), Member(seed=1, lr=0.1, weight_decay=1e-2)]

    ones = EnsembleTrainer(model_fn, members(1.0), **kw)
    ones.fit(x, y, epochs=3, progress=False)
    scaled = EnsembleTrainer(model_fn, members(scale), **kw)
    scaled.fit(x, y, epochs=3, progress=False)
    ref = train_single(model_fn, members(1.0)[0], x, y, epochs=3, **kw)
    for name, p in ref.named_parameters():
        i = [n for n, _ in ref.named_parameters()].index(name)
        got = scaled.member_state_dict(0)[name]
        assert (got - model_fn(torch.Generator().manual_seed(0)).state_dict()[name]).abs().max() > 1e-3
        torch.testing.assert_close(got, ones.member_state_dict(0)[name], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got, p.detach(), atol=1e-5, rtol=1e-5, msg=f"{name} ({i})")


def test_weight_sum_with_tiny_sample_weights_equals_train_single():
    x, y = _data()
    sw = torch.full((37,), 1e-35)
    t = EnsembleTrainer(_binary, [Member(seed=0, lr=0.2)], batch_size=8, normalization="weight_sum")
    t.fit(x, y, epochs=3, progress=False, sample_weight=sw)
    ref = train_single(_binary, Member(seed=0, lr=0.2), x, y, epochs=3, batch_size=8, normalization="weight_sum")
    for name, p in ref.named_parameters():
        torch.testing.assert_close(t.member_state_dict(0)[name], p.detach(), atol=1e-5, rtol=1e-5)


def test_weights_not_representable_in_float32_are_refused():
    x, y = _data()
    sw = torch.ones(37, dtype=torch.float64)
    sw[4] = 1e-50  # float32 would flush it to 0 and drop the example silently
    with pytest.raises(ValueError) as e:
        _train(_binary, x, y, fit=dict(sample_weight=sw))
    assert str(e.value).startswith("sample_weight entry 1e-50 at index 4 is not representable in float32")
    with pytest.raises(ValueError, match="member 0 class_weight entry 1e-50 at index 1 is not representable"):
        _train(_binary, x, y, members=[Member(seed=0, class_weight=(1.0, 1e-50))])
    with pytest.raises(ValueError, match="member 0: class_weight x sample_weight at index 0"):
        _train(
            _binary,
            x,
            y,
            members=[Member(seed=0, class_weight=(1e-30, 1e-30))],
            fit=dict(sample_weight=torch.full((37,), 1e-30)),
        )


# -- found by the bad-input hunt after the first hardening pass --------------------------------------


def _lin(g):
    return MLP(2, (), 1, generator=g)


def test_class_weights_that_become_float32_subnormals_are_refused():
    """1e-44 and 1.5e-44 become 9.8e-45 and 1.4e-44 in float32 (ratio 1.43, not 1.5): refused, not trained."""
    x, y = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 4)
    tr = EnsembleTrainer(
        _lin, [Member(0, class_weight=(1e-44, 1.5e-44), lr=0.5)], batch_size=4, normalization="weight_sum"
    )
    with pytest.raises(
        ValueError, match=r"member 0 class_weight entry 1e-44 at index 0 is not representable in float32"
    ):
        tr.fit(x, y, epochs=1, progress=False)
    tr = EnsembleTrainer(_lin, [Member(0, class_weight=(1e-22, 1.0), lr=0.5)], batch_size=4)
    with pytest.raises(ValueError, match=r"class_weight x sample_weight .* is not representable in float32"):
        tr.fit(x, y, epochs=1, sample_weight=torch.full((8,), 1e-22), progress=False)


def test_rates_follow_the_parameter_dtype_and_unrepresentable_rates_are_refused():
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 1] * 8)

    def lin64(g):
        return MLP(2, (), 1, generator=g).double()

    # float64 model: an L2 of 1e-9 acts (in float32, 1 - lr * l2 rounds to 1 and it would vanish)
    a = EnsembleTrainer(lin64, [Member(0, lr=0.5, weight_decay=1e-9)], batch_size=4)
    b = EnsembleTrainer(lin64, [Member(0, lr=0.5, weight_decay=0.0)], batch_size=4)
    assert a.lr.dtype == torch.float64
    a.fit(x, y, epochs=3, progress=False)
    b.fit(x, y, epochs=3, progress=False)
    assert not torch.equal(a.params[0], b.params[0])
    with pytest.raises(ValueError, match=r"member 0: lr=1e-50 cannot be represented in torch.float32"):
        EnsembleTrainer(_lin, [Member(0, lr=1e-50)], batch_size=4)


@pytest.mark.parametrize("seed, err", [(1.7, TypeError), (True, TypeError), (-1, ValueError), (2**64, ValueError)])
def test_member_seeds_are_checked(seed, err):
    with pytest.raises(err, match="member 0 seed"):
        EnsembleTrainer(_lin, [Member(seed=seed)], batch_size=4)
    with pytest.raises(err, match="member seed"):
        train_single(_lin, Member(seed=seed), torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), epochs=1, batch_size=2)


@pytest.mark.parametrize("cw", [(1.0, -1.0), (1.0, float("nan"))])
def test_train_single_checks_its_class_weights(cw):
    """The reference loop runs its losses with validate=False; it checks the weights once instead."""
    with pytest.raises(ValueError, match="member class_weight has"):
        train_single(
            _lin, Member(0, class_weight=cw), torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), epochs=1, batch_size=2
        )


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_train_sampled_takes_labels_of_any_integer_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, generator=g), torch.randint(0, 3, (32,), generator=g)

    def run(labels):
        torch.manual_seed(0)
        model = nn.Linear(3, 3)
        sampler = make_sampler("uniform", TensorDataset(x, labels), 8, seed=0)
        train_sampled(model, sampler, torch.optim.SGD(model.parameters(), lr=0.1), iterations=6, steps_per_epoch=3)
        return model.weight.detach()

    assert torch.equal(run(y.to(dtype)), run(y))
