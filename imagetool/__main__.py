"""`python -m imagetool VERB [ARGS...]`: one command line for building, checking and shipping the
image; every verb is in imagetool/cli.py."""

from __future__ import annotations

import sys

from imagetool.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
