"""STS evaluation: cosine similarity of sentence embeddings vs gold scores (Spearman, Pearson).

Works with any encoder that has ``encode(sentences, batch_size=..., normalize=...,
show_progress=...) -> Tensor[n, d]`` (e.g. ``siamese.SiameseEncoder``; keyword arguments the
method does not accept are not passed), or with a plain callable ``list[str] -> Tensor[n, d]``.

- :class:`EmbeddingCache` encodes each distinct sentence once, so a table over 10 languages plus
  the cross-lingual table encodes every sentence a single time.
- :func:`spearman` / :func:`pearson` are written out (average ranks for ties) and checked
  against ``scipy.stats`` by the tests; degenerate input is a ``ValueError``, never NaN.
- :func:`sts_table` / :func:`crosslingual_table` return an :class:`STSTable` that prints as
  markdown in Jupyter (scores x100, 2 decimals, as papers report them) and saves CSV (raw
  floats) + markdown; :func:`compare_tables` adds a before/after delta column.
- :func:`random_pair_cosines` (anisotropy) and :func:`largest_errors` (where the model fails).
"""

from __future__ import annotations

import csv
import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch

from lacos_helpers import config, data

# Published, NOT measured by this course: Spearman x100 on the STS-B test set (Reimers &
# Gurevych 2019, "Sentence-BERT", Table 1: models trained on SNLI + MultiNLI only).
PUBLISHED_STSB_TEST: dict[str, float] = {
    "SBERT-NLI-base (Reimers & Gurevych 2019)": 77.03,
    "SBERT-NLI-large (Reimers & Gurevych 2019)": 79.23,
}
# Published, NOT measured: sentence-transformers/paraphrase-multilingual-mpnet-base-v2, STS
# Spearman x100 as reported on MTEB ("86.8 en ... 82.0 zh"). Only the two languages quoted by
# that source are listed; the other 8 stsb_multi_mt languages are left out on purpose rather
# than guessed. MTEB's STS tasks are not exactly the stsb_multi_mt test split: a reference
# point, not a target.
PUBLISHED_MULTILINGUAL_MPNET: dict[str, float] = {"en": 86.8, "zh": 82.0}

METRICS = ("spearman", "pearson")
CROSSLINGUAL_LANGS = tuple(lang for lang in config.STS_LANGS if lang != "en")

# --------------------------------------------------------------------------- encoding

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
    """Run ``encoder`` on ``sentences`` -> float32 CPU Tensor[n, d], checked finite."""
    if hasattr(encoder, "encode"):
        fn = encoder.encode
        kwargs = _encode_kwargs(fn, {"batch_size": batch_size, "normalize": True,
                                     "show_progress": show_progress})
    elif callable(encoder):
        fn, kwargs = encoder, {}
    else:
        raise TypeError(f"encoder must have an .encode(sentences, ...) method or be callable, "
                        f"got {type(encoder).__name__}")
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


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return batch_size


class EmbeddingCache:
    """Embeddings of one encoder, computed once per distinct sentence (text -> row).

    The cache is keyed by the text only, so it is valid for ONE encoder state: after training
    (or loading other adapters) create a new cache or call :meth:`clear`.
    ``embed(sentences) -> Tensor[n, d]`` (float32, CPU) encodes only the sentences it has not
    seen, in one ``encode`` call per ``embed`` call. Statistics: ``misses`` = sentences
    encoded, ``hits`` = requested sentences served without encoding (repeats included),
    ``encode_calls`` = calls to the encoder.
    """

    def __init__(self, encoder, batch_size: int = 64, show_progress: bool = True):
        if isinstance(encoder, EmbeddingCache):
            raise TypeError("encoder is already an EmbeddingCache; use it directly")
        if not (hasattr(encoder, "encode") or callable(encoder)):
            raise TypeError(f"encoder must have an .encode(sentences, ...) method or be "
                            f"callable, got {type(encoder).__name__}")
        self.encoder = encoder
        self.batch_size = _check_batch_size(batch_size)
        self.show_progress = bool(show_progress)
        self.clear()

    def clear(self) -> None:
        """Forget every embedding and reset the statistics (e.g. after training)."""
        self._rows: dict[str, torch.Tensor] = {}
        self.hits = self.misses = self.encode_calls = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, sentence: object) -> bool:
        return sentence in self._rows

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


