"""``ctxrely ls``: list suites, prompt formats and metrics from the registries.

Example:
    $ ctxrely ls
    $ ctxrely ls suites
"""

from __future__ import annotations

import argparse

NAME = "ls"
HELP = "list built-in suites, prompt formats and metrics"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", default="all", choices=["all", "suites", "formats", "metrics", "loaders", "scorers", "mitigations"])


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ctxrely.registry import DATA_FORMATS, FORMATS, METRICS, MITIGATIONS, SCORERS, SUITES

    console = Console()
    if args.what in ("all", "suites"):
        from ctxrely.data.suites import load_suite

        t = Table(title="suites")
        for c in ("name", "version", "n", "hash", "description"):
            t.add_column(c)
        for e in SUITES:
            s = load_suite(e.name)
            t.add_row(e.name, s.version, str(len(s.examples)), s.hash, e.description)
        console.print(t)
    if args.what in ("all", "formats"):
        t = Table(title="prompt formats")
        for c in ("name", "hash", "description"):
            t.add_column(c)
        for e in FORMATS:
            t.add_row(e.name, e.obj.hash, e.description)
        console.print(t)
    if args.what in ("all", "metrics"):
        t = Table(title="metrics")
        for c in ("name", "mode", "description"):
            t.add_column(c)
        for e in METRICS:
            t.add_row(e.name, e.meta.get("mode", ""), e.description)
        console.print(t)
    if args.what in ("all", "loaders"):
        t = Table(title="data loaders (--data PATH, auto-detected)")
        for c in ("format", "description"):
            t.add_column(c)
        for e in DATA_FORMATS:
            t.add_row(e.name, e.description)
        console.print(t)
    for kind, reg in (("scorers", SCORERS), ("mitigations", MITIGATIONS)):
        if args.what in ("all", kind):
            t = Table(title=kind)
            for c in ("name", "description"):
                t.add_column(c)
            for e in reg:
                t.add_row(e.name, e.description)
            console.print(t)
    return 0
