"""The package version, in a leaf module so any module can name it without importing the facade.

Example:
    >>> from ctxrely.version import __version__
    >>> __version__.count(".") >= 1
    True
"""

__version__ = "0.1.0"