# --------------------------------------------------------------------------- pairs, cosine

def _pair_texts(pairs) -> tuple[list[str], list[str]]:
    """(sentence1s, sentence2s) of STSPair-like rows (attributes or a (s1, s2, ...) tuple)."""
    first, second = [], []
    for i, p in enumerate(pairs):
        try:
            s1, s2 = (p.sentence1, p.sentence2) if hasattr(p, "sentence1") else (p[0], p[1])
        except (TypeError, IndexError) as exc:
            raise TypeError(f"pair {i} is not an STSPair or (sentence1, sentence2, score): "
                            f"{p!r}") from exc
        first.append(s1)
        second.append(s2)
    return _check_sentences(first), _check_sentences(second)


def _gold_scores(pairs) -> torch.Tensor:
    """Tensor[n] float64 of gold scores (STSPair.score or item 2)."""
    try:
        gold = [float(p.score if hasattr(p, "score") else p[2]) for p in pairs]
    except (TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"every pair needs a numeric gold score ({exc})") from exc
    return torch.tensor(gold, dtype=torch.float64)


def _cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of Tensor[n, d] x Tensor[n, d] -> Tensor[n] float64."""
    a, b = a.double(), b.double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"{int((norms == 0).sum())} pair(s) contain a zero embedding; "
                         "cosine similarity is undefined")
    return (a * b).sum(dim=1) / norms


def cosine_scores(encoder_or_cache, pairs, *, batch_size: int = 64,
                  show_progress: bool = False) -> torch.Tensor:
    """Cosine similarity of sentence1 and sentence2 embeddings for each pair: Tensor[n] float64,
    in [-1, 1]. ``encoder_or_cache``: an encoder (see module doc) or an :class:`EmbeddingCache`."""
    first, second = _pair_texts(pairs)
    cache = _as_cache(encoder_or_cache, None, batch_size, show_progress)
    if not first:
        return torch.empty(0, dtype=torch.float64)
    emb = cache.embed(first + second)
    return _cosine_rows(emb[: len(first)], emb[len(first):])


# --------------------------------------------------------------------------- metrics

def _check_scores(values, name: str) -> torch.Tensor:
    """1-D float64 Tensor with >= 2 finite, not all equal values."""
    t = torch.as_tensor(values, dtype=torch.float64).detach().flatten().cpu()
    if t.numel() < 2:
        raise ValueError(f"need at least 2 {name} to correlate, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain {int((~torch.isfinite(t)).sum())} NaN/inf value(s)")
    if t.max() == t.min():
        raise ValueError(f"{name} are all equal ({float(t[0])!r}); a correlation with a "
                         "constant is undefined")
    return t


def _check_same_length(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.numel() != y.numel():
        raise ValueError(f"predicted and gold differ in length: {x.numel()} vs {y.numel()}")


def average_ranks(values) -> torch.Tensor:
    """1-based ranks, ties get the mean of the ranks they span (like scipy's rankdata
    "average"): [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]. Tensor[n] float64."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    order = torch.argsort(v, stable=True)
    sorted_v = v[order]
    starts_group = torch.ones_like(sorted_v, dtype=torch.bool)
    starts_group[1:] = sorted_v[1:] != sorted_v[:-1]
    group = torch.cumsum(starts_group, 0) - 1
    first_pos = starts_group.nonzero().flatten().double()  # 0-based start of each tie group
    size = torch.bincount(group).double()
    group_rank = first_pos + (size + 1) / 2  # mean of 1-based ranks start+1 .. start+size
    ranks = torch.empty_like(v)
    ranks[order] = group_rank[group]
    return ranks


