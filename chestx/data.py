"""Find labelled X-rays, split them by patient, and feed them to Keras through tf.data.

A data folder is either ``NORMAL/`` + ``PNEUMONIA/`` or a Kaggle root whose ``train/`` (and
optional ``val/``, ``test/``) hold those. Kaggle file names carry the patient, and the split never
puts one patient's images in two splits (a random split leaks patients and flatters the model).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from chestx import config, dicom, imaging
from chestx.config import CLASS_NAMES, SPLIT_RATIOS
from chestx.errors import DataError, ImageError, NotAChestXrayError
from chestx.fileio import atomic_write_bytes
from chestx.imageformat import sniff_format

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
_PERSON = re.compile(r"^person(\d+)_", re.IGNORECASE)
_IM = re.compile(r"^(?:NORMAL2-)?IM-(\d+)-", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    path: Path
    label: int  # 0 NORMAL, 1 PNEUMONIA
    patient: str
    split: str = ""


def patient_id(filename: str) -> str:
    """``person12_virus_3.jpeg`` -> ``person12``; ``NORMAL2-IM-0115-0001.jpeg`` -> ``IM-0115``.

    Other names are their own patient (the stem): two of one patient's images can then fall
    into different splits, so ``find_data`` groups DICOM files by their PatientID.
    """
    name = Path(filename).name
    if m := _PERSON.match(name):
        return f"person{int(m.group(1))}"
    if m := _IM.match(name):
        return f"IM-{m.group(1)}"
    return Path(name).stem


def class_folders(folder: Path) -> dict[str, Path]:
    """The class folders in ``folder`` that exist (``{"NORMAL": …, "PNEUMONIA": …}``), from one
    listing, their names matched in any case (``normal/``, ``Pneumonia/``: how other collections
    name them). Two folders whose names differ only in case are refused: which one holds the
    class is the user's call."""
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.upper() in CLASS_NAMES and p.is_dir():
                found.setdefault(p.name.upper(), []).append(p)
    for cls, paths in found.items():
        if len(paths) > 1:
            names = " and ".join(f"{p.name}/" for p in sorted(paths))
            raise DataError(f"{folder} has both {names}: keep one {cls} folder")
    return {cls: paths[0] for cls, paths in found.items()}


def images_under(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursive; none if it does not exist), sorted.

    An image is a file with an image suffix, or one without whose first bytes name a format
    chestx reads: DICOM exports from a PACS often have no extension (``IM000001``,
    ``1.2.840.113619….``). DICOM files that store no image (a ``DICOMDIR`` index, reports,
    presentation states: ``dicom.holds_image``) are passed over, as a text file is. Hidden files and
    folders are not looked at: macOS leaves a ``._name.jpeg`` metadata file beside each image
    it copies, Jupyter an ``.ipynb_checkpoints/`` of copies."""
    return sorted(_images(folder))


def _images(folder: Path) -> Iterator[Path]:
    for p in folder.rglob("*"):
        if not hidden(p, folder) and p.is_file() and _is_image(p):
            yield p


def hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` is, or lies in, a hidden file or folder below ``root``."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _is_image(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        is_dicom = suffix in (".dcm", ".dicom")
    else:
        try:
            with path.open("rb") as f:
                is_dicom = sniff_format(f.read(132)) == "dicom"
        except (OSError, ImageError):
            return False
    return not is_dicom or dicom.holds_image(path)


def scan_folder(folder: Path, split: str = "") -> list[Record]:
    """Every image file under ``folder/NORMAL`` and ``folder/PNEUMONIA`` (``class_folders``),
    sorted by path."""
    folders = class_folders(folder)
    _warn_unlabelled(folder, folders)
    return [
        Record(path, label, patient_id(path.name), split)
        for label, cls in enumerate(CLASS_NAMES)
        if cls in folders
        for path in images_under(folders[cls])
    ]


def _warn_unlabelled(folder: Path, folders: dict[str, Path]) -> None:
    """Say what beside the class folders is left out: another class (``COVID/``), or X-rays
    that no folder labels. Silently dropped, they read as scored."""
    if not folders:
        return
    other = sorted(
        f"{p.name}/" if p.is_dir() else p.name
        for p in folder.iterdir()
        if not hidden(p, folder)
        and p not in folders.values()
        and (p.is_dir() and any(_images(p)) or p.is_file() and _is_image(p))  # stops at one
    )
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        log.warning(
            "%s: %s left out: only NORMAL/ and PNEUMONIA/ hold labelled X-rays", folder, shown
        )


def find_data(root: str | Path) -> dict[str, list[Record]]:
    """Return the labelled folders under ``root``: ``{"all": …}`` for a class folder, else
    ``{"train": …, "val": …, "test": …}`` for the parts of a Kaggle root that exist."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if class_folders(root):  # NORMAL/ alone too: a specificity audit
        found = {"all": scan_folder(root)}
    else:
        nested = root / "chest_xray" if (root / "chest_xray" / "train").is_dir() else root
        found = {
            s: scan_folder(nested / s, s)
            for s in ("train", "val", "test")
            if len(class_folders(nested / s)) == len(CLASS_NAMES)
        }
        if "train" not in found and found:
            found = {"all": [r for recs in found.values() for r in recs]}
    if not found or not any(found.values()):
        raise DataError(
            f"{root} holds no X-rays: expected NORMAL/ and PNEUMONIA/ folders (in any case), "
            "or a Kaggle root with train/NORMAL and train/PNEUMONIA"
        )
    for name, recs in found.items():
        if len({r.label for r in recs}) < 2:
            log.warning("%s: only one class present in %s", root, name)
    return _group_dicom_patients(found)


