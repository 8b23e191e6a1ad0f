"""Katharopoulos & Fleuret (2017): loss-based importance sampling on MNIST, CIFAR-10 and PTB (Table 1).

Three experiments share this module: ``is_mnist``, ``is_cifar10`` and ``is_ptb``. A cell is one
(method, seed) run of one model, trained with Adam on minibatches drawn by an :mod:`iwlab.sampling`
sampler through :func:`iwlab.train.sampled.train_sampled`. Methods are named ``uniform`` or
``STRATEGY_kK`` (``oracle_k0.5``, ``approx_k1``, ``pcg_k1``): the strategy and the bias exponent k of
``alpha = 1/(N p^k)``.

Recorded every epoch (300 minibatches for MNIST/CIFAR-10, 2000 for PTB): ``test_error`` (MNIST,
CIFAR-10) or ``perplexity`` (PTB validation set, as the paper reports), ``train_loss`` and
``train_loss_std`` (mean and std over the epoch's steps of the weighted minibatch loss),
``train_loss_raw``, and the cumulative wall-clock ``time_scoring``, ``time_training`` and
``time_total`` (evaluation excluded). After training: the sorted per-example training losses
(Fig. 1b) and the correlation between per-example loss and gradient norm (Appendix A.2).

Example:
    >>> # iwlab run is_mnist --profile quick          (IWLAB_DATA holds mnist/*.gz)
    >>> # iwlab run is_mnist --profile paper --device cuda --workers 6
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iwlab.config import NONNEG, RATE, SEED, Bound, count
from iwlab.experiments.base import CellContext, CellResult

METHODS_ALL = ("uniform", "oracle_k1", "oracle_k0.5", "approx_k1", "approx_k0.5")
_METHOD_RE = re.compile(r"^(uniform|oracle|approx|pcg)(?:_k(-?\d+(?:\.\d+)?))?$")


def parse_method(name: str) -> tuple[str, float]:
    """``"oracle_k0.5"`` -> ``("oracle", 0.5)``; ``"uniform"`` -> ``("uniform", 1.0)``.

    Example:
        >>> parse_method("approx_k0.75")
        ('approx', 0.75)
    """
    m = _METHOD_RE.match(name)
    if not m or (m.group(1) == "uniform" and m.group(2) is not None):
        raise ValueError(f"bad method '{name}': use 'uniform' or STRATEGY_kK with STRATEGY in oracle/approx/pcg")
    k = float(m.group(2)) if m.group(2) is not None else 1.0
    if m.group(1) != "uniform" and m.group(2) is None:
        raise ValueError(f"method '{name}' needs its k, e.g. '{name}_k1' or '{name}_k0.5'")
    if k > 1:
        raise ValueError(f"method '{name}': k must be <= 1")
    return m.group(1), k


def method_label(name: str) -> str:
    """Table heading: ``oracle_k0.5`` -> ``Oracle k=0.5``.

    Example:
        >>> method_label("approx_k1")
        'Approx k=1'
    """
    strat, k = parse_method(name)
    name = {"uniform": "Uniform", "oracle": "Oracle", "approx": "Approx", "pcg": "PCG"}[strat]
    return name if strat == "uniform" else f"{name} k={k:g}"


@dataclass
class ISConfig:
    """Settings of the importance-sampling experiments; defaults are ``is_mnist``'s quick profile."""

    dataset: Literal["mnist", "cifar10", "ptb"] = "mnist"
    methods: tuple[str, ...] = (*METHODS_ALL, "oracle_k0.75")
    seeds: int = 1
    seed: int = 0
    iterations: int = 240
    steps_per_epoch: int = 40
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    lr_drop_at: int = 0  # iteration at which lr is multiplied by 0.1 (paper CIFAR-10: 35000); 0 = never
    presample: float = 3.0  # pool = presample * batch_size examples scored per step; 0 = the whole set
    smoothing: float = 0.0  # additive constant c (paper PTB: 0.5)
    adaptive_smoothing: bool = False  # c = EMA(minibatch loss) / 2 (paper CIFAR-10)
    # strategies that get the smoothing. The paper smooths only CIFAR-10 and PTB; without it our MNIST
    # approx runs lost 2 of 3 paper-profile seeds for ~10 epochs (tiny predicted losses give huge
    # weights, paper §3.3.1), so the MNIST quick profile smooths approx (adaptively)
    smooth_strategies: tuple[str, ...] = ("oracle", "approx", "pcg")
    augment: bool = False  # random flips and shifts of training batches (CIFAR-10)
    n_train: int = 10000  # training examples used (0 = all)
    n_test: int = 2000  # test/validation examples evaluated each epoch (0 = all)
    n_loss_sample: int = 2000  # training examples whose final losses are sorted (Fig. 1b; 0 = all)
    n_grad_sample: int = 64  # examples for the loss / gradient-norm correlation (Appendix A.2)
    table_epochs: tuple[int, ...] = (1, 3, 6)  # Table 1 rows (epochs); missing ones are skipped
    context: int = 20  # PTB words of context
    image_size: int = 32  # CIFAR-10 images average-pooled to this size (8 in the ci profile, for speed)
    fixture: bool = False  # generated stand-in data (CI), no files needed
    verify_checksums: bool = True  # md5-check the dataset files (off for hand-made copies)
    data_seed: int = 0

    # ranges checked before anything runs (iwlab.config.check_config); sizes that allocate are bounded
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "seeds": count(1000),
        "seed": SEED,
        "iterations": count(100_000_000),
        "steps_per_epoch": count(100_000_000),
        "batch_size": count(65_536),
        "lr": RATE,
        "lr_drop_at": count(100_000_000, lo=0),
        "presample": Bound(0, 1000),  # 0: score the whole training set every step
        "smoothing": NONNEG,
        "n_train": count(10_000_000, lo=0),
        "n_test": count(10_000_000, lo=0),
        "n_loss_sample": count(10_000_000, lo=0),
        "n_grad_sample": count(100_000),
        "table_epochs": count(100_000_000),
        "context": count(1000),
        "image_size": count(32, lo=4),
        "data_seed": SEED,
    }
    # no strategy smoothed; no Table 1 rows
    ALLOW_EMPTY: ClassVar[tuple[str, ...]] = ("smooth_strategies", "table_epochs")

    def validate(self) -> None:
        """Check values beyond their types: method names, strategy names, settings that fit the dataset."""
        for m in self.methods:
            parse_method(m)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods repeat: {self.methods}")
        for st in self.smooth_strategies:
            if st not in ("oracle", "approx", "pcg"):
                raise ValueError(f"smooth_strategies: unknown '{st}'; valid: oracle, approx, pcg")
        if self.augment and self.dataset != "cifar10":
            raise ValueError(f"augment: flips and shifts apply to CIFAR-10 images, not to {self.dataset}")
        if self.dataset == "cifar10" and 32 % self.image_size:
            raise ValueError(f"image_size must divide 32, got {self.image_size}")


