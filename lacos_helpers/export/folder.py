"""The files of a sentence-transformers model folder, written without sentence-transformers
installed, in the format every version since 2.x reads (newer versions convert it on load)::

    modules.json                      0: Transformer (this folder), 1: Pooling, 2: Normalize
    config_sentence_transformers.json versions, similarity function
    sentence_bert_config.json         max_seq_length, do_lower_case
    config.json, model.safetensors    the transformer (``save_pretrained``)
    tokenizer files                   with the padding side the export chose
    1_Pooling/config.json             the pooling mode
    2_Normalize/                      (empty: the module has no parameters)
    README.md                         the model card
"""

from __future__ import annotations

import json
from pathlib import Path

from lacos_helpers.encoder import check_pooling

# Our pooling mode -> sentence-transformers' name for the same computation under RIGHT padding.
# Older sentence-transformers versions count the weighted mean's positions from position 0
# (6.x from the first real token) and older last-token poolings assume right padding: with
# right padding every version computes what ours does.
ST_POOLING = {"mean": "mean", "weightedmean": "weightedmean", "lasttoken": "lasttoken"}
# Every pooling flag of ST's classic Pooling config (ST 2.x - 5.x write them all).
_POOLING_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                  "mean": "pooling_mode_mean_tokens",
                  "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                  "weightedmean": "pooling_mode_weightedmean_tokens",
                  "lasttoken": "pooling_mode_lasttoken"}
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"


class UnsupportedPoolingError(ValueError):
    """The run pools in a way sentence-transformers' ``Pooling`` module cannot reproduce."""


def st_pooling_mode(pooling: str) -> str:
    """sentence-transformers' pooling mode for ours; a pooling it lacks is an
    :class:`UnsupportedPoolingError` naming the modes it has."""
    try:
        ours = check_pooling(pooling)
    except ValueError:
        ours = str(pooling)
    if ours not in ST_POOLING:
        raise UnsupportedPoolingError(
            f"pooling {pooling!r} has no equivalent in sentence-transformers' Pooling module "
            f"(it offers {', '.join(_POOLING_FLAGS)}; this export maps {', '.join(ST_POOLING)}): "
            "the exported model would compute other embeddings, so nothing was written. "
            "Train the run with one of those poolings.")
    return ST_POOLING[ours]


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def pooling_config(dim: int, mode: str) -> dict:
    """``1_Pooling/config.json``: hidden size ``dim`` and exactly one pooling flag set (``mode``
    from :func:`st_pooling_mode`)."""
    return {"word_embedding_dimension": int(dim),
            **{flag: name == mode for name, flag in _POOLING_FLAGS.items()}}


def modules_config(normalize: bool) -> list[dict]:
    """``modules.json``: Transformer -> Pooling (-> Normalize)."""
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": POOLING_DIR,
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR,
                        "type": "sentence_transformers.models.Normalize"})
    return modules


def write_st_files(folder: Path, *, dim: int, pooling: str, max_seq_length: int,
                   normalize: bool, versions: dict[str, str]) -> None:
    """Write the sentence-transformers configuration files of ``folder`` (the transformer and
    tokenizer files are written by ``save_pretrained``). ``pooling`` is ours."""
    mode = st_pooling_mode(pooling)
    _write_json(folder / "modules.json", modules_config(normalize))
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": int(max_seq_length), "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json",
                {"__version__": dict(versions), "prompts": {}, "default_prompt_name": None,
                 "similarity_fn_name": "cosine"})
    _write_json(folder / POOLING_DIR / "config.json", pooling_config(dim, mode))
    if normalize:
        (folder / NORMALIZE_DIR).mkdir(parents=True, exist_ok=True)
