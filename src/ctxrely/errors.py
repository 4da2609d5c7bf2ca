"""Errors shown to users as one clear line (the CLI prints them without a traceback; ``--debug``
shows it).

Every user-facing error is a :class:`CtxrelyError`. The subclasses that report a bad value also
derive from ``ValueError`` (and :class:`~ctxrely.registry.UnknownNameError` from ``KeyError``), so
code that catches the built-in kinds keeps working.

Example:
    >>> str(DataError("empty value", path="train.jsonl", line=3, field="output"))
    "train.jsonl, line 3, field 'output': empty value"
"""

from __future__ import annotations


class CtxrelyError(Exception):
    """Base class for user-facing errors."""


class DataError(CtxrelyError, ValueError):
    """Bad input data; the message names the file, line and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ", ".join(
            p for p in (path and f"{path}", line is not None and f"line {line}", field and f"field {field!r}")
            if p
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.path, self.line, self.field = path, line, field


class ModelLoadError(CtxrelyError):
    """A model could not be found or loaded."""


class ConfigError(CtxrelyError, ValueError):
    """A config file or option is wrong (unknown key, bad type, out-of-range value)."""


# Errors the CLI reports as one line, without a traceback (kept as a tuple for older callers).
USER_ERRORS: tuple[type[BaseException], ...] = (CtxrelyError,)
