"""ctxrely.track."""
