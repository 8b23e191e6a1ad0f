"""Byrd & Lipton (2019) section 3, synthetic 2-D data: Figures 1, 2, 3, A.1 and A.2.

Class weights from 1 down to 1/256 multiply the loss of one class (``down_class``). Logistic regression and a
64-unit MLP (plain, with weight decay, with dropout) are trained by minibatch SGD with lr = 1/sigma_max(X). One
cell is one model; its ensemble packs every dataset x weight x weight decay x seed (same-size data).

Recorded at log-spaced epochs: ``train_loss`` (the weighted objective), ``train_acc``, ``frac_down_test`` and
``frac_down_grid`` (fraction of test points / of a grid over the plane predicted as the down-weighted class),
``param_norm``, and for logistic regression on separable data ``angle`` (radians between (w, b) and the
max-margin direction GD converges to, Soudry et al. 2018) and ``margin`` (normalized margin).

Weight decay: ``weight_decay`` is the coupled decay of ``torch.optim.SGD`` (gradient += ``weight_decay *
theta``), as these values always were (the key was ``l2``). The paper's L2 "penalty coefficient 0.001" is
Keras' ``l2(0.001)``, a loss term ``lam ||theta||^2`` with gradient ``2 lam theta``: ``weight_decay = 2 lam =
0.002``. The default ``1e-3`` is Keras' ``l2(5e-4)``, half the paper's (``--set weight_decay=0,0.002``).

Artifacts per cell under ``artifacts/<cell>/``, which the figures (:mod:`iwlab.plots.synthetic`) read:
``data.npz`` (training sets ``x_<dataset>`` float32 ``(N, 2)``, ``y_<dataset>`` int64 ``(N,)``),
``surface_e<epoch>.npy`` (P(class 1) on the grid, float16 ``(M, G, G)``) and ``grid.npz`` (``boxes``
``(M, 4)``, ``size`` G, snapshot ``epochs``).
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from iwlab.config import NONNEG, PROBABILITY, RATE, SEED, WEIGHT, Bound, check_config, count
from iwlab.data.synthetic import make_dataset, plane_grid, sigma_max_lr
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.findings import LEVEL_RULE, TREND_RULE, finding_line, level_verdict, markdown_table, ratio_text
from iwlab.implicit_bias import angle, linear_direction, max_margin_direction, normalized_margin
from iwlab.models import MLP, logistic_regression
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.evaluators import binary_fit_metrics, fraction_predicted, member_class_weights
from iwlab.train.schedule import log_epochs

NAME = "synthetic"
DESCRIPTION = "Byrd & Lipton synthetic 2D: class weights vs epochs, weight decay and dropout (Figs 1-3, A.1, A.2)"

Dataset = Literal["separable", "moons", "gaussians"]
Model = Literal["logreg", "mlp", "mlp_dropout"]
DATASETS: tuple[Dataset, ...] = typing.get_args(Dataset)  # separable first: the paper's claim is about it
MODELS: tuple[Model, ...] = typing.get_args(Model)
PACK_KEYS = ("weights", "weight_decay")  # member-level: a sweep packs their values into one ensemble
TEST_SEED_OFFSET = 10_007  # the test set: the training generator with data_seed + this


@dataclass
class Config:
    """Synthetic experiment settings; defaults are the ``quick`` profile.

    ``weights`` multiply the loss of ``down_class`` (the other class keeps 1); ``weight_decay`` is the
    coupled decay (module docstring: Keras' ``l2(lam)`` is ``2 lam``), not used by ``mlp_dropout``.
    ``lr="auto"`` is the paper's ``1 / sigma_max(X)`` per dataset, times ``lr_scale``.
    """

    datasets: tuple[Dataset, ...] = DATASETS
    models: tuple[Model, ...] = MODELS
    weights: tuple[float, ...] = tuple(2.0**-k for k in range(0, 9))  # 1, 1/2, ..., 1/256
    down_class: Literal[0, 1] = 1
    weight_decay: tuple[float, ...] = (0.0, 1e-3)  # coupled, as torch's: gradient += weight_decay * theta
    seeds: int = 1
    seed: int = 0
    n_per_class: int = 512
    n_test_per_class: int = 512
    data_seed: int = 0
    epochs: int = 300
    batch_size: int = 8
    lr: float | Literal["auto"] = "auto"  # "auto": the paper's 1/sigma_max(X), per dataset
    lr_scale: float = 1.0  # multiplies the lr (auto or given)
    hidden: int = 64
    dropout: float = 0.5
    normalization: Literal["batch_size", "weight_sum"] = "batch_size"
    grid_size: int = 120
    n_snapshots: int = 5
    compile: bool = False

    # ranges checked before anything runs (iwlab.config.check_config); sizes that allocate are bounded
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "weights": WEIGHT,
        "weight_decay": NONNEG,
        "seeds": count(1000),
        "seed": SEED,
        "n_per_class": count(1_000_000, lo=2),
        "n_test_per_class": count(1_000_000),
        "data_seed": SEED,
        "epochs": count(10_000_000),
        "batch_size": count(1_000_000),
        "lr": RATE,
        "lr_scale": RATE,
        "hidden": count(65_536),
        "dropout": PROBABILITY,
        "grid_size": count(1000, lo=2),
        "n_snapshots": count(100),
    }

    def validate(self) -> None:
        """Check the ranges (``BOUNDS``, also for a Config built in code), the names and that no value repeats.

        Raises:
            ValueError: a value out of range, an unknown name, or a repeat (it would count as a replicate).
        """
        check_config(self)
        for key, valid in (("datasets", DATASETS), ("models", MODELS), ("down_class", (0, 1))):
            value = getattr(self, key)
            for v in value if isinstance(value, tuple) else (value,):
                if v not in valid:
                    raise ValueError(f"{key}: unknown {v!r}; valid: {', '.join(map(str, valid))}")
        for key in ("datasets", "models", "weights", "weight_decay"):
            if len(set(values := getattr(self, key))) != len(values):
                raise ValueError(f"{key} repeat: {values}")


PROFILES: dict[str, dict] = {
    # ~1 minute on 2 CPU cores: fewer, larger steps; the same qualitative finding
    "quick": {},
    # the paper: batch 8, lr 1/sigma_max, 10,000 epochs, weights 1..1/256, all models and datasets
    # compile: K minibatch steps per compiled call (iwlab.train.stacked_fused), ~3 min on 2 idle cores instead of ~7
    "paper": {"epochs": 10_000, "batch_size": 8, "lr_scale": 1.0, "grid_size": 200, "compile": True},
}


def cells(cfg: Config) -> list[tuple[str, dict]]:
    """One cell per model; its ensemble packs every dataset x weight decay x weight x seed (same-size data).

    Example:
        >>> [c for c, _ in cells(Config(models=("logreg", "mlp")))]
        ['logreg', 'mlp']
    """
    return [(m, {"model": m}) for m in cfg.models]


def snapshot_epochs(epochs: int, n: int) -> list[int]:
    """``n`` roughly geometric epochs among the evaluation epochs (:func:`~iwlab.train.schedule.log_epochs`),
    first and last included; the decision surfaces of Figs. 1-3 are saved at these.

    Raises:
        ValueError: ``epochs < 1``.

    Example:
        >>> snapshot_epochs(10000, 5)
        [1, 10, 100, 1000, 10000]
    """
    evals = np.array(log_epochs(epochs))
    targets = np.geomspace(1, epochs, max(n, 2))
    picks = {int(evals[np.argmin(np.abs(np.log(evals) - np.log(t)))]) for t in targets}
    return sorted(picks)


def _members(cfg: Config, model: str, lrs: dict[str, float]) -> list[Member]:
    """Every dataset x seed x weight decay x weight (in that nesting order: it fixes the member index)."""
    decays = (0.0,) if model == "mlp_dropout" else cfg.weight_decay
    out = []
    for ds, s, wd, w in itertools.product(cfg.datasets, range(cfg.seeds), decays, cfg.weights):
        # not class_weights_from_ratio: the other class keeps weight 1 also for w > 1, and down_class may be 0
        cw = (w, 1.0) if cfg.down_class == 0 else (1.0, w)
        labels = {"dataset": ds, "model": model, "weight": w, "weight_decay": wd, "seed": cfg.seed + s}
        labels |= {"dropout": cfg.dropout if model == "mlp_dropout" else 0.0, "lr": lrs[ds]}
        out.append(Member(seed=cfg.seed + s, class_weight=cw, lr=lrs[ds], weight_decay=wd, labels=labels))
    return out


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one model's (``params["model"]``) ensemble over all datasets, weights, weight decays and seeds.

    Returns:
        Members' labels, metric rows, divergence epochs, and the artifacts ``surfaces`` (the cell's folder)
        and ``data`` (its ``data.npz``).

    Example::

        run_cell(Config(epochs=3), "mlp", {"model": "mlp"}, CellContext(Path("runs/x"), "mlp"))
    """
    model = params["model"]
    data = {}
    for ds in cfg.datasets:  # the test set comes from the same generator with a different seed
        x_ds, y_ds = make_dataset(ds, cfg.n_per_class, seed=cfg.data_seed)
        data[ds] = (x_ds, y_ds, *make_dataset(ds, cfg.n_test_per_class, seed=cfg.data_seed + TEST_SEED_OFFSET))
    lrs = {ds: (sigma_max_lr(d[0]) if cfg.lr == "auto" else cfg.lr) * cfg.lr_scale for ds, d in data.items()}
    members = _members(cfg, model, lrs)
    M = len(members)
    p = cfg.dropout if model == "mlp_dropout" else 0.0

    def model_fn(g: torch.Generator) -> MLP:
        return logistic_regression(2, 1, generator=g) if model == "logreg" else MLP(2, (cfg.hidden,), 1, p, generator=g)

    down, dev = cfg.down_class, ctx.device
    trainer = EnsembleTrainer(
        model_fn, members, batch_size=cfg.batch_size, normalization=cfg.normalization, device=dev, compile=cfg.compile
    )
    ds_of = [m.labels["dataset"] for m in members]
    x = torch.stack([data[d][0] for d in ds_of]).to(dev)  # (M, N, 2): each member's own dataset
    y = torch.stack([data[d][1] for d in ds_of]).to(dev)  # (M, N)
    xt = torch.stack([data[d][2] for d in ds_of]).to(dev)  # (M, N_test, 2)
    grids = {ds: plane_grid(d[0], cfg.grid_size) for ds, d in data.items()}
    grid = torch.stack([grids[d][0] for d in ds_of]).to(dev)  # (M, G*G, 2)
    snaps = set(snapshot_epochs(cfg.epochs, cfg.n_snapshots))
    cw = member_class_weights(trainer, dev)  # (M, 2)
    svm_dirs = torch.full((M, 3), float("nan"))  # each member's max-margin direction; NaN: not separable
    for ds, (xd, yd, _, _) in data.items():
        try:
            svm_dirs[[i for i, m in enumerate(ds_of) if m == ds]] = max_margin_direction(xd, yd).float()
        except ValueError:
            continue
    has_svm = ~svm_dirs.isnan().any(1)  # (M,)
    surf_dir = ctx.artifact_path("")
    surf_dir.mkdir(parents=True, exist_ok=True)
    # the training sets, for the figures (plots never rebuild data)
    np.savez(surf_dir / "data.npz", **{f"{k}_{ds}": d[i].numpy() for ds, d in data.items() for i, k in enumerate("xy")})

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, torch.Tensor]:
        z = tr.logits(x, per_member=True).squeeze(-1)  # (M, N)
        out = binary_fit_metrics(z, y, cw, cfg.normalization)  # train_loss (the weighted objective), train_acc
        out["frac_down_test"] = fraction_predicted(tr.predict(xt, per_member=True), down)
        out["param_norm"] = tr.param_norm()
        zg = tr.logits(grid, per_member=True).squeeze(-1)  # (M, G*G)
        out["frac_down_grid"] = fraction_predicted((zg > 0).long(), down)
        if model == "logreg" and bool(has_svm.any()):
            # NaN for members on non-separable data; such rows are not stored
            w, b = tr.linear_weights()
            out["angle"] = angle(linear_direction(w, b).cpu(), svm_dirs)
            out["margin"] = torch.stack(
                [normalized_margin(w[i].cpu(), b[i].cpu(), x[i].cpu(), y[i].cpu()) for i in range(M)]
            ).where(has_svm, torch.tensor(float("nan")))
        if epoch in snaps:  # decision surfaces for the figures, written before the checkpoint
            prob = torch.sigmoid(zg).reshape(M, cfg.grid_size, cfg.grid_size)
            np.save(surf_dir / f"surface_e{epoch}.npy", prob.cpu().numpy().astype(np.float16))
        return out

    ckpt, progress = ctx.checkpoint_path, ctx.progress
    trainer.fit(x, y, epochs=cfg.epochs, callbacks=[metrics], checkpoint_path=ckpt, progress=progress, per_member=True)
    boxes = np.array([grids[d][1] for d in ds_of])  # (M, 4): each member's grid extent
    np.savez(surf_dir / "grid.npz", boxes=boxes, size=cfg.grid_size, epochs=np.array(sorted(snaps)))
    rel = surf_dir.relative_to(ctx.run_dir)
    files = [("surfaces", str(rel)), ("data", str(rel / "data.npz"))]
    return CellResult([m.labels for m in members], trainer.history.rows, trainer.diverged_at.tolist(), files)


