"""The server's private, checked copy of the model directory (the Gunicorn master's side).

The master never imports TensorFlow (nor Flask: this module needs neither). At start and on
every ``SIGHUP`` it copies the files serving reads (``modeldir.SERVED_FILES``) into a fresh
private folder, checks the copy (its structure at start; on reload also a full load in a child
process) and only then hands it to new workers through ``CHESTX_MODEL_SNAPSHOT``. A reload
whose model is missing, truncated or unloadable is refused and new workers get the previous
snapshot: the old model keeps serving. Workers recycled by ``max_requests`` load the same
snapshot, so every worker serves the same model even if the directory changes under them.

The current snapshot lives in the master's environment (Gunicorn re-reads its config file on
``SIGHUP``, so the config can keep no state of its own; forked workers inherit it). Every
snapshot folder is removed when it is replaced, when taking it fails, and on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import MutableMapping
from pathlib import Path

from chestx.errors import ModelError
from chestx.modeldir import LITERT_FILE, MODEL_FILE, SERVED_FILES, check_card, load_card

SNAPSHOT_ENV = "CHESTX_MODEL_SNAPSHOT"  # internal: master -> workers
PREFIX = "chestx-model-"  # of every snapshot folder: only these are ever removed


def check_structure(folder: Path, runtime: str, *, where: Path | None = None) -> dict:
    """Fast checks that need no TensorFlow: the card parses and is a finished model's, the
    runtime's model file is complete. Returns the card; raises ``ModelError``. ``where``: the
    directory to name in the message (a snapshot's source, which the user knows)."""
    card = load_card(folder)
    check_card(card, where or folder)
    if runtime == "litert":
        path = folder / LITERT_FILE
        if not path.is_file() or path.read_bytes()[4:8] != b"TFL3":
            raise ModelError(f"{LITERT_FILE} is missing or not a LiteRT flatbuffer")
        return card
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{MODEL_FILE} is missing")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{MODEL_FILE} is not a Keras archive: {exc}") from None
    if bad:
        raise ModelError(f"{MODEL_FILE} is corrupt (bad CRC in {bad})")
    if "config.json" not in names:
        raise ModelError(f"{MODEL_FILE} has no config.json")
    return card


_LOAD_CHECK = (
    "import sys; from chestx.predict import Predictor; "
    "p = Predictor(sys.argv[1], runtime=sys.argv[2]); p.warm_up(); print(p.name, p.version)"
)


def check_loads(folder: Path, runtime: str, timeout_s: float = 180.0) -> str:
    """Load the model in a child process (TensorFlow stays out of the master)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_CHECK, str(folder), runtime],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise ModelError(f"loading the model took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise ModelError(lines[-1] if lines else f"exit code {done.returncode}")
    return done.stdout.strip()


def take_snapshot(
    source: Path, runtime: str, *, full_check: bool, parent: Path | None = None
) -> tuple[Path, dict]:
    """Copy the model files into a fresh private folder (under ``parent``, default the temp
    directory) and check the copy, not the source, which may change while we look. On any
    failure the folder is removed and the error raised."""
    if not source.is_dir():
        raise ModelError(f"model directory {source} does not exist")
    snap = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    try:
        for name in SERVED_FILES.get(runtime, SERVED_FILES["tensorflow"]):
            if (source / name).is_file():
                shutil.copy2(source / name, snap / name)
        card = check_structure(snap, runtime, where=source)
        if full_check:
            check_loads(snap, runtime)
    except BaseException:
        shutil.rmtree(snap, ignore_errors=True)
        raise
    return snap, card


def describe(card: dict) -> str:
    return f"{card.get('name', '?')} {card.get('version', '?')}"


class Snapshots:
    """The master's current snapshot of ``source``, kept in ``environ[SNAPSHOT_ENV]``."""

    def __init__(
        self,
        source: Path,
        runtime: str,
        *,
        environ: MutableMapping[str, str] | None = None,
        parent: Path | None = None,
    ):
        self.source = source
        self.runtime = runtime
        self.environ = os.environ if environ is None else environ
        self.parent = parent

    @property
    def current(self) -> Path | None:
        value = self.environ.get(SNAPSHOT_ENV)
        return Path(value) if value else None

    def start(self) -> dict:
        """The first snapshot (structure checked; the workers' load is the full check).
        Returns its card; ``ModelError`` when the model cannot be served. A value inherited
        from the environment is replaced, never removed: this master did not make it."""
        snap, card = self._take(full_check=False)
        self.environ[SNAPSHOT_ENV] = str(snap)
        return card

    def reload(self) -> dict:
        """A new, fully checked snapshot replaces the current one, which is removed (old
        workers hold their model in memory; LiteRT's mmap survives the unlink). On
        ``ModelError`` nothing changes: new workers get the current snapshot."""
        old = self.current
        snap, card = self._take(full_check=True)
        self.environ[SNAPSHOT_ENV] = str(snap)
        if old is not None and old != snap:
            _remove(old)
        return card

    def _take(self, *, full_check: bool) -> tuple[Path, dict]:
        return take_snapshot(self.source, self.runtime, full_check=full_check, parent=self.parent)

    def close(self) -> None:
        """Remove the current snapshot (the master exits)."""
        current = self.current
        if current is not None:
            _remove(current)
            self.environ.pop(SNAPSHOT_ENV, None)


def _remove(folder: Path) -> None:
    if folder.name.startswith(PREFIX):  # never anything the variable was pointed at by hand
        shutil.rmtree(folder, ignore_errors=True)
