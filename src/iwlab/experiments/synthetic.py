"""Byrd & Lipton (2019) section 3, synthetic 2-D data: Figures 1, 2, 3, A.1 and A.2.

Class weights from 1 down to 1/256 multiply the loss of one class (``down_class``). Logistic regression
and a 64-unit MLP (plain, with L2, with dropout) are trained by minibatch SGD with lr = 1/sigma_max(X).
One cell is one model; its ensemble holds every dataset x weight x L2 x seed combination (the datasets
have the same size, so they pack), and the whole grid of a cell advances in one batched step.

Recorded at log-spaced epochs for every model: ``train_loss`` (the weighted objective), ``train_acc``,
``frac_down_test`` and ``frac_down_grid`` (fraction of test points / of a dense grid predicted as the
down-weighted class), ``param_norm``, and for logistic regression on separable data ``angle`` (radians
between (w, b) and the max-margin direction that GD converges to) and ``margin`` (normalized margin).
Decision surfaces are saved at a few snapshot epochs for the figures.

Example:
    >>> cfg = make_config("synthetic", "quick", ["epochs=20"])  # doctest: +SKIP
    >>> # iwlab run synthetic --profile quick
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from iwlab.config import NONNEG, PROBABILITY, RATE, SEED, WEIGHT, Bound, count
from iwlab.experiments.base import CellContext, CellResult
from iwlab.train.schedule import log_epochs

NAME = "synthetic"
DESCRIPTION = "Byrd & Lipton synthetic 2D: class weights vs epochs, L2 and dropout (Figs 1-3, A.1, A.2)"

MODELS = ("logreg", "mlp", "mlp_dropout")
# member-level keys: sweeping them packs their values into one ensemble (see iwlab.sweep)
PACK_KEYS = ("weights", "l2")
DATASETS = ("separable", "moons", "gaussians")


@dataclass
class Config:
    """Synthetic experiment settings; defaults are the ``quick`` profile."""

    datasets: tuple[str, ...] = DATASETS
    models: tuple[str, ...] = MODELS
    weights: tuple[float, ...] = tuple(2.0**-k for k in range(0, 9))  # 1, 1/2, ..., 1/256
    down_class: int = 1
    l2: tuple[float, ...] = (0.0, 1e-3)  # as torch weight_decay: gradient += l2 * theta
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
        "l2": NONNEG,
        "down_class": count(1, lo=0),
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
        """Check values beyond their types."""
        for d in self.datasets:
            if d not in DATASETS:
                raise ValueError(f"datasets: unknown '{d}'; valid: {', '.join(DATASETS)}")
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"models: unknown '{m}'; valid: {', '.join(MODELS)}")
        if not self.weights or any(not (w > 0 and math.isfinite(w)) for w in self.weights):
            raise ValueError(f"weights must be positive and finite, got {self.weights}")
        if any(not (v >= 0 and math.isfinite(v)) for v in self.l2):
            raise ValueError(f"l2 must be >= 0, got {self.l2}")
        for key in ("datasets", "models", "weights", "l2"):
            values = getattr(self, key)
            if len(set(values)) != len(values):  # repeats would be counted as independent replicates
                raise ValueError(f"{key} repeat: {values}")
        if self.down_class not in (0, 1):
            raise ValueError(f"down_class must be 0 or 1, got {self.down_class}")
        if self.seeds < 1 or self.epochs < 1 or self.batch_size < 1 or self.n_per_class < 2:
            raise ValueError("seeds, epochs and batch_size must be >= 1 and n_per_class >= 2")


PROFILES: dict[str, dict] = {
    # ~1 minute on 2 CPU cores: fewer, larger steps; the same qualitative finding
    "quick": {},
    # the paper: batch 8, lr 1/sigma_max, 10,000 epochs, weights 1..1/256, all models and datasets
    "paper": {"epochs": 10_000, "batch_size": 8, "lr_scale": 1.0, "grid_size": 200},
}


def cells(cfg: Config) -> list[tuple[str, dict]]:
    """One cell per model; its ensemble packs every dataset x L2 x weight x seed (same-size data).

    Example:
        >>> [c for c, _ in cells(Config(models=("logreg", "mlp")))]
        ['logreg', 'mlp']
    """
    return [(m, {"model": m}) for m in cfg.models]


def _data(cfg: Config, dataset: str) -> tuple[torch.Tensor, ...]:
    from iwlab.data.synthetic import make_dataset

    x, y = make_dataset(dataset, cfg.n_per_class, seed=cfg.data_seed)
    # the test set comes from the same generator with a different seed
    xt, yt = make_dataset(dataset, cfg.n_test_per_class, seed=cfg.data_seed + 10_007)
    return x, y, xt, yt


def grid_for(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """A ``size x size`` grid over the data's bounding box plus a margin: ``(size*size, 2)`` points.

    Example:
        >>> g, box = grid_for(torch.tensor([[0., 0.], [1., 1.]]), 3); g.shape
        torch.Size([9, 2])
    """
    lo, hi = x.min(0).values, x.max(0).values
    pad = 0.25 * (hi - lo)
    x0, y0 = (lo - pad).tolist()
    x1, y1 = (hi + pad).tolist()
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, size), torch.linspace(y0, y1, size), indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), (x0, x1, y0, y1)


def snapshot_epochs(epochs: int, n: int) -> list[int]:
    """``n`` roughly geometric epochs among the evaluation epochs, first and last included.

    Example:
        >>> snapshot_epochs(10000, 5)
        [1, 10, 100, 1000, 10000]
    """
    evals = np.array(log_epochs(epochs))
    targets = np.geomspace(1, epochs, max(n, 2))
    picks = {int(evals[np.argmin(np.abs(np.log(evals) - np.log(t)))]) for t in targets}
    return sorted(picks)


def _members(cfg: Config, model: str, lrs: dict[str, float]) -> list:
    from iwlab.train import Member

    l2s = (0.0,) if model == "mlp_dropout" else cfg.l2
    out = []
    for ds in cfg.datasets:
        for s in range(cfg.seeds):
            for l2 in l2s:
                for w in cfg.weights:
                    cw = [1.0, 1.0]
                    cw[cfg.down_class] = w
                    labels = {
                        "dataset": ds,
                        "model": model,
                        "weight": w,
                        "l2": l2,
                        "seed": cfg.seed + s,
                        "dropout": cfg.dropout if model == "mlp_dropout" else 0.0,
                        "lr": lrs[ds],
                    }
                    out.append(
                        Member(
                            seed=cfg.seed + s,
                            class_weight=tuple(cw),
                            lr=lrs[ds],
                            l2=l2,
                            labels=labels,
                        )
                    )
    return out


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one model's ensemble over all datasets, weights, L2 values and seeds.

    Example:
        >>> # run_cell(cfg, "mlp", {"model": "mlp"}, ctx)
    """
    from iwlab.data.synthetic import sigma_max_lr
    from iwlab.functional.losses import weighted_binary_cross_entropy
    from iwlab.implicit_bias import angle, linear_direction, max_margin_separator, normalized_margin
    from iwlab.models import MLP, logistic_regression
    from iwlab.train import EnsembleTrainer

    model = params["model"]
    data = {ds: _data(cfg, ds) for ds in cfg.datasets}
    lrs = {ds: (sigma_max_lr(d[0]) if cfg.lr == "auto" else cfg.lr) * cfg.lr_scale for ds, d in data.items()}
    members = _members(cfg, model, lrs)
    M = len(members)
    if model == "logreg":

        def model_fn(g: torch.Generator) -> MLP:
            return logistic_regression(2, 1, generator=g)
    else:
        p = cfg.dropout if model == "mlp_dropout" else 0.0

        def model_fn(g: torch.Generator) -> MLP:
            return MLP(2, (cfg.hidden,), 1, p, generator=g)

    trainer = EnsembleTrainer(
        model_fn,
        members,
        batch_size=cfg.batch_size,
        normalization=cfg.normalization,
        device=ctx.device,
        compile=cfg.compile,
    )
    down = cfg.down_class
    ds_of = [m.labels["dataset"] for m in members]
    dev = ctx.device
    x = torch.stack([data[d][0] for d in ds_of]).to(dev)  # (M, N, 2): each member's own dataset
    y = torch.stack([data[d][1] for d in ds_of]).to(dev)  # (M, N)
    xt = torch.stack([data[d][2] for d in ds_of]).to(dev)
    grids = {ds: grid_for(d[0], cfg.grid_size) for ds, d in data.items()}
    grid = torch.stack([grids[d][0] for d in ds_of]).to(dev)  # (M, G*G, 2)
    snaps = set(snapshot_epochs(cfg.epochs, cfg.n_snapshots))
    cw = torch.ones(M, 2)
    cw[:, down] = torch.tensor([m.class_weight[down] for m in members])
    cw = cw.to(dev)
    svm_dirs = torch.full((M, 3), float("nan"))
    for ds, (xd, yd, _, _) in data.items():
        try:  # the max-margin direction exists for linearly separable data only
            w_svm, b_svm = max_margin_separator(xd, yd, bias="homogeneous")
        except ValueError:
            continue
        d = linear_direction(w_svm, torch.tensor(b_svm, dtype=w_svm.dtype)).float()
        svm_dirs[[i for i, m in enumerate(ds_of) if m == ds]] = d
    has_svm = ~svm_dirs.isnan().any(1)  # (M,)
    surf_dir = ctx.artifact_path("")
    surf_dir.mkdir(parents=True, exist_ok=True)

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, torch.Tensor]:
        z = tr.logits(x, per_member=True).squeeze(-1)  # (M, N)
        out = {
            "train_loss": weighted_binary_cross_entropy(
                z, y.float(), class_weight=cw, normalization=cfg.normalization, validate=False
            ),
            "train_acc": ((z > 0).long() == y).float().mean(1),
            "frac_down_test": (tr.predict(xt, per_member=True) == down).float().mean(1),
            "param_norm": tr.param_norm(),
        }
        zg = tr.logits(grid, per_member=True).squeeze(-1)  # (M, G*G)
        out["frac_down_grid"] = ((zg > 0).long() == down).float().mean(1)
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

    trainer.fit(
        x,
        y,
        epochs=cfg.epochs,
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
        per_member=True,
    )
    np.savez(
        surf_dir / "grid.npz",
        boxes=np.array([grids[d][1] for d in ds_of]),
        size=cfg.grid_size,
        epochs=np.array(sorted(snaps)),
    )
    rel = str(surf_dir.relative_to(ctx.run_dir))
    return CellResult(
        members=[m.labels for m in members],
        rows=trainer.history.rows,
        diverged=trainer.diverged_at.tolist(),
        artifacts=[("surfaces", rel)],
    )


