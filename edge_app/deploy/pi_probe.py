"""The int8 model's raw outputs on a fixed batch, for comparing two machines (run by pi_check on each side).

It needs only numpy and a LiteRT runtime, so it runs the same way on the x86 host and inside the emulated
aarch64 system. The batch is a .npy file of 0-255 grey digits (N, 28, 28), written once by the host.

    python -m edge_app.deploy.pi_probe --model models/digits_int8.tflite --batch batch.npy --out probe.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict

import numpy as np

from edge_app.runtime import DEFAULT_THREADS, Classifier

# (name, threads, xnnpack): XNNPACK as the app runs it, and the built-in reference kernels.
SETTINGS = (("xnnpack_default_threads", DEFAULT_THREADS, True), ("builtin_1_thread", 1, False))


def probe(model: str, digits_u8: np.ndarray) -> dict:
    """Raw output tensors (as nested lists) for each of SETTINGS, with the platform and runtime."""
    report: dict = {"machine": platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__, "outputs": {}}
    for name, threads, xnnpack in SETTINGS:
        clf = Classifier(model, threads=threads, xnnpack=xnnpack)
        report["runtime"] = asdict(clf.runtime) | {"threads": None, "xnnpack": None}
        report["output_quant"] = asdict(clf.info.output_quant)
        report["output_dtype"] = clf.info.output_dtype
        report["outputs"][name] = clf.raw_output(clf.pixels_to_input(digits_u8)).tolist()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="the .tflite model")
    parser.add_argument("--batch", required=True, help=".npy file of uint8 digits (N, 28, 28)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    digits = np.load(args.batch)
    if digits.dtype != np.uint8 or digits.ndim != 3 or digits.shape[1:] != (28, 28):
        print(f"error: {args.batch} holds {digits.dtype} {digits.shape}; expected uint8 (N, 28, 28)",
              file=sys.stderr)
        return 2
    with open(args.out, "w") as f:
        json.dump(probe(args.model, digits), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
