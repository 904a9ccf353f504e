"""Opt-in debug checks: catch NaN / inf node features at the layer boundary.

Off by default (the check synchronises with the device and costs a pass over ``x``). Turn it on globally
with ``graphformer.debug.set_debug(check_finite=True)`` or for a block with ``with graphformer.debug.debug():``.
Every layer then raises a ``ValueError`` naming the argument (``x`` or ``edge_attr``) when it holds a NaN or
an infinity. Skipped while ``torch.compile`` / ``torch.export`` trace (the check is data-dependent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_CHECK_FINITE = False


def set_debug(check_finite: bool) -> bool:
    """Turn the finite-value check of layer inputs on or off; returns the previous setting."""
    global _CHECK_FINITE
    if not isinstance(check_finite, bool):
        raise TypeError(f"`check_finite` must be a bool, got {type(check_finite).__name__}")
    previous, _CHECK_FINITE = _CHECK_FINITE, check_finite
    return previous


def is_checking_finite() -> bool:
    """Whether layers currently check their inputs for NaN / inf."""
    return _CHECK_FINITE


@contextmanager
def debug(check_finite: bool = True) -> Iterator[None]:
    """Context manager form of :func:`set_debug`; restores the previous setting on exit."""
    previous = set_debug(check_finite)
    try:
        yield
    finally:
        set_debug(previous)


def check_finite(tensor: Tensor | None, name: str) -> None:
    """Raise ``ValueError`` if checks are on and ``tensor`` holds a NaN or an infinity."""
    if not _CHECK_FINITE or tensor is None or torch.compiler.is_compiling():
        return
    if not tensor.is_floating_point():
        return
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        count = int(bad.sum())
        nan = int(torch.isnan(tensor).sum())
        raise ValueError(
            f"`{name}` contains {count} non-finite value(s) ({nan} NaN, {count - nan} inf) in a tensor of shape "
            f"{tuple(tensor.shape)}; check the data or the previous layer (graphformer.debug check_finite is on)"
        )