def _profiles(quick: dict, paper: dict, ci: dict) -> dict[str, dict]:
    return {"quick": quick, "paper": paper, "ci": ci}


_CI = {
    "fixture": True,
    "iterations": 12,
    "steps_per_epoch": 4,
    "batch_size": 16,
    "n_train": 0,
    "n_test": 0,
    "n_loss_sample": 0,
    "n_grad_sample": 8,
    "table_epochs": (1, 3),
}

PROFILES_MNIST = _profiles(
    quick={"adaptive_smoothing": True, "smooth_strategies": ("approx",)},
    # paper §4.1: 6000 iterations of batch 128, test every 300; 10 seeds in the paper, 3 here
    paper={
        "seeds": 3,
        "iterations": 6000,
        "steps_per_epoch": 300,
        "batch_size": 128,
        "n_train": 0,
        "n_test": 0,
        "n_loss_sample": 0,
        "n_grad_sample": 512,
        "table_epochs": (5, 10, 20),
    },
    ci={**_CI, "methods": ("uniform", "oracle_k0.5", "approx_k1", "pcg_k1")},
)
PROFILES_CIFAR = _profiles(
    quick={
        "dataset": "cifar10",
        "methods": METHODS_ALL,
        "iterations": 120,
        "steps_per_epoch": 30,
        "batch_size": 64,
        "image_size": 16,  # 4x fewer pixels: the VGG's ~1 s CPU step at 32x32 would take 20+ min here
        "n_train": 5000,
        "n_test": 1000,
        "n_loss_sample": 1000,
        "n_grad_sample": 32,
        "adaptive_smoothing": True,
        "augment": True,
        "table_epochs": (1, 2, 4),
    },
    # paper §4.2: 50,000 iterations of batch 128, lr x0.1 after 35,000, adaptive smoothing, augmentation
    paper={
        "dataset": "cifar10",
        "methods": METHODS_ALL,
        "seeds": 3,
        "iterations": 50000,
        "steps_per_epoch": 300,
        "batch_size": 128,
        "lr_drop_at": 35000,
        "n_train": 0,
        "n_test": 0,
        "n_loss_sample": 0,
        "n_grad_sample": 512,
        "adaptive_smoothing": True,
        "augment": True,
        "table_epochs": (50, 100, 150),
    },
    ci={
        **_CI,
        "dataset": "cifar10",
        "methods": ("uniform", "oracle_k1", "approx_k0.5"),
        "augment": True,
        "image_size": 8,
        "lr_drop_at": 8,
    },
)
PROFILES_PTB = _profiles(
    quick={
        "dataset": "ptb",
        "methods": METHODS_ALL,
        "iterations": 150,
        "steps_per_epoch": 50,
        "batch_size": 64,
        "n_train": 20000,
        "n_test": 2000,
        "n_loss_sample": 2000,
        "n_grad_sample": 32,
        "smoothing": 0.5,
        "table_epochs": (1, 2, 3),
    },
    # paper §4.3: 100,000 iterations of batch 128 words, epoch = 2000 minibatches, constant smoothing 0.5
    paper={
        "dataset": "ptb",
        "methods": METHODS_ALL,
        "seeds": 3,
        "iterations": 100000,
        "steps_per_epoch": 2000,
        "batch_size": 128,
        "n_train": 0,
        "n_test": 0,
        "n_loss_sample": 20000,
        "n_grad_sample": 512,
        "smoothing": 0.5,
        "table_epochs": (10, 30, 50),
    },
    ci={**_CI, "dataset": "ptb", "methods": ("uniform", "oracle_k1", "approx_k1", "pcg_k1")},
)


