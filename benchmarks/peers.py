"""Peers: the same network run by other engines, as ratios to our int8 LiteRT path, measured in one process.

Every engine gets one thread and the same float input in the model's pixel convention; each timed call is
"input in, probabilities out" (set the input, run, read the output), so the LiteRT rows here include the
tensor copies that the invoke benchmark leaves out. A peer that cannot run is reported with the reason.

    LiteRT int8 / float32       ai_edge_litert via edge_app.runtime (the baseline: ratio 1.0 is int8)
    Keras                       the .keras model called directly, model(x, training=False)
    tf.lite.Interpreter         TensorFlow's own interpreter on the same .tflite files
    ONNX Runtime                the .keras model converted with tf2onnx (float32)
    OpenCV DNN                  cv2.dnn.readNetFromTFLite on the .tflite files, and on the ONNX file

This module imports TensorFlow, so `digitlite bench` runs it in a child process (the parent, which times
the edge runtime and reports peak memory, stays free of it).

    python -m benchmarks.peers --float32 models/digits_float32.tflite --int8 models/digits_int8.tflite \
        --keras models/digits.keras --runs 200
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.timing import emit_json, peak_rss_mib, summarize, time_calls
from edge_app.runtime import models_dir

log = logging.getLogger(__name__)

MODELS_DIR = models_dir()  # the released models, as every command finds them
BATCHES = (1, 32)
RUNS = 500  # timed calls per peer at batch 1 (batch 32: runs // 32, at least 20)
WARMUP = 20
MAX_SECONDS = 3.0  # per peer and batch: Keras' eager call is ~100x slower than the interpreters
AGREEMENT_DIGITS = 64  # real MNIST test digits each peer classifies, compared with LiteRT float32's labels
ONNX_OPSET = 17

Predict = Callable[[np.ndarray], np.ndarray]  # float input (N, 28, 28, 1) -> probabilities (N, 10)


class PeerUnavailable(Exception):
    """This engine cannot run this model; the message says why."""


def _short(exc: BaseException) -> str:
    """One line of an exception, OpenCV's multi-line messages reduced to their 'error: ...' part."""
    text = " ".join(str(exc).split())
    if "error: (" in text:  # "OpenCV(5.0.0) /io/opencv/.../x.cpp:1438: error: (-213:...) what in function 'f'"
        return (text.split(" ")[0] + " " + text[text.index("error: (") + len("error: "):])[:300]
    return f"{type(exc).__name__}: {text}"[:300]


# ---------------------------------------------------------------------------------------------- engines


def litert(path: Path, runtime: str | None = None) -> Predict:
    """A LiteRT interpreter (`runtime=None`: ai_edge_litert; "tensorflow": tf.lite.Interpreter)."""
    from edge_app.runtime import Classifier

    classifier = Classifier(path, threads=1, runtime=runtime)
    interpreter = classifier.interpreter
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_q, out_q = classifier.info.input_quant, classifier.info.output_quant
    shape = {"n": int(inp["shape"][0])}

    def predict(x: np.ndarray) -> np.ndarray:
        if len(x) != shape["n"]:
            interpreter.resize_tensor_input(inp["index"], [len(x), 28, 28, 1])
            interpreter.allocate_tensors()
            shape["n"] = len(x)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])
        return out_q.scale * (raw.astype(np.float32) - out_q.zero_point) if out_q.quantized else raw

    # Quantized inputs are prepared once, outside the timed call, like the float inputs of the other peers.
    from edge_app.runtime import quantize

    predict.prepare = (lambda x: quantize(x, in_q, inp["dtype"])) if in_q.quantized else (lambda x: x)
    return predict


def keras_direct(path: Path) -> Predict:
    import keras

    model = keras.models.load_model(path, compile=False)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x, training=False))

    predict.prepare = lambda x: keras.ops.convert_to_tensor(x)
    return predict


def to_onnx(keras_path: Path, out_path: Path) -> float:
    """Convert the Keras model to ONNX with tf2onnx; returns the conversion time in s."""
    import keras
    import tensorflow as tf
    import tf2onnx

    start = time.perf_counter()
    model = keras.models.load_model(keras_path, compile=False)
    spec = [tf.TensorSpec([None, 28, 28, 1], tf.float32, name="digits")]
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET, output_path=str(out_path))
    return time.perf_counter() - start


