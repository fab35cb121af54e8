"""Embeddings for evaluation: run any encoder (``encode(sentences, ...)`` or a plain callable
``list[str] -> Tensor[n, d]``) and cache each distinct sentence's embedding once."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch

from lacos_helpers.checks import check_int


def _encode_kwargs(encode: Callable, wanted: dict) -> dict:
    """The subset of ``wanted`` keyword arguments that ``encode`` accepts."""
    try:
        params = inspect.signature(encode).parameters.values()
    except (TypeError, ValueError):  # builtins, C extensions
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(wanted)
    names = {p.name for p in params}
    return {k: v for k, v in wanted.items() if k in names}


def _encode(encoder, sentences: list[str], batch_size: int, show_progress: bool) -> torch.Tensor:
    """Run ``encoder`` (checked by :class:`EmbeddingCache`) on ``sentences`` -> float32 CPU
    Tensor[n, d], checked finite."""
    fn, kwargs = encoder, {}
    if hasattr(encoder, "encode"):
        fn = encoder.encode
        kwargs = _encode_kwargs(fn, {"batch_size": batch_size, "normalize": True,
                                     "show_progress": show_progress})
    with torch.no_grad():
        out = fn(sentences, **kwargs)
    if not isinstance(out, torch.Tensor):
        try:
            out = torch.as_tensor(out)
        except Exception as exc:
            raise TypeError(f"encoder returned {type(out).__name__}, expected a Tensor[n, d]") \
                from exc
    if out.ndim != 2 or out.shape[0] != len(sentences):
        raise ValueError(f"encoder returned shape {tuple(out.shape)} for {len(sentences)} "
                         f"sentences; expected ({len(sentences)}, d)")
    out = out.detach().to("cpu", torch.float32)
    bad = ~torch.isfinite(out).all(dim=1)
    if bad.any():
        first = sentences[int(bad.nonzero()[0])]
        raise ValueError(f"encoder returned NaN/inf embeddings for {int(bad.sum())} of "
                         f"{len(sentences)} sentences, e.g. {first[:80]!r}")
    return out


def _check_sentences(sentences) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not a single string")
    sentences = list(sentences)
    bad = [s for s in sentences if not isinstance(s, str)]
    if bad:
        raise TypeError(f"sentences must be strings; got {type(bad[0]).__name__}: {bad[0]!r}")
    return sentences


class EmbeddingCache:
    """Embeddings of one encoder, computed once per distinct sentence (text -> row).

    Keyed by the text only, so valid for ONE encoder state: after training (or loading other
    adapters) create a new cache or call :meth:`clear`. ``misses`` = sentences encoded,
    ``hits`` = requested sentences served without encoding (repeats included),
    ``encode_calls`` = calls to the encoder (one per :meth:`embed` with unseen sentences).
    """

    def __init__(self, encoder, batch_size: int = 64, show_progress: bool = True):
        if isinstance(encoder, EmbeddingCache):
            raise TypeError("encoder is already an EmbeddingCache; use it directly")
        if not (hasattr(encoder, "encode") or callable(encoder)):
            raise TypeError(f"encoder must have an .encode(sentences, ...) method or be "
                            f"callable, got {type(encoder).__name__}")
        self.encoder = encoder
        self.batch_size = check_int(batch_size, "batch_size")
        self.show_progress = bool(show_progress)
        self.clear()

    def clear(self) -> None:
        """Forget every embedding and reset the statistics (e.g. after training)."""
        self._rows: dict[str, torch.Tensor] = {}
        self.hits = self.misses = self.encode_calls = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dim(self) -> int | None:
        """Embedding size d (None while empty)."""
        return next(iter(self._rows.values())).shape[0] if self._rows else None

    def embed(self, sentences: Sequence[str]) -> torch.Tensor:
        """Tensor[n, d] float32: the embedding of each sentence, in order (repeats allowed)."""
        sentences = _check_sentences(sentences)
        new = [s for s in dict.fromkeys(sentences) if s not in self._rows]
        if new:
            vectors = _encode(self.encoder, new, self.batch_size, self.show_progress)
            if self.dim is not None and vectors.shape[1] != self.dim:
                raise ValueError(f"encoder returned d={vectors.shape[1]} but the cache holds "
                                 f"d={self.dim}; is this the same encoder?")
            self._rows.update(zip(new, vectors))
            self.encode_calls += 1
        self.misses += len(new)
        self.hits += len(sentences) - len(new)
        if not sentences:
            return torch.empty(0, self.dim or 0)
        return torch.stack([self._rows[s] for s in sentences])

    def stats(self) -> dict[str, int]:
        """{"sentences", "hits", "misses", "encode_calls"}."""
        return {"sentences": len(self), "hits": self.hits, "misses": self.misses,
                "encode_calls": self.encode_calls}

    def __repr__(self) -> str:
        return (f"EmbeddingCache({len(self)} sentences, d={self.dim}, hits={self.hits}, "
                f"misses={self.misses}, encode_calls={self.encode_calls})")


def _as_cache(encoder_or_cache, cache: EmbeddingCache | None, batch_size: int,
              show_progress: bool) -> EmbeddingCache:
    """The cache to use: ``cache`` (must wrap ``encoder_or_cache``), the object itself if it is
    a cache, else a fresh one (which still encodes repeated sentences once)."""
    if isinstance(encoder_or_cache, EmbeddingCache):
        if cache is not None and cache is not encoder_or_cache:
            raise ValueError("pass either a cache as the encoder or cache=, not two caches")
        return encoder_or_cache
    if cache is not None:
        if not isinstance(cache, EmbeddingCache):
            raise TypeError(f"cache must be an EmbeddingCache, got {type(cache).__name__}")
        if encoder_or_cache is not None and cache.encoder is not encoder_or_cache:
            raise ValueError("cache= was built for another encoder; its embeddings would not "
                             "match (create EmbeddingCache(encoder))")
        return cache
    if encoder_or_cache is None:
        raise TypeError("need an encoder or cache=")
    return EmbeddingCache(encoder_or_cache, batch_size=batch_size, show_progress=show_progress)
