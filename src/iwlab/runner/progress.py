"""Progress of a run: the cells bar, its ETA, and the epoch reports workers send the driver.

Example:
    >>> eta_text(10.0, 0.5, 1.0), eta_text(0.0, 0.0, 3.0)
    ('ETA 0:20', 'ETA ...')
"""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm


def eta_text(elapsed: float, progressed: float, remaining: float) -> str:
    """``"ETA 2:05"`` from the progress made in ``elapsed`` seconds; ``"ETA ..."`` until it is measurable.

    Args:
        elapsed: seconds since progress was first measured.
        progressed: cells (fractions count) finished in that time.
        remaining: cells (fractions count) left.

    Example:
        >>> eta_text(3600.0, 1.0, 2.0)
        'ETA 2:00:00'
    """
    if progressed <= 0 or elapsed < 1.0:
        return "ETA ..."
    secs = int(round(remaining * elapsed / progressed))
    h, rest = divmod(secs, 3600)
    return f"ETA {h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"ETA {rest // 60}:{rest % 60:02d}"


def cells_bar(name: str, total: int, enabled: bool) -> Any:
    """The driver's bar over the cells to run (fractions of running cells count, see :func:`follow_progress`)."""
    return tqdm(
        total=total,
        desc=f"{name} cells",
        disable=not enabled,
        leave=True,
        unit="cell",
        # our own ETA (see follow_progress): tqdm's would count worker start-up as progress time
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.4g}/{total_fmt} cells [{elapsed}{postfix}]",
    )


class EpochReporter:
    """Callable handed to ``fit(progress=...)`` in workers: sends (cell, epoch, total), at most 4 a second.

    Example:
        >>> import queue
        >>> q = queue.Queue(); report = EpochReporter(q, "mlp")
        >>> report(3, 3); q.get()
        ('mlp', 3, 3)
    """

    def __init__(self, queue: Any, cell_id: str) -> None:
        self.queue, self.cell_id, self.last = queue, cell_id, 0.0

    def __call__(self, epoch: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last > 0.25 or epoch == total:
            self.last = now
            self.queue.put((self.cell_id, epoch, total))


def follow_progress(queue: Any, bar: Any, done: dict[str, float]) -> None:
    """Driver thread: the bar shows finished cells plus the finished fraction of running ones; ``None`` stops it.

    The ETA is measured from the first epoch report on, not from the start: worker start-up (process
    spawn, imports, data loading) would otherwise count as training time and open the bar with an
    ETA many times too long.
    """
    first: tuple[float, float] | None = None  # (time, cells done) at the first report
    while True:
        item = queue.get()
        if item is None:
            return
        cid, epoch, total = item
        done[cid] = max(done.get(cid, 0.0), epoch / max(total, 1))
        n = sum(done.values())
        now = time.monotonic()
        if first is None:
            first = (now, n)
        bar.n = round(n, 2)
        bar.set_postfix_str(eta_text(now - first[0], n - first[1], bar.total - n), refresh=False)
        bar.refresh()