def onnxruntime_session(onnx_path: Path) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    predict.prepare = lambda x: x
    return predict


def opencv_dnn(path: Path) -> Predict:
    """OpenCV's DNN module; its TFLite importer takes NCHW blobs, its ONNX importer the graph's own layout."""
    import cv2

    cv2.setNumThreads(1)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # failures are reported in the record
    tflite = path.suffix == ".tflite"
    net = cv2.dnn.readNetFromTFLite(str(path)) if tflite else cv2.dnn.readNetFromONNX(str(path))

    def predict(x: np.ndarray) -> np.ndarray:
        net.setInput(x)
        return net.forward()

    predict.prepare = (lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2))) if tflite else (lambda x: x)
    # The importer defers some failures (unsupported fused activations, shapes) to the first forward.
    predict(predict.prepare(np.zeros((1, 28, 28, 1), np.float32)))
    return predict


# ---------------------------------------------------------------------------------------------- measuring


def _digits(n: int, seed: int = 0) -> np.ndarray | None:
    """n real MNIST test digits (N, 28, 28) uint8, or None when MNIST is not available offline."""
    try:
        from digitdata.mnist import load_mnist

        x_test = load_mnist(offline=True).x_test
    except Exception as exc:  # noqa: BLE001 - agreement is optional; say why it is missing
        log.warning("no MNIST for the agreement check (%s); peers are timed on random input only", exc)
        return None
    return x_test[np.random.default_rng(seed).choice(len(x_test), n, replace=False)]


