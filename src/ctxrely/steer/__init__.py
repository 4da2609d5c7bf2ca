"""ctxrely.steer."""
