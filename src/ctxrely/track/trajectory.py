"""The trajectory store: one JSON line per evaluation during training, safe across crashes and resumes.

Files in the run folder:

- ``trajectory.jsonl``: ``{"step", "epoch", "time", "eval_seconds", "<suite>/<metric>": value, ...}``
  per evaluation (flushed and fsynced after each line).
- ``trajectory_examples.jsonl``: ``{"step", "rows": [{"suite", "id", "cf_wins", "cf_hit", ...}]}``,
  the per-example flags of the same evaluation (the report computes flips from it).
- ``probe_set.jsonl``: the probe examples themselves (context, question, answers), written once.
- ``tracking.json``: what is measured (metric, suites, thresholds), rewritten at each start.
- ``*.superseded.jsonl``: rows moved aside when a run restarts or resumes from an earlier
  checkpoint: a resumed run continues the same file without duplicate steps, and nothing
  already computed is deleted.

Example:
    >>> import tempfile
    >>> store = TrajectoryStore(tempfile.mkdtemp())
    >>> store.append({"step": 0, "all/cf_acc": 0.5})
    >>> store.append({"step": 5, "all/cf_acc": 0.7})
    >>> [r["step"] for r in store.prepare(resume_step=0)], [r["step"] for r in store.rows()]
    ([], [])
    >>> [r["step"] for r in store.superseded()]
    [0, 5]
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRAJECTORY = "trajectory.jsonl"
EXAMPLES = "trajectory_examples.jsonl"
PROBE_SET = "probe_set.jsonl"
SETTINGS = "tracking.json"


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf become None (json would write non-standard ``NaN``)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a crash mid-write) is skipped with a warning.

    Raises:
        DataError: (a ``ValueError``) a line other than the last is not a JSON object, or a row has
            no ``step`` (one line naming file and line: a hand edit, since appends repair torn lines).
    """
    from ctxrely.errors import DataError

    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                log.warning("%s line %d: torn last line skipped (%s)", path, i, e)
                continue
            raise DataError(f"not valid JSON ({e.msg}); fix or remove the line", path=str(path), line=i) from None
        if not isinstance(rows[-1], dict):
            raise DataError("not a JSON object; fix or remove the line", path=str(path), line=i)
    return rows


def read_steps(path: Path) -> list[dict[str, Any]]:
    """:func:`read_jsonl` for files of evaluations: every row needs a numeric ``step`` (one line if not)."""
    from ctxrely.errors import DataError

    rows = read_jsonl(path)
    for r in rows:
        if not isinstance(r.get("step"), (int, float)) or isinstance(r.get("step"), bool):
            raise DataError(f"a row without a numeric 'step' ({json.dumps(r)[:60]}); fix or remove it",
                            path=str(path))
    return rows


def _write_lines(path: Path, rows: Iterable[dict[str, Any]], mode: str = "w") -> None:
    """Write (or append: a torn last line is cut first, so rows never fuse) and fsync."""
    if mode == "a":
        from ctxrely.engine.resume import repair_tail

        repair_tail(path)
    with open(path, mode, encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(_clean(r), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    _write_lines(tmp, rows)
    os.replace(tmp, path)


class TrajectoryStore:
    """Append-only JSONL store of evaluations for one run folder (see the module docstring)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / TRAJECTORY
        self.examples_path = self.dir / EXAMPLES
        self.probe_path = self.dir / PROBE_SET

    def rows(self) -> list[dict[str, Any]]:
        """Every evaluation row, in file order."""
        return read_steps(self.path)

    def example_rows(self) -> list[dict[str, Any]]:
        return read_steps(self.examples_path)

    def superseded(self) -> list[dict[str, Any]]:
        return read_steps(self.path.with_suffix(".superseded.jsonl"))

    def steps(self) -> set[int]:
        return {int(r["step"]) for r in self.rows()}

    def prepare(self, resume_step: int) -> list[dict[str, Any]]:
        """Get the files ready for a run starting at ``resume_step``; return the rows it continues.

        Rows at steps ``<= resume_step`` are kept when resuming (``resume_step > 0``); rows after it
        (an abandoned continuation) and, on a fresh start, all rows are appended to
        ``*.superseded.jsonl`` and removed from the live file.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, Any]] = []
        for path in (self.path, self.examples_path):
            rows = read_steps(path)
            keep = [r for r in rows if resume_step > 0 and int(r["step"]) <= resume_step]
            # one row per step: the last write of a step wins (it is the one the checkpoint followed)
            by_step = {int(r["step"]): r for r in keep}
            keep = [by_step[s] for s in sorted(by_step)]
            drop = [r for r in rows if not (resume_step > 0 and int(r["step"]) <= resume_step)]
            if drop:
                _write_lines(path.with_suffix(".superseded.jsonl"), drop, mode="a")
                log.info("%s: moved %d rows after step %d to %s", path.name, len(drop), resume_step,
                         path.with_suffix(".superseded.jsonl").name)
            if drop or len(keep) != len(rows):
                _rewrite(path, keep)
            if path == self.path:
                kept = keep
        return kept

    def append(self, row: dict[str, Any], examples: list[dict[str, Any]] | None = None) -> None:
        """Append one evaluation (and its per-example flags), flushed and fsynced."""
        if "step" not in row:
            raise ValueError("a trajectory row needs a 'step'")
        self.dir.mkdir(parents=True, exist_ok=True)
        if examples is not None:
            _write_lines(self.examples_path, [{"step": row["step"], "rows": examples}], mode="a")
        _write_lines(self.path, [row], mode="a")

    def write_probe_set(self, examples: list[dict[str, Any]]) -> None:
        """Write the probe examples (once per run; a resumed run keeps the file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _rewrite(self.probe_path, examples)

    def probe_set(self) -> list[dict[str, Any]]:
        return read_jsonl(self.probe_path)

    def write_settings(self, settings: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (SETTINGS + ".tmp")
        tmp.write_text(json.dumps(_clean(settings), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.dir / SETTINGS)

    def settings(self) -> dict[str, Any]:
        from ctxrely.engine.resume import read_json

        path = self.dir / SETTINGS
        return read_json(path, "the tracking settings") if path.exists() else {}  # damaged: one line
