"""``SearchTuner``: the Keras Tuner ``Tuner`` every chestx search algorithm builds on.

What it changes in Keras Tuner's loop, and why:

* no per-trial checkpoint: the best configuration is retrained into ``best/`` at the end, so
  keeping every trial's weights would only grow the disk (``run_trial`` is overridden);
* the Keras session is cleared before every build (Keras Tuner's ``_try_build``), and the
  decoded images are shared by all trials, so memory stays flat across trials;
* every execution of a trial starts from the same seed, whichever worker runs it;
* one log line per trial start and end (``progress``), with the running best, instead of Keras
  Tuner's tables;
  each trial leaves ``chestx.json`` (worker, seconds, epochs, memory) beside its ``trial.json``;
* the chief of a distributed search serves the oracle through ``chestx.tuning.distribute``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import time
import warnings

import keras_tuner as kt

from chestx.fileio import atomic_write_text
from chestx.tuning.engine import kt_compat, leaderboard, progress
from chestx.tuning.engine.rundir import PROJECT, RunDir

log = logging.getLogger("chestx.tuning")

# a metric that is NaN in a trial (e.g. NPV when nothing is called NORMAL) is expected
warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning, "keras_tuner")


def objective(space) -> kt.Objective:
    return kt.Objective(space.objective, direction=space.direction)


class SessionFull(Exception):
    """This process has run its share of trials; a fresh one continues the search."""


class SearchTuner(kt.Tuner):
    """Base of ``chestx.tuning.tuners``; a subclass only creates its oracle.

    ``session_trials``: stop (raise ``SessionFull``) after that many trials in this process,
    with the oracle's state saved, so that a fresh process resumes the search.
    """

    algorithm = "base"

    def __init__(
        self,
        oracle,
        hypermodel,
        *,
        run_dir: RunDir,
        seed: int = 42,
        session_trials: int | None = None,
        **kwargs,
    ):
        self.run_dir = run_dir
        self.space = hypermodel.space
        self.seed = seed
        self.session_trials = session_trials
        self._trials_here = 0
        kwargs.setdefault("executions_per_trial", self.space.budget.executions_per_trial)
        kt_compat.atomic_state_files()  # before the first save and before a resume reads
        super().__init__(
            oracle,
            hypermodel,
            directory=str(run_dir.path),
            project_name=PROJECT,
            overwrite=False,
            **kwargs,
        )
        if not self._is_worker():  # a worker's oracle is the chief's, over gRPC
            for trial_id in kt_compat.forget_unrecorded_trials(self.oracle):
                log.warning(
                    "trial %s was being created when the last session was killed; "
                    "it is created again",
                    trial_id,
                )

    # -- the space is declared from the file: no model needs building to discover it
    def _populate_initial_space(self):
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def trial_epochs(self, trial, epochs: int) -> int:
        """Epochs for this trial; Hyperband gives each trial its own budget."""
        return epochs

    def run_trial(self, trial, *args, **kwargs):
        import keras

        epochs = self.trial_epochs(trial, int(kwargs.pop("epochs")))
        original_callbacks = kwargs.pop("callbacks", [])
        results, start = [], time.perf_counter()
        try:
            for execution in range(self.executions_per_trial):
                keras.utils.set_random_seed(self.seed + execution)
                callbacks = self._deepcopy_callbacks(original_callbacks)
                results.append(
                    self._build_and_fit_model(
                        trial, *args, epochs=epochs, callbacks=callbacks, **kwargs
                    )
                )
        finally:
            self._write_sidecar(trial, results, time.perf_counter() - start)
        return results

    def _write_sidecar(self, trial, results: list, seconds: float) -> None:
        record = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "seconds": round(seconds, 2),
            "epochs": int(sum(r.get("epochs", 0) for r in results)),
            "executions": len(results),
            "rss_mb": _rss_mb(),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "ended": time.time(),
        }
        path = os.path.join(self.get_trial_dir(trial.trial_id), leaderboard.SIDECAR)
        atomic_write_text(path, json.dumps(record, indent=2))

    # -- progress: one line per trial start and end
    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        values = trial.hyperparameters.values
        shown = " ".join(
            f"{k}={_fmt(values[k])}"
            for k in self.space.params
            if k in values and self.space.params[k].type != "fixed"
        )
        if "tuner/epochs" in values:
            shown += f" (hyperband: {values['tuner/epochs']} epochs)"
        log.info("trial %s start [%s]: %s", trial.trial_id, self.tuner_id, shown or "defaults")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)  # reports to the oracle (local or chief) and saves state
        progress.log_trial_end(self.oracle, trial.trial_id, self.space, self.run_dir, self.tuner_id)
        if not self._is_worker():
            leaderboard.write(self.run_dir, self.space)
        self._trials_here += 1
        if (
            self.session_trials
            and self._trials_here >= self.session_trials
            and not self._search_over()
        ):
            raise SessionFull

    def _search_over(self) -> bool:
        """True when the oracle is sure to stop (local search only; a worker cannot know)."""
        if self._is_worker():
            return False
        oracle = self.oracle
        return bool(
            oracle.max_trials
            and len(oracle.trials) >= oracle.max_trials
            and not kt_compat.retries_pending(oracle)
            and not oracle.ongoing_trials
        )

    def search(self, *args, **kwargs):
        if kt_compat.is_chief_oracle():
            from chestx.tuning import distribute

            self.oracle.verbose = 0
            self.save()
            distribute.serve(self.oracle, self.space, self.run_dir)
            return
        super().search(*args, **kwargs)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _rss_mb() -> float | None:
    """Resident memory now (Linux), to show it stays flat from trial to trial."""
    try:
        with open("/proc/self/statm") as fh:
            return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None
