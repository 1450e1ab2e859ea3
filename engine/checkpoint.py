"""Checkpoints: one ``.npz`` holding a ``Sequential`` model's weights, its optimizer state and
its configuration, written atomically and read without pickle.

Entries:
    __format__   str "lstm-engine-checkpoint"
    __version__  int FORMAT_VERSION
    __config__   str, JSON: layers (type + constructor arguments), output mode, forget_bias,
                 compile settings (loss, optimizer config, clip_norm), epochs completed, and
                 the model's ``metadata`` (what a user needs to feed it new data: a
                 vocabulary, a scaler's statistics), and each LSTM's dropout generator state
                 (so that resumed training draws the masks straight training would)
    param/<i>.<name>        every parameter (``Sequential.state_dict`` keys)
    optim/<i>.<name>/<buf>  optimizer buffers (momentum, exp_avg, exp_avg_sq)

The optimizer's step count lives in the JSON.  A learning-rate schedule (a callable) is not
saved: set ``model.optimizer.schedule`` again after ``load``.
"""
import json
import math
import os
import stat
import tempfile
import zipfile

import numpy as np

from engine.layers import Dense, Embedding, Subsample
from engine.lstm import LSTM

FORMAT = "lstm-engine-checkpoint"
FORMAT_VERSION = 1
LAYER_TYPES = {"LSTM": LSTM, "Dense": Dense, "Embedding": Embedding, "Subsample": Subsample}


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
        "random_states": {str(i): layer.random_state() for i, layer in enumerate(model.layers)
                          if isinstance(layer, LSTM)},
    }
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    bad = [k for k, v in arrays.items() if not np.isfinite(v).all()]
    if bad:  # such a file could never be loaded: refuse before touching the old one
        raise ValueError(f"cannot save {path}: weights {[k[6:] for k in bad[:3]]} hold NaN or "
                         "Inf (did training diverge?)")
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
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz",
                               prefix=f".{os.path.basename(path)}.saving-{os.getpid()}-")
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


def _remove_stale_temporaries(path):
    """Delete the temporaries that saves of ``path`` by processes no longer running left
    (a save killed before its rename): ``.<name>.saving-<pid>-<random>.npz`` beside it.  A
    running process's, this one's included, is left alone: it may still be writing."""
    directory, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}.saving-"
    for entry in os.listdir(directory):
        pid = entry[len(prefix):].split("-", 1)[0] if entry.startswith(prefix) else ""
        if pid.isdigit() and entry.endswith(".npz") and not _running(int(pid)):
            try:
                os.remove(os.path.join(directory, entry))
            except OSError:
                pass  # gone already, or not ours to remove


def _running(pid):
    """Whether process ``pid`` exists (one of another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


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


class CheckpointError(ValueError):
    """A file ``engine.load`` cannot use: not a checkpoint, truncated, inconsistent or
    crafted.  The message names the file and the problem."""


# What a checkpoint may hold before anything large is read: the JSON configuration's size, its
# layers, and how deep its JSON nests (metadata included).
MAX_CONFIG_CHARS = 64 << 20
MAX_LAYERS_IN_MODEL = 1024
MAX_JSON_DEPTH = 64


def load(path, backend=None):
    """Read a checkpoint written by ``model.save`` and return the ``Sequential`` model, compiled
    with its optimizer state when it was saved compiled.

    The file is untrusted input: only the expected entries are read, each one's shape and
    dtype are checked against the configuration (and their total size against the file's)
    before its data is, and every problem raises ``CheckpointError`` (a ValueError) naming the
    file.  A missing file raises FileNotFoundError.
    """
    path = os.fspath(path)
    try:
        return _load(path, backend)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {type(e).__name__}: {e}") \
            from None


def _load(path, backend):
    size = _regular_file_size(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable lstm-engine checkpoint .npz (truncated "
                              f"or foreign file): {type(e).__name__}: {e}") from None
    if not hasattr(archive, "files"):  # a plain .npy: one array, no entries
        raise CheckpointError(f"{path}: not an lstm-engine checkpoint (a single array)")
    with archive:
        entries = _Entries(path, archive)
        if "__format__" not in entries.names or entries.text("__format__", 64) != FORMAT:
            raise CheckpointError(f"{path}: not an lstm-engine checkpoint (no '__format__' "
                                  f"entry {FORMAT!r})")
        version = entries.integer("__version__")
        if not 1 <= version <= FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version}: this "
                                  f"lstm-engine reads 1 to {FORMAT_VERSION}")
        config = _parse_config(path, entries.text("__config__", MAX_CONFIG_CHARS))
        return _build(path, size, config, entries, backend)


def _regular_file_size(path):
    """The size of ``path``, which must be a regular file (a FIFO would block the read)."""
    st = os.stat(path)  # FileNotFoundError as it is
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a pipe or a device?)")
    return st.st_size


class _Entries:
    """The entries of an open .npz, each read only after its header is checked."""

    def __init__(self, path, archive):
        self.path, self.archive = path, archive
        self.names = set(archive.files)

    def header(self, name):
        """(shape, dtype) from the entry's .npy header, without reading its data."""
        if name not in self.names:
            raise CheckpointError(f"{self.path}: missing entry {name!r}")
        try:
            with self.archive.zip.open(name + ".npy") as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"unknown .npy version {version}")
                shape, _, dtype = read(f)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise CheckpointError(f"{self.path}: entry {name!r} is unreadable: {e}") from None
        return shape, dtype

    def read(self, name, shape, dtypes):
        """The entry as an array, once its header shows ``shape`` and a dtype of ``dtypes``."""
        got_shape, dtype = self.header(name)
        if got_shape != tuple(shape) or dtype.kind not in dtypes or dtype.hasobject:
            raise CheckpointError(f"{self.path}: entry {name!r} is {dtype} {got_shape}, "
                                  f"expected shape {tuple(shape)}")
        try:
            return self.archive[name]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{self.path}: entry {name!r} is truncated or corrupt: "
                                  f"{type(e).__name__}: {e}") from None

    def text(self, name, max_chars):
        shape, dtype = self.header(name)
        if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > max_chars:
            raise CheckpointError(f"{self.path}: entry {name!r} must be one string of at most "
                                  f"{max_chars} characters, got {dtype} {shape}")
        return str(self.read(name, (), "U"))

    def integer(self, name):
        return int(self.read(name, (), "iu"))


