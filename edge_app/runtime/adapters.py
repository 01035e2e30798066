"""The model adapters, small and pure around one interpreter each: `Classifier` (28x28 digit crops in,
probabilities out), and `GreyModel` with its two kinds, `RegionFinder` (where the numbers are) and
`Recognizer` (what they say). Each quantizes and dequantizes with the parameters its model declares.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_app.runtime.integrity import (
    DEFAULT_MODEL,
    DEFAULT_RECOGNIZER,
    DEFAULT_REGIONS,
    ModelError,
    check_tflite_file,
    model_integrity,
    verify_model,
)
from edge_app.runtime.interpreter import DEFAULT_THREADS, make_interpreter

log = logging.getLogger(__name__)


MAX_BATCH = 256  # crops per invoke; bounds the interpreter's arena on small devices


@dataclass(frozen=True)
class Quantization:
    """real = scale * (q - zero_point); scale 0 means the tensor is not quantized (float)."""

    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


@dataclass(frozen=True)
class PixelConvention:
    """How a 0-255 grey digit becomes the model's float input: x = pixel * scale + offset.

    The training stage writes this into its run config and the conversion stage into models/manifest.json;
    the edge app reads it from there.
    """

    scale: float
    offset: float
    polarity: str  # "white-on-black": ink is bright, paper is 0, as in MNIST
    height: int = 28
    width: int = 28

    @classmethod
    def from_dict(cls, d: dict) -> PixelConvention:
        return cls(float(d["scale"]), float(d["offset"]), str(d["polarity"]), int(d.get("height", 28)),
                   int(d.get("width", 28)))


@dataclass
class ModelInfo:
    path: str
    input_shape: list[int]
    input_dtype: str
    input_quant: Quantization
    output_shape: list[int]
    output_dtype: str
    output_quant: Quantization
    pixels: PixelConvention
    pixels_from: str  # where the pixel convention came from: "manifest", "input quantization" or "assumed"
    manifest_entry: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("manifest_entry")
        return d


def quantize(x: np.ndarray, quant: Quantization, dtype: np.dtype) -> np.ndarray:
    """q = round(x / scale) + zero_point, saturated to the integer type."""
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(x, np.float32) / quant.scale) + quant.zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, quant: Quantization) -> np.ndarray:
    """real = scale * (q - zero_point), widened to int64 first so uint8 - zero_point cannot wrap."""
    return (quant.scale * (q.astype(np.int64) - quant.zero_point)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int = 3) -> list[list[tuple[int, float]]]:
    """For each row, the k most likely classes with their probabilities, most likely first."""
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [[(int(c), float(row[c])) for c in idx] for row, idx in zip(probabilities, order, strict=True)]


def _quant(detail: dict) -> Quantization:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return Quantization(float(scale), int(zero_point))


def open_model(path: Path, threads: int, xnnpack: bool, runtime: str | None, manifest_path: str | Path | None,
               require_verified: bool, option: str = "--model"):
    """(integrity, interpreter, runtime) of a .tflite file, for every model adapter: the file read once, its
    integrity checked against the manifest (refused unless it matches, when `require_verified`), the manifest
    parsed once (its entry is `integrity.entry`)."""
    content = check_tflite_file(path, option)
    integrity = (verify_model(path, manifest_path, content=content) if require_verified
                 else model_integrity(path, manifest_path, content))
    return (integrity, *make_interpreter(path, threads, xnnpack, runtime, content))


class Classifier:
    """A digit classifier around one interpreter: float crops in, probabilities out.

    Args:
        model_path: the .tflite file (default: the released int8 model).
        threads: interpreter threads.
        xnnpack: use the XNNPACK delegate (default on).
        manifest_path: models/manifest.json; default: the one beside the model, when present.
        runtime: force a runtime (see RUNTIMES).
        pixels: the pixel convention, when the caller has it from elsewhere (the conversion stage reads the
            training run's config before any manifest exists); default: from the manifest.
        require_verified: refuse (UnverifiedModelError) a model whose sha256 does not match its manifest entry,
            or that has none, before loading it (`verify_model`); what the device commands ask for. Off, the
            integrity is still recorded in `.integrity`.
    """

    def __init__(self, model_path: str | Path = DEFAULT_MODEL, threads: int = DEFAULT_THREADS, xnnpack: bool = True,
                 manifest_path: str | Path | None = None, runtime: str | None = None,
                 pixels: PixelConvention | None = None, require_verified: bool = False):
        self.path = Path(model_path)
        self.integrity, self.interpreter, self.runtime = open_model(self.path, threads, xnnpack, runtime, manifest_path,
                                                                    require_verified)
        inp = self.interpreter.get_input_details()
        out = self.interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise ModelError(f"{self.path}: expected 1 input and 1 output, got {len(inp)} and {len(out)}")
        self._in, self._out = inp[0], out[0]
        shape = [int(s) for s in self._in["shape"]]
        if len(shape) != 4 or shape[1:] != [28, 28, 1]:
            raise ModelError(f"{self.path}: input shape {shape} is not (N, 28, 28, 1); "
                             f"this is not a digitlite digit classifier.")
        if list(self._out["shape"])[-1] != 10:
            raise ModelError(f"{self.path}: output shape {list(self._out['shape'])} does not have 10 classes.")
        entry = self.integrity.entry
        pixels, pixels_from = (pixels, "given") if pixels is not None else self._pixel_convention(entry)
        self.info = ModelInfo(
            path=str(self.path), input_shape=shape, input_dtype=np.dtype(self._in["dtype"]).name,
            input_quant=_quant(self._in), output_shape=[int(s) for s in self._out["shape"]],
            output_dtype=np.dtype(self._out["dtype"]).name, output_quant=_quant(self._out),
            pixels=pixels, pixels_from=pixels_from, manifest_entry=entry,
        )
        self._batch = int(shape[0])

    def _pixel_convention(self, entry: dict) -> tuple[PixelConvention, str]:
        if "pixels" in entry:
            return PixelConvention.from_dict(entry["pixels"]), "manifest"
        quant = _quant(self._in)
        if quant.quantized:
            # The calibrated input range is the float range the model was trained on.
            low = quant.scale * (np.iinfo(self._in["dtype"]).min - quant.zero_point)
            high = quant.scale * (np.iinfo(self._in["dtype"]).max - quant.zero_point)
            return PixelConvention((high - low) / 255.0, low, "white-on-black"), "input quantization"
        log.warning("%s: no manifest entry; assuming MNIST pixels in [0, 1], white digit on black", self.path)
        return PixelConvention(1 / 255.0, 0.0, "white-on-black"), "assumed"

    def __repr__(self) -> str:
        q = self.info.input_quant
        quant = f"scale={q.scale:.6g} zero_point={q.zero_point}" if q.quantized else "float"
        return (f"Classifier({self.path.name}, {self.info.input_dtype} input [{quant}], "
                f"runtime={self.runtime.name} {self.runtime.version}, threads={self.runtime.threads})")

    def pixels_to_input(self, digits_u8: np.ndarray) -> np.ndarray:
        """0-255 grey crops (N, 28, 28) white-on-black -> float model input (N, 28, 28, 1)."""
        p = self.info.pixels
        x = np.asarray(digits_u8, np.float32) * p.scale + p.offset
        return x.reshape(len(x), 28, 28, 1)

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self.interpreter.resize_tensor_input(self._in["index"], [n, 28, 28, 1])
            self.interpreter.allocate_tensors()
            self._batch = n

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10) float32 for float crops (N, 28, 28[, 1]) in the model's convention."""
        x = np.asarray(digits, np.float32)
        n = len(x)
        if n == 0:
            return np.zeros((0, 10), np.float32)
        x = x.reshape(n, 28, 28, 1)
        out_q = self.info.output_quant
        outputs = []
        for start in range(0, n, MAX_BATCH):
            chunk = x[start:start + MAX_BATCH]
            # Pad to a power of two so that frames with varying digit counts reuse a few tensor sizes.
            size = 1 << (len(chunk) - 1).bit_length()
            if size != len(chunk):
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), 28, 28, 1), np.float32)])
            raw = self._invoke(chunk)[: min(MAX_BATCH, n - start)]
            outputs.append(dequantize(raw, out_q) if out_q.quantized else raw.astype(np.float32))
        scores = np.concatenate(outputs)
        # The released models end in softmax; a model that outputs logits is normalised here.
        if not np.allclose(scores.sum(axis=1), 1.0, atol=0.05) or scores.min() < -1e-3:
            scores = softmax(scores)
        return scores

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """One invoke on float input (N, 28, 28, 1): quantized as the model declares; the raw output tensor."""
        self._resize(len(x))
        in_q = self.info.input_quant
        tensor = quantize(x, in_q, self._in["dtype"]) if in_q.quantized else x
        self.interpreter.set_tensor(self._in["index"], tensor.astype(self._in["dtype"], copy=False))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])

    def raw_output(self, digits: np.ndarray) -> np.ndarray:
        """The output tensor as the model returns it (integers for int8 models), for cross-machine checks."""
        return self._invoke(np.asarray(digits, np.float32).reshape(-1, 28, 28, 1)).copy()

    def predict(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, confidences) for float crops in the model's convention."""
        p = self.probabilities(digits)
        return p.argmax(axis=1), p.max(axis=1)


