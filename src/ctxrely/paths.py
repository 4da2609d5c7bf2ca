"""Output paths checked before any work: the one place every command validates where it writes.

A command calls :func:`check_out_dir` / :func:`check_out_file` on each output option before it loads
a model or reads much data, so a bad ``--out`` (under a file, in ``/proc``, unwritable, a folder
where a file is expected) is one :class:`~ctxrely.errors.ConfigError` naming the option, and
nothing is computed only to be lost. :func:`refuse_overwrite` stops an output from replacing an
input; :func:`safe_name` and :func:`inside` keep generated names and paths inside their folder.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> check_out_dir(root / "runs" / "a").name   # not created: only checked
    'a'
    >>> (root / "f").write_text("x")
    1
    >>> check_out_dir(root / "f" / "sub")
    Traceback (most recent call last):
    ...
    ctxrely.errors.ConfigError: --out ... is under a file (...f), not a folder
    >>> safe_name("..", "suite")
    Traceback (most recent call last):
    ...
    ctxrely.errors.ConfigError: suite name '..' must be lower-case letters, digits and underscores ([a-z0-9_]+)
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ctxrely.errors import ConfigError

SAFE_NAME = re.compile(r"[a-z0-9_]+")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Create and remove a temporary file in ``folder`` (the only test that holds for root too)."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".ctxrely-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{option} {target}: cannot write in {folder} ({e.strerror or type(e).__name__})") from None


def _check_parents(path: Path, option: str) -> Path:
    """The nearest existing ancestor of ``path`` (or ``path``), which must be a writable folder."""
    base = _nearest_existing(path)
    if base != path and not base.is_dir():
        raise ConfigError(f"{option} {path} is under a file ({base}), not a folder")
    return base


def check_out_dir(path: str | Path, option: str = "--out", *, create: bool = False) -> Path:
    """Check that ``path`` can be (or is) a writable folder; with ``create``, make it.

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or its folder cannot be written.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p} is an existing file; pass a folder")
    base = _check_parents(p, option)
    _probe_writable(base if base.is_dir() else base.parent, option, p)
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{option} {p}: cannot create the folder ({e.strerror or type(e).__name__})") from None
    return p


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """Check that ``path`` can be written as a file (it is not a folder; its folder is writable).

    Raises:
        ConfigError: ``path`` is a folder, lies under a file, or cannot be written.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{option} {p} is a folder; pass a file name")
    if not p.name or p.name in (".", ".."):
        raise ConfigError(f"{option} {path!r}: pass a file name")
    base = _check_parents(p.parent, option) if not p.parent.exists() else p.parent
    if not base.is_dir():
        raise ConfigError(f"{option} {p} is under a file ({base}), not a folder")
    _probe_writable(base, option, p)
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{option} {p}: the file is not writable")
    return p


def refuse_overwrite(out: str | Path, inputs: Iterable[tuple[str, str | Path | None]],
                     option: str = "--out") -> None:
    """Refuse an output that is one of the inputs (same file, or the same path before it exists).

    Args:
        inputs: ``(option, path)`` pairs, e.g. ``[("--data", args.data)]``; ``None`` paths are skipped.

    Example:
        >>> refuse_overwrite("a.jsonl", [("--data", "./a.jsonl")])
        Traceback (most recent call last):
        ...
        ctxrely.errors.ConfigError: --out a.jsonl is the input file (--data); write to a new file so the input is kept
    """
    o = Path(out).expanduser()
    for name, src in inputs:
        if src is None:
            continue
        s = Path(src).expanduser()
        same = o.resolve() == s.resolve()
        if not same and o.exists() and s.exists():
            try:
                same = os.path.samefile(o, s)
            except OSError:
                same = False
        if same:
            raise ConfigError(f"{option} {out} is the input file ({name}); write to a new file so the input is kept")


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it is lower-case letters, digits and underscores, else a ConfigError."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{what} name {name!r} must be lower-case letters, digits and underscores ([a-z0-9_]+)")
    return name


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` if it resolves inside ``root`` (symlinks followed), else a ConfigError.

    Example:
        >>> inside("/tmp/out", "/tmp/out/a/b.yaml").name
        'b.yaml'
    """
    r, p = Path(root).resolve(), Path(path).resolve()
    if p != r and r not in p.parents:
        raise ConfigError(f"refusing to write {path}: it is outside the output folder {root}")
    return Path(path)
