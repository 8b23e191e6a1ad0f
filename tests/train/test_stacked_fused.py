"""The compiled multi-step kernel (``EnsembleTrainer(compile=True)``, :mod:`iwlab.train.stacked_fused`).

Checked against M single runs (``nn.Module`` + autograd + ``torch.optim.SGD``, :mod:`reference_single`) in
float32 within the same tolerance as the eager ensemble, and against the eager per-step path in float64, where
the two differ only by summation order (stated tolerance 1e-12). Inductor compiles each distinct shape once
(seconds), so only two tests compile for real; the others check the fused path's logic (chunking, masks,
normalization, decay) with ``torch.compile`` replaced by the identity (fixture ``no_inductor``).
"""

import pytest
import torch
from reference_single import train_single
from test_ensemble import EPOCHS, MODELS, _assert_module_close, _data, _members, _moved

from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.stacked import mlp_grads
from iwlab.train.stacked_fused import THIN, sgd_steps, steps_per_call

F64_TOL = 1e-12  # float64: the fused loops and the eager kernels differ only in summation order


@pytest.fixture
def no_inductor(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)


@pytest.mark.parametrize("model", ["mlp_dropout", "logreg", "mlp", "mlp_multiclass"])
def test_compiled_equals_single_runs(model, request):
    if model != "mlp_dropout":  # inductor for one model; the fused path's logic for all four
        request.getfixturevalue("no_inductor")
    model_fn, n_classes = MODELS[model]
    x, y = _data(40 if model != "mlp" else 37, n_classes)  # 37: a partial last batch (the per-step path takes it)
    members = _members(n_classes, "sgd")
    trainer = EnsembleTrainer(model_fn, members, batch_size=8, compile=True)
    assert trainer._fused is not None
    trainer.fit(x, y, epochs=EPOCHS, progress=False)
    _moved(trainer, model_fn, members)
    for i, m in enumerate(members):
        ref = train_single(model_fn, m, x, y, epochs=EPOCHS, batch_size=8)
        _assert_module_close(trainer.member_module(i), ref)


def _pair(model_fn, members, x, y, epochs, **kw):
    out = []
    for compile in (False, True):
        tr = EnsembleTrainer(model_fn, members, batch_size=8, compile=compile, **kw)
        tr.fit(x, y, epochs=epochs, progress=False)
        out.append(tr)
    return out


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_float64_matches_eager_path(normalization, no_inductor):
    """Two hidden layers (one thin, one wide: both kernels of the fused step), dropout, decay, float64."""

    def model_fn(g):
        return MLP(2, (16, 6), 3, dropout=0.25, generator=g).double()

    x, y = _data(48, 3)
    members = _members(3, "sgd")
    eager, fused = _pair(model_fn, members, x.double(), y, 3, normalization=normalization)
    for a, b in zip(eager.params, fused.params, strict=True):
        torch.testing.assert_close(b, a, atol=F64_TOL, rtol=0)
    _moved(fused, model_fn, members)


def test_bias_free_and_lr_schedule(no_inductor):
    def model_fn(g):
        return MLP(2, (16,), 1, bias=False, generator=g).double()

    x, y = _data(40)
    members = [Member(seed=s, class_weight=(1.0, w), lr=0.1) for s in (0, 1) for w in (1.0, 0.125)]
    eager, fused = _pair(model_fn, members, x.double(), y, 4, lr_schedule=lambda e: 0.5**e)
    for a, b in zip(eager.params, fused.params, strict=True):
        torch.testing.assert_close(b, a, atol=F64_TOL, rtol=0)
    assert all(float(b.abs().max()) == 0 for b in fused.params[1::2])  # zero biases stay zero


