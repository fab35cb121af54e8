"""Checkpoints of a run: the adapter in peft's format and ``trainer_state.pt`` (optimizer,
scheduler, scaler, RNG, step, history), written atomically; ``checkpoints/latest`` names the
newest complete one and moves only once it is whole.

The trainer state is loaded on the CPU whatever the training device: ``torch.set_rng_state``
takes only a CPU ByteTensor, and the optimizer and scaler move their state to the parameters
when they load it. Resume (:func:`read_resumable`) falls back from a damaged checkpoint (a
Drive sync cut short, a full disk) to the newest older whole one."""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from lacos_helpers import lora
from lacos_helpers.runtime import atomic_folder, write_atomic

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"step-(\d+)")
# what torch.load raises on a truncated or garbled file (and TrainerState on a foreign one)
_UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, TypeError, ValueError,
               KeyError)
_NO_RESUME = "start over with resume=False (CLI: --no-resume)"


class DamagedCheckpointError(RuntimeError):
    """Checkpoint files that are missing or cannot be read; ``paths`` names them."""

    def __init__(self, message: str, paths: Sequence[Path]):
        super().__init__(message)
        self.paths = list(paths)


def _damaged(path: Path, reason) -> DamagedCheckpointError:
    return DamagedCheckpointError(f"{path}: {reason}", [path])


# --------------------------------------------------------------------------------------------
# random states
# --------------------------------------------------------------------------------------------

def rng_state() -> dict:
    """The Python and torch (CPU, CUDA) random states."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _cpu_bytes(state) -> torch.Tensor:
    """An RNG state as the CPU ByteTensor torch accepts (wherever it was loaded)."""
    return torch.as_tensor(state).detach().to(device="cpu", dtype=torch.uint8)


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned, whatever device its tensors were loaded on
    (CUDA states only where CUDA is available)."""
    random.setstate(state["python"])
    torch.set_rng_state(_cpu_bytes(state["torch"]))
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    count = torch.cuda.device_count()
    if len(cuda) != count:
        log.warning("[train] the checkpoint holds the CUDA random states of %d GPUs, this "
                    "machine has %d: restoring the first %d", len(cuda), count,
                    min(len(cuda), count))
    for index, gpu_state in enumerate(cuda[:count]):
        torch.cuda.set_rng_state(_cpu_bytes(gpu_state), index)


# --------------------------------------------------------------------------------------------
# finding checkpoints
# --------------------------------------------------------------------------------------------

def _step_of(path: Path) -> int:
    return int(_STEP_DIR.fullmatch(path.name).group(1))


def _checkpoint_dirs(root: Path) -> list[Path]:
    """The checkpoint folders ``step-NNNNNN`` under ``root``, oldest first."""
    found = [p for p in root.glob("step-*") if _STEP_DIR.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=_step_of)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    root = Path(out_dir) / CHECKPOINT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def resume_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint a resume starts from: the one ``checkpoints/latest`` names, whole or not
    (:func:`read_resumable` falls back from a damaged one); None when no checkpoint was ever
    completed. A pointer that names no checkpoint gives way, with a warning, to the newest
    checkpoint folder."""
    root = Path(out_dir) / CHECKPOINT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    if _STEP_DIR.fullmatch(name):
        return root / name
    found = _checkpoint_dirs(root)
    if not found:
        raise DamagedCheckpointError(f"{pointer} is damaged (it names {name!r}) and {root} "
                                     f"holds no checkpoint folder: {_NO_RESUME}", [pointer])
    log.warning("[train] %s is damaged (it names %r): trying the newest checkpoint folder, %s",
                pointer, name, found[-1])
    return found[-1]


def older_checkpoints(checkpoint: Path) -> list[Path]:
    """The checkpoints of the same run before ``checkpoint``, newest first."""
    if not _STEP_DIR.fullmatch(checkpoint.name):
        return []
    step = _step_of(checkpoint)
    return [p for p in reversed(_checkpoint_dirs(checkpoint.parent)) if _step_of(p) < step]


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

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
    final = root / name
    with atomic_folder(final) as tmp:
        lora.save_adapter(backbone, tmp)
        torch.save(vars(state), tmp / STATE_FILE)
    write_atomic(root / LATEST, name)  # the pointer moves only once the checkpoint is whole
    _prune(root, state.step, keep)
    return final


def _prune(root: Path, step: int, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints up to ``step``; remove those after it (left behind
    by a run that resumed from an older checkpoint than its damaged latest)."""
    found = _checkpoint_dirs(root)
    before = [p for p in found if _step_of(p) <= step]
    after = [p for p in found if _step_of(p) > step]
    for path in before[:-keep] + after:
        shutil.rmtree(path, ignore_errors=True)


def clear_checkpoints(out_dir: Path) -> None:
    """Remove every checkpoint of a run (starting over)."""
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

def read_checkpoint(checkpoint: Path, backbone: torch.nn.Module) -> TrainerState:
    """Load a checkpoint's adapter into ``backbone`` and return its trainer state, loaded on
    the CPU. Raises :class:`DamagedCheckpointError` naming a missing or unreadable file (the
    adapter is loaded only once the trainer state was read: the model is left as it was)."""
    if not checkpoint.is_dir():
        raise _damaged(checkpoint, "missing folder")
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise _damaged(path, "missing")
    try:
        state = TrainerState(**torch.load(path, map_location="cpu", weights_only=False))
    except _UNREADABLE as error:
        raise _damaged(path, f"unreadable ({type(error).__name__}: {error})") from error
    config = checkpoint / lora.ADAPTER_CONFIG_NAME
    weights = checkpoint / lora.ADAPTER_WEIGHTS_NAME
    for path in (config, weights):
        if not path.is_file():
            raise _damaged(path, "missing")
    try:
        lora.load_adapter(backbone, checkpoint)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _damaged(config, f"unreadable ({error})") from error
    except (SafetensorError, OSError) as error:
        raise _damaged(weights, f"unreadable ({error})") from error
    return state


def read_resumable(checkpoint: Path, backbone: torch.nn.Module) -> tuple[Path, TrainerState]:
    """Read ``checkpoint`` (:func:`read_checkpoint`) or, when it is damaged, the newest older
    checkpoint that is whole, with a warning naming the damaged files. Returns the checkpoint
    read and its state; raises :class:`DamagedCheckpointError` naming every damaged file when
    none is whole."""
    damaged: list[DamagedCheckpointError] = []
    for candidate in [checkpoint, *older_checkpoints(checkpoint)]:
        try:
            state = read_checkpoint(candidate, backbone)
        except DamagedCheckpointError as error:
            damaged.append(error)
            continue
        if damaged:
            log.warning("[train] damaged checkpoint: %s; resuming from the newest whole "
                        "checkpoint, %s (step %d)", "; ".join(map(str, damaged)), candidate,
                        state.step)
        return candidate, state
    raise DamagedCheckpointError(
        f"no checkpoint of {checkpoint.parent} can be read: {'; '.join(map(str, damaged))}. "
        f"Restore these files (e.g. let a Drive sync finish) or {_NO_RESUME}",
        [path for error in damaged for path in error.paths])
