"""The canary: before a device activates a new bundle, it reads the device's own corrected examples with the new
reader and with the one in use; the new one is refused if it reads them worse.

What is read: every corrected reading the history kept examples of (the newest `CANARY_MAX_READINGS`): each
number region labelled with its number (the recognizer alone, as `train-recognizer --extra` learns from them),
and the frame, read whole, against the corrected text (whitespace removed, as `digitlite eval` scores); and the
golden images the bundle carries, if any. The new bundle is refused if it reads either set worse. A device with
no corrections and a bundle with no golden images have nothing to judge by: the canary says so and lets the
bundle through.
`update` is the one way a device switches bundles after an install (`digitlite models`, the MQTT fleet agent):
the bundle's signer checked against the device's trusted keys, the canary, then the atomic switch, and the
outcome kept for the page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from digitdata import ctc
from edge_app.config import CANARY_MAX_READINGS, FILE_LIMITS, ReaderOptions
from edge_app.read.images import ImageError, decode_image
from edge_app.store.history import REGION_SHAPE, ReadingStore, default_history_path
from edge_app.store.models import ModelStore


@dataclass(frozen=True)
class Score:
    """How one reader read the examples."""

    regions: int  # labelled number regions
    regions_exact: int
    frames: int  # kept frames of corrected readings
    frames_exact: int

    @property
    def exact(self) -> int:
        return self.regions_exact + self.frames_exact

    @property
    def total(self) -> int:
        return self.regions + self.frames

    def __str__(self) -> str:
        return (f"{self.exact}/{self.total} exact (regions {self.regions_exact}/{self.regions}, frames "
                f"{self.frames_exact}/{self.frames})")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    current: Score  # the models in use, on this device's corrections
    candidate: Score  # the new bundle, on the same
    reason: str
    golden_current: Score | None = None  # on the bundle's golden images (None: it carries none)
    golden_candidate: Score | None = None

    def to_dict(self) -> dict:
        golden = ({"current": asdict(self.golden_current), "candidate": asdict(self.golden_candidate)}
                  if self.golden_current else None)
        return {"passed": self.passed, "reason": self.reason, "current": asdict(self.current),
                "candidate": asdict(self.candidate), "golden": golden}


def decoded(pictures: list[tuple[bytes, str]]) -> list:
    """[(frame, label)] of image files' bytes, decoded as `digitlite read` decodes a file (bounded work for any
    bytes); one that does not decode is left out."""
    frames = []
    for data, text in pictures:
        try:
            frames.append((decode_image(data, FILE_LIMITS), text))
        except ImageError:
            continue
    return frames


def examples(history: ReadingStore, limit: int = CANARY_MAX_READINGS) -> tuple[list, list]:
    """(labelled regions [(32x256 uint8, number)], frames [(frame, corrected text)]) of the newest `limit`
    corrected readings."""
    regions, kept = [], []
    for c in list(history.corrections())[-limit:]:
        if c["crops"] is not None and c["labels"] is not None and c["crops"].shape[1:] == REGION_SHAPE:
            regions += list(zip(c["crops"], c["labels"], strict=True))
        if c["frame_jpeg"] is not None:
            kept.append((c["frame_jpeg"], c["corrected_text"]))
    return regions, decoded(kept)


def _squeeze(text: str) -> str:
    return "".join(text.split())


def score(reader, regions: list, frames: list) -> Score:
    """How many of the examples `reader` (an `edge_app.read.DigitReader`) reads exactly."""
    regions_exact = sum(ctc.greedy(reader.recognizer.run(region))[0] == _squeeze(label) for region, label in regions)
    frames_exact = sum(_squeeze(reader.read(frame).text) == _squeeze(text) for frame, text in frames)
    return Score(len(regions), int(regions_exact), len(frames), int(frames_exact))


def judge(history: ReadingStore, current, candidate, golden: list | None = None) -> Verdict:
    """Read the device's corrected examples (and the bundle's golden images) with both readers; the candidate
    passes unless it reads fewer of either exactly."""
    regions, frames = examples(history)
    now, new = score(current, regions, frames), score(candidate, regions, frames)
    gold = decoded([(data, text) for _, data, text in golden or []])
    gold_now, gold_new = (score(current, [], gold), score(candidate, [], gold)) if gold else (None, None)
    if gold and gold_new.exact < gold_now.exact:
        return Verdict(False, now, new, f"the new bundle reads its own golden images worse than the models in use: "
                                        f"{gold_new} against {gold_now}", gold_now, gold_new)
    if not regions and not frames:
        checked = f"; its golden images: {gold_new} against {gold_now}" if gold else ""
        return Verdict(True, now, new, f"no corrected examples on this device yet: nothing to judge by{checked}",
                       gold_now, gold_new)
    if new.exact < now.exact:
        return Verdict(False, now, new, f"the new bundle reads this device's corrections worse: {new} against "
                                        f"{now} with the models in use", gold_now, gold_new)
    return Verdict(True, now, new, f"the new bundle reads this device's corrections as well or better: {new} "
                                   f"against {now}", gold_now, gold_new)


def update(store: ModelStore, version: str, history_path=None, force: bool = False) -> dict:
    """Activate an installed bundle if the canary passes (or `force`): {"outcome": "activated" | "refused",
    "version", "reason", "canary": Verdict.to_dict() or None}; the outcome is also kept in the store.

    Raises:
        BundleError: the bundle is not installed, no key this device trusts signed it (`ModelStore.verify`), or
            its files do not check.
        One of `edge_app.wiring.MODEL_ERRORS`: a model of the bundle (or in use) cannot be loaded.
    """
    from edge_app.wiring import reader_from

    store.verify_installed(version)  # before the canary reads anything with it; `force` skips only the canary
    verdict = None
    if not force:
        paths = store.paths(version)
        candidate = reader_from(ReaderOptions(**{role: str(path) for role, path in paths.items()}))
        current = reader_from(ReaderOptions())
        db = history_path or default_history_path()
        history = ReadingStore(db, create=False) if db.is_file() else ReadingStore(":memory:")
        try:
            verdict = judge(history, current, candidate, store.golden(version))
        finally:
            history.close()
        if not verdict.passed:
            store.record_update(version, "refused", verdict.reason)
            return {"outcome": "refused", "version": version, "reason": verdict.reason, "canary": verdict.to_dict()}
    store.activate(version)
    reason = verdict.reason if verdict else "--force: activated without the canary"
    store.record_update(version, "activated", reason)
    return {"outcome": "activated", "version": version, "reason": reason,
            "canary": verdict.to_dict() if verdict else None}
