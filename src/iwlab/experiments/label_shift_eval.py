"""What the ``label_shift`` experiment computes at an evaluation epoch: posteriors, weight estimates, corrections.

Estimators (names of ``Config.estimators``), each from the held-out source logits and labels and the
unlabeled target logits (:mod:`iwlab.functional.label_shift`):

* ``bbse_hard``, ``bbse_soft``: black-box shift estimation (Lipton et al., ICML 2018), w = clip(C^-1 mu, 0)
  with C the confusion matrix of argmax predictions (hard) or of the posteriors (soft).
* ``rlls``: regularized learning under label shift (Azizzadenesheli et al., ICLR 2019), hard predictions,
  the default ``alpha = 0.01``, ``delta = 0.05``.
* ``mlls``: EM prior adaptation (Saerens et al. 2002) on the model's own softmax; ``mlls_ts``, ``mlls_vs``,
  ``mlls_bcts``: the same after temperature, vector or bias-corrected temperature scaling fitted on the
  held-out source logits (Alexandari et al., ICML 2020). Source priors: the mean held-out posterior (the
  default of :func:`~iwlab.functional.label_shift.mlls`); at most ``Config.em_max_iter`` EM steps to tol 1e-6.

The post-hoc corrections adjust the ``correction`` estimator's posteriors (calibrated for ``mlls_*``, the
softmax otherwise) with its estimated w and with the true w (:func:`~iwlab.functional.label_shift.adjust_priors`);
``none`` is the model's own argmax.

Example:
    >>> trainable_weights(torch.tensor([2.0, 1e-40, 0.5]))
    (2.0, 0.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from iwlab.data.label_shift import empirical_weights
from iwlab.functional.label_shift import (
    adjust_priors,
    bbse,
    calibrated_probs,
    condition_number,
    confusion_matrix,
    fit_bcts,
    fit_temperature,
    fit_vector_scaling,
    mlls,
    rlls,
)
from iwlab.functional.metrics import weighted_accuracy
from iwlab.train.evaluators import mask_diverged, member_class_weights

Estimator = Literal["bbse_hard", "bbse_soft", "rlls", "mlls", "mlls_ts", "mlls_vs", "mlls_bcts"]
ESTIMATORS: tuple[str, ...] = ("bbse_hard", "bbse_soft", "rlls", "mlls", "mlls_ts", "mlls_vs", "mlls_bcts")
CORRECTIONS = ("none", "posthoc_est", "posthoc_true", "iw_est", "iw_true")
_CALIBRATION = {"mlls_ts": "ts", "mlls_vs": "vs", "mlls_bcts": "bcts"}


@dataclass(frozen=True)
class Shift:
    """One target shift: ``name`` (store label), ``family`` (summary row), ``kind`` and its alpha or rho."""

    name: str
    family: str
    kind: Literal["dirichlet", "tweak_one"]
    value: float


@dataclass
class LSData:
    """A cell's data: source training ``(N, ...)``/``(N,)``, held-out ``(Nh, ...)``/``(Nh,)``, the target pool,
    per shift the target indices into the pool ``(n_max,)`` (any prefix a random subset), the target priors
    ``(S, K)`` float64, true weights ``(S, K)`` float64 and the source priors ``(K,)`` float64."""

    x_train: Tensor
    y_train: Tensor
    x_hold: Tensor
    y_hold: Tensor
    x_pool: Tensor
    y_pool: Tensor
    targets: list[Tensor]
    priors: Tensor
    w_true: Tensor
    p_source: Tensor


def trainable_weights(w: Tensor) -> tuple[float, ...]:
    """Class weights for the trainer (float32): entries in (0, 1.2e-38), below float32's smallest normal
    number, become 0 here, explicitly (the trainer refuses them; next to weights of order 1 they change no
    float32 loss). EM can drive a class's prior that low when the target holds none of it.

    Raises:
        ValueError: a weight that is negative or not finite.
    """
    w = w.double()
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"class weights must be finite and >= 0, got {w.tolist()}")
    tiny = torch.finfo(torch.float32).tiny
    return tuple(0.0 if v < tiny else float(v) for v in w.tolist())


def calibration(kind: str, z_hold: Tensor, y_hold: Tensor) -> Callable[[Tensor], Tensor]:
    """``probs(logits)``, logits ``(N, K)`` -> posteriors ``(N, K)`` float64: the softmax (``raw``) or calibrated on
    the held-out logits ``z_hold`` ``(Nh, K)`` and labels ``y_hold`` ``(Nh,)`` by temperature (``ts``), vector
    (``vs``) or bias-corrected temperature scaling (``bcts``; Alexandari et al., ICML 2020).

    Raises:
        ValueError: an unknown ``kind``, or what the calibration fit raises.

    Example:
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
        >>> calibration("raw", z, torch.tensor([0, 1, 1]))(z[:1])
        tensor([[0.8808, 0.1192]], dtype=torch.float64)
    """
    z_hold = z_hold.double()
    if kind == "raw":
        return lambda z: torch.softmax(z.double(), 1)
    with torch.enable_grad():  # the fits differentiate the NLL; the trainer calls evaluators under no_grad
        if kind == "ts":
            kw: dict[str, Any] = {"temperature": fit_temperature(z_hold, y_hold)}
        elif kind == "vs":
            scale, bias = fit_vector_scaling(z_hold, y_hold)
            kw = {"scale": scale, "bias": bias}
        elif kind == "bcts":
            t, bias = fit_bcts(z_hold, y_hold)
            kw = {"temperature": t, "bias": bias}
        else:
            raise ValueError(f"kind must be raw, ts, vs or bcts, got {kind!r}")
    return lambda z: calibrated_probs(z.double(), **kw)


def estimate(name: str, p_hold: Tensor, y_hold: Tensor, p_tgt: Tensor, em_max_iter: int = 1000) -> Tensor:
    """Estimator ``name``'s weights ``(K,)`` float64 from held-out posteriors and labels and target posteriors.

    Raises:
        ValueError: an unknown name, or what the estimator raises (e.g. a singular confusion matrix).
        RuntimeError: EM did not converge in ``em_max_iter`` steps.
    """
    if name in ("bbse_hard", "bbse_soft"):
        return bbse(p_hold, y_hold, p_tgt, soft=name == "bbse_soft")
    if name == "rlls":
        return rlls(p_hold, y_hold, p_tgt)
    if name.startswith("mlls"):
        return mlls(p_hold, p_tgt, max_iter=em_max_iter)
    raise ValueError(f"unknown estimator {name!r}; use one of {', '.join(ESTIMATORS)}")


def _try(name: str, p_hold: Tensor, y_hold: Tensor, p_tgt: Tensor, em_max_iter: int) -> Tensor | str:
    """The estimate, or the one-line reason where the estimator refuses the model's outputs (a singular confusion
    matrix early in training, EM not converged): the value is then left unrecorded, never replaced."""
    try:
        return estimate(name, p_hold, y_hold, p_tgt, em_max_iter)
    except (ValueError, RuntimeError) as err:
        return f"{type(err).__name__}: {err}"


def _acc(probs: Tensor, y: Tensor) -> float:
    return float((probs.argmax(1) == y).double().mean())


def source_callback(cfg: Any, data: LSData, device: str, final: dict) -> Callable[[Any, int], dict[str, Tensor]]:
    """Evaluator of the source models: estimator errors per shift and target size, and the post-hoc corrections.

    Metric names carry the shift index after ``@`` (:func:`store_rows` maps them to store members). At
    ``cfg.epochs`` it fills ``final["w_corr"]`` ``(M, S, K)`` (the ``correction`` estimate, largest target set)
    and ``final["w_all"]`` ``{estimator: (M, S, K)}`` (NaN where an estimator refused).

    Raises:
        RuntimeError: the ``correction`` estimator refuses a finished model's outputs (IW-ERM needs its w).
    """
    n_max = max(cfg.n_targets)
    K = data.w_true.shape[1]
    S = len(data.targets)
    x_hold, y_hold = data.x_hold.to(device), data.y_hold
    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    x_tgt = torch.cat([data.x_pool[t] for t in data.targets]).to(device)  # (S * n_max, ...)
    y_tgt = [data.y_pool[t] for t in data.targets]
    mse_emp = {
        (k, n): float(((empirical_weights(data.y_train, y_tgt[k][:n], K) - data.w_true[k]) ** 2).mean())
        for k in range(S)
        for n in cfg.n_targets
    }
    kinds = {_CALIBRATION.get(e, "raw") for e in (*cfg.estimators, cfg.correction)}
    corr_kind = _CALIBRATION.get(cfg.correction, "raw")

    def evaluate(trainer: Any, epoch: int) -> dict[str, Tensor]:
        M = trainer.M
        out: dict[str, Tensor] = {}

        def put(name: str, i: int, v: float) -> None:
            out.setdefault(name, torch.full((M,), float("nan"), dtype=torch.float64))[i] = v

        out["train_acc_source"] = (trainer.predict(x_tr) == y_tr).double().mean(1).cpu()
        z_hold = trainer.logits(x_hold).cpu()  # (M, Nh, K)
        z_tgt = trainer.logits(x_tgt).cpu().reshape(M, S, n_max, K)
        last = epoch == cfg.epochs
        w_corr = torch.full((M, S, K), float("nan"), dtype=torch.float64)
        w_all = {e: torch.full((M, S, K), float("nan"), dtype=torch.float64) for e in cfg.estimators}
        for i in range(M):
            if not bool(torch.isfinite(z_hold[i]).all()):
                continue  # a diverged member: nothing to estimate from
            p_raw = torch.softmax(z_hold[i].double(), 1)
            try:
                put("cond_hard", i, condition_number(confusion_matrix(p_raw, y_hold)))
            except ValueError:
                pass  # cond of a matrix with a zero row is infinite: left unrecorded
            cal = {}  # fitted once per model and epoch; a refused fit (separated held-out logits) fails its users
            for c in kinds:
                try:
                    cal[c] = calibration(c, z_hold[i], y_hold)
                except (ValueError, RuntimeError) as err:
                    cal[c] = f"{type(err).__name__}: {err}"
            hold = {c: f(z_hold[i]) for c, f in cal.items() if not isinstance(f, str)}
            for k in range(S):
                post = {c: (hold[c], f(z_tgt[i, k])) for c, f in cal.items() if not isinstance(f, str)}
                for e in cfg.estimators:
                    if _CALIBRATION.get(e, "raw") not in post:
                        put(f"failed_{e}@{k}", i, len(cfg.n_targets))
                        continue
                    ph, pt = post[_CALIBRATION.get(e, "raw")]
                    failed = 0
                    for n in cfg.n_targets:
                        w = _try(e, ph, y_hold, pt[:n], cfg.em_max_iter)
                        if isinstance(w, str):
                            failed += 1
                            continue
                        put(f"mse_{e}_n{n}@{k}", i, float(((w - data.w_true[k]) ** 2).mean()))
                        if n == n_max:
                            w_all[e][i, k] = w
                    put(f"failed_{e}@{k}", i, failed)
                put(f"acc_none@{k}", i, _acc(z_tgt[i, k], y_tgt[k]))
                if corr_kind in post:
                    ph, pt = post[corr_kind]
                    put(f"acc_posthoc_true@{k}", i, _acc(adjust_priors(pt, data.w_true[k]), y_tgt[k]))
                    w = _try(cfg.correction, ph, y_hold, pt, cfg.em_max_iter)
                else:
                    w = f"calibration {corr_kind}: {cal[corr_kind]}"
                if not isinstance(w, str):
                    w_corr[i, k] = w
                    put(f"acc_posthoc_est@{k}", i, _acc(adjust_priors(pt, w), y_tgt[k]))
                elif last:
                    raise RuntimeError(
                        f"the correction estimator {cfg.correction} refused the finished source model's outputs "
                        f"(seed member {i}, shift {k}: {w}); IW-ERM needs its weights: train longer or choose "
                        "another correction"
                    )
            for n in cfg.n_targets:
                for k in range(S):
                    put(f"mse_empirical_n{n}@{k}", i, mse_emp[(k, n)])
        if last:
            final["w_corr"], final["w_all"] = w_corr, w_all
        return mask_diverged(out, trainer.diverged_at)

    return evaluate


def iw_callback(data: LSData, device: str) -> Callable[[Any, int], dict[str, Tensor]]:
    """Evaluator of IW-ERM models (each member's ``labels["k"]`` is its shift): ``train_acc_iw``,
    ``train_wacc_iw`` (training accuracy with each example weighted by its class weight: how much of what the
    model is weighted to fit it fits) and ``acc_iw``, the accuracy on its own shift's largest target set.

    Each shift's target set is scored once per call, by every member (cheap when a pack holds one shift).
    """
    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)

    def evaluate(trainer: Any, epoch: int) -> dict[str, Tensor]:
        ks = torch.tensor([m.labels["k"] for m in trainer.members])
        acc = torch.full((trainer.M,), float("nan"), dtype=torch.float64)
        for k in ks.unique().tolist():
            t = data.targets[k]
            pred = trainer.predict(data.x_pool[t].to(device)).cpu()  # (M, n_max)
            acc[ks == k] = (pred[ks == k] == data.y_pool[t]).double().mean(1)
        pred_tr = trainer.predict(x_tr)  # (M, N)
        cw = member_class_weights(trainer, pred_tr.device)  # (M, K)
        out = {
            "train_acc_iw": (pred_tr == y_tr).double().mean(1).cpu(),
            "train_wacc_iw": weighted_accuracy(pred_tr, y_tr, cw).double().cpu(),
            "acc_iw": acc,
        }
        return mask_diverged(out, trainer.diverged_at)

    return evaluate


def store_rows(
    src_rows: list[tuple[int, int, str, float]],
    src_diverged: Tensor,
    iw_rows: list[tuple[int, int, str, float]],
    iw_diverged: Tensor,
    n_shifts: int,
) -> tuple[list[tuple[int, int, str, float]], list[int]]:
    """The store's rows and diverged epochs, one store member per (seed i, shift k) = index ``i S + k``.

    Source model i's metrics named ``name@k`` go to member ``i S + k``, those without ``@`` to every shift of
    seed i. IW-ERM models are ordered shift-major, model ``j = 2 (k n_seeds + i) + e`` (e = 0: estimated w,
    1: true w); their metrics get the suffix ``_est`` or ``_true``. A store member diverged at the earliest
    epoch any of its three models did.

    Example:
        >>> src = [(1, 0, "acc_none@1", 0.5), (1, 0, "train_acc_source", 0.9)]
        >>> store_rows(src, torch.tensor([-1]), [(1, 3, "acc_iw", 0.7)], torch.tensor([-1, -1, -1, 2]), 2)
        ([(1, 1, 'acc_none', 0.5), (1, 0, 'train_acc_source', 0.9), (1, 1, 'train_acc_source', 0.9), \
(1, 1, 'acc_iw_true', 0.7)], [-1, 2])
    """
    S, n_seeds = n_shifts, len(src_diverged)

    def member(j: int) -> int:  # IW model j -> store member
        k, i = divmod(j // 2, n_seeds)
        return i * S + k

    rows: list[tuple[int, int, str, float]] = []
    for epoch, i, name, v in src_rows:
        if "@" in name:
            base, k = name.split("@")
            rows.append((epoch, i * S + int(k), base, v))
        else:
            rows.extend((epoch, i * S + k, name, v) for k in range(S))
    for epoch, j, name, v in iw_rows:
        rows.append((epoch, member(j), f"{name}_{'est' if j % 2 == 0 else 'true'}", v))
    diverged = [int(src_diverged[m // S]) for m in range(n_seeds * S)]
    for j, e in enumerate(iw_diverged.tolist()):
        m = member(j)
        if e >= 0 and (diverged[m] < 0 or e < diverged[m]):
            diverged[m] = e
    return rows, diverged
