"""A model file's integrity: where the released models are, the file checked as a .tflite, and its sha256
against its manifest entry (`verify_model`, what every adapter calls before loading a model).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


DEFAULT_MODEL_NAME = "digits_int8.tflite"  # the product: full-integer, the fast path on the Pi's ARM cores
DEFAULT_REGIONS_NAME = "regions_int8.tflite"  # the region finder: where the numbers are


DEFAULT_RECOGNIZER_NAME = "recognizer_int8.tflite"  # the number recognizer: what they say


class ModelError(ValueError):
    """The model file is missing, is not a valid .tflite, or does not take 28x28x1 digits."""


class UnverifiedModelError(ModelError):
    """The model file's sha256 differs from its manifest entry, or there is no entry to compare it with."""


def models_dir() -> Path:
    """The released models: `edge_app/models/` in an installed wheel (pyproject maps the checkout's `models/`
    there), the checkout's `models/` when running from the source tree (editable install or PYTHONPATH)."""
    package = Path(__file__).resolve().parent.parent  # edge_app/
    installed = package / "models"
    return installed if installed.is_dir() else package.parent / "models"


DEFAULT_MODEL = models_dir() / DEFAULT_MODEL_NAME
DEFAULT_REGIONS = models_dir() / DEFAULT_REGIONS_NAME


DEFAULT_RECOGNIZER = models_dir() / DEFAULT_RECOGNIZER_NAME


def check_tflite_file(path: Path, option: str = "--model") -> bytes:
    """The model's bytes, after checking it exists and carries the TFLite flatbuffer identifier; `option` is the
    command-line option that names this model (for the message)."""
    if not path.is_file():
        raise ModelError(f"model file {path} not found. Convert one with `digitlite convert MODEL.keras` "
                         f"or pass {option} with a .tflite path (the released models are in {models_dir()}).")
    content = path.read_bytes()
    # A TFLite flatbuffer has its file identifier "TFL3" at bytes 4-8.
    if len(content) < 16 or content[4:8] != b"TFL3":
        raise ModelError(f"{path} is not a TFLite model ({len(content)} bytes, no 'TFL3' identifier); "
                         f"the file may be truncated or corrupt.")
    return content


@dataclass(frozen=True)
class ModelIntegrity:
    """A model file's sha256 and what its manifest says it should be."""

    path: str
    sha256: str
    manifest: str | None  # the manifest compared with; None when there is none beside the model
    expected: str | None  # the sha256 its entry records; None when it has no entry (or no sha256)
    entry: dict = field(default_factory=dict, repr=False, compare=False)  # the manifest entry ({} without one)

    @property
    def status(self) -> str:
        """"verified", "mismatch", "no manifest" or "no entry"."""
        if self.manifest is None:
            return "no manifest"
        if self.expected is None:
            return "no entry"
        return "verified" if self.expected == self.sha256 else "mismatch"

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def problem(self) -> str:
        """What is wrong, in words ("" when verified)."""
        name = Path(self.path).name
        return {
            "verified": "",
            "mismatch": f"{self.path}: its sha256 {self.sha256[:12]}... differs from the one {self.manifest} records "
                        f"({(self.expected or '')[:12]}...): the file is corrupt, was changed, or is from another "
                        f"release",
            "no manifest": f"{self.path}: there is no {MANIFEST_NAME} beside it to verify it against",
            "no entry": f"{self.path}: {self.manifest} has no sha256 for {name}",
        }[self.status]


def model_integrity(model_path: str | Path, manifest_path: str | Path | None = None,
                    content: bytes | None = None) -> ModelIntegrity:
    """The model's sha256 and its manifest entry's, without judging them (see `verify_model`).

    Args:
        model_path: the model file.
        manifest_path: the manifest; default: manifest.json beside the model.
        content: the file's bytes when the caller has read them already.

    Raises:
        ModelError: the manifest exists but is not valid JSON.
    """
    path = Path(model_path)
    manifest = Path(manifest_path) if manifest_path else path.parent / MANIFEST_NAME
    sha = hashlib.sha256(path.read_bytes() if content is None else content).hexdigest()
    if not manifest.is_file():
        return ModelIntegrity(str(path), sha, None, None)
    entry = find_manifest_entry(path, manifest)
    return ModelIntegrity(str(path), sha, str(manifest), entry.get("sha256") or None, entry)


def verify_model(model_path: str | Path, manifest_path: str | Path | None = None, allow_unverified: bool = False,
                 content: bytes | None = None) -> ModelIntegrity:
    """Compare a model file's sha256 with its manifest entry before it is loaded; any model adapter calls this.

    Args:
        model_path: the model file (classifier, detector, ...).
        manifest_path: the manifest; default: manifest.json beside the model.
        allow_unverified: use a model that does not match, or has no entry (the user's own model); it is
            logged as a warning instead of refused.
        content: the file's bytes when the caller has read them already.

    Returns:
        The integrity record (its `sha256` goes into every reading's history row).

    Raises:
        UnverifiedModelError: mismatch, no manifest or no entry, unless `allow_unverified`.
        ModelError: the manifest is not valid JSON.
    """
    integrity = model_integrity(model_path, manifest_path, content)
    if integrity.verified:
        return integrity
    if allow_unverified:
        log.warning("%s; used anyway (--allow-unverified)", integrity.problem())
        return integrity
    fix = ("copy the model and manifest.json again from the same release" if integrity.status == "mismatch" else
           "use a model released by `digitlite convert` (it writes the manifest entry)")
    raise UnverifiedModelError(f"{integrity.problem()}. Refusing to load it: {fix}, or pass --allow-unverified "
                               f"to use this file as it is.")


def find_manifest_entry(model_path: Path, manifest_path: str | Path | None = None) -> dict:
    """The manifest entry for `model_path` (by file name) from `manifest_path` or the model's folder."""
    manifest = Path(manifest_path) if manifest_path else model_path.parent / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    try:
        models = json.loads(manifest.read_text()).get("models", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ModelError(f"{manifest}: not a valid manifest ({exc})") from exc
    return models.get(model_path.name, {})