def _parse_config(path, text):
    """The configuration JSON as a dict, its nesting bounded (deep JSON costs recursion)."""
    depth = deepest = 0
    for ch in text:  # brackets inside strings only overstate the depth
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: configuration nests {deepest} deep (at most "
                              f"{MAX_JSON_DEPTH})")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{path}: configuration is not JSON: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise CheckpointError(f"{path}: configuration must be an object with a 'layers' list")
    if not 1 <= len(config["layers"]) <= MAX_LAYERS_IN_MODEL:
        raise CheckpointError(f"{path}: {len(config['layers'])} layers (1 to "
                              f"{MAX_LAYERS_IN_MODEL} expected)")
    return config


def _layer_shapes(path, config):
    """[(layer class, its args, {name: shape})] from the configuration, nothing built."""
    out = []
    for i, c in enumerate(config["layers"]):
        if not isinstance(c, dict) or c.get("type") not in LAYER_TYPES or \
                not isinstance(c.get("args"), dict):
            raise CheckpointError(f"{path}: layer {i}: expected {{'type': one of "
                                  f"{sorted(LAYER_TYPES)}, 'args': {{...}}}}, got {str(c)[:80]}")
        cls = LAYER_TYPES[c["type"]]
        try:
            out.append((cls, c["args"], cls.shapes_of(c["args"])))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"{path}: layer {i} ({c['type']}): {type(e).__name__}: {e}") \
                from None
    return out


def _build(path, size, config, entries, backend):
    from engine.model import Sequential
    from engine.optim import optimizer_from_config

    layers = _layer_shapes(path, config)
    shapes = {f"{i}.{name}": shape for i, (_, _, sh) in enumerate(layers)
              for name, shape in sh.items()}
    itemsize = {"float32": 4, "float64": 8}.get(layers[0][1].get("dtype", "float32"), 8)
    need = sum(math.prod(shape) for shape in shapes.values()) * itemsize
    if need > size:  # np.savez stores entries uncompressed: the weights fit in the file
        raise CheckpointError(f"{path}: the configuration declares {need:,} bytes of weights, "
                              f"more than the file's {size:,}")
    # Each entry's header is checked before its data is read (``_Entries.read``); the size
    # check above bounds what all of them can take.
    params = {k: entries.read(f"param/{k}", shape, "fiu") for k, shape in shapes.items()}
    model = Sequential([cls.from_config(args, backend) for cls, args, _ in layers],
                       output=config["output"], forget_bias=None)
    model.forget_bias = config["forget_bias"]
    model.load_state_dict(params)
    model.epoch = _count(path, "epoch", config["epoch"])
    _restore_random_states(path, model, config.get("random_states", {}))
    model.metadata = config.get("metadata", {})  # absent in files saved before it existed
    if not isinstance(model.metadata, dict):
        raise CheckpointError(f"{path}: metadata must be an object, got "
                              f"{type(model.metadata).__name__}")
    comp = config["compile"]
    if comp is not None:
        optimizer = optimizer_from_config(comp["optimizer"])
        buffers = {f"{k}/{b}": entries.read(f"optim/{k}/{b}", shapes[k], "fiu")
                   for k in shapes for b in optimizer.buffer_names
                   if f"optim/{k}/{b}" in entries.names}
        try:
            optimizer.load_state_dict({"config": comp["optimizer"],
                                       "steps": _count(path, "optimizer_steps",
                                                       comp["optimizer_steps"]),
                                       "buffers": buffers}, model.params)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        model.compile(comp["loss"], optimizer, clip_norm=comp["clip_norm"])
    return model


def _restore_random_states(path, model, states):
    """Each LSTM's dropout generator as saved (absent in files from before they were)."""
    if not isinstance(states, dict):
        raise CheckpointError(f"{path}: random_states must be an object")
    for key, state in states.items():
        layer = model.layers[int(key)] if key.isdigit() and int(key) < len(model.layers) \
            else None
        if not isinstance(layer, LSTM):
            raise CheckpointError(f"{path}: random state for layer {key!r}, not an LSTM")
        try:
            layer.set_random_state(state)
        except ValueError as e:
            raise CheckpointError(f"{path}: layer {key}: {e}") from None


def _count(path, what, value):
    """A non-negative int from the configuration (JSON gives 1e400 as inf, 1.5 as a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{path}: {what} must be a non-negative integer, got {value!r}")
    return value
