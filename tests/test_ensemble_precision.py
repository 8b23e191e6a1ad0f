"""The func backend's step options (precision, channels_last, conv_impl, compile) against independent single-model
runs (nn.Module + autograd + torch.optim, :func:`reference_single.train_single`), per precision.

Stated tolerances (the paper CNN at 1/16 width, 8x8 inputs, M=3, 3 epochs of batch 5, SGD with momentum 0.9):

* fp32, tf32 (a CPU ignores the TF32 flags, so tf32 is fp32 here), channels_last and conv_impl="grouped":
  parameters within ``FP32_ATOL = 1e-5`` of the single runs (the func backend's usual bound), and within
  ``ROUNDOFF = 1e-6`` of the default ensemble (float32 round-off of other kernels: measured 6e-8).
* bf16 (autocast forward, float32 loss, weights and update): after training, parameters within ``BF16_ATOL =
  0.05`` of the float32 single runs (measured up to 0.017 over 3 data/seed draws, binary and 3 classes, on this
  CPU; the parameters move by more than 0.5); one step's gradient of each member within ``BF16_GRAD_RTOL = 0.15``
  (relative, in norm over all its parameters) of the float32 gradient (measured 1.5-5.3%), and within
  ``BF16_SINGLE_RTOL = 0.15`` of a single nn.Module's gradient with the same bfloat16-autocast forward (measured
  0.2-0.4% grouped, 0.4-5% vmap: bfloat16 rounds the vmap path's separate bias add differently).
"""

import pytest
import torch
from reference_single import train_single
from torch import nn

from iwlab.models import MLP, ByrdLiptonCNN, ResNet
from iwlab.train import EnsembleTrainer, Member, func_backend
from iwlab.train.precision import tf32_flags

FP32_ATOL, ROUNDOFF = 1e-5, 1e-6
BF16_ATOL, BF16_GRAD_RTOL, BF16_SINGLE_RTOL = 0.05, 0.15, 0.15
EPOCHS = 3
KW = dict(batch_size=5, momentum=0.9)


def _cnn(out=1, dropout=0.0):
    return lambda g: ByrdLiptonCNN(n_out=out, width=1 / 16, dense=(8,), dropout=dropout, image_size=8, generator=g)


def _data(out, seed=5, n=20):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, max(2, out), (n,), generator=g)


def _members(out, seed=10):
    cws = [(1.0, 0.25), None, (1.0, 1 / 16)] if out == 1 else [(1.0, 0.5, 0.25), None, (0.5, 1.0, 2.0)]
    return [
        Member(seed=seed + i, class_weight=cws[i], lr=0.05 * (1 + 0.5 * i), weight_decay=(0.0, 1e-2, 0.0)[i])
        for i in range(3)
    ]


def _fit(out, **opts):
    x, y = _data(out)
    trainer = EnsembleTrainer(_cnn(out), _members(out), **KW, **opts)
    trainer.fit(x, y, epochs=EPOCHS, progress=False)
    return trainer


def _max_diff(trainer, states):
    return max(float((trainer.member_state_dict(i)[k] - s[k]).abs().max()) for i, s in enumerate(states) for k in s)


@pytest.fixture(scope="module", params=[1, 3], ids=["binary", "3-class"])
def single(request):
    """``(out, [state dicts])`` of the three members trained alone in float32, and how far they moved."""
    out = request.param
    x, y = _data(out)
    states = [train_single(_cnn(out), m, x, y, epochs=EPOCHS, **KW).state_dict() for m in _members(out)]
    inits = [_cnn(out)(torch.Generator().manual_seed(m.seed)).state_dict() for m in _members(out)]
    moved = max(float((s[k] - i[k]).abs().max()) for s, i in zip(states, inits, strict=True) for k in s)
    assert moved > 0.5  # training moved the parameters far beyond every tolerance below
    return out, states


