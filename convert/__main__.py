"""`python -m convert <convert|check|compare>`: the conversion stage's commands."""

import sys

from digitlite import main

sys.exit(main(only=("convert", "check", "compare"), prog="python -m convert"))
