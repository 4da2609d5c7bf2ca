"""ctxrely.lab."""
