"""RUN_DIR, the folder a search owns, and the checks made before anything is written in it.

search.yaml        a copy of the search-space file (``--resume`` insists on the same space)
run.json           how the search was started: data, split seed, limit, caps, timings
search/            the Keras Tuner project: oracle.json, one tuner JSON per worker, and
                   trial_<id>/ with trial.json and chestx.json (who ran it, how long);
                   no checkpoints are kept, so disk use stays small
leaderboard.csv    one row per trial, best first
leaderboard.json   the same, with the objective and the space
best/              the best configuration retrained: a full chestx model directory
report.png         ``chestx tune --report``: objective vs trial, each key's effect
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from chestx.fileio import atomic_write_text
from chestx.tuning.engine.space import SearchSpace, parse_space
from chestx.tuning.errors import RunDirError, SpaceError

PROJECT = "search"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    space_copy = property(lambda self: self.path / "search.yaml")
    run_json = property(lambda self: self.path / "run.json")
    project = property(lambda self: self.path / PROJECT)
    leaderboard_csv = property(lambda self: self.path / "leaderboard.csv")
    leaderboard_json = property(lambda self: self.path / "leaderboard.json")
    best = property(lambda self: self.path / "best")
    report_png = property(lambda self: self.path / "report.png")

    def holds_search(self) -> bool:
        return self.space_copy.is_file() or (self.project / "oracle.json").is_file()

    def stored_space(self) -> SearchSpace:
        try:
            return parse_space(self.space_copy.read_text(), self.space_copy)
        except (OSError, SpaceError) as exc:
            raise RunDirError(f"{self.path} is not a readable search: {exc}") from None

    def run_info(self) -> dict:
        try:
            return json.loads(self.run_json.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def stored_search(self) -> SearchSpace:
        """The space this RUN_DIR searches: its copy of the file, with its ``--set`` pins."""
        return self.stored_space().with_fixed(self.run_info().get("pins") or {})

    def check(
        self,
        space: SearchSpace,
        *,
        resume: bool,
        worker: bool,
        data: Path,
        seed: int,
        limit: int | None,
        pins: dict | None = None,
    ) -> None:
        """Refuse, before writing anything, a RUN_DIR that does not fit the request."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file, not a folder")
        if self.holds_search():
            if not (resume or worker):
                raise RunDirError(
                    f"{self.path} already holds a search; pass --resume to continue it, "
                    "or choose a new --out"
                )
            stored = self.stored_search() if self.space_copy.is_file() else None
            if stored is not None and _identity(stored) != _identity(space):
                raise RunDirError(
                    f"{self.path} holds a search over another space ({stored.name}); it "
                    "continues only with the same model, tuner, objective, keys and --set pins"
                )
            info = self.run_info()
            want = {"data": str(data.resolve()), "seed": seed, "limit": limit}
            have = {k: info.get(k) for k in want} if info else want
            if have != want:
                diff = ", ".join(
                    f"{k} {have[k]!r} (asked {want[k]!r})" for k in want if have[k] != want[k]
                )
                raise RunDirError(f"{self.path} was searched with other data: {diff}")
        elif not worker and self.path.is_dir() and any(self.path.iterdir()):
            raise RunDirError(
                f"--out {self.path} is not empty and holds no search; choose an empty or new folder"
            )

    def start(self, space: SearchSpace, info: dict) -> None:
        """Create RUN_DIR (or reopen it on resume) and record how the search runs."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.space_copy.is_file():  # atomic: workers may be reading it already
            atomic_write_text(self.space_copy, space.text)
        record = self.run_info() or {k: info[k] for k in ("data", "seed", "limit", "pins")}
        record.setdefault("space_file", str(space.path))
        record.setdefault("sessions", []).append(
            {
                "started": _now(),
                **{k: v for k, v in info.items() if k not in ("data", "seed", "limit", "pins")},
            }
        )
        self.write_run_info(record)

    def finish_session(self, **fields) -> None:
        record = self.run_info()
        if record.get("sessions"):
            record["sessions"][-1].update(ended=_now(), **fields)
            self.write_run_info(record)

    def write_run_info(self, record: dict) -> None:
        atomic_write_text(self.run_json, json.dumps(record, indent=2) + "\n")


def _identity(space: SearchSpace) -> dict:
    s = space.summary()
    return {k: s[k] for k in ("model", "tuner", "objective", "space")}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
