"""Helpers shared by the four applications: the common command-line options, turning bad data
into a clean exit, metrics JSON, lazily imported matplotlib, and early-stopped training.

Every command module defines ``add_arguments(parser)`` (its own options) and
``run(args=None, **overrides)`` (returns the metrics dict).  ``parse_options`` builds the
argparse Namespace that ``run`` needs from keyword arguments, so the Python entry and the
command line share one set of defaults.
"""
import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class AppError(Exception):
    """A problem with the user's data or options: the CLI prints the message and exits 2."""


@contextmanager
def user_data(what=None):
    """Re-raise the readers' ``FILE:LINE: problem`` ValueErrors (and missing files) as AppError,
    so the command line reports them without a traceback.  Wrap only data loading and
    preparation, never training, so genuine bugs keep their tracebacks."""
    try:
        yield
    except FileNotFoundError as e:
        raise AppError(f"{e.filename}: no such file") from e
    except (ValueError, OSError) as e:
        raise AppError(f"{what}: {e}" if what else str(e)) from e


def add_common_arguments(parser, epochs):
    """The options every command takes; ``epochs`` is the command's default."""
    g = parser.add_argument_group("common options")
    g.add_argument("--backend", default=None,
                   help="cpu, gpu or auto (default: ENGINE_BACKEND or cpu)")
    g.add_argument("--seed", type=int, default=0, help="seed of weights and batch order")
    g.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    g.add_argument("--save", metavar="PATH", default=None, help="save the trained model (.npz)")
    g.add_argument("--out", metavar="DIR", default=None,
                   help="write plots (PNG) and metrics (JSON) into DIR")
    g.add_argument("--quiet", action="store_true", help="no progress bars or report")


def parse_options(add_arguments, epochs, args=None, overrides=None):
    """The Namespace ``run`` uses: ``args`` as given (or the defaults), then ``overrides``
    (keyword arguments named like the options, dashes as underscores) applied on top."""
    if args is None:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        add_common_arguments(parser, epochs)
        args = parser.parse_args([])
    for key, value in (overrides or {}).items():
        if not hasattr(args, key):
            raise TypeError(f"unknown option {key!r}")
        setattr(args, key, value)
    if args.epochs < 1:
        raise AppError(f"--epochs must be >= 1, got {args.epochs}")
    return args


class Report:
    """Prints lines unless quiet."""

    def __init__(self, quiet):
        self.quiet = quiet

    def __call__(self, text=""):
        if not self.quiet:
            print(text, flush=True)


def out_dir(args):
    """``Path(args.out)``, created, or None when no --out was given."""
    if args.out is None:
        return None
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_outputs(args, name, metrics, plot_fn, report):
    """Write ``<out>/<name>.json`` (metrics) and ``<out>/<name>.png`` (``plot_fn(plt, path)``)
    when --out is set; record their paths in ``metrics["files"]`` and report them."""
    out = out_dir(args)
    if out is None:
        return metrics
    png, js = out / f"{name}.png", out / f"{name}.json"
    plot_fn(pyplot(), png)
    metrics["files"] = {"plot": str(png), "metrics": str(js)}
    js.write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    report(f"wrote {png} and {js}")
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
    ``engine.load``."""
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        model.metadata = metadata
        model.save(args.save)
        report(f"saved the model to {args.save}")


def fit_early_stopping(model, train, val, args, batch_size, patience, report):
    """``model.fit`` on ``train`` = (x, y[, lengths]) for up to --epochs, with early stopping on
    ``val`` (same form): the weights of the epoch with the lowest validation loss are kept.
    Returns fit's history plus "seconds"."""
    x, y, lengths = (tuple(train) + (None,))[:3]
    start = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=batch_size,
                        validation_data=tuple(val), seed=args.seed, lengths=lengths,
                        patience=patience, verbose=not args.quiet)
    history["seconds"] = time.perf_counter() - start
    report(f"kept the weights of epoch {history['best_epoch']} of {len(history['loss'])}")
    return history


def cli_main(run, args):
    """Run a command from parsed arguments; an AppError prints ``error: ...`` and returns 2."""
    try:
        run(args)
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
