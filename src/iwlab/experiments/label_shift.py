"""label_shift: estimate label-shift weights from unlabeled target data, then correct, over training (issue 16).

Under label shift p(x|y) is fixed and p(y) moves; the importance weights are w_c = q(y=c)/p(y=c). One cell
(one per dataset) runs the whole pipeline:

1. **Data.** Source training and held-out splits are drawn class-stratified from the training images
   (``n_train_per_class``, ``n_holdout_per_class`` per class: uniform source priors p = 1/K). The target
   pool is the test set plus the training images the source splits do not use (same p(x|y); a Dirichlet
   draw with alpha = 0.1 can put 0.99 of 3000 target examples in one class, more than a test class holds).
   From it each shift draws ``max(n_targets)`` examples with
   :func:`iwlab.data.label_shift.dirichlet_shift` (alpha in ``alphas``, ``draws`` per alpha) or
   :func:`~iwlab.data.label_shift.tweak_one_shift` (class ``tweak_class`` gets prior rho, ``tweak_rhos``);
   smaller target sets (``n_targets``) are nested random subsets of it. The true weights are
   ``true_weights(p, q)`` with q the drawn priors.
2. **Source models.** One unweighted model per seed (members of one :class:`~iwlab.train.EnsembleTrainer`):
   an MLP on flattened MNIST, or the CIFAR-10 quick CNN (:class:`~iwlab.models.ByrdLiptonCNN`, He init).
   At every evaluation epoch (log-spaced up to ``epochs``) each model's held-out and target logits give
   every estimator's w (module :mod:`iwlab.experiments.label_shift_eval`), its mean squared error against
   the true w for each target size, and the target accuracy of three predictions: ``none`` (argmax of the
   model), ``posthoc_est`` and ``posthoc_true`` (:func:`~iwlab.functional.label_shift.adjust_priors` of
   the ``correction`` estimator's posteriors with its estimated w, or with the true w).
3. **IW-ERM.** After the source models finish, per seed and shift two more models train from scratch with
   ``class_weight`` = the ``correction`` estimate (from the finished source model and the largest target
   set) and = the true w: ``iw_est`` and ``iw_true``, trained by :func:`~iwlab.train.fit_in_packs` in one
   pack (ensemble) per shift, so that each pack is scored on its own shift's target set only.

Store: one member per (seed, shift), labels ``seed``, ``shift``, ``family``; metrics per evaluation epoch:
``acc_<correction>`` (target accuracy, largest target set), ``train_acc_source``, ``train_acc_iw_est``,
``train_acc_iw_true``, ``train_wacc_iw_est``, ``train_wacc_iw_true`` (training accuracy with each example
weighted by its class weight), ``mse_<estimator>_n<n>`` (mean over classes of (w_hat - w)^2), ``mse_empirical_n<n>``
(the drawn sample's own label-frequency ratio against the true w: the sampling noise any estimator faces)
and ``cond_hard`` (condition number of the hard confusion matrix). An estimator that refuses (a singular
confusion matrix early in training, EM not converged) leaves its value unrecorded at that epoch.
Artifact ``weights``: ``artifacts/<cell>_weights.npz`` (the true and estimated weights, priors).

Profiles: ``quick`` (MNIST, 3 seeds, 7 shifts, 100 epochs: about 1 min on 2 idle CPU cores), ``paper`` (more data, seeds
and draws), ``cifar10`` (the CIFAR-10 quick CNN), ``ci`` (generated fixture, seconds).

Example:
    >>> cells(Config(fixture=True))
    [('mnist', {'dataset': 'mnist'})]
    >>> [s.name for s in shifts(Config(draws=1))]
    ['dir0.1#0', 'dir1#0', 'dir10#0', 'tweak0@0.5']
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from iwlab.config import RATE, SEED, Bound, count
from iwlab.data import cifar10, mnist
from iwlab.data.label_shift import dirichlet_shift, true_weights, tweak_one_shift
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.label_shift_eval import (
    ESTIMATORS,
    Estimator,
    LSData,
    Shift,
    iw_callback,
    source_callback,
    store_rows,
    trainable_weights,
)
from iwlab.experiments.label_shift_summary import summary
from iwlab.models import MLP, ByrdLiptonCNN
from iwlab.models.init import reinit_
from iwlab.train import EnsembleTrainer, Member, fit_in_packs, log_epochs, merge_histories

N_CLASSES = 10


@dataclass
class Config:
    """Settings of ``label_shift``; the defaults are its ``quick`` profile (MNIST, MLP).

    Example:
        >>> Config().validate()
        >>> Config(n_targets=(300, 100)).validate()
        Traceback (most recent call last):
        ...
        ValueError: n_targets must be increasing, got (300, 100)
    """

    dataset: Literal["mnist", "cifar10"] = "mnist"
    data_root: str = ""  # folder holding mnist/ or cifar10/ ("" -> $IWLAB_DATA, else ~/.cache/iwlab)
    fixture: bool = False  # a generated stand-in dataset (CI, tests)
    n_train_per_class: int = 200  # source training images per class
    n_holdout_per_class: int = 200  # held-out labeled source images per class (calibration, confusion matrix)
    n_targets: tuple[int, ...] = (100, 300, 1000, 3000)  # target sample sizes (nested subsets of the largest)
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0)  # Dirichlet concentrations of the target priors
    draws: int = 2  # Dirichlet shifts drawn per alpha
    tweak_rhos: tuple[float, ...] = (0.5,)  # tweak-one shifts: class tweak_class gets prior rho
    tweak_class: int = 0
    estimators: tuple[Estimator, ...] = ("bbse_hard", "bbse_soft", "rlls", "mlls", "mlls_bcts")
    correction: Estimator = "mlls_bcts"  # the estimate both corrections (post-hoc, IW-ERM) use
    em_max_iter: int = 1000  # EM steps of MLLS (tol 1e-6); a weak model's EM converges slowly and is then refused
    hidden: tuple[int, ...] = (128,)  # MLP hidden widths (mnist); the CNN's dense layers (cifar10)
    width: float = 0.125  # CNN channel multiplier (cifar10 only)
    size: int = 16  # CIFAR-10 images average-pooled to size x size (cifar10 only)
    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 100
    seeds: int = 3
    seed: int = 0
    data_seed: int = 0

    ALLOW_EMPTY: ClassVar[tuple[str, ...]] = ("alphas", "tweak_rhos")
    ALLOW_REPEATS: ClassVar[tuple[str, ...]] = ("hidden",)
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "n_train_per_class": count(5000),
        "n_holdout_per_class": count(5000),
        "n_targets": count(60_000),
        "alphas": Bound(0, 1e6, lo_open=True),
        "draws": count(100),
        "tweak_rhos": Bound(0, 1, lo_open=True, hi_open=True),
        "tweak_class": count(N_CLASSES - 1, lo=0),
        "em_max_iter": count(1_000_000),
        "hidden": count(65_536),
        "width": Bound(0, 16, lo_open=True),
        "size": count(32, lo=4),
        "lr": RATE,
        "batch_size": count(1_000_000),
        "epochs": count(1_000_000),
        "seeds": count(1000),
        "seed": SEED,
        "data_seed": SEED,
    }

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: no shift at all, ``n_targets`` not increasing, an estimator repeated or unknown,
                ``size`` not dividing 32, or a non-finite rate.
        """
        if not self.alphas and not self.tweak_rhos:
            raise ValueError("alphas and tweak_rhos are both empty: no target shift to draw")
        if list(self.n_targets) != sorted(set(self.n_targets)):
            raise ValueError(f"n_targets must be increasing, got {self.n_targets}")
        if not self.estimators or any(e not in ESTIMATORS for e in self.estimators):
            raise ValueError(f"estimators must be some of {', '.join(ESTIMATORS)}, got {self.estimators}")
        if self.correction not in ESTIMATORS:
            raise ValueError(f"correction must be one of {', '.join(ESTIMATORS)}, got {self.correction!r}")
        if self.size < 4 or 32 % self.size:
            raise ValueError(f"size must divide 32 and be >= 4, got {self.size}")
        if not (math.isfinite(self.lr) and self.lr > 0) or not math.isfinite(self.width):
            raise ValueError(f"lr and width must be finite and > 0, got lr={self.lr}, width={self.width}")

    def eval_epochs(self) -> list[int]:
        """Log-spaced evaluation epochs up to ``epochs``.

        Example:
            >>> Config(epochs=20).eval_epochs()
            [1, 2, 3, 5, 10, 20]
        """
        return log_epochs(self.epochs)


