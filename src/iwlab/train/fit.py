"""The one training loop: epochs, resume, RNG state, evaluation schedule, checkpoints, divergence,
progress and honest clocks, around any :class:`Job`.

A job pairs a batch source with a step and holds the training state:

* :class:`~iwlab.train.ensemble.EnsembleTrainer`: per-member shuffled epochs (the per-member random
  protocol) into the vectorized M-model step (stacked or ``torch.func`` backend);
* :func:`~iwlab.train.sampled.train_sampled`: minibatches drawn by an importance sampler from the
  model's own losses, into a single-module step;
* the MRPC experiment: length-grouped text batches into a single-module step on a Hugging Face model.

:func:`fit` runs epochs ``start + 1 .. epochs``. After each epoch it checks which members stopped being
finite (the job decides what that means) and applies the divergence policy; at the evaluation epochs it
records the job's metrics in long form ``(epoch, member, name, value)``; at the checkpoint epochs it
writes one checkpoint (:func:`checkpoint_dict`, the only format) atomically. A rerun with the same
settings resumes from the last checkpoint and ends bitwise equal on the CPU; a checkpoint made with
other settings is refused with one line naming the field.

Time is split into the phases the job charges with :class:`Clock` (e.g. ``scoring`` and ``training``);
evaluation and checkpoints are never charged. On CUDA the clock synchronizes the device before reading
the time, so asynchronous kernels count in the phase that launched them.

Example:
    >>> import torch
    >>> class Count:  # the smallest job: one number that grows by one per epoch
    ...     M, uses_global_rng = 1, False
    ...     def __init__(self): self.value = torch.zeros(1)
    ...     def spec(self): return {"kind": "count"}
    ...     def training_state(self): return {"value": self.value.clone()}
    ...     def load_training_state(self, state): self.value = state["value"]
    ...     def train_epoch(self, epoch, clock): self.value += 1
    ...     def finite(self): return torch.isfinite(self.value)
    ...     def freeze(self, members): pass
    ...     def evaluate(self, epoch): return {"value": self.value}
    >>> run = fit(Count(), epochs=3, eval_epochs=[1, 3])
    >>> run.rows
    [(1, 0, 'value', 1.0), (3, 0, 'value', 3.0)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from iwlab.files import atomic_save, check_record, load_checkpoint
from iwlab.functional.checks import check_choice, check_int, check_real

FORMAT = "iwlab.fit/1"
DIVERGENCE_POLICIES = ("freeze", "continue", "stop", "raise")
CHECKPOINT_EPOCHS = ("eval", "every")
Row = tuple[int, int, str, float]
Progress = bool | Callable[[int, int], None]


class Clock:
    """Seconds per phase, accumulated; synchronizes CUDA so asynchronous kernels count where launched.

    Example:
        >>> c = Clock(torch.device("cpu"))
        >>> c.start()
        >>> c.stop("training") >= 0, sorted(c.totals)
        (True, ['training'])
    """

    def __init__(self, device: torch.device | str = "cpu", totals: Mapping[str, float] | None = None) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.totals: dict[str, float] = dict(totals or {})
        self._t = 0.0

    def start(self) -> None:
        """Start timing a phase (after the device finished what was launched before)."""
        if self.cuda:
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def stop(self, phase: str) -> float:
        """Charge the time since :meth:`start` to ``phase``; returns those seconds."""
        if self.cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - self._t
        self.totals[phase] = self.totals.get(phase, 0.0) + dt
        return dt


class Job(Protocol):
    """What :func:`fit` trains: a batch source feeding a step, and the state both keep.

    Attributes:
        M: number of models trained together (1 for a single module).
        uses_global_rng: the job draws from torch's global RNG (dropout in a plain module, a sampler
            using ``torch.rand``), so :func:`fit` saves and restores it with the checkpoint.
    """

    M: int
    uses_global_rng: bool

    def spec(self) -> dict[str, Any]:
        """The settings a checkpoint records and a resumed run must match (plain values)."""

    def training_state(self) -> dict[str, Any]:
        """Everything needed to continue the job bit for bit (parameters, optimizer, generators)."""

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` output."""

    def train_epoch(self, epoch: int, clock: Clock) -> Mapping[str, Any] | None:
        """Run one epoch of steps; returns per-epoch training statistics to record (or None)."""

    def finite(self) -> Tensor:
        """``(M,)`` bool: which members are still finite after the epoch."""

    def freeze(self, members: Tensor) -> None:
        """Stop stepping the members of the ``(M,)`` bool mask (policy ``"freeze"``)."""

    def evaluate(self, epoch: int) -> Mapping[str, Any]:
        """Metrics at an evaluation epoch: ``{name: (M,) tensor or float}``; NaN = not defined."""


