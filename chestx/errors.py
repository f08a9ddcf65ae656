"""Every error chestx raises on purpose, in one place.

The command line turns a ``ChestxError`` into a one-line message and exit code 2; the web app
turns an ``ImageError`` into a 4xx JSON answer or a readable page.
"""


class ChestxError(Exception):
    """A problem with the user's input or set-up, reported without a traceback."""


class ImageError(ChestxError):
    """An uploaded or stored file cannot become a model input."""

    status = 400


class EmptyImageError(ImageError):
    """The file has no bytes."""


class UnsupportedImageError(ImageError):
    """The bytes are not an image format chestx reads (JPEG, PNG, BMP, TIFF, DICOM)."""

    status = 415


class CorruptImageError(ImageError):
    """The header says image, but the pixels cannot be decoded."""


class ImageTooLargeError(ImageError):
    """The header declares more pixels than allowed (a decompression bomb, or just too big)."""

    status = 413


class NotAChestXrayError(ImageError):
    """The input gate refused the image: not a frontal chest X-ray the model can judge.

    ``verdict`` is the gate's ``chestx.gate.Verdict`` (which check refused it, why, the score).
    """

    status = 422

    def __init__(self, verdict):
        super().__init__(f"{verdict.headline}: {verdict.reason}")
        self.verdict = verdict


class DataError(ChestxError):
    """A data folder is missing, empty or not laid out as NORMAL/ and PNEUMONIA/."""


class ModelError(ChestxError):
    """A model directory is missing, incomplete or unreadable."""


class TrainingError(ChestxError):
    """Training produced no model: it stopped (diverged, interrupted) before its first
    checkpoint."""
