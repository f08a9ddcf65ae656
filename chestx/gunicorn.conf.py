"""Gunicorn configuration for the chestx web service.

    gunicorn -c chestx/gunicorn.conf.py chestx.wsgi:app      (or: chestx serve)

Settings come from ``CHESTX_*`` environment variables (README table). Design:

* **Model after the fork.** No ``preload_app``: TensorFlow is not fork-safe, so each worker
  imports the app and loads the model in ``post_worker_init``, before it accepts requests.
* **A private, validated model snapshot.** The master never imports TensorFlow. At start and on
  every ``SIGHUP`` it copies the model directory's files into a private folder, checks them
  (structure at start; on reload also a full load in a subprocess) and only then hands the copy
  to the new workers through ``CHESTX_MODEL_SNAPSHOT``. A reload whose model is missing,
  truncated or unloadable is refused and the new workers get the previous snapshot: the old
  model keeps serving. Workers recycled by ``max_requests`` load the same snapshot, so every
  worker serves the same model even if the directory changes under them.
* **gthread workers** so concurrent requests meet in one process and are micro-batched.
* **Worker recycling with jitter** (``max_requests`` +- ``max_requests_jitter``) bounds slow
  memory growth without restarting all workers at once.
* **Prometheus multiprocess mode**: a metrics folder shared by the workers, cleared at start.
* Logs go to stdout (journald collects them); access logs never carry bodies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from chestx.modeldir import GATE_FILES  # plain constants, no TensorFlow

log = logging.getLogger("chestx.gunicorn")

SNAPSHOT_ENV = "CHESTX_MODEL_SNAPSHOT"  # internal: master -> workers
# Copied into the snapshot when present (the input gate is optional: without it, none runs).
MODEL_FILES = {
    "tensorflow": ("card.json", "model.keras", *GATE_FILES),
    "litert": ("card.json", "model.tflite", *GATE_FILES),
}


def _env_int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"chestx: {name} must be an integer, got {raw!r}") from None
    if value < low:
        raise SystemExit(f"chestx: {name} must be at least {low}, got {value}")
    return value


# -- server settings ----------------------------------------------------------------------
wsgi_app = "chestx.wsgi:app"
bind = [b.strip() for b in os.environ.get("CHESTX_BIND", "127.0.0.1:8000").split(",") if b.strip()]
workers = _env_int("CHESTX_WORKERS", 2)
worker_class = "gthread"
threads = _env_int("CHESTX_THREADS", 16)
timeout = _env_int("CHESTX_TIMEOUT", 60)  # a silent worker is killed after this (model load incl.)
graceful_timeout = _env_int("CHESTX_GRACEFUL_TIMEOUT", 30)
keepalive = 5
max_requests = _env_int("CHESTX_MAX_REQUESTS", 5000, low=0)
max_requests_jitter = _env_int("CHESTX_MAX_REQUESTS_JITTER", max(1, max_requests // 10), low=0)
preload_app = False  # never: TensorFlow must load after the fork
proc_name = "chestx"
control_socket_disable = True  # Gunicorn >= 24's control socket: not used, and shared per user
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
_access = os.environ.get("CHESTX_ACCESS_LOG", "1").strip().lower() not in ("0", "false", "no")
accesslog = "-" if _access else None
# peer (Nginx), then the client's address Nginx passes on (X-Real-IP; behind the load balancer
# the address from X-Forwarded-For), then the request
access_log_format = '%(h)s %({x-real-ip}i)s "%(r)s" %(s)s %(B)s %(M)sms'
loglevel = os.environ.get("CHESTX_LOG_LEVEL", "info").lower()
_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": _FORMAT}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": loglevel.upper(), "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {
            "level": "INFO" if _access else "CRITICAL",
            "handlers": ["stdout"],
            "propagate": False,
        },
    },
}

# Quiet TensorFlow's C++ start-up chatter; OpenCV refuses oversized images as a second line
# behind chestx.imaging's header check.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("CHESTX_MAX_PIXELS"):
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", os.environ["CHESTX_MAX_PIXELS"])
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chestx-metrics-")
    os.environ["CHESTX_OWNS_METRICS_DIR"] = "1"


# -- the model snapshot (master side; no TensorFlow here) --------------------------------
def _runtime() -> str:
    return os.environ.get("CHESTX_RUNTIME", "tensorflow").strip().lower() or "tensorflow"


def _source_dir() -> Path:
    from chestx.config import model_dir  # plain constants, instant

    return model_dir(None).resolve()


def check_structure(folder: Path, runtime: str) -> dict:
    """Fast checks that need no TensorFlow: the card parses, the model file is complete."""
    card_path = folder / "card.json"
    if not card_path.is_file():
        raise ValueError(f"{folder} has no card.json")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"card.json is not valid JSON: {exc}") from None
    if not isinstance(card, dict):
        raise ValueError("card.json is not a JSON object")
    for key in ("image_size", "threshold"):
        if key not in card:
            raise ValueError(f"card.json lacks {key!r}")
    from chestx.modeldir import card_status  # plain Python, no TensorFlow

    if card_status(card) != "complete":
        raise ValueError(
            f"the model is not finished (card status {card_status(card)!r}: a "
            "training run is still writing it, or was aborted)"
        )
    if runtime == "litert":
        path = folder / "model.tflite"
        if not path.is_file() or path.read_bytes()[4:8] != b"TFL3":
            raise ValueError(f"{path.name} is missing or not a LiteRT flatbuffer")
    else:
        path = folder / "model.keras"
        if not path.is_file():
            raise ValueError("model.keras is missing")
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"model.keras is not a Keras archive: {exc}") from None
        if bad:
            raise ValueError(f"model.keras is corrupt (bad CRC in {bad})")
        if "config.json" not in names:
            raise ValueError("model.keras has no config.json")
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
        raise ValueError(f"loading the model took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise ValueError(lines[-1] if lines else f"exit code {done.returncode}")
    return done.stdout.strip()


def take_snapshot(source: Path, runtime: str, *, full_check: bool) -> tuple[Path, dict]:
    """Copy the model files into a fresh private folder and check the copy (not the source,
    which may change while we look)."""
    if not source.is_dir():
        raise ValueError(f"model directory {source} does not exist")
    snap = Path(tempfile.mkdtemp(prefix="chestx-model-"))
    try:
        for name in MODEL_FILES.get(runtime, MODEL_FILES["tensorflow"]):
            if (source / name).is_file():
                shutil.copy2(source / name, snap / name)
        card = check_structure(snap, runtime)
        if full_check:
            check_loads(snap, runtime)
    except BaseException:
        shutil.rmtree(snap, ignore_errors=True)
        raise
    return snap, card


def _describe(card: dict) -> str:
    return f"{card.get('name', '?')} {card.get('version', '?')}"


# -- hooks ---------------------------------------------------------------------------------
def on_starting(server):
    """Master, once: clear the metrics folder, snapshot the model (fail fast if it is broken)."""
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    if server.cfg.preload_app:
        raise SystemExit(
            "chestx: do not use --preload: TensorFlow is not fork-safe; "
            "each worker loads the model after the fork"
        )
    source, runtime = _source_dir(), _runtime()
    try:
        snap, card = take_snapshot(source, runtime, full_check=False)
    except ValueError as exc:
        server.log.error("chestx: cannot serve %s: %s", source, exc)
        raise SystemExit(f"chestx: cannot serve the model in {source}: {exc}") from None
    os.environ[SNAPSHOT_ENV] = str(snap)
    server.log.info(
        "chestx: serving model %s from %s (%s runtime; snapshot %s)",
        _describe(card),
        source,
        runtime,
        snap,
    )


def on_reload(server):
    """Master, on SIGHUP, before new workers start: take a new snapshot, or keep the old one."""
    source, runtime = _source_dir(), _runtime()
    old = os.environ.get(SNAPSHOT_ENV)
    start = time.monotonic()
    try:
        snap, card = take_snapshot(source, runtime, full_check=True)
    except ValueError as exc:
        server.log.error(
            "chestx: reload refused, the model in %s is not usable (%s); "
            "new workers keep serving the previous model",
            source,
            exc,
        )
        return
    os.environ[SNAPSHOT_ENV] = str(snap)
    server.log.info(
        "chestx: reloading model %s from %s (checked in %.1f s)",
        _describe(card),
        source,
        time.monotonic() - start,
    )
    if old and old != str(snap):
        # old workers hold their model in memory (LiteRT's mmap survives the unlink)
        shutil.rmtree(old, ignore_errors=True)


def post_worker_init(worker):
    """Worker, after the fork and the app import: load the model before accepting requests."""
    from chestx.web import load_model

    worker.notify()
    load_model(worker.wsgi, os.environ.get(SNAPSHOT_ENV))  # never raises; failure -> 503s
    worker.notify()


def worker_exit(server, worker):
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("chestx")
    if service is not None:
        service.close()


def child_exit(server, worker):
    """Master: drop the dead worker's live gauges from the shared metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    snap = os.environ.get(SNAPSHOT_ENV)
    if snap and Path(snap).name.startswith("chestx-model-"):
        shutil.rmtree(snap, ignore_errors=True)
    if os.environ.get("CHESTX_OWNS_METRICS_DIR") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