@dataclass
class FitState:
    """What the loop carries from epoch to epoch (saved in every checkpoint).

    Attributes:
        epoch: the last finished epoch (0 before training).
        rows: recorded metrics ``(epoch, member, name, value)``.
        diverged_at: per member, the epoch its values stopped being finite; -1: never.
        clock: seconds per phase, cumulative over resumed runs.
        on_diverged: the divergence policy the run was made with (None: not trained by :func:`fit` yet);
            a resumed run must use the same one (a stopped run must not go on training from NaNs).
    """

    epoch: int = 0
    rows: list[Row] = field(default_factory=list)
    diverged_at: list[int] = field(default_factory=list)
    clock: dict[str, float] = field(default_factory=dict)
    on_diverged: str | None = None

    def check(self, M: int, where: str = "the loop state") -> None:
        """Raise unless the fields are consistent with a job of ``M`` members.

        Raises:
            TypeError: a field of the wrong type (``epoch=True``, ``rows="abc"``).
            ValueError: ``epoch < 0``, ``diverged_at`` without one entry per member, an entry < -1 or
                past ``epoch``, a negative clock.
        """
        check_int(self.epoch, f"{where}: epoch", minimum=0)
        if not isinstance(self.rows, list) or not all(isinstance(r, tuple | list) and len(r) == 4 for r in self.rows):
            raise TypeError(f"{where}: rows must be a list of (epoch, member, name, value) rows")
        if not isinstance(self.diverged_at, list) or len(self.diverged_at) != M:
            n = len(self.diverged_at) if isinstance(self.diverged_at, list) else type(self.diverged_at).__name__
            raise ValueError(f"{where}: diverged_at must hold one epoch per member ({M}); got {n}")
        for i, e in enumerate(self.diverged_at):
            if not -1 <= check_int(e, f"{where}: diverged_at[{i}]") <= self.epoch:
                raise ValueError(f"{where}: diverged_at[{i}]={e} lies outside [-1, epoch={self.epoch}]")
        if not isinstance(self.clock, dict):
            raise TypeError(f"{where}: clock must be a dict of seconds per phase, got {type(self.clock).__name__}")
        for k, v in self.clock.items():
            if check_real(v, f"{where}: clock[{k!r}]") < 0:
                raise ValueError(f"{where}: clock[{k!r}]={v} is negative")
        if self.on_diverged is not None:
            check_choice(self.on_diverged, f"{where}: on_diverged", DIVERGENCE_POLICIES)


def global_rng_state(device: torch.device | None) -> dict[str, Tensor]:
    """torch's global RNG state: ``{"cpu": ...}``, plus ``"cuda"`` for a CUDA ``device``."""
    state = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state: Mapping[str, Tensor], device: torch.device | None) -> None:
    """Restore :func:`global_rng_state` output (the CUDA part only on a CUDA ``device``)."""
    torch.set_rng_state(state["cpu"])
    if device is not None and device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint_dict(job: Job, run: FitState, device: torch.device | None = None) -> dict[str, Any]:
    """The one checkpoint format: the loop's state, the job's settings record and its state.

    Keys: ``"format"`` (``"iwlab.fit/1"``), ``"kind"`` (the job's class), ``"epoch"``, ``"spec"``
    (:meth:`Job.spec`), ``"rows"``, ``"diverged_at"``, ``"clock"``, ``"on_diverged"``, ``"job"``
    (:meth:`Job.training_state`) and ``"rng"`` (torch's global CPU RNG state, plus the CUDA one on a GPU,
    when the job draws from it; else None).

    Example::

        atomic_save(checkpoint_dict(job, run), "cell.pt")  # what fit() writes at its checkpoint epochs
    """
    return {
        "format": FORMAT,
        "kind": type(job).__name__,
        "epoch": run.epoch,
        "spec": job.spec(),
        "rows": list(run.rows),
        "diverged_at": list(run.diverged_at),
        "clock": dict(run.clock),
        "on_diverged": run.on_diverged,
        "job": job.training_state(),
        "rng": global_rng_state(device) if job.uses_global_rng else None,
    }


