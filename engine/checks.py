"""Argument checks shared by the public API: each raises before any work is done, naming the
argument and what was expected."""
import math
import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


# Caps on layer sizes, far above any model these kernels run well, so that a typo or a
# crafted checkpoint fails at once instead of allocating for minutes (10**7 layers took a
# minute and 5.7 GB before a MemoryError).
MAX_SIZE = 1 << 24
MAX_LAYERS = 1024


def check_int(name, value, minimum, maximum=None):
    """``value`` as an int in [minimum, maximum]; TypeError for a non-int (bool included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_probability(name, value):
    """A float in [0, 1), e.g. a dropout rate."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_choice(name, value, choices):
    try:
        known = value in choices
    except TypeError:  # unhashable (a list) where choices is a dict
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_real(name, value):
    """A finite real number as a float; bools, strings and complex numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_dtype(dtype):
    """Normalise a dtype argument (string or NumPy dtype) to np.float32 or np.float64."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(DTYPES[name])


def check_array(name, a, dtype, shape, shape_text, backend):
    """Check an array's dtype, shape and finiteness; returns it as an ``xp`` array.

    shape: tuple of expected sizes (None matches any size); shape_text names the dims for the
    error message, e.g. "(T, B, input_size=8)".  backend: the ``Backend`` whose
    ``all_finite`` checks the values.
    """
    a = as_array(name, a, dtype)
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name} (the module's dtype), "
                        f"got {a.dtype}; convert it with .astype('{np.dtype(dtype).name}')")
    if len(a.shape) != len(shape) or any(e is not None and e != s for e, s in zip(shape, a.shape)):
        raise ValueError(f"{name} must have shape {shape_text}, got {tuple(a.shape)}")
    if any(s == 0 for s in a.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(a.shape)}")
    if not backend.all_finite(a):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def as_array(name, a, dtype=None):
    """``a`` as a NumPy or CuPy array, without copying an array that already is one.

    Lists and tuples take ``dtype``, having none of their own.  Other array-likes (a CPU torch
    tensor, a pandas frame) go through ``np.asarray`` and keep their dtype, for the caller to
    check: a float64 tensor is refused like a float64 array, not silently cast.
    """
    if isinstance(a, np.ndarray) or array_module(a) is not np:
        return a
    if not isinstance(a, (list, tuple)) and not hasattr(a, "__array__"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    try:
        return np.asarray(a, dtype=dtype if isinstance(a, (list, tuple)) else None)
    except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, tensors needing grad
        raise TypeError(f"{name} must be a NumPy array or convertible to one, got "
                        f"{type(a).__name__}: {e}") from e


def check_ids(name, a, n, what):
    """Integer ids in [0, n) (``what``: "token ids", "class ids"); returns ``a`` as an array."""
    a = as_array(name, a)
    if not np.issubdtype(np.dtype(a.dtype), np.integer):
        raise TypeError(f"{name} must hold integer {what}, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(a.shape)}")
    xp = array_module(a)
    lo, hi = int(xp.min(a)), int(xp.max(a))
    if lo < 0 or hi >= n:
        raise ValueError(f"{name} must hold {what} in [0, {n}), got values in [{lo}, {hi}]")
    return a


def array_module(a):
    """NumPy, or CuPy for a CuPy array (checked without importing CuPy when it is not in use)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def check_state_dict(owner, state_dict, shapes, dtype):
    """Validate a state dict against {name: shape}; returns {name: NumPy array of dtype}.

    Missing, unexpected, non-numeric, misshapen and non-finite entries are all reported in one
    ValueError naming ``owner``, so a caller can load all or nothing.
    """
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    problems = [f"missing key {k!r}" for k in shapes if k not in state_dict]
    problems += [f"unexpected key {k!r}" for k in state_dict if k not in shapes]
    loaded = {}
    for name in shapes.keys() & state_dict.keys():
        try:
            a = np.asarray(state_dict[name])
        except (TypeError, ValueError, RuntimeError) as e:
            problems.append(f"{name!r} is not numeric ({e})")
            continue
        if a.dtype.kind not in "fiu":  # no strings to parse, no imaginary parts to drop
            problems.append(f"{name!r} must hold real numbers, got dtype {a.dtype}")
            continue
        a = a.astype(dtype, copy=False)
        if a.shape != tuple(shapes[name]):
            problems.append(f"{name!r} has shape {a.shape}, expected {tuple(shapes[name])}")
        elif not np.isfinite(a).all():
            problems.append(f"{name!r} contains NaN or Inf")
        loaded[name] = a
    if problems:
        raise ValueError(f"{owner}.load_state_dict: " + "; ".join(sorted(problems)))
    return loaded


def check_lengths(lengths, B, T):
    """(B,) int64 NumPy array of valid steps per sequence, each in 1..T."""
    a = np.asarray(lengths)
    if a.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"lengths must have shape (batch={B},), got {a.shape}")
    if a.min() < 1 or a.max() > T:
        raise ValueError(f"lengths must lie in 1..T={T}, got values from {a.min()} to "
                         f"{a.max()}")
    return a.astype(np.int64)