def _group_dicom_patients(found: dict[str, list[Record]]) -> dict[str, list[Record]]:
    """The records with DICOM files (not named as Kaggle's are) grouped by the PatientID in their
    headers, so one patient's X-rays never sit in two splits. A patient is named by the rank of
    their ID among the folder's (``dicom-3``): the ID itself is health information and must not
    reach a manifest or a card shipped with a model."""
    ids = {
        r.path: pid
        for recs in found.values()
        for r in recs
        if not (_PERSON.match(r.path.name) or _IM.match(r.path.name))
        and (pid := dicom.patient_of(r.path))
    }
    if not ids:
        return found
    rank = {pid: i for i, pid in enumerate(sorted(set(ids.values())), 1)}
    return {
        split: [
            replace(r, patient=f"dicom-{rank[ids[r.path]]}") if r.path in ids else r for r in recs
        ]
        for split, recs in found.items()
    }


def split_by_patient(
    records: list[Record], ratios: dict[str, float] = SPLIT_RATIOS, seed: int = 42
) -> dict[str, list[Record]]:
    """Stratified, patient-grouped, deterministic split into ``ratios``' keys.

    Patients of each class (a patient's class is the majority of their images) are shuffled
    with ``seed`` and dealt out so that each split reaches its share of that class's images.
    """
    by_patient: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_patient[r.patient].append(r)
    names = list(ratios)
    out: dict[str, list[Record]] = {n: [] for n in names}
    rng = random.Random(seed)
    for label in (0, 1):
        patients = sorted(
            p
            for p, rs in by_patient.items()
            if round(np.mean([r.label for r in rs]) + 1e-9) == label
        )
        rng.shuffle(patients)
        total = sum(len(by_patient[p]) for p in patients)
        bounds = np.cumsum([ratios[n] for n in names]) / sum(ratios.values()) * total
        done = 0
        for p in patients:
            # the split whose share the middle of this patient's images falls into
            mid = done + len(by_patient[p]) / 2
            idx = min(int(np.searchsorted(bounds, mid, side="right")), len(names) - 1)
            out[names[idx]].extend(
                Record(r.path, r.label, r.patient, names[idx]) for r in by_patient[p]
            )
            done += len(by_patient[p])
    return {n: sorted(rs, key=lambda r: str(r.path)) for n, rs in out.items()}


def make_splits(root: str | Path, seed: int = 42, limit: int | None = None):
    """The train/val/test records for ``chestx train`` and, if the data has one, the external
    test set (Kaggle's ``test/``), which is never used for choices, only reported."""
    found = find_data(root)
    pool = found.get("all") or found["train"] + found.get("val", [])
    if limit:
        pool = random.Random(seed).sample(pool, min(limit, len(pool)))
    splits = split_by_patient(pool, seed=seed)
    external = [Record(r.path, r.label, r.patient, "external") for r in found.get("test", [])]
    return splits, external


def split_counts(splits: dict[str, list[Record]]) -> dict[str, dict[str, int]]:
    """Images, pneumonia images and patients per split, as the model card reports them."""
    return {
        s: {
            "n": len(r),
            "pneumonia": sum(x.label for x in r),
            "patients": len({x.patient for x in r}),
        }
        for s, r in splits.items()
    }


def write_manifest(splits: dict[str, list[Record]], path: Path, root: Path) -> str:
    """Write the audit CSV (split, label, patient, path relative to the data root); return its
    SHA-256, which the model card records."""
    data = manifest_csv(splits, root)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def manifest_sha256(splits: dict[str, list[Record]], root: Path) -> str:
    """The SHA-256 ``write_manifest`` would return for ``splits``, without writing anything."""
    return hashlib.sha256(manifest_csv(splits, root)).hexdigest()


