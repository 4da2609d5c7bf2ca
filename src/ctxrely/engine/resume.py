"""The one append-only resume log every long command uses (eval, nih, attention, score-data, lab, trajectory).

A resume file ``<stem>.partial.jsonl`` (``<stem>.partial.rank<r>.jsonl`` per process under data
parallelism) starts with a header line ``{"config_hash": ...}`` (the settings, weights fingerprint
included); every finished batch is appended, flushed and fsynced. A rerun with the same settings
skips every row found there. What the log promises:

- **nothing finished is discarded**: a file from other settings is kept as
  ``<stem>.partial.<oldhash>.jsonl`` (and resumed if those settings come back); a torn or garbage
  header is kept as ``<stem>.partial.unreadable.jsonl``; both are said in one log line;
- **the file is touched only when the first batch of this run is done**, i.e. after every check of
  the command passed (a run that fails a check leaves the partial file as it was);
- **a torn last line** (a crash mid-write) is cut back to the last full line before appending, so
  the next row never fuses with the fragment; a hand-damaged row (not JSON, not an object, a key
  field missing) is skipped with one line naming file and line, and scored again;
- **one run at a time** per folder: :class:`RunLock` (an ``O_EXCL`` lock file holding the pid; a
  lock of a dead process is taken over) refuses a second run with one line.

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

import json
import logging
import os
import re
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from ctxrely.errors import CtxrelyError

log = logging.getLogger(__name__)
PATTERN = "examples.partial*.jsonl"  # kept for older callers
LOCK = ".ctxrely.lock"
DONE = "lab_done.json"  # the marker a lab writes into a run folder when the run is finished
_LIVE = re.compile(r"\.partial(\.rank\d+)?\.jsonl$")


class ResumeError(CtxrelyError):
    """A resume or lock file stands in the way (another run holds the folder); one line."""


def eval_key(row: dict[str, Any]) -> Hashable:
    """The key of an evaluation row: ``(suite, id)``."""
    if not isinstance(row["suite"], str):
        raise TypeError("'suite' is not a string")
    return row["suite"], row["id"]


# -- file primitives ---------------------------------------------------------------------------------

def repair_tail(path: Path) -> int:
    """Cut a torn last line (no final newline) back to the last full line; returns the bytes cut."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos, keep = size, 0
        while pos > 0 and not keep:  # scan back in blocks for the last newline
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = pos + i + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: cut a torn last line (%d bytes) left by an interrupted write", path, size - keep)
    return size - keep


