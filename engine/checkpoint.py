"""Checkpoints: one ``.npz`` holding a ``Sequential`` model's weights, its optimizer state and
its configuration, written atomically and read without pickle.

Entries:
    __format__   str "lstm-engine-checkpoint"
    __version__  int FORMAT_VERSION
    __config__   str, JSON: layers (type + constructor arguments), output mode, forget_bias,
                 compile settings (loss, optimizer config, clip_norm), epochs completed, and
                 the model's ``metadata`` (what a user needs to feed it new data: a
                 vocabulary, a scaler's statistics)
    param/<i>.<name>        every parameter (``Sequential.state_dict`` keys)
    optim/<i>.<name>/<buf>  optimizer buffers (momentum, exp_avg, exp_avg_sq)

The optimizer's step count lives in the JSON.  A learning-rate schedule (a callable) is not
saved: set ``model.optimizer.schedule`` again after ``load``.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from engine.layers import Dense, Embedding
from engine.lstm import LSTM

FORMAT = "lstm-engine-checkpoint"
FORMAT_VERSION = 1
LAYER_TYPES = {"LSTM": LSTM, "Dense": Dense, "Embedding": Embedding}


def layer_config(layer):
    """{"type", "args"}: the layer's type and its ``get_config()``, which rebuild it."""
    kind = type(layer).__name__
    if kind not in LAYER_TYPES:
        raise TypeError(f"cannot save a layer of type {kind}")
    return {"type": kind, "args": layer.get_config()}


def save(model, path):
    """Write ``model`` (a ``Sequential``) to ``path`` atomically: a temporary file in the same
    directory is written, flushed to disk, then renamed over ``path``."""
    config = {
        "layers": [layer_config(layer) for layer in model.layers],
        "output": model.output, "forget_bias": model.forget_bias, "epoch": model.epoch,
        "compile": None, "metadata": _check_metadata(model.metadata),
    }
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    if model.loss is not None:
        opt = model.optimizer.state_dict()
        config["compile"] = {"loss": model.loss, "clip_norm": model.clip_norm,
                             "optimizer": opt["config"], "optimizer_steps": opt["steps"]}
        arrays.update({f"optim/{k}": v for k, v in opt["buffers"].items()})
    arrays["__format__"] = np.array(FORMAT)
    arrays["__version__"] = np.array(FORMAT_VERSION)
    arrays["__config__"] = np.array(json.dumps(config))
    _write_atomic(os.fspath(path), arrays)


def _check_metadata(metadata):
    """``metadata`` if JSON can hold it exactly (checked before any file is touched)."""
    if not isinstance(metadata, dict):
        raise TypeError(f"model.metadata must be a dict, got {type(metadata).__name__}")
    why = "tuples or non-str keys would come back changed"
    try:
        same = json.loads(json.dumps(metadata, allow_nan=False)) == metadata
    except (TypeError, ValueError) as e:
        same, why = False, str(e)
    if not same:
        raise TypeError(f"model.metadata must hold only JSON values (dict with str keys, list, "
                        f"str, finite float, int, bool, None): {why}")
    return metadata


def _write_atomic(path, arrays):
    """Write a temporary file beside ``path``, fsync it, rename it over ``path`` and fsync
    the directory, so ``path`` holds the old or the new checkpoint, never a part of one."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path}: no directory {directory}")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from other users
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def _umask():
    """The process's umask.  Read from /proc where Linux reports it: ``os.umask`` can only
    read it by setting it, and a file another thread creates meanwhile gets that mask."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # the most private mask for the moment it is set
    os.umask(mask)
    return mask


def load(path, backend=None):
    """Read a checkpoint written by ``model.save`` and return the ``Sequential`` model, compiled
    with its optimizer state when it was saved compiled.

    Raises ValueError naming the file for truncated, corrupt or foreign files.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    if "__format__" not in arrays or str(arrays["__format__"]) != FORMAT:
        raise ValueError(f"{path}: not an lstm-engine checkpoint (no '__format__' entry "
                         f"{FORMAT!r})")
    version = int(arrays["__version__"])
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version} is newer than this "
                         f"lstm-engine reads ({FORMAT_VERSION})")
    try:
        return _build(json.loads(str(arrays["__config__"])), arrays, backend)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: inconsistent checkpoint: {e}") from e


def _read_arrays(path):
    """Every entry of the .npz, read eagerly so truncation is found here."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, AttributeError) as e:
        raise ValueError(f"{path}: not a readable lstm-engine checkpoint .npz (truncated or "
                         f"foreign file): {type(e).__name__}: {e}") from e


def _build(config, arrays, backend):
    from engine.model import Sequential
    from engine.optim import optimizer_from_config

    layers = [LAYER_TYPES[c["type"]].from_config(c["args"], backend) for c in config["layers"]]
    model = Sequential(layers, output=config["output"], forget_bias=None)
    model.forget_bias = config["forget_bias"]
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items()
                           if k.startswith("param/")})
    model.epoch = int(config["epoch"])
    model.metadata = config.get("metadata", {})  # absent in files saved before it existed
    comp = config["compile"]
    if comp is not None:
        optimizer = optimizer_from_config(comp["optimizer"])
        optimizer.load_state_dict({"config": comp["optimizer"], "steps": comp["optimizer_steps"],
                                   "buffers": {k[len("optim/"):]: v for k, v in arrays.items()
                                               if k.startswith("optim/")}}, model.params)
        model.compile(comp["loss"], optimizer, clip_norm=comp["clip_norm"])
    return model
