"""`python -m benchmarks bench`: latency and throughput records."""

import sys

from digitlite import main

sys.exit(main(only=("bench",), prog="python -m benchmarks"))
