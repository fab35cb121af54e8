"""Published reference numbers, NOT measured by this course (tables mark them as such)."""

# Spearman x100 on the STS-B test set (Reimers & Gurevych 2019, "Sentence-BERT", Table 1:
# models trained on SNLI + MultiNLI only).
PUBLISHED_STSB_TEST: dict[str, float] = {
    "SBERT-NLI-base (Reimers & Gurevych 2019)": 77.03,
    "SBERT-NLI-large (Reimers & Gurevych 2019)": 79.23,
}
# sentence-transformers/paraphrase-multilingual-mpnet-base-v2, STS Spearman x100 as reported
# on MTEB ("86.8 en ... 82.0 zh"): only the two languages that source quotes, not guessed ones.
# MTEB's STS tasks are not exactly the stsb_multi_mt test split: a reference point, not a target.
PUBLISHED_MULTILINGUAL_MPNET: dict[str, float] = {"en": 86.8, "zh": 82.0}
