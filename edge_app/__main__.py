"""`python -m edge_app <read|run|serve|history|correct|corrections|doctor>`: the edge stage's commands."""

import sys

from digitlite import main

sys.exit(main(only=("read", "run", "serve", "history", "correct", "corrections", "doctor"), prog="python -m edge_app"))