@pytest.mark.parametrize(
    "opts",
    [
        dict(precision="tf32"),
        dict(channels_last=True),
        dict(conv_impl="grouped"),
        dict(conv_impl="grouped", channels_last=True),
    ],
    ids=["tf32", "channels_last", "grouped", "grouped+channels_last"],
)
def test_fp32_options_equal_single_runs(single, opts):
    out, states = single
    trainer = _fit(out, **opts)
    assert trainer.step_options == {
        "precision": "fp32",
        "channels_last": False,
        "conv_impl": "vmap",
        "compile": False,
        **opts,
    }
    assert _max_diff(trainer, states) <= FP32_ATOL
    default = _fit(out)
    assert _max_diff(trainer, [default.member_state_dict(i) for i in range(3)]) <= ROUNDOFF
    if opts == dict(precision="tf32"):  # the flags touch CUDA kernels only: on a CPU it is fp32, bit for bit
        for i in range(3):
            for k, v in default.member_state_dict(i).items():
                assert torch.equal(trainer.member_state_dict(i)[k], v), k
    if opts.get("channels_last"):  # the layout is kept through the in-place updates
        w = trainer.params["net.0.weight"]  # (M, O, I, kh, kw)
        assert w[0].is_contiguous(memory_format=torch.channels_last) and not w[0].is_contiguous()


@pytest.mark.parametrize("opts", [{}, dict(conv_impl="grouped", channels_last=True)], ids=["vmap", "grouped+cl"])
def test_bf16_equals_single_runs_within_stated_tolerance(single, opts):
    out, states = single
    trainer = _fit(out, precision="bf16", **opts)
    assert all(p.dtype == torch.float32 for p in trainer.params.values())  # float32 master weights
    assert all(b.dtype == torch.float32 for b in trainer.opt_state["momentum"])  # and optimizer state
    dev = _max_diff(trainer, states)
    fp32 = _fit(out)
    assert dev <= BF16_ATOL
    assert _max_diff(trainer, [fp32.member_state_dict(i) for i in range(3)]) > 1e-4  # the forward really was bf16


class _Bf16Forward(nn.Module):
    """A single model whose forward runs under bfloat16 autocast and returns float32 logits (the reference)."""

    def __init__(self, net):
        super().__init__()
        self.inner = net

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = self.inner(x)
        return z.float()


@pytest.mark.parametrize("impl", ["vmap", "grouped"])
def test_bf16_one_step_gradients(impl):
    nets = [_cnn()(torch.Generator().manual_seed(30 + i)) for i in range(3)]
    params, buffers, template = func_backend.stack_modules(nets, torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(3, 5, 3, 8, 8, generator=g), (torch.rand(3, 5, generator=g) > 0.5).float()
    gw = torch.full((3, 5), 0.2)
    step = func_backend.make_step(template, True, None, precision="bf16", conv_impl=impl)
    template.train()
    grads, _ = step(params, buffers, x, y, gw)
    assert all(v.dtype == torch.float32 for v in grads.values())
    for i, net in enumerate(nets):
        got = torch.cat([v[i].flatten() for v in grads.values()])
        for model, rtol in ((net, BF16_GRAD_RTOL), (_Bf16Forward(net), BF16_SINGLE_RTOL)):
            z = model(x[i]).squeeze(-1)
            loss = (nn.functional.binary_cross_entropy_with_logits(z, y[i], reduction="none") * gw[i]).sum()
            want = torch.cat([d.flatten() for d in torch.autograd.grad(loss, list(net.parameters()))])
            assert float((got - want).norm() / want.norm()) <= rtol


def test_grouped_with_member_losses_equals_vmap():
    # per-member losses pull d loss / d logits back through the forward (torch.func.vjp); the vmap path is checked
    # against single runs in tests/train; here the grouped path must agree with it to float32 round-off
    x, y = _data(1)
    members = [Member(seed=1, loss="focal", loss_kwargs={"gamma": 2.0}, lr=0.1), Member(seed=2, lr=0.1)]
    runs = []
    for opts in ({}, dict(conv_impl="grouped", channels_last=True)):
        t = EnsembleTrainer(_cnn(), members, **KW, **opts)
        t.fit(x, y, epochs=2, progress=False)
        runs.append(t)
    for k, v in runs[0].params.items():
        torch.testing.assert_close(runs[1].params[k], v, atol=ROUNDOFF, rtol=0, msg=k)


def test_grouped_dropout_resumes_bitwise(tmp_path):
    x, y = _data(1)
    opts = dict(conv_impl="grouped", channels_last=True, precision="bf16")
    make = lambda: EnsembleTrainer(_cnn(dropout=0.5), _members(1), **KW, **opts)  # noqa: E731
    whole = make()
    whole.fit(x, y, epochs=4, progress=False)
    again = make()
    again.fit(x, y, epochs=4, progress=False)
    ck = tmp_path / "c.pt"
    part = make()
    part.fit(x, y, epochs=2, checkpoint_path=ck, eval_epochs=[2], progress=False)
    resumed = make()
    resumed.fit(x, y, epochs=4, checkpoint_path=ck, eval_epochs=[2, 4], progress=False)
    for k, v in whole.params.items():
        assert torch.equal(again.params[k], v), k  # deterministic
        assert torch.equal(resumed.params[k], v), k  # and bitwise resumable
    # the eval logits are each member's own nn.Module in eval mode (no dropout)
    net = _cnn(dropout=0.5)(torch.Generator())
    net.load_state_dict(whole.member_state_dict(1))
    with torch.no_grad():
        torch.testing.assert_close(whole.logits(x)[1], net.eval()(x), atol=1e-5, rtol=1e-5)


def test_settings_record_precision(tmp_path):
    x, y = _data(1)
    fp32 = EnsembleTrainer(_cnn(), _members(1), **KW, channels_last=True, conv_impl="grouped")
    fp32.fit(x, y, epochs=1, progress=False)
    assert "precision" not in fp32.state_dict()["spec"]  # records of fp32 runs stay as they were
    again = EnsembleTrainer(_cnn(), _members(1), **KW)  # layout and formulation: not part of the record
    again.load_state_dict(fp32.state_dict())
    assert again.epoch == 1
    bf16 = EnsembleTrainer(_cnn(), _members(1), **KW, precision="bf16")
    with pytest.raises(ValueError, match=r"made with precision=\(not recorded\); this run has precision=bf16"):
        bf16.load_state_dict(fp32.state_dict())


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(precision="fp16"), ValueError, r"precision must be one of \('fp32', 'tf32', 'bf16'\), got 'fp16'"),
        (dict(channels_last="yes"), TypeError, "channels_last must be True or False, got 'yes'"),
        (dict(conv_impl="im2col"), ValueError, r"conv_impl must be one of \('vmap', 'grouped'\), got 'im2col'"),
        (dict(compile=1), TypeError, "compile must be True or False, got 1"),
    ],
)
def test_bad_option_values(kwargs, err, match):
    with pytest.raises(err, match=match):
        EnsembleTrainer(_cnn(), _members(1), **KW, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(precision="bf16"), dict(channels_last=True), dict(conv_impl="grouped")])
