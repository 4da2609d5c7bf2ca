"""Graded suites in the lm-eval export: one task pair per perturbation degree, plus the closed-book prior.

lm-eval aggregates a task into one mean, so a graded suite (``graded_years``, or a user's file
graded by ``ctxrely graded``) is exported whole (pooled in the top groups) and also split, outside
the groups: ``<suite>_<degree>`` per ladder step (its ``cf_only``
rate is the adoption rate at that degree, ``param_only`` the prior kept, the ``_mc`` task's ``acc``
the logit adoption) and ``<suite>_prior``, the closed-book questions with the true answer as the
target (its ``cf_acc`` is the prior's accuracy). The per-prior-bin curve needs each item's prior
probability next to its passage, which lm-eval's per-task means cannot join: ``ctxrely eval`` /
``ctxrely graded`` write it.

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> [s.name for s in expand_graded([load_suite("graded_years", limit=10)])]
    ['graded_years', 'graded_years_none', 'graded_years_1y', 'graded_years_5y', 'graded_years_20y', 'graded_years_100y', 'graded_years_prior']
"""

from __future__ import annotations

from collections.abc import Sequence

from ctxrely.data.graded import is_graded
from ctxrely.data.schema import Suite


def expand_graded(suites: Sequence[Suite]) -> list[Suite]:
    """Each graded suite, then one suite per degree (ladder order) and its closed-book prior; others unchanged."""
    from ctxrely.engine.prior import closed_book

    out: list[Suite] = []
    for s in suites:
        if not is_graded(s):
            out.append(s)
            continue
        out.append(s)
        steps: dict[tuple[int, str], list] = {}
        for ex in s.examples:
            steps.setdefault((int(ex.meta["degree_rank"]), str(ex.meta["degree_label"])), []).append(ex)
        for (_, label), exs in sorted(steps.items()):
            out.append(Suite(f"{s.name}_{label}", s.version, exs, f"{s.source}; degree {label}"))
        books = [ex for ex in closed_book(s.examples).values()]
        out.append(Suite(f"{s.name}_prior", s.version, books, f"{s.source}; closed-book prior"))
    return out
