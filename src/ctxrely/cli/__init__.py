"""Command-line interface: ``ctxrely <command>``; one module per command, heavy imports inside ``run``."""