def read_header(path: Path) -> dict[str, Any] | None:
    """The file's header line as a dict with ``config_hash``, or None (missing, torn or garbage)."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
        head = json.loads(first.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return head if isinstance(head, dict) and isinstance(head.get("config_hash"), str) else None


def iter_rows(path: Path, *, skip_header: bool = False, what: str = "row") -> Iterable[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for every JSON object line; others are skipped with one line each."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    lines = text.split("\n")
    torn = not text.endswith("\n") and bool(text)
    for i, line in enumerate(lines, 1):
        if (skip_header and i == 1) or not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if torn and i == len(lines):
                log.info("%s line %d: torn last line skipped (an interrupted write)", path, i)
            else:
                log.warning("%s line %d: not JSON; this %s is skipped and done again", path, i, what)
            continue
        if not isinstance(row, dict):
            log.warning("%s line %d: not a JSON object; this %s is skipped and done again", path, i, what)
            continue
        yield i, row


def append_lines(path: Path, rows: Iterable[dict[str, Any]], header: dict[str, Any] | None = None) -> None:
    """Append rows as JSON lines (a torn tail is cut first; ``header`` starts a new file), then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8") as f:
        if new and header is not None:
            f.write(json.dumps(header) + "\n")
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file atomically (temp file, fsync, rename): it is complete or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    """A JSON file's content; a damaged file raises :class:`ResumeError` naming it (one line)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResumeError(f"{path}: {what} is not valid JSON ({e}); fix it, move it away or use another output folder") from None


def finished_runs(out: str | Path) -> list[tuple[str, int, Path]]:
    """``(name, seed, folder)`` of every finished run ``<out>/runs/<name>-s<seed>`` (one holding
    :data:`DONE`), sorted by name, then seed; the labs' tables read only these.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> for d in ("zero-s1", "zero-s0", "random-s0"):
        ...     (out / "runs" / d).mkdir(parents=True)
        >>> _ = (out / "runs" / "zero-s1" / DONE).write_text("{}")
        >>> _ = (out / "runs" / "random-s0" / DONE).write_text("{}")
        >>> [(n, s) for n, s, _ in finished_runs(out)]
        [('random', 0), ('zero', 1)]
    """
    found = []
    for d in Path(out, "runs").glob("*-s*"):
        m = re.fullmatch(r"(.+)-s(\d+)", d.name)
        if m and (d / DONE).exists():
            found.append((m.group(1), int(m.group(2)), d))
    return sorted(found, key=lambda t: (t[0], t[1]))


def claim_settings(path: Path, settings: dict[str, Any], *, free: Iterable[str] = (),
                   grow: Iterable[str] = ()) -> None:
    """Write an experiment's ``settings.json``, or check that the one there describes the same
    experiment (keys in ``free`` may change between reruns); a difference raises
    :class:`~ctxrely.errors.ConfigError` naming the keys, and nothing is overwritten. Keys in
    ``grow`` (lists, e.g. seeds) may change too and are stored as the union of every call's values
    in first-seen order, so the file names the experiment's whole extent, not the last call's part.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "settings.json"
        >>> claim_settings(p, {"lr": 0.1, "seeds": [0, 1]}, grow=["seeds"])
        >>> claim_settings(p, {"lr": 0.1, "seeds": [2]}, grow=["seeds"])  # same experiment, one more seed
        >>> json.loads(p.read_text())["seeds"]
        [0, 1, 2]
    """
    from ctxrely.errors import ConfigError

    grown = set(grow)
    skip = set(free) | grown
    new = json.loads(json.dumps(settings))
    if path.exists():
        old = read_json(path, "the experiment's settings")
        old = old if isinstance(old, dict) else {}
        diff = [k for k, v in new.items() if k not in skip and old.get(k) != v]
        if diff:
            raise ConfigError(f"{path.parent} holds an experiment with other settings ({', '.join(diff)} differ); "
                              "use another --out, or delete the folder to start over")
        for k in grown & new.keys():
            before = old.get(k) if isinstance(old.get(k), list) else []
            new[k] = before + [x for x in new[k] if x not in before]
    atomic_write(path, json.dumps(new, indent=2) + "\n")


def keep_aside(path: Path, tag: str, *, merge: bool = False) -> Path:
    """Move ``<stem>.<ext>`` to ``<stem>.<tag>.<ext>`` (a free name; ``merge``: append the rows after
    the header of a JSONL file to one of that name already there). Returns the new path."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", tag)[:64] or "unreadable"
    dest = path.with_name(f"{path.stem}.{tag}{path.suffix}")
    if merge and tag != "unreadable" and dest.exists():  # same old settings kept before: one file holds them
        append_lines(dest, (r for _, r in iter_rows(path, skip_header=True)))
        path.unlink()
        return dest
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.stem}.{tag}{n}{path.suffix}")
    os.replace(path, dest)
    return dest


def cached_json(path: Path, compute: Callable[[], Any], valid: Callable[[Any], bool] = lambda v: True) -> Any:
    """A JSON cache file: its value when it parses and is ``valid``, else ``compute()``'s (written
    atomically); a damaged or invalid file is kept aside (``<stem>.unreadable.json``) with one log line."""
    if path.exists():
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            value = _BAD
        if value is not _BAD and valid(value):
            return value
        dest = keep_aside(path, "unreadable")
        log.warning("%s: damaged or out of date; kept as %s, computing it again", path, dest.name)
    value = compute()
    atomic_write(path, json.dumps(value))
    return value


_BAD = object()


# -- the run lock ------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class RunLock:
    """One run per output folder: ``<out>/.ctxrely.lock`` holds the pid (``O_EXCL``); stale locks taken over.

    Example:
        >>> import tempfile
        >>> with RunLock(tempfile.mkdtemp()) as lock:
        ...     lock.path.read_text() == str(os.getpid())
        True
    """

    def __init__(self, out: str | Path, rank: int = 0, world: int = 1) -> None:
        self.out = Path(out)
        self.path = self.out / (LOCK if world == 1 else f".ctxrely.rank{rank}.lock")
        self.held = False

    def acquire(self) -> RunLock:
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or "0")
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    raise ResumeError(f"{self.out} is in use by another ctxrely run (pid {pid}); wait for it to "
                                      f"finish or use another --out (a stale lock: delete {self.path})") from None
                log.info("%s: taking over the lock of a process that is gone (pid %s)", self.path, pid or "?")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return self
        raise ResumeError(f"{self.out}: could not take the lock {self.path}; is another run starting?")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                if self.path.read_text().strip() == str(os.getpid()):
                    self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# -- the resume log ----------------------------------------------------------------------------------

