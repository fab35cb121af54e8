"""The sentence-transformers files of a model folder (``modules.json``: 0 Transformer = the
folder itself, 1 ``1_Pooling``, 2 ``2_Normalize``, and their configurations), written without
sentence-transformers installed, in the format every version since 2.x reads (newer versions
convert it on load). The transformer, tokenizer and model card are written by the export.
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


def write_st_files(folder: Path, *, dim: int, pooling: str, max_seq_length: int,
                   normalize: bool, versions: dict[str, str]) -> None:
    """Write the sentence-transformers configuration files of ``folder`` (the transformer and
    tokenizer files are written by ``save_pretrained``). ``pooling`` is ours."""
    mode = st_pooling_mode(pooling)
    modules = (("Transformer", ""), ("Pooling", POOLING_DIR), ("Normalize", NORMALIZE_DIR))
    files = {
        "modules.json": [{"idx": i, "name": str(i), "path": path,
                          "type": f"sentence_transformers.models.{name}"}
                         for i, (name, path) in enumerate(modules[:3 if normalize else 2])],
        "sentence_bert_config.json": {"max_seq_length": int(max_seq_length),
                                      "do_lower_case": False},
        "config_sentence_transformers.json": {"__version__": dict(versions), "prompts": {},
                                              "default_prompt_name": None,
                                              "similarity_fn_name": "cosine"},
        f"{POOLING_DIR}/config.json": {  # exactly one pooling flag set
            "word_embedding_dimension": int(dim),
            **{flag: name == mode for name, flag in _POOLING_FLAGS.items()}},
    }
    for name, value in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    if normalize:
        (folder / NORMALIZE_DIR).mkdir(parents=True, exist_ok=True)
