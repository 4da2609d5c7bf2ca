"""ctxrely.evaluate."""