# CI-sized: a generated fixture, tiny splits and a few epochs (seconds on a CPU)
CI = {
    "fixture": True,
    "n_train_per_class": 10,
    "n_holdout_per_class": 10,
    "n_targets": (30, 60),
    "epochs": 3,
    "seeds": 2,
    "draws": 1,
}
PROFILES: dict[str, dict] = {
    "quick": {},
    # more source data, seeds and Dirichlet draws; Lipton et al. and Alexandari et al. average over 10-100 draws
    "paper": {"n_train_per_class": 1000, "n_holdout_per_class": 500, "draws": 5, "seeds": 5, "epochs": 300},
    # the CIFAR-10 quick CNN of the cifar experiments (1/8 width, 16x16 images): ~40 s per epoch on 2 CPU cores
    "cifar10": {"dataset": "cifar10", "hidden": (128, 32), "lr": 0.05},
    # the fixture's held-out logits separate perfectly, where calibration has no optimum: a raw-posterior correction
    "ci": {**CI, "hidden": (32,), "alphas": (1.0,), "correction": "bbse_soft"},
}


def shifts(cfg: Config) -> list[Shift]:
    """The target shifts of a config, in order: Dirichlet (alpha-major, then draw), then tweak-one.

    Example:
        >>> [(s.name, s.family) for s in shifts(Config(alphas=(1.0,), draws=2, tweak_rhos=()))]
        [('dir1#0', 'dirichlet alpha=1'), ('dir1#1', 'dirichlet alpha=1')]
    """
    out = [
        Shift(f"dir{a:g}#{d}", f"dirichlet alpha={a:g}", "dirichlet", a) for a in cfg.alphas for d in range(cfg.draws)
    ]
    c = cfg.tweak_class
    out += [Shift(f"tweak{c}@{r:g}", f"tweak-one class {c} rho={r:g}", "tweak_one", r) for r in cfg.tweak_rhos]
    return out


