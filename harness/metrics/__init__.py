"""Metrics: pure functions of predictions and references."""
