"""Checkpoints of a run: the adapter in peft's format and ``trainer_state.pt`` (optimizer,
scheduler, scaler, RNG, step, history), written atomically; ``checkpoints/latest`` names the
newest complete one and moves only once it is whole."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from lacos_helpers import lora

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"


def rng_state() -> dict:
    """The Python and torch (CPU, CUDA) random states."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    root = Path(out_dir) / CHECKPOINT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


@dataclass
class TrainerState:
    """What a checkpoint restores besides the adapter weights."""

    step: int
    optimizer: dict
    scheduler: dict
    scaler: dict | None
    rng: dict
    history: list[dict]


def write_checkpoint(out_dir: Path, backbone: torch.nn.Module, state: TrainerState,
                     keep: int) -> Path:
    """Write ``checkpoints/step-NNNNNN/`` (adapter + trainer state) atomically, point
    ``latest`` at it and keep only the newest ``keep`` checkpoints. Returns its folder."""
    root = out_dir / CHECKPOINT_DIR
    name = f"step-{state.step:06d}"
    final, tmp = root / name, root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lora.save_adapter(backbone, tmp)
    torch.save(vars(state), tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = root / f"{LATEST}.tmp"
    pointer_tmp.write_text(name)
    os.replace(pointer_tmp, root / LATEST)  # the pointer moves only once the checkpoint is whole
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for path in old[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def read_checkpoint(checkpoint: Path, backbone: torch.nn.Module,
                    device: torch.device) -> TrainerState:
    """Load a checkpoint's adapter into ``backbone`` and return its trainer state."""
    saved = torch.load(checkpoint / STATE_FILE, map_location=device, weights_only=False)
    lora.load_adapter(backbone, checkpoint)
    return TrainerState(**saved)


def clear_checkpoints(out_dir: Path) -> None:
    """Remove every checkpoint of a run (starting over)."""
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
