"""Optimizers, learning-rate schedules and second-order methods (being written)."""