def spreads(df: pd.DataFrame, metric: str = "frac_down_test") -> pd.DataFrame:
    """Spread (max - min across weights) of the seed-mean ``metric`` (a fraction, from the long-form ``df`` of
    :func:`iwlab.store.load`) at the first and last recorded epochs: the effect of the weights in Byrd & Lipton
    (2019), Figs. 1-3.

    Returns one row per (dataset, model, weight_decay), separable data first, then moons and gaussians, models
    in the order logreg, mlp, mlp_dropout, weight decay ascending (an empty frame when ``metric`` is absent).
    ``n_weights_first`` / ``n_weights_last`` count the weights with a value at that epoch (fewer than
    ``n_weights`` when a member diverged: its spread then covers fewer weights).

    Example:
        >>> rows = [("separable", "mlp", 0.0, w, e, "frac_down_test", v)
        ...         for w, e, v in ((1.0, 1, 0.5), (0.25, 1, 0.1), (1.0, 9, 0.5), (0.25, 9, 0.45))]
        >>> df = pd.DataFrame(rows, columns=["dataset", "model", "weight_decay", "weight", "epoch", "name", "value"])
        >>> [round(v, 2) for v in spreads(df).loc[0, ["spread_first", "spread_last"]]]
        [0.4, 0.05]
    """
    d = df[df.name == metric]
    if d.empty:
        return pd.DataFrame()
    keys = ["dataset", "model", "weight_decay"]
    mean = d.groupby([*keys, "weight", "epoch"]).value.agg(["mean", "std"]).reset_index()
    rows = []
    for (ds, model, wd), g in mean.groupby(keys):
        first, last = g.epoch.min(), g.epoch.max()
        f, la = g[g.epoch == first], g[g.epoch == last]
        row = {"dataset": ds, "model": model, "weight_decay": wd, "first_epoch": int(first), "last_epoch": int(last)}
        row |= {"spread_first": f["mean"].max() - f["mean"].min(), "spread_last": la["mean"].max() - la["mean"].min()}
        row["w1_last"] = float(la[la.weight == la.weight.max()]["mean"].iloc[0])
        row["wmin_last"] = float(la[la.weight == la.weight.min()]["mean"].iloc[0])
        row |= {"n_weights": int(g.weight.nunique()), "n_weights_first": int(f.weight.nunique())}
        rows.append(row | {"n_weights_last": int(la.weight.nunique())})
    out = pd.DataFrame(rows)
    rank = {name: i for i, name in enumerate((*DATASETS, *MODELS))}
    out = out.sort_values(keys, key=lambda c: c.map(rank).fillna(len(rank)) if c.name != "weight_decay" else c)
    return out.reset_index(drop=True)


