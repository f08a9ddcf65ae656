"""``chestx data download``: the Kaggle data set, fetched with the official ``kaggle`` package.

Kaggle credentials come the usual way (``~/.kaggle/kaggle.json`` mode 600, or ``KAGGLE_USERNAME``
and ``KAGGLE_KEY``). ``--archive`` unpacks a zip you already have (hosts without internet, tests).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from chestx.config import CLASS_NAMES
from chestx.data import hidden, scan_folder
from chestx.errors import ChestxError, DataError

log = logging.getLogger(__name__)

KAGGLE_DATASET = "paultimothymooney/chest-xray-pneumonia"
# Images per class in the published archive (Kermany et al. 2018, Kaggle version 2).
KAGGLE_COUNTS = {
    "train": {"NORMAL": 1341, "PNEUMONIA": 3875},
    "val": {"NORMAL": 8, "PNEUMONIA": 8},
    "test": {"NORMAL": 234, "PNEUMONIA": 390},
}


def count_classes(root: Path) -> dict[str, dict[str, int]]:
    """Images per split and class under a Kaggle-layout ``root``."""
    counts = {}
    for split in ("train", "val", "test"):
        if all((root / split / c).is_dir() for c in CLASS_NAMES):
            recs = scan_folder(root / split)
            counts[split] = {c: sum(r.label == i for r in recs) for i, c in enumerate(CLASS_NAMES)}
    return counts


def find_root(dest: Path) -> Path | None:
    """The folder under ``dest`` holding ``train/NORMAL`` (Kaggle zips nest it once or twice)."""
    for candidate in sorted(dest.rglob("train"), key=lambda p: len(p.parts)):
        cut_off = hidden(candidate, dest)  # in an unpacking folder that SIGKILL left behind
        macosx = "__MACOSX" in candidate.parts
        if not cut_off and not macosx and (candidate / "NORMAL").is_dir():
            return candidate.parent
    return None


def unpack(archive: Path, dest: Path) -> None:
    """Unzip ``archive`` into a hidden folder inside ``dest`` and move its entries in only if it
    holds the data set: a wrong or damaged archive, or Ctrl-C, leaves ``dest`` as it was, and
    nothing already in ``dest`` is overwritten."""
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=dest))
    try:
        safe_extract(archive, staging)
        shutil.rmtree(staging / "__MACOSX", ignore_errors=True)  # a Mac's zip debris
        if find_root(staging) is None:
            raise DataError(f"{archive} holds no train/NORMAL folder: not the chest X-ray data set")
        entries = sorted(staging.iterdir())
        if clash := next((e.name for e in entries if (dest / e.name).exists()), None):
            raise DataError(
                f"{dest / clash} exists but is not the complete data set: "
                "remove it, or choose another --dest"
            )
        for entry in entries:
            entry.rename(dest / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def safe_extract(archive: Path, dest: Path) -> None:
    """Unzip, refusing members that would land outside ``dest`` (zip-slip)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            base = dest.resolve()
            for member in zf.namelist():
                target = (dest / member).resolve()
                if not target.is_relative_to(base):
                    raise DataError(f"{archive}: member {member!r} points outside --dest")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a valid zip archive: {exc}") from None


def _kaggle_api():
    # Importing the kaggle package tries to authenticate and prints help on failure; keep it quiet
    # and give one clear line instead.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise ChestxError("the kaggle package is not installed: pip install kaggle") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except (SystemExit, Exception):
            raise ChestxError(
                "no Kaggle credentials: put kaggle.json in ~/.kaggle/ (chmod 600) or set "
                "KAGGLE_USERNAME and KAGGLE_KEY"
            ) from None
    return api


def download(dest: Path, *, dataset: str = KAGGLE_DATASET, archive: Path | None = None) -> Path:
    """Fetch (or unpack ``archive``) into ``dest``; return the Kaggle root and check its counts.

    Does nothing when ``dest`` already holds the data set.
    """
    dest = Path(dest)
    root = find_root(dest) if dest.is_dir() else None
    if root is not None and _counts_ok(count_classes(root), exact=archive is None):
        log.info("data already present at %s; nothing to do", root)
        return root
    if archive is not None and not Path(archive).is_file():
        raise DataError(f"archive {archive} does not exist")  # before --dest is made
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _fetch(dest, dataset, archive)
    except BaseException:  # an error or Ctrl-C: a --dest made here and left empty goes too
        if created:
            with contextlib.suppress(OSError):  # not empty: a partial download Kaggle resumes
                dest.rmdir()
        raise
    root = find_root(dest)
    if root is None:
        raise DataError(f"no train/NORMAL folder found in what was unpacked into {dest}")
    counts = count_classes(root)
    if not _counts_ok(counts, exact=archive is None):
        raise DataError(f"unexpected class counts in {root}: {counts} (expected {KAGGLE_COUNTS})")
    log.info("data set ready at %s: %s", root, counts)
    return root


def _fetch(dest: Path, dataset: str, archive: Path | None) -> None:
    if archive is not None:
        unpack(Path(archive), dest)
        return
    api = _kaggle_api()
    log.info("downloading %s from Kaggle into %s (about 2.3 GB)", dataset, dest)
    try:
        api.dataset_download_files(dataset, path=str(dest), quiet=False, unzip=False)
    except Exception as exc:  # network, 403, 404: all end the same way for the user
        raise ChestxError(f"Kaggle download of {dataset} failed: {exc}") from None
    for zipped in dest.glob("*.zip"):
        unpack(zipped, dest)
        zipped.unlink()


def _counts_ok(counts: dict, *, exact: bool) -> bool:
    if "train" not in counts or not all(counts["train"].values()):
        return False
    return counts == KAGGLE_COUNTS if exact else True


def download_from_args(args) -> Path:
    root = download(
        Path(args.dest), dataset=args.dataset, archive=Path(args.archive) if args.archive else None
    )
    print(root)
    return root
