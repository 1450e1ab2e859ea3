"""The command line: ``python -m engine <command>`` and the ``lstm-engine`` console script.

Commands: forecast, stocks, text, classify, speech (``python -m engine <command> --help``).  Each
prints a report, shows tqdm progress bars, and with ``--out DIR`` writes ``<command>.png``
and ``<command>.json``.  Bad data exits with status 2 and a ``FILE:LINE: problem`` message.
"""
import argparse
import sys

COMMANDS = ("forecast", "stocks", "text", "classify", "speech")
# Options whose value may start with a dash (--na-values -999.99,-9999), which argparse would
# take for another option unless written with an '=': main writes it so.
DASH_VALUES = ("--na-values",)


def build_parser():
    """The argparse parser with one subcommand per application."""
    from engine.apps import MODULES
    from engine.apps.common import add_common_arguments

    parser = argparse.ArgumentParser(
        prog="lstm-engine", description="The classic LSTM applications on real data.")
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
    from engine.apps import MODULES
    from engine.apps.common import cli_main

    args = build_parser().parse_args(_attach_dash_values(argv))
    return cli_main(MODULES[args.command].run, args)


def _attach_dash_values(argv):
    """``argv`` with each option of DASH_VALUES followed by a single-dash word written as
    OPTION=WORD: '--na-values -999.99,-9999' is read as '--na-values=-999.99,-9999'."""
    out = list(argv)
    for i in range(len(out) - 1, 0, -1):
        value = out[i]
        if out[i - 1] in DASH_VALUES and value.startswith("-") and not value.startswith("--"):
            out[i - 1:i + 1] = [f"{out[i - 1]}={value}"]
    return out


if __name__ == "__main__":
    sys.exit(main())
