"""Helpers shared by the four applications: the common command-line options, turning bad data
into a clean exit, metrics JSON, lazily imported matplotlib, and early-stopped training.

Every command module defines ``add_arguments(parser)`` (its own options) and
``run(args=None, **overrides)`` (returns the metrics dict).  ``parse_options`` builds the
argparse Namespace that ``run`` needs from keyword arguments, so the Python entry and the
command line share one set of defaults.
"""
import argparse
import importlib.util
import json
import math
import numbers
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine.apps.datasets import MISSING_POLICIES, is_number, missing_code


class AppError(ValueError):
    """A problem with the user's data or options: the CLI prints the message and exits 2;
    Python callers of ``run`` get it as the ValueError it is."""


@contextmanager
def user_data(what=None):
    """Re-raise the readers' ``FILE:LINE: problem`` ValueErrors (and missing files) as AppError,
    so the command line reports them without a traceback.  Wrap only data loading and
    preparation, never training, so genuine bugs keep their tracebacks."""
    try:
        yield
    except AppError:
        raise
    except FileNotFoundError as e:
        raise AppError(f"{e.filename}: no such file") from e
    except IsADirectoryError as e:
        raise AppError(f"{e.filename}:1: is a folder: expected a file") from e
    except OSError as e:
        if e.filename is None or e.strerror is None:
            raise AppError(f"{what}: {e}" if what else str(e)) from e
        raise AppError(f"{e.filename}: {e.strerror[:1].lower()}{e.strerror[1:]}") from e
    except ValueError as e:
        raise AppError(f"{what}: {e}" if what else str(e)) from e


class Number:
    """An argparse ``type`` for a number option with bounds, that also checks values given to
    ``run(**overrides)`` from Python: ``Number(int, low=1)`` is an integer >= 1,
    ``Number(float, low=0, low_open=True)`` a finite float > 0."""

    def __init__(self, kind, low=None, high=None, low_open=False):
        self.kind, self.low, self.high, self.low_open = kind, low, high, low_open

    def describe(self):
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            what += f"{' and' if self.low is not None else ''} <= {self.high:g}"
        return what

    def __call__(self, value):
        """The option's value from a string (the command line) or a Python number."""
        try:
            if isinstance(value, str):
                number = self.kind(value.strip())
            elif isinstance(value, bool) or not isinstance(value, numbers.Real) or (
                    self.kind is int and not isinstance(value, numbers.Integral)):
                raise ValueError
            else:
                number = self.kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {value!r}")
        low_bad = self.low is not None and (number <= self.low if self.low_open
                                            else number < self.low)
        if not math.isfinite(number) or low_bad or (self.high is not None and number > self.high):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {value!r}")
        return number


class NaValues(Number):
    """An argparse ``type`` for the cells that mark a missing value, separated by commas
    ("-999.99,-,n.a."): a tuple of numbers (finite floats, compared as numbers) and words
    (lower case); from Python, a number, a string or a sequence of them."""

    def __init__(self):
        super().__init__(float)

    def describe(self):
        return "numbers or words separated by commas, as -999.99,-"

    def __call__(self, value):
        items = value.split(",") if isinstance(value, str) else \
            list(value) if isinstance(value, (list, tuple)) else [value]
        marks = []
        for item in items:
            if isinstance(item, str) and not is_number(item):
                if not item.strip() or "," in item:
                    raise argparse.ArgumentTypeError(f"expected {self.describe()}, got "
                                                     f"{value!r}")
                marks.append(item.strip().lower())
            else:
                marks.append(super().__call__(item))
        if not marks:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {value!r}")
        return tuple(marks)


POSITIVE = Number(float, low=0, low_open=True)  # learning rates, budgets, temperatures
COUNT = Number(int, low=1)                       # windows, horizons, batches, epochs
SIZE = Number(int, low=1, high=16384)            # hidden and embedding sizes