def cells(cfg: Config) -> list[tuple[str, dict]]:
    """One cell: the dataset (source models, every shift and IW-ERM share it).

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).
        ValueError: ``rlls`` is asked for but cvxpy (the ``label_shift`` extra) is not installed.
    """
    if "rlls" in (*cfg.estimators, cfg.correction) and importlib.util.find_spec("cvxpy") is None:
        # found before training, not after minutes of it: RLLS's convex program needs the optional extra
        raise ValueError(
            "estimator rlls needs cvxpy: pip install 'iwlab[label_shift]', or drop it: --set "
            "estimators=" + ",".join(e for e in cfg.estimators if e != "rlls")
        )
    if not cfg.fixture:
        _arrays(cfg)  # fail before any training, with the loader's message naming the missing file
    return [(cfg.dataset, {"dataset": cfg.dataset})]


def _arrays(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw images and labels ``(x_train, y_train, x_test, y_test)`` of the dataset (or its fixture)."""
    per_class = cfg.n_train_per_class + cfg.n_holdout_per_class + max(cfg.n_targets)
    if cfg.dataset == "mnist":
        a = (
            mnist.make_fixture(10 * per_class, 200, cfg.data_seed)
            if cfg.fixture
            else mnist.load_mnist(cfg.data_root or None)
        )
    else:
        a = (
            cifar10.make_fixture(per_class, 20, cfg.data_seed)
            if cfg.fixture
            else cifar10.load_cifar10(cfg.data_root or None)
        )
    return a.x_train, a.y_train, a.x_test, a.y_test


def _images(cfg: Config, x: np.ndarray) -> torch.Tensor:
    """Model inputs: flattened standardized MNIST ``(N, 784)``, or CIFAR-10 ``(N, 3, size, size)``."""
    if cfg.dataset == "mnist":
        return mnist.to_tensor(x).reshape(len(x), -1)
    return cifar10.to_tensor(x, cfg.size)


def load_data(cfg: Config) -> LSData:
    """Source training / held-out splits (class-stratified), the target pool and every shift's target draw.

    Raises:
        ValueError: a class has fewer training images than ``n_train_per_class + n_holdout_per_class``, or a
            shift asks more of a class than the pool holds (:func:`~iwlab.data.label_shift.dirichlet_shift`).

    Example:
        >>> d = load_data(Config(**CI, alphas=(1.0,)))
        >>> d.x_train.shape, d.x_hold.shape, d.targets[0].shape, d.w_true.shape
        (torch.Size([100, 784]), torch.Size([100, 784]), torch.Size([60]), torch.Size([2, 10]))
    """
    xtr, ytr, xte, yte = _arrays(cfg)
    ytr_t = torch.as_tensor(ytr).long()
    g = torch.Generator().manual_seed(cfg.data_seed)
    train, hold, rest = [], [], []
    need = cfg.n_train_per_class + cfg.n_holdout_per_class
    for c in range(N_CLASSES):
        idx = torch.nonzero(ytr_t == c).flatten()
        if len(idx) < need:
            raise ValueError(
                f"class {c} has {len(idx)} training images, fewer than n_train_per_class + n_holdout_per_class = {need}"
            )
        idx = idx[torch.randperm(len(idx), generator=g)]
        train.append(idx[: cfg.n_train_per_class])
        hold.append(idx[cfg.n_train_per_class : need])
        rest.append(idx[need:])
    tr, ho, re = (torch.cat(v).sort().values for v in (train, hold, rest))
    x_all = _images(cfg, xtr)
    x_pool = torch.cat([x_all[re], _images(cfg, xte)])
    y_pool = torch.cat([ytr_t[re], torch.as_tensor(yte).long()])
    p_source = torch.bincount(ytr_t[tr], minlength=N_CLASSES).double() / len(tr)
    targets, priors = [], []
    n_max = max(cfg.n_targets)
    for k, s in enumerate(shifts(cfg)):
        gk = torch.Generator().manual_seed(cfg.data_seed + 1 + k)
        if s.kind == "dirichlet":
            idx, q = dirichlet_shift(y_pool, s.value, n_max, gk, n_classes=N_CLASSES)
        else:
            idx, q = tweak_one_shift(y_pool, cfg.tweak_class, s.value, n_max, gk, n_classes=N_CLASSES)
        targets.append(idx[torch.randperm(n_max, generator=gk)])  # any prefix is a random subset
        priors.append(torch.as_tensor(q, dtype=torch.float64))
    q_all = torch.stack(priors)
    w_true = torch.stack([true_weights(p_source, q) for q in q_all])
    return LSData(x_all[tr], ytr_t[tr], x_all[ho], ytr_t[ho], x_pool, y_pool, targets, q_all, w_true, p_source)


def model_fn(cfg: Config, in_dim: int) -> Callable[[torch.Generator], torch.nn.Module]:
    """``model_fn(generator)`` of the source model: the MLP (mnist) or the quick CNN with He init (cifar10).

    Example:
        >>> model_fn(Config(hidden=(8,)), 784)(torch.Generator().manual_seed(0))(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    def make(g: torch.Generator) -> torch.nn.Module:
        if cfg.dataset == "mnist":
            return MLP(in_dim, tuple(cfg.hidden), N_CLASSES, generator=g)
        net = ByrdLiptonCNN(3, N_CLASSES, cfg.width, tuple(cfg.hidden), 0.0, cfg.size, generator=g)
        return reinit_(net, "he", g)

    return make


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train the source models (estimating and correcting at every evaluation epoch), then IW-ERM models."""
    data = load_data(cfg)
    sh = shifts(cfg)
    dev = ctx.device
    in_dim = data.x_train.shape[1]
    seeds = [cfg.seed + s for s in range(cfg.seeds)]
    src = EnsembleTrainer(
        model_fn(cfg, in_dim), [Member(seed=s, lr=cfg.lr) for s in seeds], batch_size=cfg.batch_size, device=dev
    )
    final: dict = {}
    src.fit(
        data.x_train,
        data.y_train,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        callbacks=[source_callback(cfg, data, dev, final)],
        checkpoint_path=ctx.checkpoint_path.with_name(f"{ctx.slug}.source.pt"),
        progress=ctx.progress,
    )
    if "w_corr" not in final:  # resumed past the last epoch: evaluate the finished models once more
        source_callback(cfg, data, dev, final)(src, cfg.epochs)
    w_est = final["w_corr"]  # (seeds, shifts, K)
    # IW-ERM, shift-major: one pack per shift, so each pack is scored on its own shift's target set only
    iw_members = [
        Member(seed=s, class_weight=trainable_weights(w), lr=cfg.lr, labels={"k": k, "w": kind})
        for k in range(len(sh))
        for i, s in enumerate(seeds)
        for kind, w in (("est", w_est[i, k]), ("true", data.w_true[k]))
    ]
    packs = fit_in_packs(
        model_fn(cfg, in_dim),
        iw_members,
        data.x_train,
        data.y_train,
        pack_size=2 * cfg.seeds,
        batch_size=cfg.batch_size,
        device=dev,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        callbacks=[iw_callback(data, dev)],
        checkpoint_path=ctx.checkpoint_path.with_name(f"{ctx.slug}.iw.pt"),
        progress=ctx.progress,
    )
    path = ctx.artifact_path("_weights.npz")
    np.savez_compressed(
        path,
        shifts=np.array([s.name for s in sh]),
        seeds=np.array(seeds),
        priors=data.priors.numpy(),
        p_source=data.p_source.numpy(),
        w_true=data.w_true.numpy(),
        w_correction=w_est.numpy(),
        **{f"w_{e}": v.numpy() for e, v in final["w_all"].items()},
    )
    labels = [{"seed": s, "shift": x.name, "family": x.family, "dataset": cfg.dataset} for s in seeds for x in sh]
    iw_diverged = torch.cat([t.diverged_at for t in packs])
    rows, diverged = store_rows(src.history.rows, src.diverged_at, merge_histories(packs).rows, iw_diverged, len(sh))
    return CellResult(
        members=labels,
        rows=rows,
        diverged=diverged,
        artifacts=[("weights", str(path.relative_to(ctx.run_dir)))],
    )


EXPERIMENT = Experiment(
    name="label_shift",
    description="Label shift: BBSE/RLLS/MLLS(+BCTS) weight estimates vs target size; post-hoc vs IW-ERM over epochs",
    config=Config,
    profiles=PROFILES,
    cells=cells,
    run_cell=run_cell,
    summary=summary,
)
