"""ctxrely.report."""