def check_numbers(parser, args):
    """Check every option of ``args`` whose parser type is a ``Number`` (values set from
    Python skip argparse); raises AppError naming the option."""
    for action in parser._actions:
        if isinstance(action.type, Number) and getattr(args, action.dest, None) is not None:
            try:
                setattr(args, action.dest, action.type(getattr(args, action.dest)))
            except argparse.ArgumentTypeError as e:
                raise AppError(f"{action.option_strings[0]}: {e}") from None


def check_output_path(option, path, folder):
    """Refuse, before any training, an output path that cannot be written: a file where a
    folder must be (on the way to it, or as --out itself), a folder where the file must go,
    or a parent that exists but is not writable."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise AppError(f"{option}: {path} exists and is not a folder")
    if not folder and path.is_dir():
        raise AppError(f"{option}: {path} is a folder; give a file path such as "
                       f"{path / 'model.npz'}")
    parent = path if folder else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise AppError(f"{option}: cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AppError(f"{option}: cannot write into {parent} (permission denied)")


def check_backend(name):
    """The --backend value (or ENGINE_BACKEND) usable here, before any data is read."""
    import engine

    try:
        engine.get_backend(name)
    except (ValueError, RuntimeError, ImportError) as e:
        shown = name if name is not None else os.environ.get("ENGINE_BACKEND", "cpu")
        raise AppError(f"--backend {shown}: {e}") from None


def root_rank():
    """Whether this process reports and writes files: rank 0 of an MPI job, or a single
    process."""
    from engine.distributed import ranks

    return ranks().root


def check_options(parser, args):
    """Everything about the options that can be known before the data are read: numbers in
    range, the backend usable, output paths writable, matplotlib present for --out."""
    check_numbers(parser, args)
    check_backend(args.backend)
    if args.distributed and not root_rank():
        args.quiet = True  # one report, from rank 0
    if args.save:
        check_output_path("--save", args.save, folder=False)
    if args.out:
        check_output_path("--out", args.out, folder=True)
        if importlib.util.find_spec("matplotlib") is None:
            raise AppError("--out: plots need matplotlib: pip install 'lstm-engine[plot]' "
                           "(or run without --out)")


def add_common_arguments(parser, epochs):
    """The options every command takes; ``epochs`` is the command's default."""
    g = parser.add_argument_group("common options")
    g.add_argument("--backend", default=None,
                   help="cpu, gpu or auto (default: ENGINE_BACKEND or cpu)")
    g.add_argument("--seed", type=Number(int, low=0), default=0,
                   help="seed of weights and batch order")
    g.add_argument("--epochs", type=Number(int, low=1), default=epochs,
                   help=f"training epochs (default {epochs})")
    g.add_argument("--save", metavar="PATH", default=None, help="save the trained model (.npz)")
    g.add_argument("--out", metavar="DIR", default=None,
                   help="write plots (PNG) and metrics (JSON) into DIR")
    g.add_argument("--quiet", action="store_true", help="no progress bars or report; a "
                   "transcript or sample asked for is still printed")
    g.add_argument("--distributed", action="store_true",
                   help="train data-parallel on the ranks of an MPI job: mpiexec -n R python -m "
                        "engine COMMAND --distributed ...; reports, plots and --save from rank "
                        "0 (needs pip install 'lstm-engine[mpi]'; alone it runs as one process)")


# The common options that only training reads.
COMMON_TRAINING = ("epochs", "save", "distributed")


