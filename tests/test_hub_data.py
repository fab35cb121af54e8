"""The Hub path without a network: ``datasets.load_dataset`` replaced by local datasets in the
Hub's exact schema (columns, label ids, splits). Checks which datasets and splits are requested
(the train splits for training), that rows come out right, that a failing Hub is an error and
that profiles that train on real data refuse generated sentences unless asked by name."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from lacos_helpers import config, data, runtime
from lacos_helpers.data import sources

NLI_FEATURES = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
MNLI_FEATURES = Features({
    "promptID": Value("int32"), "pairID": Value("string"), "premise": Value("string"),
    "premise_binary_parse": Value("string"), "premise_parse": Value("string"),
    "hypothesis": Value("string"), "hypothesis_binary_parse": Value("string"),
    "hypothesis_parse": Value("string"), "genre": Value("string"),
    "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
STS_FEATURES = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                         "similarity_score": Value("float32")})


def _nli(rows, tag: str) -> list[dict]:
    """(premise, hypothesis, label id) -> dicts; ``tag`` marks which dataset/split a row is from."""
    return [{"premise": f"{p} [{tag}]", "hypothesis": f"{h} [{tag}]", "label": label}
            for p, h, label in rows]


PREMISE_ROWS = [("A man plays.", "Someone plays.", 0), ("A man plays.", "He sleeps.", 2),
                ("A man plays.", "He plays well.", 1), ("Kids run.", "Children move.", 0),
                ("Kids run.", "Nobody moves.", 2), ("Dogs bark.", "Animals make noise.", 0)]
SNLI_EXTRA = [("A cat.", "Unlabelled.", -1)]  # SNLI marks missing gold labels with -1


def _standin(path: str, name: str | None, split: str) -> Dataset:
    tag = f"{path}:{name}/{split}"
    if path == "stanfordnlp/snli":
        return Dataset.from_list(_nli(PREMISE_ROWS + SNLI_EXTRA, tag),
                                 features=Features({**NLI_FEATURES, "label": Value("int64")}))
    if path == "nyu-mll/multi_nli":
        rows = [{**r, "promptID": 1, "pairID": "1e", "premise_binary_parse": "",
                 "premise_parse": "", "hypothesis_binary_parse": "", "hypothesis_parse": "",
                 "genre": "fiction"} for r in _nli(PREMISE_ROWS[:3], tag)]
        return Dataset.from_list(rows, features=MNLI_FEATURES)
    if path == "facebook/xnli":
        return Dataset.from_list(_nli(PREMISE_ROWS, tag), features=NLI_FEATURES)
    if path == "PhilipMay/stsb_multi_mt":
        return Dataset.from_list([{"sentence1": f"A [{tag}]", "sentence2": "B",
                                   "similarity_score": 4.5},
                                  {"sentence1": "C", "sentence2": "D", "similarity_score": 0.0}],
                                 features=STS_FEATURES)
    raise AssertionError(f"unexpected Hub dataset {path!r}")


@pytest.fixture
def hub(monkeypatch):
    """The Hub reachable, no data folder, ``load_dataset`` answered by the stand-ins."""
    calls = []
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=3.0: True)

    def load(path, name, split):
        calls.append((path, name, split))
        return _standin(path, name, split)

    monkeypatch.setattr(sources, "hub_load", load)
    previous = sources.set_policy()
    yield calls
    sources.set_policy(previous.source, previous.allow_generated)


def test_hub_training_data_is_the_train_splits(hub):
    triplets = data.load_nli_triplets(["en", "de"])
    assert hub == [("stanfordnlp/snli", None, "train"), ("nyu-mll/multi_nli", None, "train"),
                   ("facebook/xnli", "de", "train")]
    assert triplets.source == "hub" and triplets.split == "train"
    tag = "[stanfordnlp/snli:None/train]"
    # entailment rows become triplets, the contradiction of the same premise their negative
    assert triplets[:3] == [
        data.NLITriplet(f"A man plays. {tag}", f"Someone plays. {tag}", f"He sleeps. {tag}"),
        data.NLITriplet(f"Kids run. {tag}", f"Children move. {tag}", f"Nobody moves. {tag}"),
        data.NLITriplet(f"Dogs bark. {tag}", f"Animals make noise. {tag}", None)]
    assert triplets.skipped == {"no gold label": 1}
    assert len(triplets) == 3 + 1 + 3  # SNLI + MultiNLI + XNLI de entailments
    assert all("[facebook/xnli:de/train]" in t.anchor for t in triplets[4:])


def test_hub_dev_and_test_splits_on_request(hub):
    data.load_nli_triplets("en", split="devtest")
    assert hub == [("stanfordnlp/snli", None, "validation"), ("stanfordnlp/snli", None, "test"),
                   ("nyu-mll/multi_nli", None, "validation_matched"),
                   ("nyu-mll/multi_nli", None, "validation_mismatched")]
    hub.clear()
    data.load_nli_triplets("fr", split="validation")
    assert hub == [("facebook/xnli", "fr", "validation")]


def test_hub_sts_rows(hub):
    pairs = data.load_sts(("de", "en"), "dev")
    assert hub == [("PhilipMay/stsb_multi_mt", "de", "dev"), ("PhilipMay/stsb_multi_mt", "en",
                                                              "dev")]
    assert pairs[0] == data.STSPair("A [PhilipMay/stsb_multi_mt:de/dev]", "B", 4.5)


def test_a_failing_hub_is_an_error_never_generated_data(hub, monkeypatch):
    def down(path, name, split):
        raise ConnectionError("502 from the Hub")

    monkeypatch.setattr(sources, "hub_load", down)
    with pytest.raises(data.DataSourceError, match="502 from the Hub"):
        data.load_nli_triplets("en")


def test_real_data_profiles_refuse_generated_data_unless_named(monkeypatch, gen_cache):
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    monkeypatch.setenv("LACOS_CACHE_DIR", str(gen_cache))
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=3.0: False)
    colab = config.load_profile("colab")
    previous = data.set_policy(colab.data.source, colab.data.allow_generated)
    try:
        with pytest.raises(data.DataSourceError, match="real data only.*LACOS_DATA_SOURCE"):
            data.load_nli_triplets("en")
        monkeypatch.setenv(sources.SOURCE_ENV, "generated")  # asked for by name
        assert data.load_nli_triplets("en").source == "generated"
        assert "generated" in sources.describe_source()
    finally:
        data.set_policy(previous.source, previous.allow_generated)


def test_cpu_profile_auto_falls_back_to_generated_with_a_warning(monkeypatch, gen_cache,
                                                                 lacos_log):
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    monkeypatch.setenv("LACOS_CACHE_DIR", str(gen_cache))
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=3.0: False)
    rows = data.load_sts("en", "dev")
    assert rows.source == "generated" and "GENERATED template dataset" in lacos_log.text


def test_data_source_setting_forces_a_source(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.SOURCE_ENV, "local")
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    with pytest.raises(data.DataSourceError, match="needs a data folder"):
        data.load_sts("en")
    monkeypatch.setenv(sources.SOURCE_ENV, "ftp")
    with pytest.raises(ValueError, match="unknown LACOS_DATA_SOURCE 'ftp'"):
        data.load_sts("en")


def test_local_train_files_are_used_when_present(tmp_path, monkeypatch):
    """A workshop can put SNLI/MultiNLI/XNLI train files into the data folder (same layout)."""
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    nli = tmp_path / "nli_en"
    nli.mkdir()
    header = "pairID,sentence1,sentence2,label\n"
    for name in ("snli_1.0_dev.csv", "snli_1.0_test.csv", "multinli_1.0_dev_matched.csv",
                 "multinli_1.0_dev_mismatched.csv"):
        (nli / name).write_text(header + "1,Dev premise.,Dev entailed.,entailment\n")
    assert data.load_nli_triplets("en", data_dir=tmp_path).split == "devtest"
    for name in ("snli_1.0_train.csv", "multinli_1.0_train.csv"):
        (nli / name).write_text(header + "1,Train premise.,Train entailed.,entailment\n"
                                "2,Train premise.,Train contradicted.,contradiction\n")
    train = data.load_nli_triplets("en", data_dir=tmp_path)
    assert train.split == "train" and train.source == "local"
    assert train == [data.NLITriplet("Train premise.", "Train entailed.",
                                     "Train contradicted.")] * 2
