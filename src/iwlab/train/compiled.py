"""``torch.compile`` for the trainer's steps: a private code object per trainer, and compile errors in one line.

Dynamo keeps its compiled variants per *code object* and gives up compiling a code object after
``torch._dynamo.config.recompile_limit`` (8) variants: every trainer of a sweep over widths, batch sizes or data
sizes adds one, so from the ninth on ``compile=True`` would silently run the uncompiled step (slower than
``compile=False``). :func:`compile_step` compiles a copy of the function with its own code object, so each
trainer has its own budget. A repeat compile of the same graph is cheap: inductor's on-disk graph cache serves
it (~0.2 s against ~7 s for the first, measured on the dev CPU).

Example:
    >>> def f(x):
    ...     return x + 1
    >>> g = own_code(f)
    >>> g(1), g.__code__ is f.__code__
    (2, False)
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch._dynamo.exc import BackendCompilerFailed


def own_code(fn: Callable) -> Callable:
    """A copy of the Python function ``fn`` with its own code object (same globals, defaults and closure)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def compile_step(fn: Callable, what: str) -> Callable:
    """``torch.compile(fn, dynamic=False)`` on a private copy of ``fn``; a compile failure is one ``RuntimeError``.

    Args:
        fn: a plain Python function (not a bound method).
        what: names the step in the error message.

    Returns:
        A callable with ``fn``'s arguments; it compiles on its first call (and for each new shape).

    Raises:
        RuntimeError: (from the call) torch.compile failed, e.g. no C++ compiler for inductor; the message says
            what failed in one line and to run with ``compile=False``.
    """
    compiled = torch.compile(own_code(fn), dynamic=False)

    def call(*args: Any) -> Any:
        try:
            return compiled(*args)
        # the backend (inductor) failed to compile; errors of the step itself (dynamo's TorchRuntimeError from
        # tracing a bad shape, a hook's ValueError, ...) pass through as they are
        except BackendCompilerFailed as err:
            text = str(err).strip()
            first = text.splitlines()[0][:200] if text else ""
            raise RuntimeError(
                f"compile=True: torch.compile of {what} failed ({type(err).__name__}: {first}); run with compile=False"
            ) from err

    return call