def verdicts(df: pd.DataFrame, metric: str = "frac_down_test") -> pd.DataFrame:
    """:func:`spreads` plus, per row, the verdict computed from the numbers and Byrd & Lipton's claim for it.

    ``verdict``: :func:`~iwlab.experiments.findings.level_verdict` ("faded" if the last-epoch spread is below
    0.1, else "persists"). ``claim``: what Byrd & Lipton (2019, sections 3 and 5, Figs. 1-3) predict once the
    row's models have trained (best ``train_acc`` >= 0.95; before that, no claim): with weight decay (their L2)
    the effect persists; without (plain or with dropout) it fades once the models separate their training data
    (lowest training accuracy ``train_acc_min`` >= 0.95 at the last epoch), else no claim. ``matches``: "yes",
    "no" or "n/a (why)".

    Example:
        >>> rows = [("separable", "mlp", 0.0, w, e, n, v) for w in (1.0, 0.25) for e in (1, 9)
        ...         for n, v in (("frac_down_test", 0.5 - 0.4 * (w < 1) * (e == 1)), ("train_acc", 1.0))]
        >>> df = pd.DataFrame(rows, columns=["dataset", "model", "weight_decay", "weight", "epoch", "name", "value"])
        >>> verdicts(df).loc[0, ["verdict", "matches"]].tolist()
        ['faded; shrinks (0.400 -> 0.000)', 'yes']
    """
    s = spreads(df, metric)
    if s.empty:
        return s
    acc = {}  # (dataset, model, weight_decay) -> (lowest, highest) training accuracy at its last epoch
    for key, g in df[df.name == "train_acc"].groupby(["dataset", "model", "weight_decay"]):
        last = g[g.epoch == g.epoch.max()].value
        acc[key] = (float(last.min()), float(last.max()))
    verdict, claim, matches, lowest_acc = [], [], [], []
    for r in s.itertuples():
        lowest, best = acc.get((r.dataset, r.model, r.weight_decay), (float("nan"), float("nan")))
        lowest_acc.append(lowest)
        expected = "persists" if r.weight_decay > 0 else "faded"
        v, c, m = level_verdict(expected, float(r.spread_first), float(r.spread_last), lowest, best)
        if c == "faded" and r.model == "mlp_dropout":
            c = "faded (dropout does not keep the effect)"
        elif c == "persists":
            c = "persists (weight decay keeps the effect)"
        if min(r.n_weights_first, r.n_weights_last) < r.n_weights:
            m = f"n/a ({r.n_weights_first} / {r.n_weights_last} of {r.n_weights} weights recorded)"
        verdict.append(v)
        claim.append(c)
        matches.append(m)
    return s.assign(train_acc_min=lowest_acc, verdict=verdict, claim=claim, matches=matches)


