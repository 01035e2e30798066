"""models/manifest.json: what each released model file is, how it was made, and how accurate it was.

Per model file: sha256, bytes, input/output shape, dtype and quantization, pixel convention, accuracy
(overall and per class) with the test-set checksum it was measured on, the Keras model it came from,
the training config, the commands that made it, library versions.

    python -m json.tool models/manifest.json
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from digitdata.atomic import write_json
from digitdata.mnist import FILES
from edge_app.runtime import Classifier, PixelConvention

SCHEMA = 1


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {"schema": SCHEMA, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest.get("models"), dict):
        raise ValueError(f"{path}: not a digitlite manifest (no 'models' object)")
    return manifest


def tensor_spec(clf: Classifier) -> tuple[dict, dict]:
    info = clf.info

    def spec(shape, dtype, quant):
        return {"shape": shape, "dtype": dtype,
                "quantization": {"scale": quant.scale, "zero_point": quant.zero_point} if quant.quantized else None}

    return (spec(info.input_shape, info.input_dtype, info.input_quant),
            spec(info.output_shape, info.output_dtype, info.output_quant))


def entry(model_file: Path, variant: str, evaluation, pixels: dict, source: dict, commands: list[str],
          versions: dict, extra: dict | None = None) -> dict:
    """The manifest entry of one released model file (after it passed the checks)."""
    clf = Classifier(model_file, threads=1, manifest_path=Path("/nonexistent"),
                     pixels=PixelConvention.from_dict(pixels))
    inp, out = tensor_spec(clf)
    return {
        "variant": variant,
        "sha256": sha256_file(model_file),
        "bytes": model_file.stat().st_size,
        "input": inp,
        "output": out,
        "pixels": pixels,
        "accuracy": {
            "overall": evaluation.accuracy,
            "errors": int((~evaluation.correct).sum()),
            "per_class": evaluation.per_class(),
            "test_images_sha256": FILES["test_images"][1],
            "test_labels_sha256": FILES["test_labels"][1],
            "runtime": f"{clf.runtime.name} {clf.runtime.version}",
        },
        "source_model": source,
        "commands": commands,
        "versions": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def update(path: str | Path, entries: dict[str, dict]) -> None:
    """Add or replace entries (keyed by file name) and write the manifest atomically."""
    manifest = read(path)
    manifest["schema"] = SCHEMA
    manifest["models"].update(entries)
    write_json(path, manifest)