def figures(run_dir: Path, df: pd.DataFrame, cfg: Config, fmt: str = "png") -> list[Path]:
    """All figures of the run, read from the store and the saved surfaces, saved as ``fmt`` under
    ``run_dir/figures`` with their captions (``captions.json``, shown in the report).

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.results.load`).
        cfg: its :class:`Config`.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

    Returns:
        The files written, in report order.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # figures(Path("runs/synthetic-quick"), iwlab.results.load("runs/synthetic-quick"), cfg, fmt="svg")
    """
    from iwlab.plots import style
    from iwlab.plots import synthetic as P
    from iwlab.plots.data import CAPTION, plot_synthetic_datasets

    style.check_format(fmt)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    data = plot_synthetic_datasets(
        fig_dir / "data", seed=cfg.data_seed, n_per_class=cfg.n_per_class, fmt=fmt, caption=CAPTION
    )
    out = [data]
    out += P.surface_figures(run_dir, df, cfg, fig_dir, fmt=fmt)
    out.append(P.fraction_curves(df, cfg, fig_dir / "fraction_vs_epoch", fmt=fmt))
    if "angle" in set(df.name):
        out.append(P.angle_curves(df, cfg, fig_dir / "angle_vs_epoch", fmt=fmt))
    return out


def spreads(df: pd.DataFrame, metric: str = "frac_down_test") -> pd.DataFrame:
    """Spread (max - min across weights) of the seed-mean metric at the first and last recorded epochs.

    One row per (dataset, model, l2), separable data first, then moons and gaussians; models in the order
    logreg, mlp, mlp_dropout; L2 ascending. ``n_weights`` is the number of weights of the row,
    ``n_weights_first`` / ``n_weights_last`` how many of them have a value at that epoch (fewer when a member
    diverged: its spread then covers fewer weights).

    Example:
        >>> # spreads(iwlab.results.load(run_dir))
    """
    d = df[df.name == metric]
    if d.empty:
        return pd.DataFrame()
    mean = d.groupby(["dataset", "model", "l2", "weight", "epoch"]).value.agg(["mean", "std"]).reset_index()
    rows = []
    for (ds, model, l2), g in mean.groupby(["dataset", "model", "l2"]):
        first, last = g.epoch.min(), g.epoch.max()
        f, la = g[g.epoch == first], g[g.epoch == last]
        rows.append(
            {
                "dataset": ds,
                "model": model,
                "l2": l2,
                "first_epoch": int(first),
                "last_epoch": int(last),
                "spread_first": f["mean"].max() - f["mean"].min(),
                "spread_last": la["mean"].max() - la["mean"].min(),
                "w1_last": float(la[la.weight == la.weight.max()]["mean"].iloc[0]),
                "wmin_last": float(la[la.weight == la.weight.min()]["mean"].iloc[0]),
                "n_weights": int(g.weight.nunique()),
                "n_weights_first": int(f.weight.nunique()),
                "n_weights_last": int(la.weight.nunique()),
            }
        )
    out = pd.DataFrame(rows)
    rank = {name: i for i, name in enumerate((*DATASETS, *MODELS))}
    out = out.sort_values(
        ["dataset", "model", "l2"], key=lambda c: c.map(rank).fillna(len(rank)) if c.name != "l2" else c
    )
    return out.reset_index(drop=True)


