"""Distributed search on Keras Tuner's own chief/worker mode (gRPC).

One chief holds the oracle and runs no trial; each worker asks it for a trial, trains, reports
and asks again, until the oracle says stop. Keras Tuner reads three environment variables,
which ``chestx tune`` sets from its flags (or takes as they are, e.g. from Ansible):

    KERASTUNER_TUNER_ID     "chief", or a worker's unique id (which must not contain "chief")
    KERASTUNER_ORACLE_IP    the chief's address (on the chief: the address it listens on)
    KERASTUNER_ORACLE_PORT  the chief's port

Every process must see the same RUN_DIR (a shared folder: NFS, EFS, ...): workers write each
trial's files there and the chief writes the leaderboard and ``best/`` from them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass

from chestx.argtypes import split_host_port
from chestx.tuning.engine import kt_compat
from chestx.tuning.errors import DistributedError

log = logging.getLogger("chestx.tuning")

ENV_ID, ENV_IP, ENV_PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Role:
    kind: str  # local | chief | worker
    tuner_id: str = "tuner0"
    host: str | None = None
    port: int | None = None

    @property
    def distributed(self) -> bool:
        return self.kind != "local"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, what: str = "--chief") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ``what`` names the source in errors."""
    try:
        return split_host_port(text)
    except ValueError as exc:
        raise DistributedError(f"{what}: {exc}") from None


def resolve_role(
    chief: str | None = None, worker: str | None = None, environ: dict | None = None
) -> Role:
    """The role from ``--chief``/``--worker``, else from the KERASTUNER_* variables."""
    env = os.environ if environ is None else environ
    if worker is not None:
        if not _ID.match(worker) or "chief" in worker:
            raise DistributedError(
                f"--worker: id {worker!r} must be 1-64 letters, digits, '.', '_' or '-', "
                "unique per worker, and must not contain 'chief'"
            )
        if chief is None and ENV_IP not in env:
            raise DistributedError(
                "--worker needs --chief HOST:PORT (or KERASTUNER_ORACLE_IP "
                "and KERASTUNER_ORACLE_PORT)"
            )
    if chief is not None:
        host, port = parse_address(chief)
        return Role("worker" if worker else "chief", worker or "chief", host, port)
    if ENV_IP in env:
        missing = (
            [v for v in (ENV_PORT, ENV_ID) if not env.get(v)]
            if worker is None
            else [v for v in (ENV_PORT,) if not env.get(v)]
        )
        if missing:
            raise DistributedError(f"{ENV_IP} is set but {' and '.join(missing)} is not")
        host, port = parse_address(f"{env[ENV_IP]}:{env[ENV_PORT]}", ENV_PORT)
        tuner_id = worker or env[ENV_ID]
        return Role("chief" if "chief" in tuner_id else "worker", tuner_id, host, port)
    return Role("local")


def apply(role: Role, environ: dict | None = None) -> None:
    """Set the variables Keras Tuner reads (or clear them for a local search)."""
    env = os.environ if environ is None else environ
    if role.distributed:
        assert role.host is not None  # a distributed role always has the chief's address
        env.update({ENV_ID: role.tuner_id, ENV_IP: role.host, ENV_PORT: str(role.port)})
        if environ is None:
            kt_compat.silence_condition_print()  # a debug print of keras-tuner 1.4.8
    else:
        for name in (ENV_ID, ENV_IP, ENV_PORT):
            env.pop(name, None)


def serve(oracle, space, run_dir, *, poll: float = 0.5) -> None:
    """The chief: serve ``oracle`` until it has stopped every worker and no trial runs.

    Keras Tuner's own ``oracle_chief.start_server`` does the same with a 20 s polling sleep;
    this loop reuses its servicer, polls every ``poll`` seconds and logs each finished trial.
    """
    from concurrent import futures

    import grpc

    from chestx.tuning.engine import leaderboard, progress

    host, port = os.environ[ENV_IP], os.environ[ENV_PORT]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = kt_compat.oracle_servicer(oracle, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise DistributedError(f"the chief cannot listen on {host}:{port}: {exc}") from None
    if not bound:
        raise DistributedError(f"the chief cannot listen on {host}:{port} (address in use?)")
    server.start()
    log.info(
        "chief: oracle listening on %s:%s; %s trials to hand out", host, port, oracle.max_trials
    )
    seen = 0
    try:
        while True:
            time.sleep(poll)
            ended = list(oracle.end_order)
            for trial_id in ended[seen:]:
                progress.log_trial_end(oracle, trial_id, space, run_dir)
            seen = len(ended)
            if kt_compat.chief_may_exit(oracle, servicer):
                break
        leaderboard.write(run_dir, space)
    finally:
        server.stop(grace=2)
    log.info("chief: every worker has stopped")
