"""LiteRT (the TFLite runtime) export and inference, for hosts too small for TensorFlow.

``export_litert`` runs at training time, where TensorFlow is installed anyway, and writes
``model.tflite`` next to ``model.keras``. ``load_litert`` needs only the ``ai-edge-litert``
wheel (about 30 MB resident instead of TensorFlow's several hundred), so a 1 GiB t2.micro can
serve the same model. The XNNPACK CPU delegate is applied by the interpreter's default op
resolver; the input tensor is resized to each batch's size.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from chestx.errors import ModelError
from chestx.fileio import atomic_write_bytes
from chestx.modeldir import LITERT_FILE

log = logging.getLogger(__name__)


def _convert_saved_model(keras_model) -> bytes:
    """Keras model -> SavedModel -> TFLite flatbuffer (float32, variables frozen)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="chestx-litert-") as tmp:
        keras_model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        return converter.convert()


def _convert_keras(keras_model) -> bytes:
    """Keras' own LiteRT export (Keras >= 3.10); the fallback when the SavedModel route fails."""
    with tempfile.TemporaryDirectory(prefix="chestx-litert-") as tmp:
        path = Path(tmp) / LITERT_FILE
        keras_model.export(str(path), format="litert", verbose=False)
        return path.read_bytes()


def export_litert(keras_model, out_path: str | os.PathLike) -> Path | None:
    """Write ``keras_model`` as a LiteRT flatbuffer; ``out_path`` is a file or a model directory.

    Returns the written path, or ``None`` (logged, never raised) when no converter works here:
    a model directory without ``model.tflite`` still serves on the TensorFlow runtime.
    """
    out = Path(out_path)
    if out.is_dir() or not out.suffix:
        out = out / LITERT_FILE
    errors = []
    for convert in (_convert_saved_model, _convert_keras):
        try:
            flatbuffer = convert(keras_model)
        except Exception as exc:  # converter bugs, unsupported ops, missing TF: never fatal
            errors.append(f"{convert.__name__}: {type(exc).__name__}: {exc}")
            continue
        atomic_write_bytes(out, flatbuffer)  # never leave a half-written model.tflite behind
        log.info("wrote LiteRT model %s (%.1f MB)", out, len(flatbuffer) / 1e6)
        return out
    log.warning(
        "LiteRT export failed, the model serves on TensorFlow only: %s",
        " | ".join(e.splitlines()[0] for e in errors),
    )
    return None


def save_litert(model, model_dir: str | os.PathLike) -> None:
    """Add ``model.tflite`` to a model directory being written. The export is a bonus for small
    hosts: a failure is logged and never lets a finished model be lost."""
    try:
        export_litert(model, Path(model_dir) / LITERT_FILE)
    except Exception as exc:
        log.warning("LiteRT export failed: %s", exc)


class LiteRTModel:
    """A callable ``float32 (N, S, S, 1) -> (N,) P(pneumonia)`` over one LiteRT interpreter.

    An interpreter is not thread-safe, so calls are serialised with a lock; the web app's
    micro-batcher calls from one thread anyway.
    """

    def __init__(self, path: Path, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelError(
                "the litert runtime needs the ai-edge-litert package (pip install ai-edge-litert)"
            ) from exc
        self.path = path
        try:
            self._interpreter = Interpreter(
                model_path=str(path), num_threads=num_threads or os.cpu_count() or 1
            )
        except Exception as exc:  # a truncated or foreign file
            raise ModelError(f"cannot load {path}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        with self._lock:
            if batch.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
                self._interpreter.allocate_tensors()
                self._batch = batch.shape[0]
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output["index"]).reshape(-1).copy()


def load_litert(model_dir: str | os.PathLike, num_threads: int | None = None) -> LiteRTModel:
    """The LiteRT model of a model directory, as a batch -> probabilities callable."""
    path = Path(model_dir) / LITERT_FILE
    if not path.is_file():
        raise ModelError(
            f"{model_dir} has no {LITERT_FILE}: export it with "
            "chestx.litert.export_litert (training does) or use the tensorflow "
            "runtime"
        )
    return LiteRTModel(path, num_threads)