def parse_options(add_arguments, epochs, args=None, overrides=None, training=()):
    """The Namespace ``run`` uses: ``args`` as given (or the defaults), then ``overrides``
    (keyword arguments named like the options, dashes as underscores) applied on top, all
    checked (``check_options``) before any data is read or any training starts.  With --load,
    the options that only training reads (``training`` and COMMON_TRAINING) change nothing: any
    given away from its default is named on stderr, so that it is not thought to apply."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    add_common_arguments(parser, epochs)
    if args is None:
        args = parser.parse_args([])
    for key, value in (overrides or {}).items():
        if not hasattr(args, key):
            raise TypeError(f"unknown option {key!r}")
        setattr(args, key, value)
    check_options(parser, args)
    if getattr(args, "load", None):
        warn_ignored(args, parser, COMMON_TRAINING + tuple(training))
    return args


def warn_ignored(args, parser, training):
    """Print ``warning: --load ...`` on stderr naming the ``training`` options given away from
    their defaults."""
    given = [f"--{key.replace('_', '-')}" for key in training
             if getattr(args, key) != parser.get_default(key)]
    if given:
        print(f"warning: --load {args.load}: {', '.join(given)} ignored: only training reads "
              f"{'it' if len(given) == 1 else 'them'}, and the saved model fixes what it "
              "needs", file=sys.stderr)


class Report:
    """Prints lines unless quiet."""

    def __init__(self, quiet):
        self.quiet = quiet

    def __call__(self, text=""):
        if not self.quiet:
            print(text, flush=True)


def print_result(args, text):
    """Print what the command was asked for (a transcript, a sample) even under --quiet,
    which drops only progress and the report; once, from rank 0, in a distributed run."""
    if not args.distributed or root_rank():
        print(text, flush=True)


def out_dir(args):
    """``Path(args.out)``, created, or None when no --out was given."""
    if args.out is None:
        return None
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_outputs(args, name, metrics, plot_fn, report):
    """Write ``<out>/<name>.json`` (metrics) and ``<out>/<name>.png`` (``plot_fn(plt, path)``;
    none when ``plot_fn`` is None) when --out is set; record their paths in
    ``metrics["files"]`` and report them."""
    if args.out is None or (args.distributed and not root_rank()):
        return metrics
    out = out_dir(args)
    png, js = out / f"{name}.png", out / f"{name}.json"
    metrics["files"] = {"metrics": str(js)}
    if plot_fn is not None:
        plt = pyplot()
        # The plots' text holds the user's names (files, columns, labels, transcripts), and a
        # '$' in one would start TeX math: "$5 and #3$" stops tight_layout (ParseException).
        with plt.rc_context({"text.parse_math": False}):
            plot_fn(plt, png)
        metrics["files"]["plot"] = str(png)
    js.write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    report(f"wrote {png} and {js}" if plot_fn else f"wrote {js}")
    return metrics


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported only when a plot is written."""
    try:
        import matplotlib
    except ImportError as e:
        raise AppError("plots need matplotlib: pip install 'lstm-engine[plot]' "
                       "(or run without --out)") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_model(model, args, report, **metadata):
    """``model.save(args.save)`` when --save was given, with ``metadata`` (what a user needs
    to prepare new data for the model) in the checkpoint, as ``model.metadata`` after
    ``engine.load``.  The path was checked before training (``check_options``)."""
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        model.metadata = metadata
        model.save(args.save, distributed=args.distributed)
        report(f"saved the model to {args.save}")


def add_load_argument(parser):
    """--load MODEL: apply a model that ``--save`` wrote instead of training one."""
    parser.add_argument("--load", metavar="MODEL", help="apply a model saved by --save to the "
                        "data (no training: training options given with it are ignored, "
                        "with a warning naming them)")


def load_saved(args, command):
    """The model at --load, saved by ``command``, on --backend; AppError naming the file for
    anything else (the checkpoint is read as untrusted input by ``engine.load``)."""
    import engine

    with user_data():
        model = engine.load(args.load, backend=args.backend)
    saved = model.metadata.get("command")
    if saved != command:
        raise AppError(f"{args.load}: a model saved by the {saved!r} command, not by "
                       f"{command!r}" if saved else
                       f"{args.load}: no preprocessing saved with this model (save it with "
                       f"`{command} --save`)")
    return model


def report_missing(args, counts, report):
    """Report ``counts`` ({column: missing cells}, as the readers return them), the values
    --missing drop/interpolate dropped or filled; returns the nonzero ones."""
    counts = {c: n for c, n in counts.items() if n}
    if counts:
        done = "their rows dropped" if args.missing == "drop" else \
            "interpolated linearly (rows before the first value or after the last dropped)"
        report("missing values: " + ", ".join(f"{n} in {c!r}" for c, n in counts.items())
               + f", {done}")
    return counts


