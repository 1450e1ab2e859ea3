"""``python -m engine <command>``: the command line of ``engine.apps.cli``."""
import sys

from engine.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