def manifest_csv(splits: dict[str, list[Record]], root: Path) -> bytes:
    """The audit CSV ``write_manifest`` writes: two runs with equal bytes split alike."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["split", "label", "patient", "path"])
    for split, recs in splits.items():
        for r in recs:
            rel = r.path.relative_to(root) if r.path.is_relative_to(root) else r.path
            writer.writerow([split, CLASS_NAMES[r.label], r.patient, rel.as_posix()])
    return out.getvalue().encode()


class DecodeLog:
    """Files left out during loading: unreadable ones (skipped with a warning, counted for the
    card) and, when the pipeline prepares images through a gated ``Predictor``, the ones the
    input gate refused (``refused``: path -> the gate's verdict)."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.refused: dict = {}

    def __len__(self):
        return len(self.failures)

    def record(self, path: str, exc: ImageError | OSError) -> None:
        if isinstance(exc, NotAChestXrayError):
            self.refused.setdefault(path, exc.verdict)
        elif path not in self.failures:
            log.warning("skipping %s: %s", path, exc)
            self.failures[path] = str(exc)


def _decoder(image_size: int, intensity: str, skipped: DecodeLog | None, prepare=None):
    """A NumPy function for tf.data: path -> (image, ok). A bad file yields ok=False and is
    logged once, so one unreadable X-ray never stops a run. Only file and image errors count as
    a bad file: anything else, a KeyboardInterrupt or SystemExit above all, propagates.
    ``prepare`` (file bytes -> model input, e.g. ``Predictor.prepare``) replaces the plain
    ``imaging`` path, so a gated predictor checks each file in the same single read. The plain
    path (training) skips a DICOM file whose header says it is not a frontal chest radiograph
    (``frontal_only``), which the gate would refuse when the model is used."""

    def decode(path):
        path = path.decode() if isinstance(path, bytes) else str(path)
        try:
            if prepare is not None:
                return prepare(Path(path).read_bytes()), True
            image = imaging.read_file(
                path, image_size=image_size, intensity=intensity, frontal_only=True
            )
            return image, True
        except (ImageError, OSError) as exc:
            if skipped is not None:
                skipped.record(path, exc)
            return np.zeros((image_size, image_size, 1), np.uint8), False

    return decode


def augmenter(*, seed: int | None = None, **strengths):
    """The tutorial's ImageDataGenerator (rotation, zoom, horizontal flip), rebuilt from Keras 3
    preprocessing layers, plus shift, brightness, contrast, gamma, blur and noise that mimic
    other scanners and exposures, ``crop``: a random tighter framing (zoom in by up to that
    fraction, height and width drawn apart), as another technician or scanner frames the chest,
    and ``stretch``: a random change of the height alone. The Kaggle X-rays come squashed to a
    square from originals of many aspect ratios, so the anatomy's proportions vary with the
    original's shape, not with the disease; ``stretch`` blurs that cue (at 0.2 and 0.4 it did not
    remove it: README, "Every recipe tried").

    ``strengths`` are the fields of ``config.Augmentation`` (``augmenter(**asdict(aug))``); one
    left out, 0 or False is off. None when every one is off."""
    unknown = sorted(set(strengths) - set(config.DEFAULT_AUGMENTATION))
    if unknown:
        raise TypeError(
            f"unknown augmentation {', '.join(unknown)}; "
            f"choose from {', '.join(config.DEFAULT_AUGMENTATION)}"
        )
    s = dict.fromkeys(config.DEFAULT_AUGMENTATION, 0.0) | strengths

    import keras
    from keras import layers

    from chestx.models.layers import RandomBlur, RandomGamma, layer_seed

    def seed_of(name: str) -> int | None:
        return layer_seed(seed, name)  # each augmentation draws apart from the others

    parts = []
    if s["flip"]:
        parts.append(layers.RandomFlip("horizontal", seed=seed_of("flip")))
    if s["rotation"]:
        parts.append(
            layers.RandomRotation(
                s["rotation"] / 360.0, fill_mode="constant", seed=seed_of("rotation")
            )
        )
    if crop := s["crop"]:
        parts.append(
            layers.RandomZoom(
                (-crop, 0.0),
                (-crop, 0.0),
                fill_mode="reflect",
                seed=seed_of("crop"),
                name="random_crop",
            )
        )
    if stretch := s["stretch"]:
        parts.append(
            layers.RandomZoom(
                (-stretch, stretch),
                (0.0, 0.0),
                fill_mode="constant",
                seed=seed_of("stretch"),
                name="random_stretch",
            )
        )
    if zoom := s["zoom"]:
        parts.append(layers.RandomZoom((-zoom, zoom), fill_mode="constant", seed=seed_of("zoom")))
    if shift := s["shift"]:
        parts.append(
            layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed_of("shift"))
        )
    if s["brightness"]:
        parts.append(
            layers.RandomBrightness(
                s["brightness"], value_range=(0, 255), seed=seed_of("brightness")
            )
        )
    if s["contrast"]:
        parts.append(
            layers.RandomContrast(s["contrast"], value_range=(0, 255), seed=seed_of("contrast"))
        )
    if s["gamma"]:
        parts.append(RandomGamma(s["gamma"], seed=seed_of("gamma"), name="random_gamma"))
    if s["blur"]:
        parts.append(RandomBlur(s["blur"], seed=seed_of("blur")))
    if s["noise"]:
        # GaussianNoise wants a 0-1 scale
        parts += [
            layers.Rescaling(1 / 255),
            layers.GaussianNoise(s["noise"] / 255, seed=seed_of("noise")),
            layers.Rescaling(255),
        ]
    return keras.Sequential(parts, name="augment") if parts else None


