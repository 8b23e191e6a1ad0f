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
from typing import Literal

import numpy as np
import pandas as pd
import torch

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
    lr: float = 0.0  # 0 means the paper's 1/sigma_max(X)
    lr_scale: float = 1.0  # multiplies the lr (quick profile uses fewer, larger steps)
    hidden: int = 64
    dropout: float = 0.5
    normalization: Literal["batch_size", "weight_sum"] = "batch_size"
    grid_size: int = 120
    n_snapshots: int = 5
    compile: bool = False

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
    lrs = {ds: (cfg.lr or sigma_max_lr(d[0])) * cfg.lr_scale for ds, d in data.items()}
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


def figures(run_dir: Path, df: pd.DataFrame, cfg: Config) -> list[Path]:
    """All figures of the run, read from the store and the saved surfaces.

    Example:
        >>> # figures(Path("runs/synthetic-quick"), iwlab.results.load("runs/synthetic-quick"), cfg)
    """
    from iwlab.plots import synthetic as P
    from iwlab.plots.data import plot_synthetic_datasets

    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    out = [plot_synthetic_datasets(fig_dir / "data.png", seed=cfg.data_seed, n_per_class=cfg.n_per_class)]
    out += P.surface_figures(run_dir, df, cfg, fig_dir)
    out.append(P.fraction_curves(df, cfg, fig_dir / "fraction_vs_epoch.png"))
    if "angle" in set(df.name):
        out.append(P.angle_curves(df, cfg, fig_dir / "angle_vs_epoch.png"))
    return out


def spreads(df: pd.DataFrame, metric: str = "frac_down_test") -> pd.DataFrame:
    """Spread (max - min across weights) of the seed-mean metric at the first and last recorded epochs.

    One row per (dataset, model, l2). Example:
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
            }
        )
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, cfg: Config) -> str:
    """Markdown: spread of the down-weighted-class fraction across weights, first vs last epoch.

    Example:
        >>> # print(summary(df, cfg))
    """
    lines = [
        f"Down-weighted class: {cfg.down_class}. Weights: {', '.join(_frac(w) for w in cfg.weights)}. "
        f"Seeds: {cfg.seeds}. Epochs: {cfg.epochs}, batch {cfg.batch_size}, lr = {cfg.lr_scale:g} / sigma_max(X)"
        + (f" (lr given: {cfg.lr})" if cfg.lr else "")
        + ".",
        "",
        "Spread = max - min, across weights, of the fraction of points predicted as the down-weighted class "
        "(mean over seeds). The finding: large early, small late without L2; stays large with L2.",
        "",
    ]
    for metric, title in (
        ("frac_down_test", "test points"),
        ("frac_down_grid", "grid over the plane"),
    ):
        s = spreads(df, metric)
        if s.empty:
            continue
        lines += [
            f"### Spread of the fraction of {title}",
            "",
            "| dataset | model | L2 | spread at first epoch | spread at last epoch | w=1 last | w=min last |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in s.itertuples():
            lines.append(
                f"| {r.dataset} | {r.model} | {r.l2:g} | {r.spread_first:.3f} (epoch {r.first_epoch}) "
                f"| {r.spread_last:.3f} (epoch {r.last_epoch}) | {r.w1_last:.3f} | {r.wmin_last:.3f} |"
            )
        lines.append("")
    a = df[df.name == "angle"]
    if not a.empty:
        last = a[a.epoch == a.epoch.max()].groupby(["dataset", "l2", "weight"]).value.mean().reset_index()
        lines += [
            "### Angle (radians) of logistic regression to the max-margin direction, last epoch",
            "",
            "| L2 | " + " | ".join(_frac(w) for w in sorted(last.weight.unique(), reverse=True)) + " |",
            "|---|" + "---|" * last.weight.nunique(),
        ]
        for l2, g in last.groupby("l2"):
            g = g.sort_values("weight", ascending=False)
            lines.append(f"| {l2:g} | " + " | ".join(f"{v:.3f}" for v in g.value) + " |")
        lines.append("")
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if not div.empty:
        lines.append(f"Diverged models: {div[['run_id', 'member']].drop_duplicates().shape[0]}.")
    return "\n".join(lines)


def _frac(w: float) -> str:
    if w >= 1:
        return f"{w:g}"
    inv = 1 / w
    return f"1/{inv:.0f}" if abs(inv - round(inv)) < 1e-9 else f"{w:g}"
