"""Resume files: scored rows are appended (and flushed) after every batch to
``examples.partial.jsonl`` (``examples.partial.rank<r>.jsonl`` per process under data parallelism),
whose first line is the config hash; a rerun with the same config skips every row found there.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> with ResumeLog(out, "abc") as log:
    ...     log.append([{"suite": "toy", "id": "q1"}])
    >>> sorted(ResumeLog(out, "abc").load())
    [('toy', 'q1')]
    >>> ResumeLog(out, "other").load()  # another config: nothing to resume
    {}
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PATTERN = "examples.partial*.jsonl"


class ResumeLog:
    """This process's resume file in ``out``; :meth:`load` reads every process's files."""

    def __init__(self, out: Path, fingerprint: str, rank: int = 0, world: int = 1) -> None:
        self.out, self.fingerprint = Path(out), fingerprint
        self.path = self.out / ("examples.partial.jsonl" if world == 1 else f"examples.partial.rank{rank}.jsonl")
        self._f: Any = None

    def load(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Rows already scored under this config, by ``(suite, id)`` (a torn last line is skipped)."""
        done: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(self.out.glob(PATTERN)):
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                header = json.loads(lines[0]) if lines else {}
            except json.JSONDecodeError:
                continue
            if header.get("config_hash") != self.fingerprint:
                continue
            for line in lines[1:]:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a crash
                    continue
                done[(r["suite"], r["id"])] = r
        if done:
            log.info("resuming: %d examples already scored in %s", len(done), self.out)
        return done

    def __enter__(self) -> ResumeLog:
        self.out.mkdir(parents=True, exist_ok=True)
        fresh, text = True, ""
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            with contextlib.suppress(json.JSONDecodeError):
                fresh = json.loads(text.split("\n", 1)[0]).get("config_hash") != self.fingerprint
        self._f = open(self.path, "w" if fresh else "a", encoding="utf-8")
        if fresh:
            self._f.write(json.dumps({"config_hash": self.fingerprint}) + "\n")
        elif not text.endswith("\n"):  # end a torn last line so the next row starts clean
            self._f.write("\n")
        self._f.flush()
        return self

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write rows and flush, so an interrupt loses at most the batch in flight."""
        for r in rows:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def clear(self) -> None:
        """Remove every process's resume file (after the final results are written)."""
        for path in self.out.glob(PATTERN):
            path.unlink(missing_ok=True)
