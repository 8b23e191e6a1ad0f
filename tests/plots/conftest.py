"""Fixtures shared by the figure tests."""

import pytest
from matplotlib.figure import Figure


@pytest.fixture
def drawn(monkeypatch):
    """Every Figure saved while the test runs, as (figure, path)."""
    figs = []
    real = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        figs.append((self, fname))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figs
