"""The course's encoder through MTEB (the ``eval`` extra), the harness of the leaderboard:
:func:`run_mteb` runs tasks from the Hub; offline, :func:`local_stsb_multilingual` is MTEB's
``STSBenchmarkMultilingualSTS`` with its rows read from the data folder.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from lacos_helpers.evaluation.sts import STS_LANGS

STSB_TASK = "STSBenchmarkMultilingualSTS"


def _require_mteb():
    try:
        import mteb
    except ImportError as exc:
        raise ImportError("the MTEB harness needs the mteb package: "
                          "pip install 'lacos-helpers[eval]' (mteb)") from exc
    return mteb


def mteb_model(encoder, name: str = "lacos/encoder", batch_size: int = 64):
    """``encoder`` (a :class:`~lacos_helpers.encoder.SiameseEncoder`) as an MTEB model:
    unit-length float32 embeddings ``[n, d]`` of a DataLoader's ``"text"`` batches, compared
    with cosine similarity. ``name``: how results name the model (e.g. the run)."""
    _require_mteb()
    return _encoder_class()(encoder, name, batch_size)


@functools.cache
def _encoder_class():
    """A subclass of mteb's ``AbsEncoder`` (its similarity functions and prompt handling),
    made on first use (after :func:`_require_mteb`) so the package imports without mteb."""
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    class LacosMTEBEncoder(AbsEncoder):
        def __init__(self, encoder, name: str, batch_size: int):
            self.model = encoder
            self.batch_size = batch_size
            self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
                name=name, revision="local", embed_dim=encoder.embedding_dim,
                max_tokens=encoder.max_length, similarity_fn_name=ScoringFunction.COSINE,
                framework=["PyTorch"]))

        def encode(self, inputs, *, task_metadata=None, hf_split=None, hf_subset=None,
                   prompt_type=None, **kwargs):
            texts = [text for batch in inputs for text in batch["text"]]
            return self.model.encode(texts, batch_size=self.batch_size, normalize=True,
                                     show_progress=False).numpy()

    return LacosMTEBEncoder


def local_stsb_multilingual(langs: Sequence[str] = STS_LANGS, split: str = "test",
                            limit: int | None = None, data_dir=None, source: str | None = "local"):
    """MTEB's ``STSBenchmarkMultilingualSTS`` task with the ``split`` rows of ``langs`` read
    from the data folder (``data_dir``, default ``LACOS_DATA_DIR``): no Hub access.
    ``source``: another of :func:`lacos_helpers.data.read_sts`'s sources (None: the
    session's)."""
    from datasets import Dataset, DatasetDict

    from lacos_helpers import data

    mteb = _require_mteb()
    unknown = sorted(set(langs) - set(STS_LANGS))
    if unknown:
        raise ValueError(f"{STSB_TASK} has no language {unknown}; it has {list(STS_LANGS)}")
    task = mteb.get_task(STSB_TASK)
    task.dataset = {}
    for lang in langs:
        pairs = data.read_sts(lang, split, limit, source=source, data_dir=data_dir)
        columns = {"sentence1": [p.sentence1 for p in pairs],
                   "sentence2": [p.sentence2 for p in pairs],
                   "score": [float(p.score) for p in pairs]}
        task.dataset[lang] = DatasetDict({split: Dataset.from_dict(columns)})
    task.hf_subsets = list(langs)
    task.data_loaded = True
    return task


def stsb_scores(encoder, langs: Sequence[str] = STS_LANGS, split: str = "test",
                limit: int | None = None, data_dir=None, name: str = "lacos/encoder",
                source: str | None = "local") -> dict[str, float]:
    """MTEB's main score (cosine Spearman, x100) per language of the local
    ``STSBenchmarkMultilingualSTS`` (:func:`local_stsb_multilingual`), plus ``"mean"``."""
    task = local_stsb_multilingual(langs, split, limit, data_dir, source)
    scores = task.evaluate(mteb_model(encoder, name), split=split, encode_kwargs={})
    table = {lang: 100 * float(scores[lang]["main_score"]) for lang in langs}
    table["mean"] = sum(table[lang] for lang in langs) / len(langs)
    return table


def run_mteb(encoder, tasks: Sequence, name: str = "lacos/encoder",
             output_folder=None) -> list:
    """MTEB tasks (names, loaded from the Hub as the leaderboard runs them, or task objects)
    through ``mteb.evaluate``: its task results; ``output_folder``: where mteb keeps its result
    files (default: its cache)."""
    mteb = _require_mteb()
    kwargs = {}
    if output_folder is not None:
        kwargs["cache"] = mteb.ResultCache(cache_path=str(output_folder))
    tasks = [mteb.get_task(t) if isinstance(t, str) else t for t in tasks]
    result = mteb.evaluate(mteb_model(encoder, name), tasks, **kwargs)
    return list(result.task_results)


__all__ = ["STSB_TASK", "local_stsb_multilingual", "mteb_model", "run_mteb", "stsb_scores"]