def add_missing_arguments(parser):
    """--missing and --na-values: what marks a missing value in the user's CSV, and what to do
    with one."""
    parser.add_argument("--missing", choices=MISSING_POLICIES, default="error",
                        help="missing values (empty, NA, NaN, ?, --na-values): stop with an "
                             "error naming the first (default), drop their rows, or "
                             "interpolate them linearly (those before the first value or "
                             "after the last: dropped)")
    parser.add_argument("--na-values", type=NaValues(), default=None, metavar="V[,V...]",
                        help="numbers or words that mark a missing value in the file: "
                             "--na-values -999.99, or --na-values -999.99,-9999,- for several")


def warn_missing_codes(args, values, columns):
    """Print ``warning: ...`` on stderr for each column of ``values`` (T, C) holding a number
    that looks like a missing-value code (``missing_code``) that --na-values does not name:
    it would be read as data."""
    for name, column in zip(columns, np.asarray(values).reshape(len(values), -1).T):
        code = missing_code(column)
        if code is None:
            continue
        value, count, low, high = code
        print(f"warning: {args.csv}: column {name!r} holds {value:g} in {count} "
              f"row{'s' if count > 1 else ''}, far outside its other values ({low:g} to "
              f"{high:g}): if that marks missing values, give --na-values {value:g} (with "
              "--missing drop or interpolate)", file=sys.stderr)


def saved_setting(args, model, key, check, add_arguments):
    """``saved_value`` of a setting the command line has too (--window, --horizon, ...): the
    model fixes it, so a value given that is neither the option's default nor the saved one
    is an AppError rather than silently replaced."""
    value = saved_value(args, model, key, check)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    given = getattr(args, key)
    if given != parser.get_default(key) and given != value:
        option = "--" + key.replace("_", "-")
        raise AppError(f"{option} {given}: {args.load} was trained with {option} {value}; "
                       f"leave {option} out with --load")
    return value


def saved_value(args, model, key, check=None):
    """``model.metadata[key]``, checked by ``check`` (a Number, or a function raising
    ValueError/TypeError); AppError naming the file and the key otherwise."""
    if key not in model.metadata:
        raise AppError(f"{args.load}: metadata has no {key!r}: not saved by this command?")
    value = model.metadata[key]
    if check is None:
        return value
    try:
        return check(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise AppError(f"{args.load}: metadata {key!r}: {e}") from None


def fit_early_stopping(model, train, val, args, batch_size, patience, report, seed=None,
                       steps_per_epoch=None):
    """``model.fit`` on ``train`` = (x, y[, lengths]) for up to --epochs, with early stopping on
    ``val`` (same form): the weights of the epoch with the lowest validation loss are kept.
    ``seed`` (default --seed) draws the batches; ``steps_per_epoch`` is fit's.  Returns fit's
    history plus "seconds"."""
    x, y, lengths = (tuple(train) + (None,))[:3]
    start = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=batch_size,
                        validation_data=tuple(val), distributed=args.distributed,
                        seed=args.seed if seed is None else seed, lengths=lengths,
                        patience=patience, verbose=not args.quiet,
                        steps_per_epoch=steps_per_epoch)
    history["seconds"] = time.perf_counter() - start
    report(f"kept the weights of epoch {history['best_epoch']} of {len(history['loss'])}")
    return history


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """The command line's form of a library warning: ``warning: message`` on stderr."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def cli_main(run, args):
    """Run a command from parsed arguments; an AppError (or a diverged training, whose finite
    weights fit restored) prints ``error: ...`` and returns 2."""
    import warnings

    import engine

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            run(args)
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except engine.TrainingDiverged as e:
        print(f"error: {e}; try a smaller --lr", file=sys.stderr)
        return 2
    return 0
