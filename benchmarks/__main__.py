"""`python -m benchmarks bench|architectures`: latency and throughput records, the architectures side by side."""

import sys

from digitlite import main

sys.exit(main(only=("bench", "architectures"), prog="python -m benchmarks"))