def test_resume_is_bitwise(tmp_path):
    model_fn, _ = MODELS["mlp_dropout"]
    x, y = _data(40)
    members = _members(2, "sgd")
    whole = EnsembleTrainer(model_fn, members, batch_size=8, compile=True)
    whole.fit(x, y, epochs=4, progress=False)
    ckpt = tmp_path / "ck.pt"
    part = EnsembleTrainer(model_fn, members, batch_size=8, compile=True)
    part.fit(x, y, epochs=2, progress=False, checkpoint_path=ckpt)
    resumed = EnsembleTrainer(model_fn, members, batch_size=8, compile=True)
    resumed.fit(x, y, epochs=4, progress=False, checkpoint_path=ckpt)
    for a, b in zip(whole.params, resumed.params, strict=True):
        assert torch.equal(a, b)


def test_kernel_gradient_equals_mlp_grads():
    """One step of sgd_steps (eager, no compile) is p - mlp_grads(p): the thin and the GEMM layer forms agree."""
    g = torch.Generator().manual_seed(0)
    M, B = 3, 5
    sizes = [(2, THIN + 3), (THIN + 3, THIN + 5), (THIN + 5, 1)]  # thin, wide, thin
    params = []
    for i, o in sizes:
        params += [torch.randn(M, i, o, generator=g, dtype=torch.float64), torch.randn(M, o, generator=g).double()]
    x = torch.randn(M, B, 2, generator=g, dtype=torch.float64)
    y = (torch.rand(M, B, generator=g) > 0.5).double()
    gw = torch.rand(M, B, generator=g, dtype=torch.float64)
    new = sgd_steps(params, x, y, gw, None, None, 1.0, True, True, 1)
    grads = mlp_grads(params, x, y, gw, None, 1.0, True)
    for p, n, d in zip(params, new, grads, strict=True):
        torch.testing.assert_close(n, p - d, atol=1e-13, rtol=0)


def test_steps_per_call():
    assert [steps_per_call(n) for n in (0, 1, 6, 11, 16, 128, 125)] == [1, 1, 6, 1, 8, 8, 5]


def test_each_trainer_compiles_its_own_copy(monkeypatch):
    """Dynamo gives up on a code object after ``recompile_limit`` variants; a sweep of shapes must not reach it.

    With the limit at 2 and failing loudly, three trainers of three widths all compile (each on its own code
    copy); the eager backend keeps it fast (dynamo still traces and counts every variant).
    """
    import functools

    import torch._dynamo.config as dynamo_config

    monkeypatch.setattr(dynamo_config, "recompile_limit", 2)
    monkeypatch.setattr(dynamo_config, "fail_on_recompile_limit_hit", True)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    x, y = _data(16)
    for h in (3, 5, 7):
        tr = EnsembleTrainer(lambda g, h=h: MLP(2, (h,), 1, generator=g), [Member(seed=0)], batch_size=8, compile=True)
        tr.fit(x, y, epochs=2, progress=False)
        assert torch.isfinite(tr.params[0]).all()


def test_compile_failure_is_one_line(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def broken(fn, **kw):
        def call(*a):
            raise BackendCompilerFailed("inductor", RuntimeError("no C++ compiler found\nmore detail"), None)

        return call

    monkeypatch.setattr(torch, "compile", broken)
    x, y = _data(16)
    tr = EnsembleTrainer(MODELS["mlp"][0], [Member(seed=0)], batch_size=8, compile=True)
    with pytest.raises(
        RuntimeError, match=r"^compile=True: torch.compile of the fused SGD steps failed .*compile=False$"
    ):
        tr.fit(x, y, epochs=1, progress=False)


def test_errors_of_the_step_pass_through(monkeypatch):
    def bad_step(fn, **kw):
        def call(*a):
            raise ValueError("a bad shape in the step")

        return call

    monkeypatch.setattr(torch, "compile", bad_step)
    x, y = _data(16)
    tr = EnsembleTrainer(MODELS["mlp"][0], [Member(seed=0)], batch_size=8, compile=True)
    with pytest.raises(ValueError, match=r"^a bad shape in the step$"):
        tr.fit(x, y, epochs=1, progress=False)
