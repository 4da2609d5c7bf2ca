"""Errors shown to users as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from ctxrely.data.schema import DataError
from ctxrely.registry import UnknownNameError


class CtxrelyError(Exception):
    """Base class for user-facing errors."""


class ModelLoadError(CtxrelyError):
    """A model could not be found or loaded."""


class ConfigError(CtxrelyError):
    """A config file or option is wrong (unknown key, bad type)."""


# Errors the CLI reports as one line, without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (CtxrelyError, DataError, UnknownNameError)
