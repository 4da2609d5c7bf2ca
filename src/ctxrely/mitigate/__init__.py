"""ctxrely.mitigate."""