def restore(job: Job, state: Any, *, epochs: int | None, source: str | Path | None, check: bool = True) -> FitState:
    """Check a :func:`checkpoint_dict` against ``job`` (unless ``check=False``) and load it; returns the loop's state.

    A job may define ``check_training_state(state)``, called with the saved job state before the epoch
    check, to refuse a checkpoint in its own terms (e.g. iterations rather than epochs).

    Raises:
        ValueError: not an iwlab checkpoint of this format, one of another kind of job, made with other
            settings (one line naming the first differing field), a missing or invalid loop field, or
            past ``epochs``.
        TypeError: a loop field of the wrong type.
    """
    where = f"checkpoint {source}" if source is not None else "the state"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{where} is not an iwlab training checkpoint of format {FORMAT} (got {got!r}); it was made by "
            "another program or an older iwlab: delete it to start afresh"
        )
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}: it is damaged; delete it to start afresh")
    if state["kind"] != type(job).__name__:
        raise ValueError(
            f"{where} was made by a {state['kind']} job; this run is a {type(job).__name__}: use another --out, "
            "or delete the checkpoint to start afresh"
        )
    if check:
        check_record(state.get("spec"), job.spec(), source)
    run = FitState(state["epoch"], state["rows"], state["diverged_at"], state["clock"], state["on_diverged"])
    run.check(job.M, where)
    run.rows = [tuple(r) for r in run.rows]
    own_check = getattr(job, "check_training_state", None)
    if own_check is not None:  # a job whose own units say more (iterations) checks before the epochs
        own_check(state["job"])
    if epochs is not None and run.epoch > epochs:
        raise ValueError(
            f"{where} is at epoch {run.epoch} but epochs={epochs} was asked for; ask for at least that many, "
            "or delete the checkpoint to start afresh"
        )
    job.load_training_state(state["job"])
    return run


# "spec" is left to check_record, whose message says what a checkpoint without one is
_KEYS = ("kind", "epoch", "rows", "diverged_at", "clock", "on_diverged", "job")


def _values(v: Any, members: int, name: str) -> list[float]:
    """A metric's ``(M,)`` values as Python floats: a real tensor of M values, or one real number when M = 1."""
    if isinstance(v, Tensor):
        if v.is_complex() or v.dtype == torch.bool:
            raise TypeError(f"metric '{name}' must be real numbers, got a {v.dtype} tensor")
        vals = v.detach().double().cpu().reshape(-1).tolist()
    elif members == 1:
        vals = [check_real(v, f"metric '{name}'")]
    else:
        raise TypeError(
            f"metric '{name}' must be a tensor of {members} values (one per member), got {type(v).__name__}"
        )
    if len(vals) != members:
        raise ValueError(f"metric '{name}' returned {len(vals)} values for {members} members")
    return vals


def record(
    run: FitState, epoch: int, metrics: Mapping[str, Any] | None, members: int, *, keep_nan: bool = False
) -> None:
    """Append ``metrics`` (``{name: (M,) tensor, or a number when M = 1}``) as rows.

    NaN means "not defined for this member" (e.g. an angle on non-separable data) and is not recorded,
    unless ``keep_nan``.

    Raises:
        TypeError: a value that is not a real number (a string, a list, a complex tensor).
        ValueError: a metric without one value per member.
    """
    for name, v in (metrics or {}).items():
        vals = _values(v, members, name)
        run.rows.extend((epoch, i, name, x) for i, x in enumerate(vals) if keep_nan or x == x)