def pearson(predicted, gold) -> float:
    """Pearson correlation of two equally long score lists (float64)."""
    x, y = _check_scores(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(x, y)
    x, y = x - x.mean(), y - y.mean()
    r = float((x * y).sum() / (x.norm() * y.norm()))
    return max(-1.0, min(1.0, r))


def spearman(predicted, gold) -> float:
    """Spearman rank correlation = Pearson on average ranks (ties averaged)."""
    x, y = _check_scores(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def sts_metrics(predicted, gold) -> dict:
    """{"spearman", "pearson", "n"} of predicted similarities vs gold scores."""
    return {"spearman": spearman(predicted, gold), "pearson": pearson(predicted, gold),
            "n": int(torch.as_tensor(gold).numel())}


def evaluate_sts(encoder, pairs, batch_size: int = 64, cache: EmbeddingCache | None = None, *,
                 show_progress: bool = False) -> dict:
    """Spearman and Pearson of cosine(sentence1, sentence2) vs gold over ``pairs``.

    Returns ``{"spearman": float, "pearson": float, "n": int}`` (correlations in [-1, 1]).
    ``cache``: an :class:`EmbeddingCache` of the same ``encoder`` to reuse embeddings.
    Fewer than 2 pairs, constant predictions or gold, NaN/inf -> ``ValueError``.
    """
    pairs = list(pairs)
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to evaluate, got {len(pairs)}")
    gold = _gold_scores(pairs)
    predicted = cosine_scores(_as_cache(encoder, cache, batch_size, show_progress), pairs)
    return sts_metrics(predicted, gold)


# --------------------------------------------------------------------------- tables

def _format_cell(value, as_score: bool, signed: bool = False) -> str:
    if isinstance(value, float) and as_score:
        return "n/a" if math.isnan(value) else f"{100 * value:{'+' if signed else ''}.2f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _parse_cell(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class STSTable:
    """Per-language STS results: ``rows`` = list of dicts, first column the row label.

    Typical columns: ``lang`` (e.g. "de" or "de-en"), ``spearman``, ``pearson`` (raw, in
    [-1, 1]) and ``n`` (pairs). ``score_columns`` are shown x100 with 2 decimals in markdown;
    CSV and :meth:`to_dict` keep raw floats; a "delta" column is shown with its sign.
    ``primary`` is the column :meth:`mean` averages.
    In Jupyter the table displays as markdown.
    """

    def __init__(self, rows: Iterable[Mapping], *, title: str = "",
                 score_columns: Sequence[str] = METRICS, primary: str = "spearman",
                 meta: Mapping | None = None):
        self.rows = [dict(r) for r in rows]
        if not self.rows:
            raise ValueError("an STSTable needs at least one row")
        self.columns = list(self.rows[0])
        for i, r in enumerate(self.rows):
            if list(r) != self.columns:
                raise ValueError(f"row {i} has columns {list(r)}, expected {self.columns}")
        labels = self.labels
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate row labels in {labels}")
        self.title = title
        self.score_columns = tuple(c for c in score_columns if c in self.columns)
        if primary not in self.columns:
            raise ValueError(f"primary column {primary!r} not in {self.columns}")
        self.primary = primary
        self.meta = dict(meta or {})

    @property
    def labels(self) -> list[str]:
        """Row labels (values of the first column), e.g. ["en", "de"]."""
        return [str(r[self.columns[0]]) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, label: str) -> dict:
        for r in self.rows:
            if str(r[self.columns[0]]) == label:
                return r
        raise KeyError(f"no row {label!r}; rows: {', '.join(self.labels)}")

    def column(self, name: str) -> list:
        """All values of one column, in row order."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        return [r[name] for r in self.rows]

    def mean(self, column: str | None = None) -> float:
        """Average of ``column`` (default: the primary column, e.g. Spearman) over the rows."""
        values = [float(v) for v in self.column(column or self.primary)]
        return sum(values) / len(values)

    def to_dict(self) -> dict[str, dict]:
        """{row label: {column: raw value}} (JSON-serializable)."""
        key = self.columns[0]
        return {str(r[key]): {c: v for c, v in r.items() if c != key} for r in self.rows}

    def _cells(self, with_mean: bool) -> list[list[str]]:
        body = [[_format_cell(r[c], c in self.score_columns, c == "delta") for c in self.columns]
                for r in self.rows]
        if with_mean and self.score_columns:
            body.append(["**mean**" if c == self.columns[0] else
                         _format_cell(self.mean(c), True, c == "delta")
                         if c in self.score_columns else "" for c in self.columns])
        return body

    def to_markdown(self, with_mean: bool = True) -> str:
        """Markdown table, scores x100 with 2 decimals, plus a mean row; title as a caption."""
        header = [f"{c} (x100)" if c in self.score_columns else c for c in self.columns]
        cells = [header] + self._cells(with_mean and len(self.rows) > 1)
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = ["| " + " | ".join(s.ljust(w) for s, w in zip(row, widths)) + " |"
                 for row in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2)
                                       for i, w in enumerate(widths)) + "|")
        caption = f"**{self.title}**\n\n" if self.title else ""
        return caption + "\n".join(lines) + "\n"

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the rows with raw values (full float precision) as CSV; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows({c: repr(v) if isinstance(v, float) else v for c, v in r.items()}
                             for r in self.rows)
        return path

    @classmethod
    def from_csv(cls, path: str | os.PathLike, *, title: str = "",
                 score_columns: Sequence[str] | None = None,
                 primary: str | None = None) -> STSTable:
        """Read a table written by :meth:`to_csv` (ints and floats parsed back). By default every
        float column counts as a score column and ``primary`` is "spearman" when present."""
        with open(path, encoding="utf-8", newline="") as fh:
            rows = [{k: _parse_cell(v) for k, v in r.items()} for r in csv.DictReader(fh)]
        if not rows:
            raise ValueError(f"{path}: no rows")
        if score_columns is None:
            score_columns = [c for c, v in rows[0].items() if isinstance(v, float)]
        if primary is None:
            primary = "spearman" if "spearman" in rows[0] else (list(score_columns) or [""])[0]
        return cls(rows, title=title, score_columns=score_columns, primary=primary)

    def save(self, path_stem: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``{stem}.csv`` (raw) and ``{stem}.md`` (x100); returns both paths."""
        stem = Path(path_stem)
        md = stem.with_name(stem.name + ".md")
        csv_path = self.to_csv(stem.with_name(stem.name + ".csv"))
        md.write_text(self.to_markdown(), encoding="utf-8")
        return csv_path, md

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        title = f"{self.title!r}, " if self.title else ""
        return (f"STSTable({title}{len(self)} rows: {', '.join(self.labels)}; "
                f"mean {self.primary} x100 = {100 * self.mean():.2f})")


def _check_langs(langs, valid: Sequence[str]) -> tuple[str, ...]:
    langs = (langs,) if isinstance(langs, str) else tuple(langs)
    if not langs:
        raise ValueError("langs is empty")
    unknown = [lang for lang in langs if lang not in valid]
    if unknown:
        raise ValueError(f"unknown STS language(s) {unknown}; valid: {', '.join(valid)}")
    if len(set(langs)) != len(langs):
        raise ValueError(f"duplicate languages in {langs}")
    return langs


def _table_from_pairs(pairs_by_label: Mapping[str, list], cache: EmbeddingCache, title: str,
                      meta: dict) -> STSTable:
    """Embed every sentence of every row once (one encode call), then score each row."""
    all_pairs = [p for pairs in pairs_by_label.values() for p in pairs]
    cache.embed(data.sts_sentences(all_pairs))
    rows = []
    for label, pairs in pairs_by_label.items():
        metrics = evaluate_sts(None, pairs, cache=cache)
        rows.append({"lang": label, **metrics})
    return STSTable(rows, title=title, meta=meta)


def sts_table(encoder, langs: str | Sequence[str] = config.STS_LANGS, split: str = "test",
              limit: int | None = None, *, data_dir: str | os.PathLike | None = None,
              source: str | None = None, cache: EmbeddingCache | None = None,
              batch_size: int = 64, show_progress: bool = True,
              verbose: bool = False) -> STSTable:
    """Monolingual STS-B (stsb_multi_mt) table: one row per language with Spearman, Pearson
    (raw, in [-1, 1]) and n. ``limit``: first N pairs per language; ``source`` / ``data_dir``
    as in :func:`data.load_sts`. Pass a ``cache`` to share embeddings with other tables."""
    langs = _check_langs(langs, config.STS_LANGS)
    cache = _as_cache(encoder, cache, batch_size, show_progress)
    pairs = {lang: data.load_sts(lang, split, limit, source=source, data_dir=data_dir,
                                 verbose=verbose) for lang in langs}
    source_names = ", ".join(sorted({rows.source for rows in pairs.values()}))
    return _table_from_pairs(pairs, cache, f"STS-B {split} ({source_names} data)",
                             {"split": split, "limit": limit, "source": source_names})


def crosslingual_table(encoder, langs: str | Sequence[str] = CROSSLINGUAL_LANGS,
                       split: str = "test", limit: int | None = None, *, target: str = "en",
                       data_dir: str | os.PathLike | None = None, source: str | None = None,
                       cache: EmbeddingCache | None = None, batch_size: int = 64,
                       show_progress: bool = True, verbose: bool = False) -> STSTable:
    """Cross-lingual STS-B: sentence1 in language X, sentence2 (row i) in ``target`` (English),
    same gold score. One row per X labelled "X-en" (Spearman, Pearson raw, n)."""
    langs = _check_langs(langs, config.STS_LANGS)
    _check_langs(target, config.STS_LANGS)
    cache = _as_cache(encoder, cache, batch_size, show_progress)
    pairs = {f"{lang}-{target}": data.load_sts((lang, target), split, limit, source=source,
                                               data_dir=data_dir, verbose=verbose)
             for lang in langs}
    source_names = ", ".join(sorted({rows.source for rows in pairs.values()}))
    return _table_from_pairs(pairs, cache, f"STS-B {split} cross-lingual X-{target} "
                             f"({source_names} data)",
                             {"split": split, "limit": limit, "source": source_names,
                              "target": target})


def crosslingual_matrix(encoder, langs: str | Sequence[str] = config.STS_LANGS,
                        split: str = "test", limit: int | None = None, *,
                        metric: str = "spearman", data_dir: str | os.PathLike | None = None,
                        source: str | None = None, cache: EmbeddingCache | None = None,
                        batch_size: int = 64,
                        show_progress: bool = True) -> dict[tuple[str, str], float]:
    """{(x, y): metric} for every ordered language pair (diagonal = monolingual): sentence1 in
    x, sentence2 in y. Each sentence is encoded once; feed to ``plot_crosslingual_heatmap``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    langs = _check_langs(langs, config.STS_LANGS)
    cache = _as_cache(encoder, cache, batch_size, show_progress)
    pairs = {(x, y): data.load_sts((x, y) if x != y else x, split, limit, source=source,
                                   data_dir=data_dir, verbose=False)
             for x in langs for y in langs}
    cache.embed(data.sts_sentences(p for rows in pairs.values() for p in rows))
    return {key: evaluate_sts(None, rows, cache=cache)[metric] for key, rows in pairs.items()}


def compare_tables(before: STSTable, after: STSTable, metric: str = "spearman", *,
                   labels: tuple[str, str] = ("before", "after"), title: str = "") -> STSTable:
    """Before/after table: columns lang, ``labels[0]``, ``labels[1]``, delta (= after - before,
    raw) and n, for ``metric``; both tables must cover the same rows with the same n."""
    if before.labels != after.labels:
        raise ValueError(f"tables cover different rows: {before.labels} vs {after.labels}")
    if len(set(labels)) != 2 or "delta" in labels:
        raise ValueError(f"labels must be two distinct names other than 'delta', got {labels}")
    rows = []
    for label in before.labels:
        b, a = before[label], after[label]
        if "n" in b and "n" in a and b["n"] != a["n"]:
            raise ValueError(f"row {label!r}: n={b['n']} before but n={a['n']} after; "
                             "compare on the same pairs")
        if metric not in b or metric not in a:
            raise KeyError(f"metric {metric!r} missing; columns: {before.columns}")
        rows.append({"lang": label, labels[0]: b[metric], labels[1]: a[metric],
                     "delta": a[metric] - b[metric], **({"n": a["n"]} if "n" in a else {})})
    return STSTable(rows, title=title or f"{metric}: {labels[0]} vs {labels[1]}",
                    score_columns=(*labels, "delta"), primary=labels[1])


# --------------------------------------------------------------------------- diagnostics

def random_pair_cosines(encoder_or_cache, sentences: Sequence[str], n_pairs: int = 1000,
                        seed: int = 0, *, batch_size: int = 64,
                        show_progress: bool = False) -> torch.Tensor:
    """Cosine similarity of ``n_pairs`` random pairs of distinct sentences: Tensor[n_pairs]
    float64. An isotropic space centres near 0; decoder LLM embeddings before training are
    often anisotropic (all cosines close to 1). Only sampled sentences are encoded."""
    unique = list(dict.fromkeys(_check_sentences(sentences)))
    if len(unique) < 2:
        raise ValueError(f"need at least 2 distinct sentences, got {len(unique)}")
    if not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be an int >= 1, got {n_pairs!r}")
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(len(unique), (n_pairs,), generator=gen)
    offset = torch.randint(1, len(unique), (n_pairs,), generator=gen)
    second = (first + offset) % len(unique)  # never equal to first
    cache = _as_cache(encoder_or_cache, None, batch_size, show_progress)
    pairs = [(unique[i], unique[j]) for i, j in zip(first.tolist(), second.tolist())]
    return cosine_scores(cache, pairs)


def _rank_rescale(cosines: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Map each cosine to the gold score of the same (average) rank: the prediction a perfect
    Spearman would need. Tensor[n] float64 on the gold scale."""
    positions = average_ranks(cosines) - 1  # 0 .. n-1, halves for ties
    sorted_gold = torch.sort(gold).values
    low, high = positions.floor().long(), positions.ceil().long()
    frac = positions - low
    return sorted_gold[low] + (sorted_gold[high] - sorted_gold[low]) * frac


def largest_errors(encoder, pairs, k: int = 5, *, rescale: str = "rank",
                   cache: EmbeddingCache | None = None, batch_size: int = 64,
                   show_progress: bool = False) -> list[dict]:
    """The ``k`` pairs whose predicted similarity is furthest from gold, largest |error| first.

    Each dict: index, sentence1, sentence2, gold (0-5), cosine, predicted (0-5), error =
    predicted - gold (> 0: the model over-rates the pair). ``rescale`` maps cosine to 0-5:
    "rank" (default) gives each pair the gold score at the same rank among all pairs, so only
    the ordering counts, like Spearman (robust to anisotropic cosines near 1); "linear" is
    5 * (cosine + 1) / 2.
    """
    if rescale not in ("rank", "linear"):
        raise ValueError(f"unknown rescale {rescale!r}; valid: rank, linear")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    pairs = list(pairs)
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs, got {len(pairs)}")
    gold = _gold_scores(pairs)
    cosines = cosine_scores(_as_cache(encoder, cache, batch_size, show_progress), pairs)
    predicted = _rank_rescale(cosines, gold) if rescale == "rank" else 2.5 * (cosines + 1)
    error = predicted - gold
    order = torch.argsort(error.abs(), descending=True, stable=True)[:k].tolist()
    first, second = _pair_texts(pairs)
    return [{"index": i, "sentence1": first[i], "sentence2": second[i],
             "gold": float(gold[i]), "cosine": float(cosines[i]),
             "predicted": float(predicted[i]), "error": float(error[i])} for i in order]


__all__ = [
    "CROSSLINGUAL_LANGS",
    "METRICS",
    "PUBLISHED_MULTILINGUAL_MPNET",
    "PUBLISHED_STSB_TEST",
    "EmbeddingCache",
    "STSTable",
    "average_ranks",
    "compare_tables",
    "cosine_scores",
    "crosslingual_matrix",
    "crosslingual_table",
    "evaluate_sts",
    "largest_errors",
    "pearson",
    "random_pair_cosines",
    "spearman",
    "sts_metrics",
    "sts_table",
]
