"""``python -m engine <command>`` and the ``lstm-engine`` console script.

Commands: forecast, stocks, text, classify (``python -m engine <command> --help``).  Each
prints a report, shows tqdm progress bars, and with ``--out DIR`` writes ``<command>.png``
and ``<command>.json``.  Bad data exits with status 2 and a ``FILE:LINE: problem`` message.
"""
import argparse
import os
import sys

COMMANDS = ("forecast", "stocks", "text", "classify")


def single_threaded_blas(module, argv):
    """Re-run ``python -m module argv`` with OPENBLAS_NUM_THREADS=1 unless the user set it.

    The LSTM's small per-step GEMMs gain nothing from BLAS threads, and on a loaded machine
    OpenBLAS's spinning threads make each step hundreds of times slower (measured: 1.8 s
    instead of 4 ms for B=32, T=60, H=64 on 2 busy cores).  The variable only takes effect
    before NumPy and SciPy load BLAS, which the package import has already done, hence the
    re-exec.  Set OPENBLAS_NUM_THREADS yourself to choose otherwise.
    """
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def build_parser():
    """The argparse parser with one subcommand per application."""
    from engine.apps import MODULES
    from engine.apps.common import add_common_arguments

    parser = argparse.ArgumentParser(
        prog="lstm-engine", description="The four classic LSTM applications on real data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in MODULES.items():
        doc = module.__doc__.strip()
        summary = doc.splitlines()[0].split(": ", 1)[-1]
        p = sub.add_parser(name, help=summary, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        add_common_arguments(p, module.EPOCHS)
    return parser


def main(argv=None):
    """Entry point: parse, run the command, return the exit status (2 for bad data)."""
    if argv is None:
        argv = sys.argv[1:]
        single_threaded_blas("engine", argv)
    from engine.apps import MODULES
    from engine.apps.common import cli_main

    args = build_parser().parse_args(argv)
    return cli_main(MODULES[args.command].run, args)


if __name__ == "__main__":
    sys.exit(main())
