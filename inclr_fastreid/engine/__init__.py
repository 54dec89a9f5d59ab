"""Orchestration: the trainer, the pseudo-label hook and the EMA hook."""
