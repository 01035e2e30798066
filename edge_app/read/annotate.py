"""Drawing a reading on its frame: each digit's box, class and confidence, and the reading on top."""

from __future__ import annotations

import cv2
import numpy as np

from digitdata.frames import as_bgr_uint8
from edge_app.read.reading import Reading


def annotate(frame_bgr: np.ndarray, reading: Reading, fps: float | None = None) -> np.ndarray:
    """A copy of the frame with each digit's box, class and confidence, and the reading on top."""
    out = as_bgr_uint8(frame_bgr).copy()
    scale = max(out.shape[:2]) / 640
    thick = max(1, round(2 * scale))
    for d in reading.digits:
        x, y, w, h = d.box
        colour = (0, 200, 0) if d.confidence >= 0.9 else (0, 165, 255)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        cv2.putText(out, f"{d.digit} {d.confidence:.0%}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, colour, thick, cv2.LINE_AA)
    banner = reading.text or "-"
    if fps is not None:
        banner += f"   {fps:.0f} fps"
    if reading.latency_ms:
        banner += f"   {reading.latency_ms.get('total', 0):.1f} ms"
    cv2.rectangle(out, (0, 0), (out.shape[1], round(28 * scale)), (0, 0, 0), -1)
    cv2.putText(out, banner, (6, round(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    return out
