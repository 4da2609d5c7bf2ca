"""Metrics: pure functions over model outputs (no torch)."""
