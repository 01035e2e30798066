"""Model size, parameter count and multiply-accumulates per inference, read from the .tflite graph itself.

The interpreter (built by `edge_app.runtime.make_interpreter`, XNNPACK off so that every op stays visible)
lists each op with its input and output tensors; shapes give the arithmetic:

    CONV_2D            MACs = N*Ho*Wo*Cout * Kh*Kw*Cin        (filter [Cout, Kh, Kw, Cin])
    DEPTHWISE_CONV_2D  MACs = N*Ho*Wo*Cout * Kh*Kw            (filter [1, Kh, Kw, Cout])
    FULLY_CONNECTED    MACs = rows(input) * Cout * Cin        (weights [Cout, Cin])
    TRANSPOSE_CONV     MACs = N*Hi*Wi*Cin * Kh*Kw*Cout
    BATCH_MATMUL       MACs = batch * M * K * N

Parameters are the elements of those ops' weight and bias tensors (batch-norm is already folded into the
convolutions by the converter, so this is what the device stores and multiplies, not Keras' count).

    python -m benchmarks.graph models/digits_int8.tflite
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _macs(op: str, shapes: list[list[int]], out_shape: list[int]) -> int:
    """Multiply-accumulates of one op given its input shapes and output shape (0 for ops without MACs)."""
    size = int(np.prod(out_shape)) if out_shape else 0
    if op == "CONV_2D":
        _, kh, kw, cin = shapes[1]
        return size * kh * kw * cin
    if op == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = shapes[1]
        return size * kh * kw
    if op == "FULLY_CONNECTED":
        cout, cin = shapes[1][0], shapes[1][-1]
        rows = int(np.prod(shapes[0])) // cin
        return rows * cout * cin
    if op == "TRANSPOSE_CONV":
        # inputs: output_shape, filter [Cout, Kh, Kw, Cin], input
        cout, kh, kw, _ = shapes[1]
        return int(np.prod(shapes[2])) * kh * kw * cout
    if op == "BATCH_MATMUL":
        k = shapes[0][-1]
        return size * k
    return 0


def model_stats(model_path: str | Path, batch: int = 1) -> dict:
    """Size on disk, parameters and MACs per inference of a .tflite digit model.

    Args:
        model_path: the .tflite file.
        batch: the batch size the MACs are given for (1: per image).

    Returns:
        {"file_bytes", "params", "macs", "macs_by_op", "ops", "weight_dtypes"}.
    """
    from edge_app.runtime import make_interpreter

    path = Path(model_path)
    interpreter, _ = make_interpreter(path, threads=1, xnnpack=False)
    if batch != 1:
        index = interpreter.get_input_details()[0]["index"]
        shape = list(interpreter.get_input_details()[0]["shape"])
        interpreter.resize_tensor_input(index, [batch, *shape[1:]])
        interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def shape_of(i: int) -> list[int]:
        return [int(s) for s in tensors[i]["shape"]] if i in tensors else []

    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    macs_by_op: Counter[str] = Counter()
    parameter_tensors: dict[int, int] = {}
    weight_dtypes: Counter[str] = Counter()
    for op in ops:
        name = op["op_name"]
        inputs = [int(i) for i in op["inputs"]]
        shapes = [shape_of(i) for i in inputs if i >= 0]
        outputs = [int(i) for i in op["outputs"]]
        macs_by_op[name] += _macs(name, shapes, shape_of(outputs[0]) if outputs else [])
        if name in WEIGHT_OPS:
            # Weights and bias; TRANSPOSE_CONV's first input is the output shape, its third the activation.
            weight_slots = (1, 3) if name == "TRANSPOSE_CONV" else (1, 2)
            for slot in weight_slots:
                if slot < len(inputs) and inputs[slot] >= 0:
                    parameter_tensors[inputs[slot]] = int(np.prod(shape_of(inputs[slot])))
            weight_dtypes[np.dtype(tensors[inputs[1]]["dtype"]).name] += 1
    return {
        "file_bytes": path.stat().st_size,
        "params": int(sum(parameter_tensors.values())),
        "macs": int(sum(macs_by_op.values())),
        "macs_by_op": {k: int(v) for k, v in macs_by_op.items() if v},
        "ops": dict(Counter(op["op_name"] for op in ops)),
        "weight_dtypes": dict(weight_dtypes),
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Size, parameters and MACs of a .tflite model.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--batch", type=int, default=1, help="images per inference")
    args = parser.parse_args(argv)
    print(json.dumps(model_stats(args.model, args.batch), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