def test_options_refused_on_stacked_backend(kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=f"{name}={value!r} needs the func backend"):
        EnsembleTrainer(lambda g: MLP(2, (4,), 1, generator=g), [Member(seed=0)], batch_size=4, **kwargs)


def test_options_refused_where_meaningless():
    with pytest.raises(ValueError, match="precision='bf16' is for float32 models; .* torch.float64"):
        EnsembleTrainer(lambda g: _cnn()(g).double(), [Member(seed=0)], batch_size=4, precision="bf16")
    with pytest.raises(ValueError, match="channels_last=True needs a model with nn.Conv2d"):
        mlp = lambda g: MLP(2, (4,), 1, generator=g)  # noqa: E731
        EnsembleTrainer(mlp, [Member(seed=0)], batch_size=4, backend="func", channels_last=True)
    resnet = lambda g: ResNet(width=1 / 16, batch_norm=False, dense=4, generator=g)  # noqa: E731
    with pytest.raises(ValueError, match="conv_impl='grouped' runs nn.Sequential chains; ResNet is not one"):
        EnsembleTrainer(resnet, [Member(seed=0)], batch_size=4, conv_impl="grouped")
    bn = lambda g: nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 1))  # noqa: E731
    with pytest.raises(ValueError, match=r"cannot run layer '1' \(BatchNorm2d\); use conv_impl='vmap'"):
        EnsembleTrainer(bn, [Member(seed=0)], batch_size=4, conv_impl="grouped")


class _NotItsChain(nn.Module):
    """A wrapper of one Sequential whose forward is not that chain: grouped must refuse it, not train it."""

    def __init__(self, g):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 1))

    def forward(self, x):
        return self.net(x * 2.0)


def test_grouped_refuses_a_forward_that_is_not_its_chain():
    x, y = _data(1)
    t = EnsembleTrainer(_NotItsChain, [Member(seed=0), Member(seed=1)], batch_size=5, conv_impl="grouped")
    with pytest.raises(ValueError, match="conv_impl='grouped' gives other logits than the model's forward"):
        t.fit(x, y, epochs=1, progress=False)


