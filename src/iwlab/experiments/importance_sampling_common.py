"""What the three importance-sampling experiments share (Katharopoulos & Fleuret 2017, Table 1, Figs. 1-3).

``importance_sampling_mnist``, ``importance_sampling_cifar10`` and ``importance_sampling_ptb`` each
define their Config (a subclass of :class:`ImportanceSamplingConfig` that adds only its own keys), its
profiles, its data and its model; this module holds the keys they all use, the cells and the training
of one cell; :mod:`iwlab.experiments.importance_sampling_summary` holds the Markdown summary.

A cell is one (method, seed) run of one model, trained with Adam on minibatches drawn by an
:mod:`iwlab.sampling` sampler through :func:`iwlab.train.sampled.train_sampled`; with ``lrs`` set (the
paper's learning-rate grid search, §4) a cell is one (method, lr, seed) run and
:mod:`iwlab.experiments.importance_sampling_lr` picks the lr. A method is a
:class:`~iwlab.sampling.SamplerSpec` spelled ``uniform`` or ``STRATEGY_kK`` (``oracle_k0.5``,
``approx_k1``, ``pcg_k1``): the strategy and the bias exponent k of ``alpha = 1/(N p^k)``.

Recorded every epoch (300 minibatches for MNIST/CIFAR-10, 2000 for PTB): ``test_error`` (MNIST,
CIFAR-10) or ``perplexity`` (PTB validation set, as the paper reports), ``test_loss``, ``train_loss``
and ``train_loss_std`` (mean and std over the epoch's steps of the weighted minibatch loss),
``train_loss_raw``, ``val_error`` or ``val_perplexity`` on the held-out split when ``select_on`` is
``"validation"``, and the cumulative wall-clock ``time_scoring``, ``time_training`` and
``time_total`` (evaluation excluded). After training: the sorted per-example training losses (Fig. 1b)
and the correlation between per-example loss and gradient norm (Appendix A.2), saved as the cell's
``losses`` artifact for :mod:`iwlab.plots.importance`.

Example::

    iwlab run importance_sampling_mnist --profile quick          (IWLAB_DATA holds mnist/*.gz)
    iwlab run importance_sampling_mnist --profile paper --device cuda --workers 6
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from iwlab.config import NONNEG, RATE, SEED, Bound, count, exact_text
from iwlab.experiments.base import CellContext, CellResult
from iwlab.functional.sampling import per_example_grad_norms, rank_correlation
from iwlab.sampling import SamplerSpec, make_sampler
from iwlab.train.sampled import per_example_loss, train_sampled

METHODS_ALL = ("uniform", "oracle_k1", "oracle_k0.5", "approx_k1", "approx_k0.5")
SmoothedStrategy = Literal["oracle", "approx", "pcg"]
SMOOTHED_ALL: tuple[SmoothedStrategy, ...] = ("oracle", "approx", "pcg")
# paper §4: the uniform baseline's lr from a grid search in [0.001, 0.01] with step 0.001 (exact decimals)
PAPER_LR_GRID: tuple[float, ...] = tuple(round(0.001 * i, 3) for i in range(1, 11))

# the ci profile's shared settings: generated data, a few minibatches, every example evaluated
CI: dict[str, Any] = {
    "fixture": True,
    "seeds": 1,
    "iterations": 12,
    "steps_per_epoch": 4,
    "batch_size": 16,
    "n_train": 0,
    "n_test": 0,
    "n_val": 8,  # held out only with select_on=validation; leaves 29 of the smallest fixture's 37
    "n_loss_sample": 0,
    "n_grad_sample": 8,
    "table_epochs": (1, 3),
}


@dataclass
class ImportanceSamplingConfig:
    """The keys every importance-sampling experiment uses; each experiment's Config adds its own.

    ``DATASET`` and ``METRIC`` are fixed by the experiment (class constants, not keys).
    """

    DATASET: ClassVar[Literal["mnist", "cifar10", "ptb"]]
    METRIC: ClassVar[Literal["test_error", "perplexity"]]

    methods: tuple[str, ...] = (*METHODS_ALL, "oracle_k0.75")  # SamplerSpec spellings
    seeds: int = 1
    seed: int = 0
    iterations: int = 240
    steps_per_epoch: int = 40
    batch_size: int = 64
    lr: float = 1e-3  # Adam; unused when lrs is set
    # paper §4 grid search: one cell per (method, lr, seed), each trained with its lr; () = every cell uses lr
    lrs: tuple[float, ...] = ()
    # where the lr search chooses: "test" (the test metric, as the paper did, which favours the uniform
    # baseline) or "validation" (n_val training examples held out, disjoint from those trained on)
    select_on: Literal["test", "validation"] = "test"
    n_val: int = 5000  # training examples held out when select_on is "validation"
    lr_drop_at: int = 0  # iteration at which lr is multiplied by 0.1 (paper CIFAR-10: 35000); 0 = never
    presample: float = 3.0  # pool = presample * batch_size examples scored per step; 0 = the whole set
    smoothing: float = 0.0  # additive constant c (paper PTB: 0.5)
    adaptive_smoothing: bool = False  # c = EMA(minibatch loss) / 2 (paper CIFAR-10)
    # strategies that get the smoothing. The paper smooths only CIFAR-10 and PTB; without it our MNIST
    # approx runs lost 2 of 3 paper-profile seeds for ~10 epochs (tiny predicted losses give huge
    # weights, paper §3.3.1), so the MNIST quick profile smooths approx (adaptively)
    smooth_strategies: tuple[SmoothedStrategy, ...] = SMOOTHED_ALL
    # approx only: every pool member's score is at least this fraction of the pool's mean positive
    # prediction, so no example gets p = 0 (and is never drawn again) whatever the predictor outputs
    score_floor: float = 0.1
    # scored strategies, k < 1: rescale each batch's weights so that their score-weighted sum equals the
    # unbiased (k=1) weights' sum, as the authors' code did; False keeps eq. 12's alpha = 1/(N p^k)
    match_unbiased_sum: bool = False
    n_train: int = 10000  # training examples used (0 = all; of those not held out for validation)
    n_test: int = 2000  # test/validation examples evaluated each epoch (0 = all)
    n_loss_sample: int = 2000  # training examples whose final losses are sorted (Fig. 1b; 0 = all)
    n_grad_sample: int = 64  # examples for the loss / gradient-norm correlation (Appendix A.2)
    table_epochs: tuple[int, ...] = (1, 3, 6)  # Table 1 rows (epochs), at most the last epoch
    fixture: bool = False  # generated stand-in data (CI), no files needed
    data_seed: int = 0

    # ranges checked before anything runs (iwlab.config.check_config); sizes that allocate are bounded
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "seeds": count(1000),
        "seed": SEED,
        "iterations": count(100_000_000),
        "steps_per_epoch": count(100_000_000),
        "batch_size": count(65_536),
        "lr": RATE,
        "lrs": RATE,
        "n_val": count(10_000_000),  # >= 1: a validation split needs examples
        "score_floor": Bound(0, 1, lo_open=True),
        "lr_drop_at": count(100_000_000, lo=0),
        "presample": Bound(0, 1000),  # 0: score the whole training set every step
        "smoothing": NONNEG,
        "n_train": count(10_000_000, lo=0),
        "n_test": count(10_000_000, lo=0),
        "n_loss_sample": count(10_000_000, lo=0),
        "n_grad_sample": count(100_000),
        "table_epochs": count(100_000_000),
        "data_seed": SEED,
    }
    # no strategy smoothed; no Table 1 rows; no lr grid (every cell trains with lr)
    ALLOW_EMPTY: ClassVar[tuple[str, ...]] = ("smooth_strategies", "table_epochs", "lrs")

    def validate(self) -> None:
        """Check values beyond their types: every method a sampler spec, none twice, known strategies.

        Raises:
            ValueError: a method that is not a :class:`~iwlab.sampling.SamplerSpec` spelling, two
                spellings of one spec, a smoothed strategy other than oracle/approx/pcg, or a Table 1
                epoch past the last epoch.

        Example:
            >>> from iwlab.experiments.importance_sampling_mnist import Config
            >>> Config(methods=("oracle_k1", "oracle_k1.0")).validate()
            Traceback (most recent call last):
            ...
            ValueError: methods repeat: ('oracle_k1', 'oracle_k1.0') name the same sampler twice
        """
        specs = [SamplerSpec.parse(m) for m in self.methods]
        if len(set(specs)) != len(specs):
            raise ValueError(f"methods repeat: {self.methods} name the same sampler twice")
        for st in self.smooth_strategies:
            if st not in SMOOTHED_ALL:
                raise ValueError(f"smooth_strategies: unknown '{st}'; valid: {', '.join(SMOOTHED_ALL)}")
        epochs = -(-self.iterations // self.steps_per_epoch)
        late = [e for e in self.table_epochs if e > epochs]
        if late:
            raise ValueError(
                f"table_epochs {late} lie past the last epoch ({epochs} = iterations / steps_per_epoch, rounded up)"
            )
        if self.lrs and [str(SamplerSpec.parse(m)) for m in self.methods] != ["uniform"]:
            # the search chooses the uniform baseline's lr (paper §4); other methods would train at every rate
            # (the cost times len(lrs)) while the report reads uniform only
            raise ValueError(
                f"lrs is set (an lr search for the uniform baseline), so methods must be ('uniform',), got "
                f"{self.methods}; run the other methods afterwards with --set lr=THE_CHOSEN_LR"
            )
        if self.select_on == "validation" and not self.lrs:
            # the held-out split would cost n_val training examples and nothing would read it
            raise ValueError("select_on='validation' chooses an lr, so it needs lrs (an lr search); set lrs or drop it")


@dataclass
class ISData:
    """Training and evaluation tensors of one dataset, plus what the model needs.

    Attributes:
        x_train: (N, ...) inputs: float32 images (N, C, H, W) or int64 word contexts (N, context).
        y_train: (N,) int64 class (next-word) labels.
        x_test: (M, ...) test (PTB: validation) inputs, as ``x_train``.
        y_test: (M,) int64 labels.
        num_classes: classes (PTB: vocabulary size).
        extra: what the model needs besides (PTB: ``pad_index``).
        x_val: (V, ...) held-out training inputs (``select_on="validation"``), disjoint from ``x_train``; or None.
        y_val: (V,) their labels, or None.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    extra: dict[str, Any]
    x_val: Tensor | None = None
    y_val: Tensor | None = None


