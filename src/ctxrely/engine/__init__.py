"""The evaluation engine behind :func:`ctxrely.evaluate` (private name, so it cannot shadow the function)."""
