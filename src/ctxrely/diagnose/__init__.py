"""ctxrely.diagnose."""
