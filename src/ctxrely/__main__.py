"""``python -m ctxrely`` (and ``accelerate launch -m ctxrely eval ...``): the ``ctxrely`` command line."""

from ctxrely.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
