"""The LiteRT runtime, small and pure around the interpreter (pycoral's adapters):

- `interpreter`: which runtime is installed, thread counts, the one place an interpreter is built;
- `integrity`: where the released models are, a model file checked and verified against its manifest;
- `adapters`: `Classifier`, `RegionFinder`, `Recognizer`, each around one interpreter, the file read once.

The names below are the runtime's public interface; the rest of the project imports them from here.
"""

from edge_app.runtime.adapters import (
    MAX_BATCH,
    Classifier,
    GreyModel,
    ModelInfo,
    PixelConvention,
    Quantization,
    Recognizer,
    RegionFinder,
    dequantize,
    open_model,
    quantize,
    softmax,
    top_k,
)
from edge_app.runtime.integrity import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_NAME,
    DEFAULT_RECOGNIZER,
    DEFAULT_RECOGNIZER_NAME,
    DEFAULT_REGIONS,
    DEFAULT_REGIONS_NAME,
    MANIFEST_NAME,
    ModelError,
    ModelIntegrity,
    UnverifiedModelError,
    check_tflite_file,
    find_manifest_entry,
    model_integrity,
    models_dir,
    verify_model,
)
from edge_app.runtime.interpreter import (
    DEFAULT_THREADS,
    MAX_THREADS,
    RUNTIMES,
    RuntimeInfo,
    RuntimeNotFound,
    check_threads,
    load_runtime,
    make_interpreter,
)

__all__ = [
    "Classifier", "DEFAULT_MODEL", "DEFAULT_MODEL_NAME", "DEFAULT_RECOGNIZER", "DEFAULT_RECOGNIZER_NAME",
    "DEFAULT_REGIONS", "DEFAULT_REGIONS_NAME", "DEFAULT_THREADS", "GreyModel", "MANIFEST_NAME", "MAX_BATCH",
    "MAX_THREADS", "ModelError", "ModelInfo", "ModelIntegrity", "PixelConvention", "Quantization", "RUNTIMES",
    "Recognizer", "RegionFinder", "RuntimeInfo", "RuntimeNotFound", "UnverifiedModelError", "check_tflite_file",
    "check_threads", "dequantize", "find_manifest_entry", "load_runtime", "make_interpreter", "model_integrity",
    "models_dir", "open_model", "quantize", "softmax", "top_k", "verify_model",
]