# ---- data and models ------------------------------------------------------------------------------------


@dataclass
class ISData:
    """Training and evaluation tensors of one dataset, plus what the model needs."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    extra: dict[str, Any]


def _subset(x: Tensor, y: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    if n <= 0 or n >= x.shape[0]:
        return x, y
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def load_data(cfg: ISConfig) -> ISData:
    """The dataset's tensors (subsets per ``n_train`` / ``n_test``); generated ones if ``cfg.fixture``.

    Example:
        >>> # load_data(make_config("is_mnist", "quick")).x_train.shape -> (10000, 1, 28, 28)
    """
    if cfg.dataset == "mnist":
        from iwlab.data import mnist

        if cfg.fixture:
            arr = mnist.make_fixture(96, 48, seed=cfg.data_seed)
        else:
            arr = mnist.load_mnist(verify=cfg.verify_checksums)
        xtr, ytr = mnist.to_tensor(arr.x_train), torch.as_tensor(arr.y_train).long()
        xte, yte = mnist.to_tensor(arr.x_test), torch.as_tensor(arr.y_test).long()
        nc, extra = 10, {}
    elif cfg.dataset == "cifar10":
        from iwlab.data import cifar10

        arr = cifar10.make_fixture(10, 5, seed=cfg.data_seed) if cfg.fixture else cifar10.load_cifar10()
        xtr, ytr = cifar10.to_tensor(arr.x_train, cfg.image_size), torch.as_tensor(arr.y_train).long()
        xte, yte = cifar10.to_tensor(arr.x_test, cfg.image_size), torch.as_tensor(arr.y_test).long()
        nc, extra = 10, {}
    elif cfg.dataset == "ptb":
        from iwlab.data import ptb

        if cfg.fixture:
            import tempfile

            with tempfile.TemporaryDirectory() as d:
                ptb.make_fixture(Path(d) / "ptb")
                data = ptb.read_ptb_dir(Path(d) / "ptb", context=cfg.context)
        else:
            data = ptb.load_ptb(context=cfg.context, verify=cfg.verify_checksums)
        xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_valid, data.y_valid
        nc, extra = data.vocab_size, {"pad_index": data.pad_index}
    else:
        raise ValueError(f"unknown dataset '{cfg.dataset}' (mnist, cifar10, ptb)")
    xtr, ytr = _subset(xtr, ytr, cfg.n_train, cfg.data_seed)
    xte, yte = _subset(xte, yte, cfg.n_test, cfg.data_seed + 1)
    return ISData(xtr, ytr, xte, yte, nc, extra)


def make_model(cfg: ISConfig, data: ISData, generator: torch.Generator) -> nn.Module:
    """The paper's model for the dataset (§4.1-4.3), initialized from ``generator``.

    Example:
        >>> # make_model(cfg, data, torch.Generator().manual_seed(0))
    """
    if cfg.dataset == "mnist":
        from iwlab.models.vgg import MnistVGG

        return MnistVGG(num_classes=data.num_classes, generator=generator)
    if cfg.dataset == "cifar10":
        from iwlab.models.vgg import CifarVGG

        return CifarVGG(num_classes=data.num_classes, generator=generator, image_size=cfg.image_size)
    from iwlab.models.lm import LSTMLanguageModel

    return LSTMLanguageModel(vocab_size=data.num_classes, pad_index=data.extra["pad_index"], generator=generator)


def _mean_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 2048) -> tuple[float, float]:
    """(mean cross-entropy, error rate) over a set, in chunks, no gradients."""
    tot, wrong = 0.0, 0
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            z = model(x[s : s + chunk])
            tot += float(F.cross_entropy(z, y[s : s + chunk], reduction="sum"))
            wrong += int((z.argmax(1) != y[s : s + chunk]).sum())
    return tot / max(1, x.shape[0]), wrong / max(1, x.shape[0])


def grad_norms(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-example gradient norms (N,) of the cross-entropy w.r.t. all parameters (eval mode).

    Example:
        >>> grad_norms(torch.nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)).shape
        torch.Size([3])
    """
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        gs = torch.autograd.grad(loss, params, allow_unused=True)
        out.append(torch.sqrt(sum((g.double() ** 2).sum() for g in gs if g is not None)))
    return torch.stack(out).float().cpu()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else float("nan")


