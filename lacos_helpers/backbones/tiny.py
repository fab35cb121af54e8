"""The CI backbone: a random-init BLOOM of a tiny shape and a byte-level BPE tokenizer trained
on the training texts the caller passes (cached by their hash). Seconds, no download."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lacos_helpers import bloom
from lacos_helpers.backbones.common import finish_load, log, prepare_tokenizer, quiet_transformers
from lacos_helpers.runtime import cache_dir, write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from lacos_helpers.config import RunConfig, TinyBloomSpec

_TOKENIZER_FORMAT = "lacos-bytelevel-bpe-v1"  # part of the cache key: bump when training changes


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
        special_tokens=list(bloom.SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=None)
    return tok


def build_tiny_tokenizer(texts: list[str], vocab_size: int, max_length: int = 64):
    """Byte-level BPE trained on ``texts``, cached in ``cache_dir()/tokenizers/<hash>/`` (the hash
    covers the vocabulary size and the texts); returns a left-padding
    :class:`~transformers.PreTrainedTokenizerFast` with BLOOM's special tokens."""
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no text to train the tiny BLOOM tokenizer on")
    key = _texts_hash(texts, vocab_size)
    folder = cache_dir() / "tokenizers" / key
    path = folder / "tokenizer.json"
    t0 = time.perf_counter()
    cached = path.is_file()
    if not cached:  # written atomically: a concurrent reader never sees half a file
        write_atomic(path, train_bytelevel_bpe(texts, vocab_size).to_str())
    unk, bos, eos, pad = bloom.SPECIAL_TOKENS
    with quiet_transformers():
        fast = PreTrainedTokenizerFast(
            tokenizer_file=str(path), unk_token=unk, bos_token=bos, eos_token=eos,
            pad_token=pad, padding_side="left", model_max_length=max_length,
            clean_up_tokenization_spaces=False)
    fast = prepare_tokenizer(fast, max_length)
    state = "cached" if cached else f"trained on {len(texts)} texts"
    log.info("[tokenizer] byte-level BPE, vocab %d (%s, %.1fs): %s", len(fast), state,
             time.perf_counter() - t0, folder)
    return fast


def build_tiny_bloom(spec: TinyBloomSpec, vocab_size: int, seed: int = 42, **token_ids: int):
    """A random-init :class:`~transformers.BloomModel` (no LM head) of shape ``spec`` and
    vocabulary ``vocab_size`` (``token_ids``: ``pad_token_id=`` ..., default BLOOM's). Same
    seed, same weights; the global RNG is left untouched."""
    import torch
    from transformers import BloomModel

    config = bloom.bloom_config(
        bloom.BloomShape(spec.hidden_size, spec.n_layer, spec.n_head), vocab_size=int(vocab_size),
        use_cache=False, **token_ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with quiet_transformers():
            model = BloomModel(config)
    return model.eval()


def load_tiny_bloom(cfg: RunConfig, device, texts: Iterable[str] | None = None,
                    tokenizer=None):
    """``(model, tokenizer)``: the tiny BLOOM of ``cfg.model.tiny`` (seeded by ``cfg.seed``) and
    a tokenizer, either ``tokenizer`` (e.g. the one a run saved) or one trained on ``texts``
    (the training texts: :func:`lacos_helpers.data.training_texts`)."""
    t0 = time.perf_counter()
    spec = cfg.model.tiny
    if tokenizer is None:
        if texts is None:
            raise ValueError("the tiny BLOOM's tokenizer is trained on the training texts: pass "
                             "texts= (e.g. lacos_helpers.data.training_texts(triplets)) or a "
                             "tokenizer=")
        tokenizer = build_tiny_tokenizer(list(texts), spec.vocab_size, cfg.encoder.max_length)
    _unk, bos, eos, pad = (tokenizer.convert_tokens_to_ids(t) for t in bloom.SPECIAL_TOKENS)
    model = build_tiny_bloom(spec, len(tokenizer), cfg.seed, pad_token_id=pad,
                             bos_token_id=bos, eos_token_id=eos)
    return finish_load("tiny-bloom", f"(h={spec.hidden_size}, L={spec.n_layer}, "
                       f"heads={spec.n_head}, seed={cfg.seed})", model, tokenizer, cfg, device, t0)