def summary(df: pd.DataFrame, cfg: Config) -> str:
    """Markdown for the report: spread of the down-weighted-class fraction across weights, first vs last epoch,
    with a verdict per (dataset, model, weight decay) computed from the numbers (:func:`verdicts`), separable
    data first; then the angle of logistic regression to the max-margin direction.

    Example:
        >>> print(summary(pd.DataFrame(columns=["name", "epoch", "value"]), Config(weights=(1.0, 0.25)))[:50])
        Down-weighted class: 1. Weights: 1, 1/4. Seeds: 1.
    """
    lines = [
        f"Down-weighted class: {cfg.down_class}. Weights: {', '.join(ratio_text(w) for w in cfg.weights)}. "
        f"Seeds: {cfg.seeds}. Epochs: {cfg.epochs}, batch {cfg.batch_size}. {_lr_used(df, cfg)}",
        "",
        "Spread = max - min, across weights, of the fraction of points predicted as the down-weighted class "
        f"(mean over seeds). {LEVEL_RULE} {TREND_RULE}",
        "",
        "Byrd & Lipton's claim per row: without L2 regularization (weight decay; plain or with dropout) the effect "
        "of the weights fades once the models separate their training data; with it the effect persists. Where "
        "the training data are not separated the paper makes no claim. Weight decay is the coupled decay: Keras' "
        "l2(lam), the paper's, is weight decay 2 lam.",
        "",
    ]
    first_table = True
    for metric, title in (("frac_down_test", "test points"), ("frac_down_grid", "grid over the plane")):
        v = verdicts(df, metric)
        if v.empty:
            continue
        if first_table:  # the one-line finding, from the first table there is
            rows = [
                (f"{r.dataset} {r.model} wd={r.weight_decay:g}", r.verdict, r.claim, r.matches) for r in v.itertuples()
            ]
            lines += [finding_line(rows, title), ""]
            first_table = False
        lines += [
            f"### Spread of the fraction of {title}",
            "",
            "| dataset | model | weight decay | spread at first epoch | spread at last epoch | w=1 last | w=min last "
            "| verdict | Byrd & Lipton | matches |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in v.itertuples():
            lines.append(
                f"| {r.dataset} | {r.model} | {r.weight_decay:g} | {r.spread_first:.3f} (epoch {r.first_epoch}) "
                f"| {r.spread_last:.3f} (epoch {r.last_epoch}) | {r.w1_last:.3f} | {r.wmin_last:.3f} "
                f"| {r.verdict} | {r.claim} | {r.matches} |"
            )
        lines.append("")
    a = df[df.name == "angle"]
    if not a.empty:
        # a pivot, so a weight missing under one decay (a diverged member) leaves a gap instead of shifting columns
        last = a[a.epoch == a.epoch.max()].pivot_table(index="weight_decay", columns="weight", values="value")
        last = last[sorted(last.columns, reverse=True)]
        last = last.astype(object).where(last.notna(), "-").set_axis([ratio_text(w) for w in last.columns], axis=1)
        last.index = pd.Index([f"{wd:g}" for wd in last.index], name="weight decay")
        title = "### Angle (radians) of logistic regression to the max-margin direction, last epoch"
        lines += [title, "", markdown_table(last, floatfmt=".3f"), ""]
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if not div.empty:
        lines.append(f"Diverged models: {div[['run_id', 'member']].drop_duplicates().shape[0]}.")
    return "\n".join(lines)


def _lr_used(df: pd.DataFrame, cfg: Config) -> str:
    """The learning rate each dataset was trained with, as recorded in the members' labels."""
    how = f"{cfg.lr_scale:g} / sigma_max(X) of each dataset (lr=auto)"
    if cfg.lr != "auto":
        how = f"{cfg.lr:g} x lr_scale {cfg.lr_scale:g}"
    if "lr" not in df or df.empty:
        return f"lr = {how}."
    used = df.drop_duplicates("dataset").set_index("dataset").lr
    order = [d for d in cfg.datasets if d in used.index]
    return f"lr = {how}: " + ", ".join(f"{d} {used[d]:.4g}" for d in order) + "."


EXPERIMENT = Experiment(NAME, DESCRIPTION, Config, PROFILES, cells, run_cell, summary, pack_keys=PACK_KEYS)