def dataset(
    records: list[Record],
    *,
    image_size: int,
    intensity: str,
    batch_size: int,
    training: bool = False,
    augment=None,
    seed: int = 42,
    skipped: DecodeLog | None = None,
    mixup: float = 0.0,
    prepare=None,
    targets: np.ndarray | None = None,
):
    """The tf.data input pipeline: parallel OpenCV decode, drop unreadable files, cache the
    decoded uint8 images in memory, shuffle, batch, augment in parallel, prefetch.
    ``prepare``: see ``_decoder``. ``targets``: one float training target per record in place of
    its 0/1 label (a teacher's soft targets, ``chestx.distill``)."""
    import tensorflow as tf

    decode = _decoder(image_size, intensity, skipped, prepare)

    def load(path, label):
        image, ok = tf.numpy_function(decode, [path], [tf.uint8, tf.bool], stateful=False)
        image.set_shape((image_size, image_size, 1))
        ok.set_shape(())
        return image, label, ok

    paths = [str(r.path) for r in records]
    labels = np.array([r.label for r in records], np.float32)
    if targets is not None:
        if len(targets) != len(records):
            raise ValueError(f"{len(targets)} targets for {len(records)} records")
        labels = np.asarray(targets, np.float32)
    ds = (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .filter(lambda image, label, ok: ok)
        .map(lambda image, label, ok: (image, label))
        .cache()
    )
    return _batches(
        ds,
        batch_size=batch_size,
        training=training,
        augment=augment,
        seed=seed,
        size=len(records),
        mixup=mixup,
    )


def array_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    training: bool = False,
    augment=None,
    seed: int = 42,
):
    """The same pipeline over images already in memory (the benchmark's input-bound check)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32)))
    return _batches(
        ds, batch_size=batch_size, training=training, augment=augment, seed=seed, size=len(x)
    )


def mix_batch(images, labels, alpha: float, seed: int):
    """mixup (Zhang et al. 2018): blend each image and label with another of the same batch,
    weight ``lam ~ Beta(alpha, alpha)`` per pair; soft labels soften over-confidence."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    g1 = tf.random.stateless_gamma([n], seed=seeds[0], alpha=alpha)
    g2 = tf.random.stateless_gamma([n], seed=seeds[1], alpha=alpha)
    lam = g1 / (g1 + g2)
    perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seeds[2])
    lam_x = tf.reshape(lam, [-1, 1, 1, 1])
    images = lam_x * images + (1 - lam_x) * tf.gather(images, perm)
    labels = lam * labels + (1 - lam) * tf.gather(labels, perm)
    return images, labels


def _batches(ds, *, batch_size, training, augment, seed, size, mixup: float = 0.0):
    import tensorflow as tf

    if training:
        ds = ds.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_float(images, labels):
        images = tf.cast(images, tf.float32)
        if training and augment is not None:
            images = tf.clip_by_value(augment(images, training=True), 0.0, 255.0)
        return images, labels

    # A Keras random layer keeps its seed's state in a variable: parallel calls race for it (a
    # batch repeats another's draws, the order changes from run to run) unless TensorFlow's op
    # determinism is on, as chestx train turns it on and chestx tune does not. So augmented
    # batches are made in order.
    in_order = training and augment is not None
    ds = ds.map(to_float, num_parallel_calls=None if in_order else tf.data.AUTOTUNE)
    if training and mixup:
        # one stateless seed per batch, from a seeded counter: deterministic for --seed
        seeds = tf.data.Dataset.counter().map(lambda i: tf.stack([tf.cast(seed, tf.int64), i]))
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: mix_batch(batch[0], batch[1], alpha=mixup, seed=s),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)
