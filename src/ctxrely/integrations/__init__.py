"""Integrations with other tools of the field (lm-evaluation-harness)."""