# ---- cells -------------------------------------------------------------------------------------------------


def cells(cfg: ISConfig) -> list[tuple[str, dict]]:
    """One cell per (method, seed).

    Example:
        >>> [c for c, _ in cells(ISConfig(methods=("uniform",), seeds=2))]
        ['uniform/seed=0', 'uniform/seed=1']
    """
    for m in cfg.methods:
        parse_method(m)
    seeds = [cfg.seed + s for s in range(cfg.seeds)]
    return [(f"{m}/seed={s}", {"method": m, "seed": s}) for m in cfg.methods for s in seeds]


def run_cell(cfg: ISConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one (method, seed) run; record per-epoch metrics, final sorted losses and loss/gradient correlation.

    Example:
        >>> # run_cell(cfg, "oracle_k0.5/seed=0", {"method": "oracle_k0.5", "seed": 0}, ctx)
    """
    from torch.utils.data import TensorDataset

    from iwlab.sampling import make_sampler
    from iwlab.train.sampled import per_example_loss, train_sampled

    method, seed = params["method"], int(params["seed"])
    strategy, k = parse_method(method)
    dev = torch.device(ctx.device)
    data = load_data(cfg)
    xtr, ytr = data.x_train.to(dev), data.y_train.to(dev)
    xte, yte = data.x_test.to(dev), data.y_test.to(dev)
    torch.manual_seed(seed)  # dropout draws from the global RNG
    model = make_model(cfg, data, torch.Generator().manual_seed(seed)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    kw: dict[str, Any] = {"seed": 1_000_003 + seed}
    if strategy != "uniform":
        smooth = strategy in cfg.smooth_strategies
        kw.update(
            k=k,
            presample=cfg.presample if cfg.presample > 0 else None,
            smoothing=("adaptive" if cfg.adaptive_smoothing else cfg.smoothing) if smooth else 0.0,
        )
    if strategy in ("approx", "pcg"):
        kw["num_classes"] = data.num_classes
    sampler = make_sampler(strategy, TensorDataset(xtr, ytr), cfg.batch_size, **kw)
    ppl = cfg.dataset == "ptb"

    def on_epoch(m: nn.Module, epoch: int) -> dict[str, float]:
        ce, err = _mean_loss(m, xte, yte)
        return {"perplexity": math.exp(ce), "test_loss": ce} if ppl else {"test_error": err, "test_loss": ce}

    transform = None
    if cfg.augment:
        from iwlab.data.transforms import random_flip_shift

        aug_g = torch.Generator(device="cpu").manual_seed(seed + 17)
        transform = lambda x: random_flip_shift(x, aug_g)  # noqa: E731

    lr_at = None
    if cfg.lr_drop_at > 0:
        lr_at = lambda it: cfg.lr * (0.1 if it >= cfg.lr_drop_at else 1.0)  # noqa: E731

    records = train_sampled(
        model,
        sampler,
        opt,
        iterations=cfg.iterations,
        steps_per_epoch=cfg.steps_per_epoch,
        on_epoch=on_epoch,
        lr_at=lr_at,
        transform=transform,
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    rows = [(int(r["epoch"]), 0, name, float(v)) for r in records for name, v in r.items() if name != "epoch"]

    # after training (model in eval mode): Fig. 1b losses and Appendix A.2 correlation
    g = torch.Generator().manual_seed(cfg.data_seed + 5)
    n_l = xtr.shape[0] if cfg.n_loss_sample <= 0 else min(cfg.n_loss_sample, xtr.shape[0])
    li = torch.randperm(xtr.shape[0], generator=g)[:n_l].to(dev)
    losses = per_example_loss(model, xtr[li], ytr[li]).cpu().numpy()
    n_g = min(cfg.n_grad_sample, xtr.shape[0])
    gi = li[:n_g]
    gn = grad_norms(model, xtr[gi], ytr[gi]).numpy()
    gl = losses[:n_g]
    last = int(records[-1]["epoch"])
    if n_g > 1:
        rows += [
            (last, 0, "loss_gradnorm_pearson", float(np.corrcoef(gl, gn)[0, 1])),
            (last, 0, "loss_gradnorm_spearman", _spearman(gl, gn)),
        ]
    rows.append((last, 0, "final_train_loss_max", float(losses.max())))
    rows.append((last, 0, "final_train_loss_mean", float(losses.mean())))
    path = ctx.artifact_path("_losses.npz")
    np.savez_compressed(path, sorted_losses=np.sort(losses), grad_loss=gl, grad_norm=gn)
    member = {"method": method, "strategy": strategy, "k": k, "seed": seed, "label": method_label(method)}
    return CellResult(members=[member], rows=rows, artifacts=[("losses", str(path.relative_to(ctx.run_dir)))])


# ---- results -----------------------------------------------------------------------------------------------


def _metric(cfg: ISConfig) -> tuple[str, str]:
    return ("perplexity", "{:.1f} ± {:.2f}") if cfg.dataset == "ptb" else ("test_error", "{:.2f}% ± {:.2f}")


def table1(df: pd.DataFrame, cfg: ISConfig) -> pd.DataFrame:
    """Table 1 format: rows are epochs, columns methods, cells ``mean ± std`` over seeds.

    Example:
        >>> # print(table1(iwlab.results.load("runs/is_mnist-paper"), cfg))
    """
    metric, fmt = _metric(cfg)
    d = df[df.name == metric]
    scale = 1.0 if metric == "perplexity" else 100.0
    epochs = sorted(set(d.epoch))
    wanted = [e for e in cfg.table_epochs if e in epochs] or epochs[-1:]
    out = {}
    for m in cfg.methods:
        col = {}
        for e in wanted:
            v = d[(d.method == m) & (d.epoch == e)].value * scale
            col[e] = fmt.format(v.mean(), v.std() if len(v) > 1 else 0.0) if len(v) else "—"
        out[method_label(m)] = col
    t = pd.DataFrame(out)
    t.index.name = "epoch"
    return t


def time_to_accuracy(df: pd.DataFrame, cfg: ISConfig) -> pd.DataFrame:
    """Per method: wall-clock seconds (scoring included) to reach uniform's final mean test metric.

    A run's time is ``time_total`` at its first epoch whose metric is at or below the target; runs that
    never reach it count as missing. ``ratio`` is the method's mean time over uniform's.

    Example:
        >>> # time_to_accuracy(iwlab.results.load(run_dir), cfg)
    """
    metric, _ = _metric(cfg)
    d = df[df.name.isin([metric, "time_total", "time_scoring"])]
    w = d.pivot_table(index=["method", "seed", "epoch"], columns="name", values="value").reset_index()
    if "uniform" not in set(w.method):
        return pd.DataFrame()
    last = w.epoch.max()
    target = float(w[(w.method == "uniform") & (w.epoch == last)][metric].mean())
    rows = []
    for m in cfg.methods:
        times, reached = [], 0
        runs = w[w.method == m]
        for _, r in runs.groupby("seed"):
            hit = r[r[metric] <= target + 1e-12].sort_values("epoch")
            if len(hit):
                times.append(float(hit.iloc[0].time_total))
                reached += 1
        total = runs[runs.epoch == last]
        rows.append(
            {
                "method": m,
                "reached": f"{reached}/{runs.seed.nunique()}",
                "seconds": float(np.mean(times)) if times else float("nan"),
                "epoch_time_total": float(total.time_total.mean()) / max(1, last),
                "scoring_share": float((total.time_scoring / total.time_total).mean()),
            }
        )
    out = pd.DataFrame(rows)
    base = out.loc[out.method == "uniform", "seconds"].iloc[0]
    out["ratio"] = out.seconds / base
    out.attrs["target"] = target
    return out


def figures(run_dir: Path, df: pd.DataFrame, cfg: ISConfig, fmt: str = "png") -> list[Path]:
    """Training-loss curves (Fig. 1a/2a/3a), sorted losses (Fig. 1b), test metric vs epoch and vs time, loss vs
    gradient norm; saved as ``fmt`` under ``run_dir/figures`` with their captions (shown in the report).

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.results.load`).
        cfg: its :class:`ISConfig`.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # figures(Path("runs/is_mnist-quick"), iwlab.results.load("runs/is_mnist-quick"), cfg, fmt="svg")
    """
    from iwlab.plots import importance as P
    from iwlab.plots import style

    style.check_format(fmt)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    metric, _ = _metric(cfg)
    return [
        P.train_loss_curves(df, cfg, fig_dir / "train_loss", fmt),
        P.sorted_losses(run_dir, df, cfg, fig_dir / "sorted_losses", fmt),
        P.metric_curves(df, cfg, metric, fig_dir / metric, fmt),
        P.metric_vs_time(df, cfg, metric, fig_dir / f"{metric}_vs_time", fmt),
        P.loss_vs_gradnorm(run_dir, df, cfg, fig_dir / "loss_vs_gradnorm", fmt),
    ]


def summary(df: pd.DataFrame, cfg: ISConfig) -> str:
    """Markdown: Table 1, time-to-accuracy, loss/gradient-norm correlation, oracle k=0.5 vs uniform.

    Example:
        >>> # print(summary(iwlab.results.load(run_dir), cfg))
    """
    from iwlab.report import markdown_table

    metric, _ = _metric(cfg)
    what = "validation perplexity" if metric == "perplexity" else "test error"
    lines = [f"### {cfg.dataset}: {what}, mean ± std over {cfg.seeds} seed(s) (Table 1 format)", ""]
    lines += [markdown_table(table1(df, cfg)), ""]
    tta = time_to_accuracy(df, cfg)
    if not tta.empty:
        tgt = tta.attrs["target"] * (1 if metric == "perplexity" else 100)
        unit = "" if metric == "perplexity" else "%"
        lines += [f"Time to reach uniform's final {what} ({tgt:.3g}{unit}), scoring included:", ""]
        lines += [markdown_table(tta, index=False), ""]
    corr = df[df.name == "loss_gradnorm_spearman"]
    if not corr.empty:
        c = corr.groupby("method").value.agg(["mean", "std"])
        lines += ["Spearman correlation of per-example loss and gradient norm after training (Appendix A.2):", ""]
        lines += [markdown_table(c), ""]
    if metric == "test_error" and {"uniform", "oracle_k0.5"} <= set(df.method.dropna()):
        d = df[df.name == metric]
        e = 5 if 5 in set(d.epoch) else int(d.epoch.max())
        u = d[(d.method == "uniform") & (d.epoch == e)].value * 100
        o = d[(d.method == "oracle_k0.5") & (d.epoch == e)].value * 100
        if o.empty or u.empty:
            # a method with no value at that epoch (failed or diverged): no verdict rather than one from NaN
            missing = " and ".join(n for n, v in (("Oracle k=0.5", o), ("Uniform", u)) if v.empty)
            lines += [f"Oracle k=0.5 vs uniform at epoch {e}: no verdict, {missing} has no test error there.", ""]
        else:
            # a verdict needs the difference to stand out of the seed noise: more than 2 standard errors of the
            # difference of the two means; one seed gives no estimate of that noise, so no verdict
            diff = u.mean() - o.mean()
            if min(len(o), len(u)) > 1:
                se = math.sqrt(o.var() / len(o) + u.var() / len(u))
                verdict = (
                    "beats" if diff > 2 * se else "is worse than" if diff < -2 * se else "shows no clear difference to"
                )
                spread = (
                    f"; std over seeds {o.std():.2f} and {u.std():.2f} points, standard error of the difference "
                    f"{se:.2f}"
                )
            else:
                verdict, spread = "vs", "; 1 seed, so no verdict: the seed noise is unknown"
            lines += [
                f"Oracle k=0.5 {verdict} uniform at epoch {e} (mean test error over seeds): {o.mean():.2f}% vs "
                f"{u.mean():.2f}% (difference {diff:+.2f} points{spread}; a verdict needs |difference| > 2 standard "
                "errors; paper at epoch 5: 0.56% vs 0.79%).",
                "",
            ]
    return "\n".join(lines)


def _experiment(name: str, description: str, profiles: dict) -> SimpleNamespace:
    return SimpleNamespace(
        NAME=name,
        DESCRIPTION=description,
        Config=ISConfig,
        PROFILES=profiles,
        PACK_KEYS=(),
        cells=cells,
        run_cell=run_cell,
        figures=figures,
        summary=summary,
    )


is_mnist = _experiment(
    "is_mnist", "Katharopoulos & Fleuret: importance sampling on MNIST, small VGG (Table 1, Fig. 1)", PROFILES_MNIST
)
is_cifar10 = _experiment(
    "is_cifar10",
    "Katharopoulos & Fleuret: importance sampling on CIFAR-10, VGG with BN (Table 1, Fig. 2)",
    PROFILES_CIFAR,
)
is_ptb = _experiment(
    "is_ptb", "Katharopoulos & Fleuret: importance sampling on PTB, LSTM language model (Table 1, Fig. 3)", PROFILES_PTB
)
