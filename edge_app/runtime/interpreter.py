"""The LiteRT runtime: which one is installed, and the one place that builds an interpreter.

`make_interpreter` tries `ai_edge_litert`, then `tflite_runtime`, then `tensorflow.lite` (the last only if
TensorFlow happens to be imported already: the edge app never needs it). It also owns the thread count every
command shares (`DEFAULT_THREADS`, validated by `check_threads`).
"""

from __future__ import annotations

import importlib
import operator
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from edge_app.runtime.integrity import ModelError, check_tflite_file

# Interpreter (XNNPACK) threads for every command, the configuration file, the web view and the benchmarks.
# Interpreter (XNNPACK) threads for every command, the configuration file, the web view and the benchmarks.
DEFAULT_THREADS = min(2, os.cpu_count() or 1)  # two halve one's invoke time; other cores: camera, OpenCV, web
MAX_THREADS = 64  # more cores than any board has; the runtime crashes outright on absurd counts (100000)


RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")  # tried in this order


class RuntimeNotFound(ImportError):
    """No LiteRT runtime is installed."""


@dataclass(frozen=True)
class RuntimeInfo:
    name: str  # "ai_edge_litert", "tflite_runtime" or "tensorflow"
    version: str
    threads: int
    xnnpack: bool


def load_runtime(preferred: str | None = None):
    """(Interpreter class, OpResolverType enum or None, runtime name, version)."""
    names = (preferred,) if preferred else RUNTIMES
    errors = []
    for name in names:
        try:
            if name == "ai_edge_litert":
                module = importlib.import_module("ai_edge_litert.interpreter")
                version = getattr(importlib.import_module("ai_edge_litert"), "__version__", "?")
            elif name == "tflite_runtime":
                module = importlib.import_module("tflite_runtime.interpreter")
                version = getattr(importlib.import_module("tflite_runtime"), "__version__", "?")
            elif name == "tensorflow":
                if "tensorflow" not in sys.modules:
                    # Only used when already imported (convert/benchmarks); the edge app never pulls it in.
                    raise ImportError("tensorflow is not imported (the edge app never imports it)")
                tf = sys.modules["tensorflow"]
                module, version = tf.lite, tf.__version__
                module.OpResolverType = getattr(tf.lite.experimental, "OpResolverType", None)
            else:
                raise ImportError(f"unknown runtime {name!r}; valid runtimes are {', '.join(RUNTIMES)}")
            return module.Interpreter, getattr(module, "OpResolverType", None), name, version
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise RuntimeNotFound(
        "no LiteRT runtime found (" + "; ".join(errors) + "). Install one: pip install 'digitlite[edge]' "
        "(ai-edge-litert), or pip install tflite-runtime on Python < 3.12 with numpy 1.x."
    )


def check_threads(threads: int) -> int:
    """`threads` if it is a usable interpreter thread count (1 to MAX_THREADS); ValueError saying so otherwise."""
    try:
        count = None if isinstance(threads, bool) else operator.index(threads)
    except TypeError:
        count = None
    if count is None or not 1 <= count <= MAX_THREADS:
        raise ValueError(f"--threads {threads!r}: interpreter threads must be an integer from 1 to {MAX_THREADS} "
                         f"(this machine has {os.cpu_count()} CPUs; the default is {DEFAULT_THREADS}).")
    return count


def make_interpreter(model_path: str | Path, threads: int = DEFAULT_THREADS, xnnpack: bool = True,
                     runtime: str | None = None, content: bytes | None = None):
    """Build and allocate an interpreter for `model_path`.

    Args:
        model_path: a .tflite file.
        threads: CPU threads for the kernels (XNNPACK's thread pool when it is on).
        xnnpack: False applies the built-in kernels only (no default delegate), for comparisons.
        runtime: force one of RUNTIMES; default: the first one installed.
        content: the file's bytes when the caller has read (and checked) them already.

    Returns:
        (interpreter, RuntimeInfo)
    """
    path = Path(model_path)
    threads = check_threads(threads)
    content = check_tflite_file(path) if content is None else content
    interpreter_cls, resolver, name, version = load_runtime(runtime)
    kwargs = {"model_content": content, "num_threads": int(threads)}
    if not xnnpack:
        if resolver is None:
            raise ValueError(f"runtime {name} cannot turn XNNPACK off")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LiteRT's deprecation notice about tf.lite, not ours
            interpreter = interpreter_cls(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: the runtime could not load this model: {exc}") from exc
    return interpreter, RuntimeInfo(name, str(version), int(threads), bool(xnnpack))
