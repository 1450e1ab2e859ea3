"""``classify``: classification of variable-length multivariate sequences.

Data: the bundled JapaneseVowels (name one of 9 speakers from 12 LPC cepstra per frame,
7-29 frames; 270 train / 370 test), or ``--train FILE --test FILE`` as sktime ``.ts`` files
or CSV files (one row per time step: sequence id, label, features...).  Test labels must be
among the training labels.

Features are standardised with statistics of the training frames.  Sequences are padded to
the longest and the LSTM gets their lengths, so padding never reaches a result: the
many-to-one output is taken at each sequence's own last step (and, bidirectional, the
reverse direction starts there).  Reports test accuracy and the confusion matrix.
"""
import argparse
import sys

import numpy as np

import engine
from engine.apps.baselines import accuracy, confusion_matrix, majority_class
from engine.apps.common import (COUNT, POSITIVE, SIZE, AppError, Report, add_load_argument,
                                load_saved, parse_options, save_model, saved_value, user_data,
                                write_outputs)
from engine.apps.datasets import (ONE_ROW_PER_STEP, load_japanese_vowels, pad_sequences,
                                  read_csv_table, read_sequence_csv, read_ts, sequence_format)
from engine.apps.windows import StandardScaler

EPOCHS = 40
# The options only training reads (--load names any given: they change nothing).
TRAINING = ("train", "hidden", "bidirectional", "lr", "batch_size", "seed")


def add_arguments(p):
    p.add_argument("--train", metavar="FILE", help=".ts or .csv training sequences")
    p.add_argument("--test", metavar="FILE", help=".ts or .csv test sequences")
    p.add_argument("--hidden", type=SIZE, default=64)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True,
                   help="bidirectional LSTM (default; --no-bidirectional for one direction)")
    p.add_argument("--lr", type=POSITIVE, default=3e-3)
    p.add_argument("--batch-size", type=COUNT, default=16)
    add_load_argument(p)


def read_labelled_by(path):
    """The reader of a .ts or CSV file (``sequence_format``: a .ts file by its suffix or its
    '@' header, any other as CSV split on commas, semicolons or tabs)."""
    return read_ts if sequence_format(path) == "ts" else read_sequence_csv


def read_labelled(path, class_names=None):
    """(X list of (T_i, F), y, names) from a .ts or CSV file (``read_labelled_by``)."""
    return read_labelled_by(path)(path, class_names=class_names)


def load_data(args):
    """(X_train, y_train, X_test, y_test, class names, data name)."""
    if (args.train is None) != (args.test is None):
        raise AppError("give both --train FILE and --test FILE (or neither, for "
                       "JapaneseVowels)")
    if args.train is None:
        Xtr, ytr, Xte, yte = load_japanese_vowels()
        return Xtr, ytr, Xte, yte, [str(k + 1) for k in range(9)], "JapaneseVowels"
    with user_data():
        read_train, read_test = read_labelled_by(args.train), read_labelled_by(args.test)
        Xtr, ytr, names = read_train(args.train)
        check_training_set(args.train, Xtr, ytr, names)
        Xte, yte, _ = read_test(args.test, class_names=names)
        if Xte[0].shape[1] != Xtr[0].shape[1]:
            raise ValueError(f"{args.test}: {Xte[0].shape[1]} features per step, but "
                             f"{args.train} has {Xtr[0].shape[1]}")
        if read_train is read_test is read_sequence_csv:
            warn_other_features(args.train, args.test)
    return Xtr, ytr, Xte, yte, [str(n) for n in names], f"{args.train} / {args.test}"


def warn_other_features(train, test):
    """Print ``warning: ...`` when two sequence CSV files name their features otherwise
    (swapped or renamed columns): the model reads features by position, not by name."""
    names = [read_csv_table(path).header[2:] for path in (train, test)]
    if names[0] != names[1]:
        print(f"warning: {test}: features {names[1]}, but {train} has {names[0]}: they are "
              "read by position, not by name", file=sys.stderr)


def check_training_set(path, X, y, names):
    """ValueError for training sequences no classifier can learn from, and for the shape a
    file in the wrong layout takes: one class; every sequence a single step (a file with one
    sequence per row, as the UCR archive's CSVs, read as one row per step); every class seen
    once (a label that is a measurement, not a class)."""
    counts = np.bincount(y, minlength=len(names))
    if np.count_nonzero(counts) < 2:
        raise ValueError(f"{path}: every sequence has the label {names[y[0]]!r}; a classifier "
                         "needs at least two classes to learn")
    if all(len(x) == 1 for x in X):
        why = ONE_ROW_PER_STEP if read_labelled_by(path) is read_sequence_csv else \
            "a sequence classifier needs sequences of several steps"
        raise ValueError(f"{path}: each of the {len(X)} sequences is a single step; {why}")
    if counts.max() < 2:
        raise ValueError(f"{path}: each of the {len(X)} sequences has a label of its own (for "
                         f"example {names[y[0]]!r}, {names[y[1]]!r}); a classifier learns a "
                         "class from several examples: is the label a measurement to predict "
                         "rather than a class?")


def prepare(X, scaler):
    """Standardised, padded float32 (N, T_max, F) and int64 lengths (N,)."""
    padded, lengths = pad_sequences([scaler.transform(x) for x in X])
    return padded.astype(np.float32), lengths


