"""Gradient mode: forward passes under ``engine.no_grad()`` keep nothing for a backward.

    with engine.no_grad():
        out, (h_n, c_n) = lstm(x)

As with ``torch.no_grad()``: inference then skips saving the gate activations of every step
(a quarter less memory traffic in the time loop, and (T, B, 4H) less memory), and a
``backward()`` after such a forward raises.  ``Sequential.predict`` and ``evaluate`` use it.

What a forward keeps for the backward cannot change behind it (PyTorch raises for an in-place
edit of a saved tensor): ``private`` copies a caller's writeable input before it is kept, and
``protect`` makes a kept array that the forward returns read-only (``seal``), so that editing
it in place raises instead of changing the gradients.  Arrays passed between layers are
sealed, so a model copies only what its caller hands it.  CuPy arrays have no read-only flag:
a caller's CuPy input is copied, and a kept CuPy output is returned as a copy.
"""
import contextlib
import threading

import numpy as np

_mode = threading.local()


def is_grad_enabled():
    """False inside ``no_grad()`` (per thread)."""
    return getattr(_mode, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Context manager: forward passes inside it save nothing for backward."""
    previous = is_grad_enabled()
    _mode.enabled = False
    try:
        yield
    finally:
        _mode.enabled = previous


def private(a, given):
    """``a`` (derived from the caller's ``given``) safe to keep for a backward: a copy when it
    may share memory with a writeable NumPy ``given``, or is the caller's CuPy array itself;
    else ``a``."""
    if isinstance(given, np.ndarray):
        if given.flags.writeable and isinstance(a, np.ndarray) and np.may_share_memory(a, given):
            return a.copy()
        return a
    return a.copy() if a is given and hasattr(a, "__cuda_array_interface__") else a


def protect(a):
    """A kept array as the forward returns it: NumPy sealed, CuPy copied."""
    return seal(a) if isinstance(a, np.ndarray) else a.copy()


def seal(a):
    """Make the NumPy array ``a`` read-only (the backward reads it) and return it."""
    if isinstance(a, np.ndarray):
        a.flags.writeable = False
    return a