def fit(
    job: Job,
    *,
    epochs: int,
    eval_epochs: Iterable[int],
    checkpoint_path: str | Path | None = None,
    checkpoint_epochs: Literal["eval", "every"] = "eval",
    on_diverged: Literal["freeze", "continue", "stop", "raise"] = "freeze",
    record_training: bool = False,
    keep_nan: bool = False,
    progress: Progress = False,
    desc: str = "epochs",
    device: torch.device | str | None = None,
    run: FitState | None = None,
) -> FitState:
    """Train ``job`` to ``epochs`` total epochs, resuming from ``checkpoint_path`` when it exists.

    Args:
        job: a :class:`Job`.
        epochs: total epochs (>= 1) the job ends at, counting those of a resumed checkpoint.
        eval_epochs: epochs in ``[1, epochs]`` at which :meth:`Job.evaluate` runs and is recorded.
        checkpoint_path: resume from / save to this file, or None.
        checkpoint_epochs: save after evaluation epochs only (``"eval"``) or after every epoch.
        on_diverged: when members stop being finite (:meth:`Job.finite`): ``"freeze"`` them and go on,
            ``"continue"`` (only record the epoch), ``"stop"`` the run (nothing recorded from that
            epoch on), or ``"raise"``.
        record_training: also record what :meth:`Job.train_epoch` returns, every epoch.
        keep_nan: record NaN metric values too (default: NaN means "not defined" and is left out).
        progress: a tqdm bar (True), nothing (False), or ``fn(epoch, epochs)`` after each epoch.
        desc: the bar's label.
        device: where the job computes (its CUDA RNG and clock synchronization).
        run: a loop state to continue from (e.g. loaded by hand); None: a fresh one or the checkpoint's.

    Returns:
        The :class:`FitState`: last epoch, recorded rows, divergence epochs and clock totals.

    Raises:
        TypeError: ``epochs`` or an ``eval_epochs`` entry is not an integer; ``progress`` is neither a
            bool nor a callable.
        ValueError: ``epochs < 1``, an evaluation epoch outside ``[1, epochs]``, an unknown
            ``checkpoint_epochs`` or ``on_diverged``, a checkpoint that does not belong to this job (or
            was made with another ``on_diverged``), an inconsistent ``run``, or a job at an epoch past
            ``epochs``.
        FloatingPointError: a member stopped being finite under ``on_diverged="raise"``.
    """
    epochs = check_int(epochs, "epochs", minimum=1)
    check_choice(checkpoint_epochs, "checkpoint_epochs", CHECKPOINT_EPOCHS)
    check_choice(on_diverged, "on_diverged", DIVERGENCE_POLICIES)
    if not (isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable fn(epoch, epochs); got {progress!r}")
    evals = {check_int(e, "every eval_epochs entry", minimum=1) for e in eval_epochs}
    if max(evals, default=1) > epochs:
        raise ValueError(f"eval_epochs entry {max(evals)} lies past epochs={epochs}: it would never run")
    dev = torch.device(device) if device is not None else None
    state = None if checkpoint_path is None else load_checkpoint(checkpoint_path, map_location="cpu")
    if state is not None:
        run = restore(job, state, epochs=epochs, source=checkpoint_path)
        if job.uses_global_rng and state.get("rng") is not None:
            set_global_rng_state(state["rng"], dev)
    run = run if run is not None else FitState()
    if not run.diverged_at:
        run.diverged_at = [-1] * job.M
    run.check(job.M)
    if run.on_diverged not in (None, on_diverged):
        where = f"checkpoint {checkpoint_path} was" if state is not None else "this job was"
        raise ValueError(
            f"{where} trained with on_diverged={run.on_diverged}; this run has on_diverged={on_diverged} "
            "(a stopped run must not train on from its NaNs): use the same policy, or start afresh"
        )
    run.on_diverged = on_diverged
    if run.epoch > epochs:
        raise ValueError(f"the job is at epoch {run.epoch} but epochs={epochs} was asked for")
    clock = Clock(dev or "cpu", run.clock)
    bar = tqdm(total=epochs, initial=run.epoch, desc=desc, leave=False, mininterval=0.5) if progress is True else None
    stopped = on_diverged == "stop" and max(run.diverged_at) >= 0
    for epoch in range(run.epoch + 1, epochs + 1) if not stopped else ():
        stats = job.train_epoch(epoch, clock)
        run.epoch = epoch
        run.clock = dict(clock.totals)
        finite = job.finite().cpu()
        new = [i for i, ok in enumerate(finite.tolist()) if not ok and run.diverged_at[i] < 0]
        for i in new:
            run.diverged_at[i] = epoch
        if new and on_diverged == "raise":
            raise FloatingPointError(f"members {new} stopped being finite in epoch {epoch}")
        if new and on_diverged == "freeze":
            job.freeze(~finite)
        stopped = on_diverged == "stop" and bool(new)
        if not stopped:
            if record_training:
                record(run, epoch, stats, job.M, keep_nan=keep_nan)
            if epoch in evals:
                record(run, epoch, job.evaluate(epoch), job.M, keep_nan=keep_nan)
        if checkpoint_path is not None and (checkpoint_epochs == "every" or epoch in evals or stopped):
            atomic_save(checkpoint_dict(job, run, dev), checkpoint_path)
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(epoch, epochs)
        if stopped:
            break
    if bar is not None:
        bar.close()
    return run
