"""``iwlab.results.load(path)``: a run directory's metrics as a DataFrame (see :mod:`iwlab.store`).

Example::

    import iwlab.results
    df = iwlab.results.load("runs/synthetic-quick")   # one row per cell, member, epoch and metric
"""

from iwlab.store.frames import export, load

__all__ = ["export", "load"]
