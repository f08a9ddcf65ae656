"""Each assumption ``chestx.tuning.engine.kt_compat`` makes about Keras Tuner's private parts,
checked against the installed keras-tuner: an upgrade that breaks one fails here, by name."""

from __future__ import annotations

import json
import os

import pytest

from chestx.tuning.engine import kt_compat

pytestmark = pytest.mark.filterwarnings("ignore:All-NaN:RuntimeWarning")


def _random_oracle(tmp_path):
    import keras_tuner as kt

    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), max_trials=3, max_retries_per_trial=1, seed=1
    )
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "p")  # what kt.Tuner does with its directory
    return oracle


def _killed(*args, **kwargs):
    raise KeyboardInterrupt  # the process dies here


@pytest.fixture
def oracle(tmp_path):
    oracle = _random_oracle(tmp_path)
    hp = oracle.get_space()
    hp.Int("a", 0, 10)
    oracle.update_space(hp)
    return oracle


def test_the_tuner_hooks_exist():
    import keras_tuner as kt

    missing = [
        name for name in kt_compat.TUNER_HOOKS if not callable(getattr(kt.Tuner, name, None))
    ]
    assert not missing, f"kt.Tuner no longer has {missing}: chestx.tuning.engine.tuner needs them"


def test_chief_role_comes_from_the_environment(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert kt_compat.is_chief_oracle() is False
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    assert kt_compat.is_chief_oracle() is True


def test_a_trial_to_retry_is_pending_and_values_run_are_duplicates(oracle):
    trial = oracle.create_trial("tuner0")
    assert kt_compat.retries_pending(oracle) is False
    assert kt_compat.is_duplicate(oracle, dict(trial.hyperparameters.values)) is True
    assert kt_compat.is_duplicate(oracle, {"a": 99}) is False
    oracle.update_trial(trial.trial_id, {"score": float("nan")})  # an invalid score: retried
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    assert trial.status == "INVALID"
    assert kt_compat.retries_pending(oracle) is True


def test_the_servicer_registers_and_the_chief_waits_for_its_workers(oracle):
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        servicer = kt_compat.oracle_servicer(oracle, server)
        assert servicer.stop_triggered is False  # no worker was told to stop yet
        assert kt_compat.chief_may_exit(oracle, servicer) is False
    finally:
        server.stop(grace=None)


def test_the_debug_print_of_conditions_is_silenced(capsys):
    from keras_tuner.src.engine import conditions

    kt_compat.silence_condition_print()
    conditions.Parent("augment", [True]).to_proto()
    assert capsys.readouterr().out == ""


def test_state_files_are_written_atomically(oracle, tmp_path, monkeypatch):
    """A kill between emptying and writing ``oracle.json`` left it empty: the save is now a
    temporary file renamed over the old one, so a crash before the rename keeps the old state."""
    kt_compat.atomic_state_files()
    kt_compat.atomic_state_files()  # idempotent: not wrapped twice
    oracle.create_trial("tuner0")
    oracle.save()
    path = tmp_path / "p" / "oracle.json"
    before = json.loads(path.read_text())
    assert "tuner0" in before["ongoing_trials"]

    oracle.seed += 1  # a change the next save would record
    monkeypatch.setattr(os, "replace", _killed)  # after writing, before the rename
    with pytest.raises(KeyboardInterrupt):
        oracle.save()
    monkeypatch.undo()
    assert json.loads(path.read_text()) == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def _reloaded(tmp_path):
    again = _random_oracle(tmp_path)
    again.reload()  # what kt.Tuner does on resume
    return again


def test_a_trial_created_but_never_recorded_is_created_again(oracle, tmp_path, monkeypatch):
    """Killed between ``trial_1/trial.json`` and ``oracle.json``: Keras Tuner alone would count
    the half-created trial towards ``max_trials`` and never run it."""
    kt_compat.atomic_state_files()
    first = oracle.create_trial("tuner0")
    oracle.update_trial(first.trial_id, {"score": 0.5})
    first.status = "COMPLETED"
    oracle.end_trial(first)
    oracle.save()  # what kt.Tuner.on_trial_end does next

    monkeypatch.setattr(oracle, "save", _killed)  # dies after trial.json, before oracle.json
    with pytest.raises(KeyboardInterrupt):
        oracle.create_trial("tuner0")
    half = oracle.trials["1"]
    assert (tmp_path / "p" / "trial_1" / "trial.json").is_file()

    again = _reloaded(tmp_path)
    assert again.trials["1"].status == "RUNNING"  # read back, but recorded nowhere
    assert kt_compat.forget_unrecorded_trials(again) == ["1"]
    assert sorted(again.trials) == ["0"]
    assert not (tmp_path / "p" / "trial_1").exists()
    assert kt_compat.forget_unrecorded_trials(again) == []  # idempotent
    redo = again.create_trial("tuner0")
    assert redo.trial_id == "1"  # not "2": the search is not one trial short
    assert redo.hyperparameters.values == half.hyperparameters.values


def test_an_ongoing_trial_is_kept_for_keras_tuners_retry(oracle, tmp_path):
    """A trial the oracle recorded as running when the search died is Keras Tuner's to retry."""
    kt_compat.atomic_state_files()
    oracle.create_trial("tuner0")  # saved with the trial as ongoing
    again = _reloaded(tmp_path)
    assert kt_compat.forget_unrecorded_trials(again) == []
    assert kt_compat.retries_pending(again) is True
    assert again.create_trial("tuner0").trial_id == "0"
