"""`python -m edge_app <read|run|eval-scenes|eval|serve|doctor>`: the edge stage's commands."""

import sys

from digitlite import main

sys.exit(main(only=("read", "run", "eval-scenes", "eval", "serve", "doctor"), prog="python -m edge_app"))
