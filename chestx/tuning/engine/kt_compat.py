"""Every private part of Keras Tuner that chestx relies on, behind one small adapter each.

Written against keras-tuner 1.4 (``pyproject.toml`` pins ``keras-tuner<1.5``); nothing else in
chestx imports ``keras_tuner.src`` or reads an underscored attribute of Keras Tuner's objects.
``tests/tuning/test_kt_compat.py`` checks each assumption against the installed version, so an
upgrade that breaks one fails there, by name, rather than in the middle of a search.

Why each is used:

* ``is_chief_oracle``: whether this process is a distributed search's chief; the public
  ``keras_tuner`` package does not export it, and the chief must serve the oracle instead of
  running trials.
* ``oracle_servicer`` / ``chief_may_exit``: Keras Tuner's gRPC servicer and its stop test. Its
  public ``start_server`` polls every 20 s and logs nothing; ``chestx.tuning.distribute`` runs
  the same servicer in its own loop (0.5 s, a log line per finished trial).
* ``retries_pending``: a failed trial that Keras Tuner will retry sits in the oracle's private
  ``_retry_queue``; without it a search with ``max_trials`` reached would look finished.
* ``silence_condition_print``: keras-tuner 1.4.8 left a debug ``print`` in
  ``conditions.Parent.to_proto``, so every gRPC message about a conditional key prints its
  value on stdout (which carries results). ``print`` is shadowed in that one module.
* ``is_duplicate``: whether the oracle already ran these values (its private ``_duplicate``);
  the defaults-first trial (``chestx.tuning.engine.oracle``) must not repeat a trial on resume.
* ``TUNER_HOOKS``: the underscored ``kt.Tuner`` methods ``SearchTuner`` overrides or calls.
* ``atomic_state_files``: Keras Tuner saves its state (``oracle.json``, ``tuner0.json``, every
  ``trial.json``) through ``keras_tuner.src.utils.save_json``, which opens the file for writing
  (emptying it) and then writes. A search killed in between (``kill -9``, the OOM killer, a
  power cut) left an empty ``oracle.json`` that ``--resume`` could not parse. The function is
  replaced by an atomic write (``chestx.fileio``: a temporary file, then ``os.replace``).
* ``forget_unrecorded_trials``: ``Oracle.create_trial`` saves the new trial's ``trial.json``,
  then ``oracle.json``. A search killed between the two left a trial that ``reload`` reads back
  as RUNNING but that the oracle's state never recorded: Keras Tuner neither ran nor retried it,
  yet counted it towards ``max_trials``, so the resumed search ended one trial short with a
  RUNNING row in its leaderboard. Such a trial is forgotten and created again.
"""

from __future__ import annotations

import json
import os

from chestx import fileio

# kt.Tuner methods chestx.tuning.engine.tuner.SearchTuner overrides or calls
TUNER_HOOKS = (
    "_populate_initial_space",
    "_build_and_fit_model",
    "_deepcopy_callbacks",
    "_is_worker",
)


def is_chief_oracle() -> bool:
    from keras_tuner.src.distribute import utils

    return utils.is_chief_oracle()


def retries_pending(oracle) -> bool:
    """Whether the oracle still holds failed trials it will hand out again."""
    return bool(oracle._retry_queue)


def is_duplicate(oracle, values: dict) -> bool:
    return bool(oracle._duplicate(values))


def oracle_servicer(oracle, server):
    """Keras Tuner's ``OracleServicer`` for ``oracle``, registered on the gRPC ``server``."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def chief_may_exit(oracle, servicer) -> bool:
    """Every worker was told to stop and no trial is running (Keras Tuner's own test)."""
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    return bool(servicer.stop_triggered and exit_chief(oracle))


def silence_condition_print() -> None:
    from keras_tuner.src.engine import conditions

    conditions.print = lambda *args, **kwargs: None


def atomic_state_files() -> None:
    """Make Keras Tuner write its state files atomically (idempotent; see the module doc)."""
    from keras_tuner.src import utils

    if getattr(utils.save_json, "chestx_atomic", False):
        return

    def save_json(path, obj):  # run folders are local paths (RunDir), so a rename always works
        text = json.dumps(obj)
        fileio.atomic_write_text(path, text)
        return text

    save_json.chestx_atomic = True  # type: ignore[attr-defined]
    utils.save_json = save_json


def forget_unrecorded_trials(oracle) -> list[str]:
    """Forget the trials a reloaded ``oracle`` holds but its saved state never recorded.

    Such a trial was being created when the search was killed (see the module doc): its
    ``trial.json`` exists, status RUNNING, but its id is not in ``start_order``, nor ongoing,
    nor waiting for a retry. The saved state is the consistent one, so the trial is dropped and
    its ``trial.json`` removed; Keras Tuner then creates it again, under the same id and, since
    the oracle's random state was saved before it, with the same values. Returns the ids.
    """
    recorded = set(oracle.start_order) | set(oracle._retry_queue)
    recorded |= {trial.trial_id for trial in oracle.ongoing_trials.values()}
    unrecorded = [
        trial_id
        for trial_id, trial in oracle.trials.items()
        if trial_id not in recorded and trial.status == "RUNNING"
    ]
    for trial_id in unrecorded:
        del oracle.trials[trial_id]
        trial_dir = oracle._get_trial_dir(trial_id)
        os.remove(os.path.join(trial_dir, "trial.json"))
        if not os.listdir(trial_dir):
            os.rmdir(trial_dir)
    return unrecorded