class ResumeLog:
    """This process's resume file in ``out``; :meth:`load` reads every file written under the same hash.

    Args:
        out: the output folder.
        fingerprint: the settings hash (weights fingerprint included) the rows were made under.
        rank / world: this process under data parallelism (one file per rank).
        stem: file name stem (``examples`` -> ``examples.partial.jsonl``).
        key: a row's key (``KeyError``/``TypeError``/``ValueError``: a damaged row, skipped).
        lock: hold :class:`RunLock` while the log is open (``with log: ...``).
    """

    def __init__(self, out: str | Path, fingerprint: str, rank: int = 0, world: int = 1, *,
                 stem: str = "examples", key: Callable[[dict[str, Any]], Hashable] = eval_key,
                 lock: bool = True) -> None:
        self.out, self.fingerprint, self.stem, self.key = Path(out), fingerprint, stem, key
        self.path = self.out / (f"{stem}.partial.jsonl" if world == 1 else f"{stem}.partial.rank{rank}.jsonl")
        self.lock = RunLock(self.out, rank, world) if lock else None
        self._f: Any = None

    def files(self) -> list[Path]:
        """Every resume file of this stem in ``out`` (live, per rank, kept aside)."""
        return sorted(self.out.glob(f"{self.stem}.partial*.jsonl"))

    def load(self) -> dict[Hashable, dict[str, Any]]:
        """Rows already done under this fingerprint, by key (damaged rows skipped with one line each)."""
        done: dict[Hashable, dict[str, Any]] = {}
        for path in self.files():
            head = read_header(path)
            live = bool(_LIVE.search(path.name))
            if head is None:
                if live and path.stat().st_size:
                    log.warning("%s: the first line is not a resume header (torn or edited); not resumed, "
                                "kept as %s once this run writes", path, path.name.replace(".jsonl", ".unreadable.jsonl"))
                continue
            if head["config_hash"] != self.fingerprint:
                if live:
                    log.info("%s holds rows of other settings (hash %s); they stay, kept aside once this run "
                             "writes", path, head["config_hash"])
                continue
            for i, row in iter_rows(path, skip_header=True):
                try:
                    done[self.key(row)] = row
                except (KeyError, TypeError, ValueError) as e:
                    log.warning("%s line %d: damaged row (%s); it is done again", path, i,
                                f"no field {e}" if isinstance(e, KeyError) else e)
        if done:
            log.info("resuming: %d rows already done in %s", len(done), self.out)
        return done

    def start(self) -> ResumeLog:
        """Take the run lock (the file itself opens with the first :meth:`append`); :meth:`close` ends."""
        if self.lock is not None:
            self.lock.acquire()
        return self

    def __enter__(self) -> ResumeLog:
        return self.start()

    def _open(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            head = read_header(self.path)
            if head is None:
                dest = keep_aside(self.path, "unreadable")
                log.warning("%s: unreadable header; its rows are kept in %s, this run starts a new file",
                            self.path, dest.name)
            elif head["config_hash"] != self.fingerprint:
                dest = keep_aside(self.path, head["config_hash"], merge=True)
                log.warning("%s was written with other settings; its rows are kept in %s", self.path, dest.name)
            else:
                repair_tail(self.path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open across appends; close() ends)
        if fresh:
            self._f.write(json.dumps({"config_hash": self.fingerprint}) + "\n")

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write rows, flush and fsync, so an interrupt loses at most the batch in flight.

        The first call opens the file (after the command's checks passed and its first batch is done).
        """
        if self._f is None:
            self._open()
        self._f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file and release the run lock."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self.lock is not None:
            self.lock.release()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def clear(self) -> None:
        """After the final results are written: remove the files of these settings (others stay)."""
        self.close()
        for path in self.files():
            head = read_header(path)
            if head is not None and head["config_hash"] == self.fingerprint:
                path.unlink(missing_ok=True)
            elif _LIVE.search(path.name) and path.stat().st_size:
                dest = keep_aside(path, head["config_hash"] if head else "unreadable", merge=True)
                log.warning("%s (other settings) kept as %s", path, dest.name)
