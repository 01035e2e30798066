"""`python -m train <data|train|tune>`: the training stage's commands."""

import sys

from digitlite import main

sys.exit(main(only=("data", "train", "tune"), prog="python -m train"))
