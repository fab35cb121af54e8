"""Where the package runs: settings from the environment, folders and atomic writes, device,
seeding, library versions, Hub reachability, and the console log handler of the course and the
CLI (:func:`show_logs`; library code only logs through ``logging.getLogger(__name__)``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import platform
import random
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

PACKAGE_LOGGER = "lacos_helpers"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "LACOS_OFFLINE")
_HUB_PROBES: dict[str, bool] = {}


# ----------------------------------------------------------------- settings, folders, atomic writes

def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (not "", 0, false, no, off)."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def in_colab() -> bool:
    """Whether this process runs in Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def cache_dir() -> Path:
    """Where the package writes what it builds (tokenizers, generated data, converted models):
    ``LACOS_CACHE_DIR`` or ``~/.cache/lacos``."""
    path = Path(os.environ.get("LACOS_CACHE_DIR") or Path.home() / ".cache" / "lacos")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path | None:
    """The local data directory ``LACOS_DATA_DIR`` (None when unset); a set but missing
    directory is an error, never a silent fall-back."""
    value = os.environ.get("LACOS_DATA_DIR", "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"LACOS_DATA_DIR={value!r} is not a directory")
    return path


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling renamed when complete: a
    reader sees the old file or the new one, never half of it. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_folder(out) as tmp:`` write into ``tmp`` (a temporary sibling of ``out``),
    which replaces ``out`` when the block ends without an error (a reader sees the old folder or
    the new one, never half of it); on an error ``out`` is left as it was."""
    path = Path(path)
    tmp = _temporary_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------ device, seeding, versions

def pick_device(preference: str | None = "auto") -> str:
    """``"cuda"`` when available (or asked for), else ``"cpu"``; an unavailable request is an
    error."""
    import torch

    if preference in ("auto", None, ""):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available "
                           "(use device='auto' or 'cpu')")
    return preference


def to_device(batch, model_or_device):
    """``batch`` (a tensor, a tokenizer's ``BatchEncoding`` or a dict of tensors) on the device
    of ``model_or_device`` (a module: the device of its first parameter, where a model's input
    embeddings live; or a device). A single-device ``device_map`` adds no input hook, so a
    batch a tokenizer made on the CPU must be moved before the model sees it."""
    import torch

    if isinstance(model_or_device, torch.nn.Module):
        device = next(model_or_device.parameters()).device
    else:
        device = torch.device(model_or_device)
    if isinstance(batch, torch.Tensor) or hasattr(batch, "to") and not isinstance(batch, dict):
        return batch.to(device)
    if isinstance(batch, dict):
        return type(batch)({k: v.to(device) if isinstance(v, torch.Tensor) else v
                            for k, v in batch.items()})
    raise TypeError(f"to_device takes a tensor, a BatchEncoding or a dict of tensors, "
                    f"got {type(batch).__name__}")


def to_numpy(tensor):
    """A tensor on any device and of any float dtype as a numpy array (detached, on the CPU;
    16-bit floats as float32, which numpy and matplotlib read)."""
    import torch

    tensor = tensor.detach()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU of compute capability >= 8.0
    (Ampere and later). ``torch.cuda.is_bf16_supported()`` is also true on a T4 (7.5), where
    bfloat16 is emulated."""
    import torch

    device = torch.device(device)
    return device.type == "cuda" and tuple(torch.cuda.get_device_capability(device)) >= (8, 0)


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX tiles), about twice as
    fast as float32; elsewhere bfloat16 is emulated and no faster (often slower)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def exit_now(code: int) -> None:
    """End the process with ``code`` after flushing output and logs, skipping the interpreter's
    teardown (for a launched worker whose work is written)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def release_free_memory() -> None:
    """Hand the C heap's freed pages back to the system (glibc ``malloc_trim``; nothing off
    glibc): a loader that allocates and frees many medium-sized temporaries leaves them in the
    heap, where they count as the process's memory until reused."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):  # no C library, or not glibc's
        if name:
            ctypes.CDLL(name).malloc_trim(0)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 (16 hex digits) of the method's source files (every ``.py`` of the package but
    the course machinery in ``course/``): results cached under it are recomputed when the code
    that produced them changes."""
    import hashlib

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == "course":
            continue
        h.update(str(relative).encode() + b"\x00" + path.read_bytes())
    return h.hexdigest()[:16]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for repeatable runs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every device, CUDA included


def device_summary() -> str:
    """One line: the GPU and its memory, or the CPU cores and torch threads."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"cuda: {props.name}, {props.total_memory / 2**30:.1f} GiB"
    return f"cpu: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def versions() -> dict[str, str]:
    """Versions of Python and the main libraries (for notebook headers and ``run.json``)."""
    out = {"python": platform.python_version()}
    for module in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[module] = importlib.import_module(module).__version__
        except Exception:
            out[module] = "missing"
    return out


# ----------------------------------------------------------------------------- the Hugging Face Hub

def hub_offline() -> bool:
    """Whether the Hub is switched off: an offline variable is set (``OFFLINE_VARS``), or
    huggingface_hub read ``HF_HUB_OFFLINE`` when it was imported."""
    if any(env_flag(name) for name in OFFLINE_VARS):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub can be used: False when offline, True behind an HTTP(S) proxy
    (a direct probe says nothing there), else whether ``HF_ENDPOINT`` (default huggingface.co)
    accepts a TCP connection within ``timeout`` s, probed once per process (huggingface_hub
    itself retries for about 45 s)."""
    if hub_offline():
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if url.geturl() not in _HUB_PROBES:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname, port), timeout=timeout):
                _HUB_PROBES[url.geturl()] = True
        except OSError:
            _HUB_PROBES[url.geturl()] = False
    return _HUB_PROBES[url.geturl()]


# -------------------------------------------------------- logs on the console (course and CLI only)

class _ConsoleHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stdout`` (Jupyter swaps it per cell)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def show_logs(level: int = logging.INFO) -> logging.Logger:
    """Print the package's log records (``[data] ...``, ``[model] ...``) on stdout at ``level``
    and above; idempotent. Called by the notebooks' first cell and by the CLI."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.setLevel(level)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger


__all__ = [
    "OFFLINE_VARS", "atomic_folder", "cache_dir", "data_dir", "device_summary", "env_flag",
    "hub_offline", "hub_reachable", "in_colab", "pick_device", "seed_everything", "show_logs",
    "to_device", "to_numpy", "versions", "write_atomic",
]
