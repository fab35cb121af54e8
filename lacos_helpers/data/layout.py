"""What the course reads, and where: languages, splits, labels, the local folder layout (the
one of ``shared/data``) and the Hub datasets that hold the same rows."""

from __future__ import annotations

import os
from pathlib import Path

STS_LANGS = ("en", "de", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh")
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi",
              "zh")
STS_SPLITS = ("train", "dev", "test")
XNLI_SPLITS = ("validation", "test")
NLI_LABELS = ("entailment", "neutral", "contradiction")
XNLI_LABELS = {"0": "entailment", "1": "neutral", "2": "contradiction"}
HUB_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction", -1: "-"}  # SNLI/MNLI/XNLI ints

HUB_STS = "PhilipMay/stsb_multi_mt"
HUB_XNLI = "facebook/xnli"
# English NLI: (local file, Hub id, Hub split, our split). split="validation" = SNLI dev + MNLI
# dev-matched; split="test" = SNLI test + MNLI dev-mismatched (MNLI test labels are not public).
EN_NLI_PARTS = (
    ("snli_1.0_dev.csv", "stanfordnlp/snli", "validation", "validation"),
    ("snli_1.0_test.csv", "stanfordnlp/snli", "test", "test"),
    ("multinli_1.0_dev_matched.csv", "nyu-mll/multi_nli", "validation_matched", "validation"),
    ("multinli_1.0_dev_mismatched.csv", "nyu-mll/multi_nli", "validation_mismatched", "test"),
)


# Training files: SNLI + MultiNLI train (English), XNLI train (machine-translated MultiNLI).
# A local data folder may hold them in the same format as the dev files; the Hub always has them.
NLI_SPLITS = ("train", "validation", "test", "devtest")  # devtest = validation + test
EN_NLI_TRAIN_PARTS = (
    ("snli_1.0_train.csv", "stanfordnlp/snli", "train"),
    ("multinli_1.0_train.csv", "nyu-mll/multi_nli", "train"),
)


def sts_path(root: str | os.PathLike, lang: str, split: str) -> Path:
    """``root/stsb_multi_mt/stsb-{lang}-{split}.csv``."""
    return Path(root) / "stsb_multi_mt" / f"stsb-{lang}-{split}.csv"


def xnli_path(root: str | os.PathLike, split: str, lang: str) -> Path:
    """``root/xnli/xnli_{split}_{lang}.tsv`` (split: train, validation or test)."""
    return Path(root) / "xnli" / f"xnli_{split}_{lang}.tsv"


def nli_en_path(root: str | os.PathLike, file_name: str) -> Path:
    """``root/nli_en/<file_name>`` (SNLI / MultiNLI CSV)."""
    return Path(root) / "nli_en" / file_name
