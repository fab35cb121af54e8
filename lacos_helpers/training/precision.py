"""Mixed precision on a GPU: autocast and, for float16, a gradient scaler. CPUs train in float32.
"""

from __future__ import annotations

import torch


def autocast(device: torch.device):
    """The autocast context for a training step on ``device`` (disabled on CPU)."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def make_scaler(device: torch.device):
    """A ``GradScaler`` where autocast runs in float16 (gradients would underflow), else None."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.amp.GradScaler("cuda")
    return None
