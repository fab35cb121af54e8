"""Mixed precision on a GPU, by compute capability: bfloat16 only where it is native (Ampere and
later, capability >= 8.0), else float16 with a gradient scaler (float16 gradients underflow
without one). ``torch.cuda.is_bf16_supported()`` is not the test: it is also true on a T4
(capability 7.5), where bfloat16 is emulated and slow. CPUs train in float32."""

from __future__ import annotations

import torch

from lacos_helpers.runtime import native_bf16


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of a training step: None on CPU (float32), bfloat16 where native,
    else float16."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(device) else torch.float16


def autocast(device: torch.device | str):
    """The autocast context for a training step on ``device`` (disabled on CPU)."""
    dtype = amp_dtype(device)
    if dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=dtype)


def make_scaler(device: torch.device | str):
    """A ``GradScaler`` where autocast runs in float16, else None."""
    if amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None
