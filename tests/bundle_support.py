"""Model bundles for tests: a signing key and a device configuration that trusts it, a bundle whose recognizer
reads nothing (worse than the released one on any corrected examples), and a readings history of the golden
photos, each corrected to its true text.

Imported by tests (pytest puts tests/ on sys.path); not a test module itself.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2

from edge_app.runtime.bundle import pack_release, sha256_bytes
from edge_app.runtime.signing import generate
from edge_app.store.history import ReadingStore

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
GOLDEN = REPO / "tests" / "data" / "golden"
TRIO = ("digits_int8.tflite", "regions_int8.tflite", "recognizer_int8.tflite")


def blank_recognizer(path: Path) -> None:
    """A recognizer of the released one's shape (32x256 in, 64 columns of 11 classes out) that reads every region
    as nothing: every column's most likely class is the CTC blank."""
    from digitlite import load_tensorflow

    tf = load_tensorflow()
    keras = tf.keras
    inputs = keras.Input((32, 256, 1), batch_size=1)
    x = keras.layers.AveragePooling2D((32, 4))(inputs)
    x = keras.layers.Reshape((64, 1))(x)
    outputs = keras.layers.Dense(11, activation="softmax", kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant([0.0] * 10 + [9.0]))(x)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert())


def make_key(folder: Path, name: str = "test-release") -> Path:
    """A new signing key in `folder` (`digitlite models keygen`): returns the private key; KEY.pub is beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    generate(folder / f"{name}.key", name)
    return folder / f"{name}.key"


def device_config(path: Path, *keys: Path, allow_unsigned: bool = False, extra: str = "") -> Path:
    """A device configuration at `path` whose [models] trusts the .pub of each private key in `keys`."""
    trusted = ", ".join(json.dumps(f"{key}.pub") for key in keys)
    path.write_text(f"{extra}[models]\ntrusted_keys = [{trusted}]\nallow_unsigned = "
                    f"{'true' if allow_unsigned else 'false'}\n")
    return path


def make_worse_bundle(folder: Path, version: str = "worse", key: Path | None = None) -> Path:
    """`folder`/<version>.bundle: the released classifier and region finder with the blank recognizer, signed with
    `key` when given."""
    for name in (*TRIO, "manifest.json"):
        shutil.copy(MODELS / name, folder / name)
    blank_recognizer(folder / TRIO[2])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"][TRIO[2]]["sha256"] = sha256_bytes((folder / TRIO[2]).read_bytes())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    pack_release(folder, folder / f"{version}.bundle", version, sign=key)
    return folder / f"{version}.bundle"


def make_corrected_history(path: Path, count: int = 6) -> Path:
    """A history at `path` of the first `count` golden photos read by the released reader (regions and frame
    kept), each corrected to its true text."""
    from edge_app.wiring import make_reader

    reader = make_reader()
    history = ReadingStore(path)
    with open(GOLDEN / "truth.csv") as f:
        truth = {row["file"]: row["text"] for row in csv.DictReader(f)}
    for name, text in list(truth.items())[:count]:
        frame = cv2.imread(str(GOLDEN / name))
        reading = reader.read(frame)
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        record = history.add(reading.to_dict(), name, reader.integrity.sha256, crops=reading.crops, frame_jpeg=jpeg)
        history.correct(record["id"], text)
    history.close()
    return path

