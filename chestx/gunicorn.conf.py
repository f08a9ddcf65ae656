"""Gunicorn configuration for the chestx web service: settings and thin hooks.

    gunicorn -c chestx/gunicorn.conf.py chestx.wsgi:app      (or: chestx serve)

Settings are ``chestx.web.settings.Settings`` (the ``CHESTX_*`` variables, README table), the
same object the app reads. Design:

* **Model after the fork.** No ``preload_app``: TensorFlow is not fork-safe, so each worker
  imports the app and loads the model in ``post_worker_init``, before it accepts requests.
* **A private, validated model snapshot** (``chestx.web.snapshot``): the master copies and
  checks the model at start and on ``SIGHUP``; a broken reload is refused and the old model
  keeps serving. The master never imports TensorFlow.
* **gthread workers** so concurrent requests meet in one process and are micro-batched.
* **Worker recycling with jitter** (``max_requests`` +- ``max_requests_jitter``) bounds slow
  memory growth without restarting all workers at once.
* **Prometheus multiprocess mode**: a metrics folder shared by the workers, cleared at start.
* Logs go to stdout (journald collects them); access logs never carry bodies.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from chestx.config import model_dir
from chestx.errors import ChestxError
from chestx.web.settings import Settings  # these two are plain Python: no Flask, no TensorFlow
from chestx.web.snapshot import SNAPSHOT_ENV, Snapshots, describe

try:
    settings = Settings.from_env()
except ChestxError as exc:  # a bad value stops start-up, naming the variable
    raise SystemExit(f"chestx: {exc}") from None

# -- server settings ----------------------------------------------------------------------
wsgi_app = "chestx.wsgi:app"
bind = list(settings.bind)
workers = settings.workers
worker_class = "gthread"
threads = settings.threads
timeout = settings.timeout  # a silent worker is killed after this (model load included)
graceful_timeout = settings.graceful_timeout
keepalive = 5
max_requests = settings.max_requests
max_requests_jitter = settings.jitter
preload_app = False  # never: TensorFlow must load after the fork
proc_name = "chestx"
control_socket_disable = True  # Gunicorn >= 24's control socket: not used, and shared per user
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-" if settings.access_log else None
# peer (Nginx), then the client's address Nginx passes on (X-Real-IP; behind the load balancer
# the address from X-Forwarded-For), then the request
access_log_format = '%(h)s %({x-real-ip}i)s "%(r)s" %(s)s %(B)s %(M)sms'
loglevel = settings.log_level
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
            "level": "INFO" if settings.access_log else "CRITICAL",
            "handlers": ["stdout"],
            "propagate": False,
        },
    },
}

# Quiet TensorFlow's C++ start-up chatter; OpenCV refuses oversized images as a second line
# behind chestx.imaging's header check.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(settings.max_pixels))
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chestx-metrics-")
    os.environ["CHESTX_OWNS_METRICS_DIR"] = "1"


def _snapshots() -> Snapshots:
    return Snapshots(model_dir(settings.model_dir).resolve(), settings.runtime)


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
    snapshots = _snapshots()
    try:
        card = snapshots.start()
    except ChestxError as exc:
        server.log.error("chestx: cannot serve %s: %s", snapshots.source, exc)
        raise SystemExit(f"chestx: cannot serve the model in {snapshots.source}: {exc}") from None
    server.log.info(
        "chestx: serving model %s from %s (%s runtime; snapshot %s)",
        describe(card),
        snapshots.source,
        snapshots.runtime,
        snapshots.current,
    )


def on_reload(server):
    """Master, on SIGHUP, before new workers start: take a new snapshot, or keep the old one."""
    snapshots = _snapshots()
    start = time.monotonic()
    try:
        card = snapshots.reload()
    except ChestxError as exc:
        server.log.error(
            "chestx: reload refused, the model in %s is not usable (%s); "
            "new workers keep serving the previous model",
            snapshots.source,
            exc,
        )
        return
    server.log.info(
        "chestx: reloading model %s from %s (checked in %.1f s)",
        describe(card),
        snapshots.source,
        time.monotonic() - start,
    )


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
    _snapshots().close()
    if os.environ.get("CHESTX_OWNS_METRICS_DIR") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
