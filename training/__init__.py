"""Offline trainer: turns purchase logs into recommendation models."""