def _separation(df: pd.DataFrame) -> dict[tuple, tuple[float, float]]:
    """(dataset, model, l2) -> (lowest, highest) training accuracy over its members at its last epoch."""
    a = df[df.name == "train_acc"]
    out = {}
    for key, g in a.groupby(["dataset", "model", "l2"]):
        last = g[g.epoch == g.epoch.max()].value
        out[key] = (float(last.min()), float(last.max()))
    return out


def verdicts(df: pd.DataFrame, metric: str = "frac_down_test") -> pd.DataFrame:
    """:func:`spreads` plus, per row, the verdict computed from the numbers and Byrd & Lipton's claim for it.

    ``verdict``, ``claim`` and ``matches`` follow :data:`iwlab.report.LEVEL_RULE` (:func:`iwlab.report.level_verdict`):
    "faded" if the last-epoch spread is below 0.1, else "persists". ``claim``: what Byrd & Lipton (2019,
    sections 3 and 5, Figs. 1-3) predict for the row, once its models have trained (the best training
    accuracy over the row's models >= 0.95; before that there is no claim): with L2 the effect persists;
    without L2 (with or without dropout) it fades once the models separate their training data (lowest
    training accuracy ``train_acc_min`` >= 0.95 at the last epoch); where the data are not separated the
    paper makes no claim. ``matches``: "yes", "no" or "n/a (why)".

    Example:
        >>> # verdicts(iwlab.results.load(run_dir))[["dataset", "model", "l2", "verdict", "matches"]]
    """
    from iwlab.report import level_verdict

    s = spreads(df, metric)
    if s.empty:
        return s
    sep = _separation(df)
    verdict, claim, matches, acc = [], [], [], []
    for r in s.itertuples():
        lowest, best = sep.get((r.dataset, r.model, r.l2), (float("nan"), float("nan")))
        acc.append(lowest)
        expected = "persists" if r.l2 > 0 else "faded"
        v, c, m = level_verdict(expected, float(r.spread_first), float(r.spread_last), lowest, best)
        if c == "faded" and r.model == "mlp_dropout":
            c = "faded (dropout does not keep the effect)"
        elif c == "persists":
            c = "persists (L2 keeps the effect)"
        if min(r.n_weights_first, r.n_weights_last) < r.n_weights:
            m = f"n/a ({r.n_weights_first} / {r.n_weights_last} of {r.n_weights} weights recorded)"
        verdict.append(v)
        claim.append(c)
        matches.append(m)
    return s.assign(train_acc_min=acc, verdict=verdict, claim=claim, matches=matches)


