"""The ``Predictor``: load a model directory once, classify many X-rays, in batches.

It is the one code path from file bytes to P(pneumonia) for the command line, the evaluator
and the web app, so they cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chestx import config, imaging, modeldir
from chestx.calibration import Calibration
from chestx.errors import ChestxError, ImageError, ModelError
from chestx.gate import Gate, Verdict, gate_status
from chestx.modeldir import check_card, load_card

log = logging.getLogger(__name__)

NO_IMAGES_IN_FOLDER = "a folder with no JPEG, PNG, BMP, TIFF or DICOM files in it"


@dataclass(frozen=True)
class Prediction:
    probability: float  # P(pneumonia)
    threshold: float

    @property
    def label(self) -> str:
        return config.CLASS_NAMES[int(self.probability >= self.threshold)]

    def as_dict(self) -> dict:
        return {
            "probability": round(self.probability, 6),
            "label": self.label,
            "threshold": self.threshold,
        }


class Predictor:
    """A loaded model with its card; call ``predict_bytes`` or ``predict_batch`` many times.

    ``runtime`` is ``"tensorflow"`` (Keras model through a ``tf.function``) or ``"litert"``
    (the model's LiteRT export, for small hosts). ``threshold`` overrides the card's. The card's
    ``temperature`` and ``logit_bias`` (site calibration, ``chestx calibrate``) rescale every
    probability, whatever the runtime; ``temperature=1.0, bias=0.0`` give the model's raw output.
    ``gate=False`` switches the model directory's input gate off (research use only).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        runtime: str = "tensorflow",
        threshold: float | None = None,
        temperature: float | None = None,
        bias: float | None = None,
        max_pixels: int = config.DEFAULT_MAX_PIXELS,
        gate: bool = True,
    ):
        self.model_dir = config.model_dir(model_dir)
        self.card = load_card(self.model_dir)
        check_card(self.card, self.model_dir)  # required keys; never a run still writing
        self.image_size = int(self.card["image_size"])
        self.intensity = self.card.get("intensity", "none")
        self.threshold = float(self.card["threshold"] if threshold is None else threshold)
        card_cal = Calibration.from_card(self.card)
        self.calibration = Calibration(
            card_cal.temperature if temperature is None else float(temperature),
            card_cal.bias if bias is None else float(bias),
        )
        if not self.calibration.temperature > 0:
            raise ModelError(
                f"{self.model_dir}: temperature must be positive, "
                f"not {self.calibration.temperature}"
            )
        self.max_pixels = max_pixels
        self.runtime = runtime
        self.name = self.card.get("name", self.model_dir.name)
        self.version = self.card.get("version", "unknown")
        self.gate = Gate.load(self.model_dir, self.card)
        self.gate_enabled = gate
        if runtime == "tensorflow":
            self._infer = self._load_keras()
        elif runtime == "litert":
            from chestx.litert import load_litert

            self._infer = load_litert(self.model_dir)
        else:
            raise ModelError(f"unknown runtime {runtime!r}; choose tensorflow or litert")
        log.info(
            "loaded model %s %s from %s (%s, threshold %.3f, input gate %s)",
            self.name,
            self.version,
            self.model_dir,
            runtime,
            self.threshold,
            self.gate_info["status"],
        )

    def _load_keras(self):
        import tensorflow as tf

        self.model = modeldir.load_keras(self.model_dir)  # kept for Grad-CAM
        infer = constant_inference(self.model, self.image_size)
        return lambda batch: infer(tf.convert_to_tensor(batch, tf.float32)).numpy()

    @property
    def info(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "logit_bias": self.logit_bias,
            "image_size": self.image_size,
            "runtime": self.runtime,
            "gate": self.gate_info["status"],
        }

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    @property
    def logit_bias(self) -> float:
        return self.calibration.bias

    @property
    def raw_threshold(self) -> float:
        """The threshold on the model's own (uncalibrated) output: the same decisions, for
        code that reads the network directly (Grad-CAM)."""
        return self.calibration.raw_threshold(self.threshold)

    @property
    def gate_info(self) -> dict:
        """The input gate: status ``on``, ``off`` (switched off) or ``absent``, its version."""
        return gate_status(self.gate, self.gate_enabled)

    @property
    def active_gate(self) -> Gate | None:
        """The gate that checks inputs: ``None`` when absent or switched off."""
        return self.gate if self.gate_enabled else None

    @property
    def gating(self) -> bool:
        return self.active_gate is not None

    def verdict(self, data: bytes) -> Verdict | None:
        """The input gate's verdict on file bytes (``None`` with the gate off or absent)."""
        gate = self.active_gate
        if gate is None:
            return None
        return gate.verdict(imaging.decode(data, max_pixels=self.max_pixels))

    def prepare(self, data: bytes) -> np.ndarray:
        """File bytes -> (S, S, 1) uint8 exactly as in training; raises ``ImageError``, and
        ``NotAChestXrayError`` when the input gate refuses the image."""
        gate = self.active_gate
        decoded = imaging.decode(data, max_pixels=self.max_pixels, colour=gate is not None)
        if gate is not None:
            gate.check(decoded)
        return imaging.model_input(
            decoded.gray, image_size=self.image_size, intensity=self.intensity
        )

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) pixels -> (N,) P(pneumonia)."""
        if len(images) == 0:
            return np.zeros(0, np.float32)
        prob = np.asarray(self._infer(np.asarray(images, np.float32))).reshape(-1)
        return self.calibration.apply(prob)

    def result(self, probability: float) -> Prediction:
        return Prediction(float(probability), self.threshold)

    def predict_bytes(self, data: bytes) -> Prediction:
        return self.result(self.predict_batch(self.prepare(data)[np.newaxis])[0])

    def predict_files(self, paths: Sequence[str | Path], batch_size: int = 32) -> list[dict]:
        """One dict per image file, in order: the prediction, or ``{"path", "error"}``. A folder
        stands for the image files under it (``image_files``); one without any gets an error."""
        paths = image_files(paths)
        out: list[dict] = [{} for _ in paths]
        for start in range(0, len(paths), batch_size):
            ready, images = [], []
            for i, path in enumerate(paths[start : start + batch_size], start):
                try:
                    images.append(self.prepare(Path(path).read_bytes()))
                    ready.append(i)
                except IsADirectoryError:  # image_files left it: it holds no images
                    out[i] = {"path": str(path), "error": NO_IMAGES_IN_FOLDER}
                except (ImageError, OSError) as exc:
                    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    out[i] = {"path": str(path), "error": str(message)}
            if ready:
                probs = self.predict_batch(np.stack(images))
                for i, p in zip(ready, probs, strict=True):
                    out[i] = {"path": str(paths[i]), **self.result(p).as_dict()}
        return out

    def warm_up(self) -> None:
        """Trace and run the model once so the first real request is not slow."""
        self.predict_batch(np.zeros((1, self.image_size, self.image_size, 1), np.uint8))


def constant_inference(model, image_size: int):
    """A ``tf.function`` that runs ``model`` on grey ``image_size`` batches for inference, with
    its weights as constants: ``stateless_call`` on constant tensors instead of a call that
    reads every variable. A predictor never trains, and with the weights fixed in the graph
    TensorFlow's graph optimiser can fold the arithmetic that depends on them alone
    (BatchNormalization's scale and shift) ahead of time. Same outputs within float rounding,
    about a fifth more images/s on the 2-core machine (README, "Speed and memory")."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, image_size, image_size, 1), tf.float32)
    trainable = [v.numpy() for v in model.trainable_variables]
    non_trainable = [v.numpy() for v in model.non_trainable_variables]

    @tf.function(input_signature=[spec], reduce_retracing=True)
    def infer(images):
        outputs, _ = model.stateless_call(
            [tf.constant(v) for v in trainable],
            [tf.constant(v) for v in non_trainable],
            images,
            training=False,
        )
        return outputs

    return infer


def image_files(paths: Sequence[str | Path]) -> list[str | Path]:
    """``paths`` with each folder replaced by the image files under it, sorted by path; a
    folder without any stays, to be answered with an error."""
    from chestx.data import images_under

    files: list[str | Path] = []
    for arg in paths:
        under = images_under(Path(arg)) if Path(arg).is_dir() else []
        files.extend([str(f) for f in under] or [arg])
    return files


def predict_from_args(args) -> int:
    """``chestx predict``: one JSON line per image; exit 1 if any image failed."""
    missing = [p for p in args.images if not Path(p).exists()]
    if len(missing) == len(args.images):
        raise ChestxError(
            f"no such file: {missing[0]}"
            if len(missing) == 1
            else f"none of the {len(missing)} files exist"
        )
    predictor = Predictor(args.model)
    rows = predictor.predict_files(args.images, batch_size=args.batch_size)
    failed = 0
    for row in rows:
        failed += "error" in row
        print(json.dumps(row), flush=True)
    if failed:
        print(
            f"chestx: {failed} of {len(rows)} images could not be classified",
            file=sys.stderr,
        )
    return 1 if failed else 0