class GreyModel:
    """One interpreter with one grey (1, H, W, 1) input and one output: the region finder and the recognizer.

    The input is uint8 pixels (scaled by 1/255 and quantized as the model declares); the output is
    dequantized float32 without its batch axis. What the output means is the caller's (pure numpy:
    `digitdata.regions.decode`, `digitdata.ctc.greedy`).

    Args:
        model_path: the .tflite file.
        output_shape: the output's shape without the batch axis, None where any size is accepted; a model
            whose output differs is refused with a `ModelError` naming what it is not.
        kind: what the model is, for messages ("region finder", "number recognizer").
        threads, xnnpack, runtime, manifest_path, require_verified: as for `Classifier`.
    """

    def __init__(self, model_path: str | Path, output_shape: tuple, kind: str, threads: int = DEFAULT_THREADS,
                 xnnpack: bool = True, runtime: str | None = None, manifest_path: str | Path | None = None,
                 require_verified: bool = False):
        self.path, self.kind = Path(model_path), kind
        option = "--" + ("regions" if kind == "region finder" else "recognizer")
        self.integrity, self.interpreter, self.runtime = open_model(self.path, threads, xnnpack, runtime, manifest_path,
                                                                    require_verified, option)
        inp, out = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        shape = [int(v) for v in inp[0]["shape"]] if len(inp) == 1 else []
        got = tuple(int(v) for v in out[0]["shape"][1:]) if len(out) == 1 else ()
        if (len(shape) != 4 or shape[0] != 1 or shape[3] != 1 or len(got) != len(output_shape)
                or any(e is not None and e != g for e, g in zip(output_shape, got, strict=True))):
            raise ModelError(f"{self.path}: expected one grey (1, H, W, 1) input and one output shaped "
                             f"{output_shape}; got input {shape} and outputs "
                             f"{[list(d['shape']) for d in out]}: this is not a digitlite {kind}.")
        self._in, self._out = inp[0], out[0]
        self.input_size = (shape[2], shape[1])  # (width, height)
        self.output_shape = got
        self.entry = self.integrity.entry

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path.name}, input {self.input_size[0]}x{self.input_size[1]}, "
                f"runtime={self.runtime.name} {self.runtime.version}, threads={self.runtime.threads})")

    def run(self, image_u8: np.ndarray) -> np.ndarray:
        """The output (float32, no batch axis) for one (H, W) uint8 input of the model's size."""
        x = (np.asarray(image_u8, np.float32) / 255.0).reshape(self._in["shape"])
        q = _quant(self._in)
        tensor = quantize(x, q, self._in["dtype"]) if q.quantized else x
        self.interpreter.set_tensor(self._in["index"], tensor.astype(self._in["dtype"], copy=False))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._out["index"])[0]
        oq = _quant(self._out)
        return dequantize(raw, oq) if oq.quantized else raw.astype(np.float32)


class RegionFinder(GreyModel):
    """The region finder: a detector-sized grey picture in, a (rows, cols) "number here" map out."""

    def __init__(self, model_path: str | Path = DEFAULT_REGIONS, **kwargs):
        super().__init__(model_path, (None, None, 1), "region finder", **kwargs)

    def map(self, image_u8: np.ndarray) -> np.ndarray:
        return self.run(image_u8)[..., 0]


class Recognizer(GreyModel):
    """The number recognizer: a (32, 256) region in, per-column probabilities of the ten digits and the blank."""

    def __init__(self, model_path: str | Path = DEFAULT_RECOGNIZER, **kwargs):
        super().__init__(model_path, (None, 11), "number recognizer", **kwargs)
