"""``chestx serve``: argument definitions only; Gunicorn, Flask and TensorFlow load in the
handler, so ``chestx --help`` stays instant."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from chestx.argtypes import join_host_port, port, positive_int, split_host_port
from chestx.errors import ChestxError

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the model over HTTP (browser UI + JSON API) with Gunicorn",
        description="Run the web service under Gunicorn with chestx/gunicorn.conf.py. Options "
        "override the CHESTX_* environment variables of the same meaning. "
        "SIGHUP reloads the model gracefully; research use only.",
    )
    p.add_argument(
        "--host", default=None, help="address to listen on (default 127.0.0.1, or from CHESTX_BIND)"
    )
    p.add_argument("--port", type=port, default=None, help="port (default 8000)")
    p.add_argument(
        "--model",
        default=None,
        help="model directory (default $CHESTX_MODEL_DIR, else the shipped model)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes, each with its own model (default 2)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="request threads per worker; their images are micro-batched (default 16)",
    )
    p.add_argument(
        "--runtime",
        choices=("tensorflow", "litert"),
        default=None,
        help="inference runtime (default tensorflow; litert for small hosts)",
    )
    p.add_argument(
        "--timeout",
        type=positive_int,
        default=None,
        help="seconds before a silent worker is restarted (default 60)",
    )
    p.add_argument(
        "--dev",
        action="store_true",
        help="Flask's development server with the reloader (not for production)",
    )
    p.set_defaults(handler=run_serve)


def _bind(args) -> str | None:
    if args.host is None and args.port is None:
        return None
    host, number = "127.0.0.1", 8000
    current = os.environ.get("CHESTX_BIND", "")
    if current and "," not in current and not current.startswith("unix:"):
        try:
            host, number = split_host_port(current)
        except ValueError:
            pass  # Gunicorn names a bad CHESTX_BIND itself; the options replace it anyway
    return join_host_port(args.host or host, args.port or number)


def serve_env(args) -> dict:
    """The environment ``chestx serve`` runs Gunicorn with (options win over CHESTX_*)."""
    env = dict(os.environ)
    bind = _bind(args)
    if bind:
        env["CHESTX_BIND"] = bind
    for key, value in (
        ("CHESTX_MODEL_DIR", args.model),
        ("CHESTX_WORKERS", args.workers),
        ("CHESTX_THREADS", args.threads),
        ("CHESTX_RUNTIME", args.runtime),
        ("CHESTX_TIMEOUT", args.timeout),
    ):
        if value is not None:
            env[key] = str(Path(value).resolve()) if key == "CHESTX_MODEL_DIR" else str(value)
    return env


def check_bind(addresses: Iterable[str]) -> None:
    """Fail in one line when an address cannot be listened on: Gunicorn would retry it five
    times and then exit 1 after a screenful of log lines. ``unix:`` and ``fd://`` addresses,
    and any Gunicorn parses differently, are left to Gunicorn."""
    for address in addresses:
        if address.startswith(("unix:", "fd://")):
            continue
        try:
            host, number = split_host_port(address)
        except ValueError:
            continue
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                host, number, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise ChestxError(f"cannot listen on {address}: {exc.strerror}") from None
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Gunicorn does
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                raise ChestxError(_cannot_listen(address, host, exc)) from None


def _cannot_listen(address: str, host: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{address} is already in use (another chestx serve?); stop it or choose --port"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {address} (ports below 1024 need root)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address}: {host} is not an address of this machine"
    return f"cannot listen on {address}: {exc.strerror}"


def run_serve(args) -> int:
    from chestx.web.settings import Settings  # plain Python, as the Gunicorn config reads it

    env = serve_env(args)
    check_bind(Settings.from_env(env).bind)  # a bad CHESTX_* value or a busy port: exit 2
    if args.dev:
        return _run_dev(env)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(CONF), "chestx.wsgi:app"]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)  # become the Gunicorn master: signals reach it
    return 0  # pragma: no cover


def _run_dev(env: dict) -> int:
    os.environ.update(env)
    from chestx.web import create_app

    host, number = split_host_port(env.get("CHESTX_BIND", "127.0.0.1:8000"))
    # the reloader's parent process only watches files: load the model in the child alone
    child = os.environ.get("WERKZEUG_RUN_MAIN") == "true"
    app = create_app({"LOAD_MODEL": child})
    # the reloader, but never the interactive debugger: it runs code for whoever reaches it
    app.run(
        host=host,
        port=number,
        debug=True,
        use_debugger=False,
        use_reloader=True,
        threaded=True,
    )
    return 0
