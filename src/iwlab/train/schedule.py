"""Log-spaced evaluation epochs: the importance-weighting effect lives on a log-time axis."""

from __future__ import annotations

from iwlab.functional.checks import check_int


def log_epochs(max_epoch: int, per_decade: tuple[int, ...] = (1, 2, 3, 5)) -> list[int]:
    """Epochs 1, 2, 3, 5, 10, 20, 30, 50, 100, ... up to ``max_epoch``, which is always included.

    Raises:
        TypeError, ValueError: ``max_epoch`` is not an integer >= 1.

    Example:
        >>> log_epochs(60)
        [1, 2, 3, 5, 10, 20, 30, 50, 60]
    """
    max_epoch = check_int(max_epoch, "max_epoch", minimum=1)
    out, scale = set(), 1
    while scale <= max_epoch:
        out.update(m * scale for m in per_decade if m * scale <= max_epoch)
        scale *= 10
    out.add(max_epoch)
    return sorted(out)