def summary(df: pd.DataFrame, cfg: Config) -> str:
    """Markdown: spread of the down-weighted-class fraction across weights, first vs last epoch, with a verdict
    per (dataset, model, L2) computed from the numbers and compared with Byrd & Lipton's claim; separable data
    first.

    Example:
        >>> # print(summary(df, cfg))
    """
    from iwlab.report import LEVEL_RULE, TREND_RULE, finding_line

    lines = [
        f"Down-weighted class: {cfg.down_class}. Weights: {', '.join(_frac(w) for w in cfg.weights)}. "
        f"Seeds: {cfg.seeds}. Epochs: {cfg.epochs}, batch {cfg.batch_size}. {_lr_used(df, cfg)}",
        "",
        "Spread = max - min, across weights, of the fraction of points predicted as the down-weighted class "
        f"(mean over seeds). {LEVEL_RULE} {TREND_RULE}",
        "",
        "Byrd & Lipton's claim per row: without L2 (plain or with dropout) the effect of the weights fades once the "
        "models separate their training data; with L2 it persists. Where the training data are not separated the "
        "paper makes no claim.",
        "",
    ]
    first_table = True
    for metric, title in (
        ("frac_down_test", "test points"),
        ("frac_down_grid", "grid over the plane"),
    ):
        v = verdicts(df, metric)
        if v.empty:
            continue
        if first_table:
            rows = [(f"{r.dataset} {r.model} L2={r.l2:g}", r.verdict, r.claim, r.matches) for r in v.itertuples()]
            lines += [finding_line(rows, title), ""]
            first_table = False
        lines += [
            f"### Spread of the fraction of {title}",
            "",
            "| dataset | model | L2 | spread at first epoch | spread at last epoch | w=1 last | w=min last "
            "| verdict | Byrd & Lipton | matches |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in v.itertuples():
            lines.append(
                f"| {r.dataset} | {r.model} | {r.l2:g} | {r.spread_first:.3f} (epoch {r.first_epoch}) "
                f"| {r.spread_last:.3f} (epoch {r.last_epoch}) | {r.w1_last:.3f} | {r.wmin_last:.3f} "
                f"| {r.verdict} | {r.claim} | {r.matches} |"
            )
        lines.append("")
    a = df[df.name == "angle"]
    if not a.empty:
        # a pivot, so a weight missing under one L2 (a diverged member) leaves a gap instead of shifting columns
        last = a[a.epoch == a.epoch.max()].pivot_table(index="l2", columns="weight", values="value", aggfunc="mean")
        ws = sorted(last.columns, reverse=True)
        lines += [
            "### Angle (radians) of logistic regression to the max-margin direction, last epoch",
            "",
            "| L2 | " + " | ".join(_frac(w) for w in ws) + " |",
            "|---|" + "---|" * len(ws),
        ]
        for l2, row in last.iterrows():
            lines.append(f"| {l2:g} | " + " | ".join("-" if pd.isna(row[w]) else f"{row[w]:.3f}" for w in ws) + " |")
        lines.append("")
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if not div.empty:
        lines.append(f"Diverged models: {div[['run_id', 'member']].drop_duplicates().shape[0]}.")
    return "\n".join(lines)


def _lr_used(df: pd.DataFrame, cfg: Config) -> str:
    """The learning rate each dataset was trained with, as recorded in the members' labels."""
    how = (
        f"{cfg.lr_scale:g} / sigma_max(X) of each dataset (lr=auto)"
        if cfg.lr == "auto"
        else f"{cfg.lr:g} x lr_scale {cfg.lr_scale:g}"
    )
    if "lr" not in df or df.empty:
        return f"lr = {how}."
    used = df.drop_duplicates("dataset").set_index("dataset").lr
    order = [d for d in cfg.datasets if d in used.index]
    return f"lr = {how}: " + ", ".join(f"{d} {used[d]:.4g}" for d in order) + "."


def _frac(w: float) -> str:
    if w >= 1:
        return f"{w:g}"
    inv = 1 / w
    return f"1/{inv:.0f}" if abs(inv - round(inv)) < 1e-9 else f"{w:g}"