def test_tf32_flags_set_for_the_step_and_restored():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
        with pytest.raises(KeyError), tf32_flags("tf32", torch.device("cuda")):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
            raise KeyError("the step failed")
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        with tf32_flags("fp32", torch.device("cuda")):  # fp32 leaves the process's flags alone
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_compile_failure_is_one_line(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def broken(fn, **kw):
        def call(*a):
            raise BackendCompilerFailed("inductor", RuntimeError("backend exploded\nlong traceback"), None)

        return call

    monkeypatch.setattr(torch, "compile", broken)
    x, y = _data(1)
    t = EnsembleTrainer(_cnn(), _members(1), **KW, compile=True)
    with pytest.raises(RuntimeError, match=r"^compile=True: .* \(BackendCompilerFailed: .*\); run with compile="):
        t.fit(x, y, epochs=1, progress=False)


def test_errors_of_the_step_are_not_called_compile_failures(monkeypatch):
    """Only the backend's failure is relabelled; an error of the step itself passes through as it is."""

    def bad_step(fn, **kw):
        def call(*a):
            raise ValueError("reweight must return (M, B) weights")

        return call

    monkeypatch.setattr(torch, "compile", bad_step)
    x, y = _data(1)
    t = EnsembleTrainer(_cnn(), _members(1), **KW, compile=True)
    with pytest.raises(ValueError, match=r"^reweight must return \(M, B\) weights$"):
        t.fit(x, y, epochs=1, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["vmap", "grouped"])
def test_compiled_step_equals_eager(impl):
    eager = _fit(1, conv_impl=impl)
    compiled = _fit(1, conv_impl=impl, compile=True)
    for k, v in eager.params.items():
        torch.testing.assert_close(compiled.params[k], v, atol=FP32_ATOL, rtol=0, msg=k)


def test_bf16_with_batchnorm_on_cpu_is_refused():
    """vmap(grad(batch_norm)) under CPU autocast fails inside torch: refused at construction, in one line."""

    def model_fn(g):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))

    with pytest.raises(ValueError, match=r"^precision='bf16' with BatchNorm2d does not run on the CPU"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4, precision="bf16")


def test_channels_last_is_restored_on_resume(tmp_path):
    """A checkpoint saved without channels_last, resumed with it: the conv weights are laid out channels-last."""
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 2, (8,))

    def model_fn(g):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))

    ckpt = tmp_path / "ck.pt"
    EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x, y, epochs=1, checkpoint_path=ckpt, progress=False)
    fresh = EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4, channels_last=True)
    resumed = EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4, channels_last=True)
    resumed.fit(x, y, epochs=2, checkpoint_path=ckpt, progress=False)
    name = next(k for k, v in resumed.params.items() if v.dim() == 5)  # the stacked conv weight (M, O, I, kh, kw)
    assert resumed.params[name].stride() == fresh.params[name].stride()
    # and back: a channels-last checkpoint resumed without it, momentum buffers in their parameters' layout too
    ckpt2 = tmp_path / "ck2.pt"
    kw = dict(batch_size=4, momentum=0.9)
    EnsembleTrainer(model_fn, [Member(seed=0)], channels_last=True, **kw).fit(
        x, y, epochs=1, checkpoint_path=ckpt2, progress=False
    )
    plain = EnsembleTrainer(model_fn, [Member(seed=0)], **kw)
    back = EnsembleTrainer(model_fn, [Member(seed=0)], **kw)
    back.fit(x, y, epochs=2, checkpoint_path=ckpt2, progress=False)
    assert back.params[name].stride() == plain.params[name].stride()
    for p, b in zip(back._param_list(), back.opt_state["momentum"], strict=True):
        assert b.stride() == p.stride()


@pytest.mark.parametrize("norm", [nn.InstanceNorm2d(4, affine=True), nn.LayerNorm([4, 6, 6])])
def test_bf16_with_other_norms_on_cpu_is_refused(norm):
    def model_fn(g):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        return nn.Sequential(nn.Conv2d(3, 4, 3), norm, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))

    with pytest.raises(ValueError, match=f"^precision='bf16' with {type(norm).__name__} does not run on the CPU"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4, precision="bf16")
