"""The command line: ``python -m engine <command>`` and the ``lstm-engine`` console script.

Commands: forecast, stocks, text, classify, speech (``python -m engine <command> --help``).  Each
prints a report, shows tqdm progress bars, and with ``--out DIR`` writes ``<command>.png``
and ``<command>.json``.  Bad data exits with status 2 and a ``FILE:LINE: problem`` message.
"""
import argparse
import sys

COMMANDS = ("forecast", "stocks", "text", "classify", "speech")


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

    args = build_parser().parse_args(argv)
    return cli_main(MODULES[args.command].run, args)


if __name__ == "__main__":
    sys.exit(main())