def build_model(args, F, C):
    lstm = engine.LSTM(F, args.hidden, batch_first=True, bidirectional=args.bidirectional,
                       backend=args.backend, seed=args.seed)
    width = args.hidden * (2 if args.bidirectional else 1)
    dense = engine.Dense(width, C, backend=args.backend, seed=args.seed + 1)
    model = engine.Sequential([lstm, dense], output="many_to_one")
    return model.compile("cross_entropy", engine.Adam(lr=args.lr), clip_norm=5.0)


def run(args=None, **overrides):
    """Train for --epochs on the training set, evaluate on the test set; returns metrics."""
    args = parse_options(add_arguments, EPOCHS, args, overrides, TRAINING)
    report = Report(args.quiet)
    if args.load:
        return apply_saved(args, report)
    Xtr, ytr, Xte, yte, names, data = load_data(args)
    scaler = StandardScaler().fit(np.concatenate(Xtr))
    (xtr, ltr), (xte, lte) = prepare(Xtr, scaler), prepare(Xte, scaler)
    C = len(names)
    report(f"classify: {data}, {len(Xtr)} train / {len(Xte)} test sequences, "
           f"{xtr.shape[2]} features, lengths {ltr.min()}-{ltr.max()}, {C} classes")
    model = build_model(args, xtr.shape[2], C)
    history = model.fit(xtr, ytr, epochs=args.epochs, batch_size=args.batch_size,
                        seed=args.seed, lengths=ltr, verbose=not args.quiet,
                        distributed=args.distributed)
    save_model(model, args, report, command="classify", scaler=scaler.state(),
               classes=list(names),
               input="sequences of feature rows scaled by `scaler`, zero-padded to "
                     "(N, T_max, F) with their lengths",
               output="one score per class of `classes`")
    pred = np.argmax(model.predict(xte, lengths=lte), axis=1)
    cm = confusion_matrix(yte, pred, C)
    metrics = {"command": "classify", "data": data, "classes": names,
               "n_train": len(Xtr), "n_test": len(Xte), "epochs": args.epochs,
               "test_accuracy": accuracy(yte, pred),
               "majority_class_accuracy": accuracy(yte, np.full_like(yte, majority_class(ytr, C))),
               "confusion_matrix": cm.tolist(), "history": {"loss": history["loss"]}}
    report(f"test accuracy {metrics['test_accuracy']:.1%} (majority class "
           f"{metrics['majority_class_accuracy']:.1%})")
    report(format_confusion(cm, names))
    return write_outputs(args, "classify", metrics,
                         lambda plt, path: plot(plt, path, cm, names, metrics), report)


def _class_names(value):
    names = [str(n) for n in value] if isinstance(value, list) else None
    if not names or len(set(names)) != len(names):
        raise ValueError(f"expected a list of distinct class names, got {str(value)[:80]}")
    return names


def apply_saved(args, report):
    """--load: classify the sequences of --test FILE (or JapaneseVowels' test set) with the
    saved model, its scaler and class names; accuracy and the confusion matrix against the
    file's labels, and each sequence's predicted class."""
    if args.test is None and args.train is not None:  # the built-in test set was not meant
        raise AppError("--load classifies --test FILE: give the file (--train is not read "
                       "with --load)")
    model = load_saved(args, "classify")
    names = saved_value(args, model, "classes", _class_names)
    scaler = saved_value(args, model, "scaler", StandardScaler.from_state)
    features = model.layers[0].input_size
    if args.test is None:
        X, y = load_japanese_vowels()[2:]
        data = "JapaneseVowels test set"
    else:
        with user_data():
            X, y, _ = read_labelled(args.test, class_names=names)
        data = args.test
    if X[0].shape[1] != features or np.size(scaler.mean_) not in (1, features):
        raise AppError(f"{data}: {X[0].shape[1]} features per step, but the model {args.load} "
                       f"takes {features}")
    x, lengths = prepare(X, scaler)
    if model.layers[-1].out_features != len(names):
        raise AppError(f"{args.load}: {len(names)} class names for "
                       f"{model.layers[-1].out_features} outputs")
    pred = np.argmax(model.predict(x, lengths=lengths), axis=1)
    cm = confusion_matrix(y, pred, len(names))
    metrics = {"command": "classify", "model": args.load, "data": data, "classes": names,
               "n_test": len(X), "test_accuracy": accuracy(y, pred),
               "confusion_matrix": cm.tolist(), "predicted": [names[k] for k in pred]}
    report(f"classify: {args.load} on {data}, {len(X)} sequences: accuracy "
           f"{metrics['test_accuracy']:.1%}")
    report(format_confusion(cm, names))
    return write_outputs(args, "classify", metrics,
                         lambda plt, path: plot(plt, path, cm, names, metrics), report)


def format_confusion(cm, names):
    """The confusion matrix as text: rows true class, columns predicted class."""
    w = max(4, max(len(n) for n in names) + 1)
    lines = ["confusion matrix (rows: true, columns: predicted)",
             " " * w + "".join(f"{n:>{w}}" for n in names)]
    lines += [f"{n:>{w}}" + "".join(f"{v:>{w}d}" for v in row) for n, row in zip(names, cm)]
    return "\n".join(lines)


def plot(plt, path, cm, names, m):
    """The confusion matrix as an image with counts in the cells."""
    C = len(names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.5 * C, 1.2 + 0.5 * C))
    ax.imshow(cm, cmap="Blues")
    for i in range(C):
        for j in range(C):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(C), names)
    ax.set_yticks(range(C), names)
    ax.set(xlabel="predicted", ylabel="true",
           title=f"{m['data']}\ntest accuracy {m['test_accuracy']:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