def subset(x: Tensor, y: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` random examples (a permutation drawn from ``seed``); all of them when ``n`` is 0 or >= N.

    Example:
        >>> subset(torch.arange(5), torch.arange(5), 2, seed=0)[0].shape
        torch.Size([2])
    """
    if n <= 0 or n >= x.shape[0]:
        return x, y
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def _mean_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 2048) -> tuple[float, float]:
    """(mean cross-entropy, error rate) over a set, in chunks, no gradients."""
    tot, wrong = 0.0, 0
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            z = model(x[s : s + chunk])
            tot += float(F.cross_entropy(z, y[s : s + chunk], reduction="sum"))
            wrong += int((z.argmax(1) != y[s : s + chunk]).sum())
    return tot / max(1, x.shape[0]), wrong / max(1, x.shape[0])


def lr_text(lr: float) -> str:
    """A learning rate as cell ids and commands write it: ``:g``, or every digit when ``:g`` would round it.

    Example:
        >>> lr_text(0.003), lr_text(1e-05), lr_text(0.0012345678)
        ('0.003', '1e-05', '0.0012345678')
    """
    return exact_text(lr)


def cells(cfg: ImportanceSamplingConfig) -> list[tuple[str, dict]]:
    """One cell per (method, seed), or per (method, lr, seed) when ``cfg.lrs`` is set.

    Raises:
        ValueError: a method that is not a sampler spec spelling.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> [c for c, _ in cells(Config(methods=("uniform",), seeds=2))]
        ['uniform/seed=0', 'uniform/seed=1']
        >>> cells(Config(methods=("uniform",), lrs=(0.001, 0.002), seeds=1))[1]
        ('uniform/lr=0.002/seed=0', {'method': 'uniform', 'lr': 0.002, 'seed': 0})
    """
    for m in cfg.methods:
        SamplerSpec.parse(m)
    seeds = [cfg.seed + s for s in range(cfg.seeds)]
    if not cfg.lrs:
        return [(f"{m}/seed={s}", {"method": m, "seed": s}) for m in cfg.methods for s in seeds]
    return [
        (f"{m}/lr={lr_text(lr)}/seed={s}", {"method": m, "lr": lr, "seed": s})
        for m in cfg.methods
        for lr in cfg.lrs
        for s in seeds
    ]


def sampler_kwargs(cfg: ImportanceSamplingConfig, spec: SamplerSpec, num_classes: int, seed: int) -> dict[str, Any]:
    """The keyword arguments of ``make_sampler(spec.strategy, ...)`` for a cell of ``cfg`` with this seed.

    Each strategy gets what it takes: k, the pool, the smoothing (for the strategies in
    ``smooth_strategies``) and ``match_unbiased_sum`` for the scored ones; ``score_floor`` for approx;
    ``num_classes`` for approx and pcg. The sampler's own seed is ``1_000_003 + seed``.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> sorted(sampler_kwargs(Config(), SamplerSpec.parse("approx_k0.5"), 10, seed=0))
        ['k', 'match_unbiased_sum', 'num_classes', 'presample', 'score_floor', 'seed', 'smoothing']
    """
    kw: dict[str, Any] = {"seed": 1_000_003 + seed}
    if spec.strategy != "uniform":
        smooth = spec.strategy in cfg.smooth_strategies
        kw.update(
            k=spec.k,
            presample=cfg.presample if cfg.presample > 0 else None,
            smoothing=("adaptive" if cfg.adaptive_smoothing else cfg.smoothing) if smooth else 0.0,
            match_unbiased_sum=cfg.match_unbiased_sum,
        )
    if spec.strategy == "approx":
        kw["score_floor"] = cfg.score_floor
    if spec.strategy in ("approx", "pcg"):
        kw["num_classes"] = num_classes
    return kw


def run_cell(
    cfg: ImportanceSamplingConfig,
    params: dict,
    ctx: CellContext,
    data: ISData,
    make_model: Callable[[ISData, torch.Generator], nn.Module],
    make_transform: Callable[[int], Callable[[Tensor], Tensor]] | None = None,
) -> CellResult:
    """Train one (method[, lr], seed) run; record per-epoch metrics, final sorted losses and loss/gradient correlation.

    Each experiment's ``run_cell`` loads its data and calls this with its model and augmentation.

    Args:
        cfg: the experiment's config.
        params: the cell's ``{"method": SPELLING, "seed": int}``, with ``"lr"`` when ``cfg.lrs`` is set
            (:func:`cells`); without it the cell trains with ``cfg.lr``.
        ctx: where the cell keeps its checkpoint and artifacts, and its device.
        data: the experiment's tensors (CPU; moved to ``ctx.device`` here).
        make_model: ``(data, generator) -> model``, the model initialized from ``generator``.
        make_transform: ``seed -> transform`` of training inputs (augmentation), or None.

    Returns:
        The cell's member (method, strategy, k, seed, label, and lr when ``params`` has one) and rows.

    Raises:
        ValueError: a bad method spelling, or (from the sampler or the trainer) a bad setting.
        FloatingPointError: the training loss stopped being finite.
    """
    method, seed = params["method"], int(params["seed"])
    lr = float(params.get("lr", cfg.lr))
    spec = SamplerSpec.parse(method)
    dev = torch.device(ctx.device)
    xtr, ytr = data.x_train.to(dev), data.y_train.to(dev)
    xte, yte = data.x_test.to(dev), data.y_test.to(dev)
    val = None if data.x_val is None or data.y_val is None else (data.x_val.to(dev), data.y_val.to(dev))
    torch.manual_seed(seed)  # dropout draws from the global RNG
    model = make_model(data, torch.Generator().manual_seed(seed)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    kw = sampler_kwargs(cfg, spec, data.num_classes, seed)
    sampler = make_sampler(spec.strategy, TensorDataset(xtr, ytr), cfg.batch_size, **kw)
    ppl = cfg.METRIC == "perplexity"

    def on_epoch(m: nn.Module, epoch: int) -> dict[str, float]:
        ce, err = _mean_loss(m, xte, yte)
        out = {"perplexity": math.exp(ce), "test_loss": ce} if ppl else {"test_error": err, "test_loss": ce}
        if val is not None:  # the lr search's selection metric, on examples never trained on
            vce, verr = _mean_loss(m, *val)
            out.update({"val_perplexity": math.exp(vce)} if ppl else {"val_error": verr})
        return out

    transform = make_transform(seed) if make_transform is not None else None
    lr_at = None
    if cfg.lr_drop_at > 0:
        lr_at = lambda it: lr * (0.1 if it >= cfg.lr_drop_at else 1.0)  # noqa: E731

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
    losses = per_example_loss(model, xtr[li], ytr[li]).cpu().numpy()  # (n_l,)
    n_g = min(cfg.n_grad_sample, xtr.shape[0])
    gi = li[:n_g]
    gn = per_example_grad_norms(model, xtr[gi], ytr[gi]).numpy()  # (n_g,)
    gl = losses[:n_g]
    last = int(records[-1]["epoch"])
    if n_g > 1:
        rows += [
            (last, 0, "loss_gradnorm_pearson", float(np.corrcoef(gl, gn)[0, 1])),
            (last, 0, "loss_gradnorm_spearman", rank_correlation(gl, gn)),
        ]
    rows.append((last, 0, "final_train_loss_max", float(losses.max())))
    rows.append((last, 0, "final_train_loss_mean", float(losses.mean())))
    path = ctx.artifact_path("_losses.npz")
    np.savez_compressed(path, sorted_losses=np.sort(losses), grad_loss=gl, grad_norm=gn)
    member = {"method": method, "strategy": spec.strategy, "k": spec.k, "seed": seed, "label": spec.label}
    if "lr" in params:  # only in an lr search, so the members of a plain run stay as they were
        member["lr"] = lr
    return CellResult(members=[member], rows=rows, artifacts=[("losses", str(path.relative_to(ctx.run_dir)))])
