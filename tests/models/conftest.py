"""Shared fixtures of the model tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # with the 2 cores shared, 2 OpenMP threads can run 10-40x slower than 1 (spin-waiting); keep tests steady
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