def measure_peer(name: str, engine: str, variant: str, build: Callable[[], Predict], inputs: dict[int, np.ndarray],
                 digits: np.ndarray | None, reference_labels: np.ndarray | None, runs: int, warmup: int,
                 max_seconds: float) -> list[dict]:
    """Rows (one per batch size) for one peer; `status` is "ok" or "cannot run: <reason>"."""
    base = {"peer": name, "engine": engine, "variant": variant}
    try:
        predict = build()
    except PeerUnavailable as exc:
        return [{**base, "batch": b, "status": f"cannot run: {exc}"} for b in inputs]
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party engine is a reported result
        return [{**base, "batch": b, "status": f"cannot run: {_short(exc)}"} for b in inputs]
    agreement = None
    if digits is not None and reference_labels is not None:
        try:
            labels = np.asarray(predict(predict.prepare(digits))).reshape(len(digits), -1).argmax(axis=1)
            agreement = float((labels == reference_labels).mean())
        except Exception as exc:  # noqa: BLE001
            return [{**base, "batch": b, "status": f"cannot run: {_short(exc)}"} for b in inputs]
    rows = []
    for batch, x in inputs.items():
        try:
            native = predict.prepare(x)
            samples = time_calls(lambda native=native: predict(native), max(20, runs // batch) if batch > 1 else runs,
                                 warmup, max_seconds)
        except Exception as exc:  # noqa: BLE001
            rows.append({**base, "batch": batch, "status": f"cannot run: {_short(exc)}"})
            continue
        stats = summarize(samples)
        rows.append({**base, "batch": batch, "status": "ok", **stats, "per_image_us": stats["p50_us"] / batch,
                     "top1_agreement": agreement})
        log.info("peer %-28s batch=%-3d p50 %9.1f µs", name, batch, stats["p50_us"])
    return rows


def run_peers(float32: Path | None, int8: Path | None, keras_path: Path | None, batches: tuple[int, ...] = BATCHES,
              runs: int = RUNS, warmup: int = WARMUP, max_seconds: float = MAX_SECONDS) -> dict:
    """Time every peer; ratios are each peer's p50 over LiteRT int8's p50 at the same batch (higher = slower).

    Returns:
        {"rows": [...], "conversion": {...}, "peak_rss_mib": float}
    """
    from digitlite import load_tensorflow

    try:
        tf = load_tensorflow()
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf_missing = None
    except ImportError as exc:
        tf_missing = f"tensorflow is not installed ({exc}); install the 'train' extra"
    from edge_app.runtime import Classifier

    pixel_model = float32 or int8
    if pixel_model is None:
        raise FileNotFoundError("peers need a float32 or int8 .tflite model: pass --float32 and/or --int8")
    pixels = Classifier(pixel_model).pixels_to_input
    rng = np.random.default_rng(0)
    inputs = {b: pixels(rng.integers(0, 256, (b, 28, 28), dtype=np.uint8)) for b in batches}
    digits_u8 = _digits(AGREEMENT_DIGITS)
    digits = None if digits_u8 is None else pixels(digits_u8)
    reference_labels = None
    if digits is not None and float32 is not None:
        reference_labels = litert(float32)(digits).argmax(axis=1)

    def need(path: Path | None, what: str) -> Path:
        if path is None or not Path(path).exists():
            raise PeerUnavailable(f"no {what} model (pass it with --{what.replace('.', '')})")
        return Path(path)

    def need_tf() -> None:
        if tf_missing:
            raise PeerUnavailable(tf_missing)

    conversion: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="digitlite-peers-"))
    onnx_path = tmp / "digits_float32.onnx"

    def build_onnx() -> Path:
        if "seconds" not in conversion and "error" not in conversion:
            try:
                need_tf()
                conversion["seconds"] = to_onnx(need(keras_path, "keras"), onnx_path)
                conversion["tool"] = "tf2onnx"
                conversion["opset"] = ONNX_OPSET
            except PeerUnavailable as exc:
                conversion["error"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - tf2onnx failing on this TF/numpy is a result
                conversion["error"] = f"tf2onnx could not convert the Keras model: {_short(exc)}"
        if "error" in conversion:
            raise PeerUnavailable(conversion["error"])
        return onnx_path

    def with_tf(fn: Callable[[], Predict]) -> Callable[[], Predict]:
        def build() -> Predict:
            need_tf()
            return fn()
        return build

    peers = [
        ("LiteRT int8", "ai_edge_litert", "int8", lambda: litert(need(int8, "int8"))),
        ("LiteRT float32", "ai_edge_litert", "float32", lambda: litert(need(float32, "float32"))),
        ("Keras model(x)", "keras", "float32", with_tf(lambda: keras_direct(need(keras_path, "keras")))),
        ("tf.lite.Interpreter int8", "tensorflow", "int8",
         with_tf(lambda: litert(need(int8, "int8"), runtime="tensorflow"))),
        ("tf.lite.Interpreter float32", "tensorflow", "float32",
         with_tf(lambda: litert(need(float32, "float32"), runtime="tensorflow"))),
        ("ONNX Runtime (tf2onnx)", "onnxruntime", "float32", lambda: onnxruntime_session(build_onnx())),
        ("OpenCV DNN .tflite int8", "opencv", "int8", lambda: opencv_dnn(need(int8, "int8"))),
        ("OpenCV DNN .tflite float32", "opencv", "float32", lambda: opencv_dnn(need(float32, "float32"))),
        ("OpenCV DNN .onnx (tf2onnx)", "opencv", "float32", lambda: opencv_dnn(build_onnx())),
    ]
    rows = []
    for name, engine, variant, build in peers:
        rows += measure_peer(name, engine, variant, build, inputs, digits, reference_labels, runs, warmup,
                             max_seconds)
    baseline = {r["batch"]: r["p50_us"] for r in rows if r["peer"] == "LiteRT int8" and r["status"] == "ok"}
    for row in rows:
        if row["status"] == "ok" and row["batch"] in baseline:
            row["ratio_to_int8"] = row["p50_us"] / baseline[row["batch"]]
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    return {"rows": rows, "conversion": conversion, "threads": 1, "peak_rss_mib": peak_rss_mib()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The same network on other engines, relative to LiteRT int8.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--float32", default=str(MODELS_DIR / "digits_float32.tflite"), help=".tflite float32")
    parser.add_argument("--int8", default=str(MODELS_DIR / "digits_int8.tflite"), help=".tflite int8")
    parser.add_argument("--keras", default=str(MODELS_DIR / "digits.keras"), help="the Keras model")
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCHES), help="images per call")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed calls at batch 1")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed calls first")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="time budget per peer and batch")
    parser.add_argument("--json-out", help="write the result here (default: stdout)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def existing(p: str) -> Path | None:
        return Path(p) if Path(p).exists() else None

    result = run_peers(existing(args.float32), existing(args.int8), existing(args.keras), tuple(args.batch),
                       args.runs, args.warmup, args.max_seconds)
    return emit_json(result, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
