"""Learning-rate schedule: linear warmup, then constant, linear or cosine decay to 0."""

from __future__ import annotations

import math

import torch

from lacos_helpers.config import SCHEDULES, TrainConfig


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "linear") -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based): linear
    warmup over ``warmup_steps``, then constant, linear decay to 0 or cosine decay to 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig):
    """``LambdaLR`` over :func:`lr_factor` with the run's warmup, steps and schedule."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, train.warmup_steps, train.steps, train.schedule))
