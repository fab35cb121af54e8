"""lacos_helpers.data: local files (pinned row counts), errors, skipped rows, generated fallback."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lacos_helpers import data, runtime
from lacos_helpers.data import NLITriplet, STSPair, sources
from lacos_helpers.data import generated as generated_module

REPO = Path(__file__).resolve().parent.parent
NLI_FILES = ("snli_1.0_dev.csv", "snli_1.0_test.csv", "multinli_1.0_dev_matched.csv",
             "multinli_1.0_dev_mismatched.csv")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- local, real data

@pytest.mark.parametrize("lang", ["en", "zh", "de", "ru"])
@pytest.mark.parametrize("split,rows", [("train", 5749), ("dev", 1500), ("test", 1379)])
def test_sts_row_counts(shared_data, lang, split, rows):
    pairs = data.load_sts(lang, split)
    assert len(pairs) == rows and pairs.source == "local" and not pairs.skipped
    assert pairs.paths == [str(shared_data / "stsb_multi_mt" / f"stsb-{lang}-{split}.csv")]
    assert all(isinstance(p, STSPair) and 0 <= p.score <= 5 and p.sentence1 and p.sentence2
               for p in pairs)


def test_sts_print_limit_and_sentences(shared_data, lacos_log):
    pairs = data.load_sts("de", "test", limit=10)
    out = lacos_log.take()
    assert out.startswith("[data] STS-B de/test: 10 of 1379 pairs (sample stratified by gold "
                          "score, seed 0) from local ") and "(0 skipped)" in out
    whole = data.load_sts("de", "test")
    assert all(p in whole for p in pairs) and pairs == data.load_sts("de", "test", limit=10)
    sentences = data.sts_sentences(pairs)
    assert len(sentences) == len(set(sentences)) <= 20 and pairs[0].sentence1 == sentences[0]


def test_sts_cross_lingual(shared_data):
    de = data.load_sts("de")
    en = data.load_sts("en")
    cross = data.load_sts(("de", "en"))
    assert len(cross) == 1379
    assert [p.sentence1 for p in cross] == [p.sentence1 for p in de]
    assert [p.sentence2 for p in cross] == [p.sentence2 for p in en]
    assert [p.score for p in cross] == [p.score for p in en]


def test_nli_english(shared_data, lacos_log):
    triplets = data.load_nli_triplets("en")
    assert "13639 triplets (12838 with hard negative) from local" in lacos_log.take()
    assert len(triplets) == 13_639 and triplets.source == "local"
    assert all(isinstance(t, NLITriplet) and t.anchor and t.positive for t in triplets)
    assert sum(t.hard_negative is not None for t in triplets) == 12_838
    # skipped rows = the '-' labels, counted with a plain csv read
    dashes = 0
    for name in NLI_FILES:
        with open(shared_data / "nli_en" / name, encoding="utf-8", newline="") as fh:
            dashes += sum(r["label"] == "-" for r in csv.DictReader(fh))
    assert triplets.skipped["no gold label"] == dashes == 687
    assert sum(triplets.skipped.values()) == dashes
    # splits partition the rows: SNLI dev + MNLI matched / SNLI test + MNLI mismatched
    val = data.load_nli_triplets("en", split="validation")
    test = data.load_nli_triplets("en", split="test")
    assert (len(val), len(test)) == (3329 + 3479, 3368 + 3463)
    assert sorted(val + test) == sorted(triplets)


def test_nli_hard_negative_is_contradiction_of_same_premise(shared_data):
    with open(shared_data / "nli_en" / "snli_1.0_dev.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    contra = {(r["sentence1"].strip(), r["sentence2"].strip())
              for r in rows if r["label"] == "contradiction"}
    first = data.load_nli_triplets("en", limit=200)
    assert all((t.anchor, t.hard_negative) in contra for t in first if t.hard_negative)


@pytest.mark.parametrize("lang", ["de", "zh", "sw"])
def test_xnli_counts(shared_data, lang):
    val = data.load_nli_triplets(lang, split="validation")
    test = data.load_nli_triplets(lang, split="test")
    both = data.load_nli_triplets(lang)
    assert (len(val), len(test), len(both)) == (830, 1670, 2500)
    assert both == val + test and not both.skipped
    assert all(t.hard_negative for t in both)


def test_nli_limit_is_nested_and_shared(shared_data):
    small = data.load_nli_triplets(["en", "de"], limit=100)
    large = data.load_nli_triplets(["en", "de"], limit=301)
    assert len(small) == 100 and len(large) == 301
    assert small[:50] == large[:50] and set(small) <= set(large)
    assert small[50:] == data.load_nli_triplets("de", limit=50)
    shuffled = data.load_nli_triplets("de", limit=50, seed=0)
    assert shuffled == data.load_nli_triplets("de", limit=50, seed=0)
    assert shuffled != small[50:]


# --------------------------------------------------------------------------- errors

def test_unknown_language_and_split(shared_data):
    with pytest.raises(ValueError, match="valid: en, de, es"):
        data.load_sts("xx")
    with pytest.raises(ValueError, match="valid: train, dev, test"):
        data.load_sts("en", "validation")
    with pytest.raises(ValueError, match="valid: ar, bg"):
        data.load_nli_triplets(["en", "klingon"])
    with pytest.raises(ValueError, match="valid: train, validation, test, devtest"):
        data.load_nli_triplets("de", split="dev")
    with pytest.raises(ValueError, match="unknown data source"):
        data.load_sts("en", source="ftp")


def test_missing_file(shared_data, tmp_path):
    sts = tmp_path / "stsb_multi_mt"
    sts.mkdir()
    for src in (shared_data / "stsb_multi_mt").glob("stsb-*-test.csv"):
        if src.name != "stsb-fr-test.csv":
            (sts / src.name).symlink_to(src)
    assert len(data.load_sts("de", data_dir=tmp_path)) == 1379
    with pytest.raises(FileNotFoundError, match="stsb-fr-test.csv"):
        data.load_sts("fr", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="xnli_validation_de.tsv"):
        data.load_nli_triplets("de", data_dir=tmp_path)


def test_local_forced_without_data_dir(monkeypatch):
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    with pytest.raises(data.DataSourceError, match="LACOS_DATA_DIR"):
        data.load_sts("en", source="local")


def test_skipped_rows_are_counted(tmp_path):
    _write(tmp_path / "stsb_multi_mt" / "stsb-en-test.csv",
           'A cat sits.,"A cat, sitting.",4.5\n'
           "Only one sentence.\n"
           ",Empty first.,1.0\n"
           "A dog.,A hound.,abc\n"
           "A dog.,A hound.,7.5\n"
           "A dog.,A hound.,-1\n"
           "A dog.,A hound.,nan\n"
           "A dog.,A hound.,2.0,extra\n"
           "A man.,A person.,0\n")
    pairs = data.load_sts("en", data_dir=tmp_path)
    assert pairs == [STSPair("A cat sits.", "A cat, sitting.", 4.5),
                     STSPair("A man.", "A person.", 0.0)]
    assert pairs.skipped == {"missing field": 2, "bad score": 1, "score out of range": 3,
                             "extra field": 1}

    head = "pairID,sentence1,sentence2,label\n"
    _write(tmp_path / "nli_en" / "snli_1.0_dev.csv", head +
           "1,P one.,H entailed.,entailment\n"
           "2,P one.,H contradicts.,contradiction\n"
           "3,P one.,H unknown.,-\n"
           "4,P two.,,entailment\n"
           "5,P two.\n"
           "6,P two.,H two.,maybe\n"
           "7,P two.,H entailed two.,entailment\n")
    for name in NLI_FILES[1:]:
        _write(tmp_path / "nli_en" / name, head + "9,P three.,H three.,neutral\n")
    triplets = data.load_nli_triplets("en", data_dir=tmp_path)
    assert triplets == [NLITriplet("P one.", "H entailed.", "H contradicts."),
                        NLITriplet("P two.", "H entailed two.", None)]
    assert triplets.skipped == {"no gold label": 1, "missing field": 2, "unknown label": 1}

    tsv = "id\tpremise\thypothesis\tlabel\n0\t\"Quoted\tH.\t0\n1\tP.\tH.\t7\n2\tP.\tH2.\t0\n"
    _write(tmp_path / "xnli" / "xnli_validation_de.tsv", tsv)
    xnli = data.load_nli_triplets("de", split="validation", data_dir=tmp_path)
    assert xnli == [NLITriplet('"Quoted', "H.", None), NLITriplet("P.", "H2.", None)]
    assert xnli.skipped == {"unknown label": 1}


def test_cross_lingual_mismatch(tmp_path):
    _write(tmp_path / "stsb_multi_mt" / "stsb-en-dev.csv", "A.,B.,1.0\nC.,D.,2.0\n")
    _write(tmp_path / "stsb_multi_mt" / "stsb-de-dev.csv", "A.,B.,1.0\nC.,D.,3.0\n")
    _write(tmp_path / "stsb_multi_mt" / "stsb-fr-dev.csv", "A.,B.,1.0\n")
    with pytest.raises(ValueError, match="row 1 has score"):
        data.load_sts(("de", "en"), "dev", data_dir=tmp_path)
    with pytest.raises(ValueError, match="not aligned"):
        data.load_sts(("fr", "en"), "dev", data_dir=tmp_path)


# --------------------------------------------------------------------------- hub (no network)

def test_hub_available_respects_offline(monkeypatch):
    monkeypatch.setattr(runtime.socket, "create_connection",
                        lambda *a, **k: pytest.fail("network touched"))
    offline = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "LACOS_OFFLINE")
    for var in offline:
        for other in offline:
            monkeypatch.delenv(other, raising=False)
        monkeypatch.setenv(var, "1")
        assert runtime.hub_reachable() is False


def test_hub_rows_and_no_quiet_fallback(generated, monkeypatch, lacos_log):
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=3.0: True)
    fake = [{"sentence1": "A.", "sentence2": "B.", "similarity_score": 2.0},
            {"sentence1": "C.", "sentence2": "D.", "similarity_score": 9.0}]
    monkeypatch.setattr(sources, "hub_load", lambda path, name, split: fake)
    pairs = data.load_sts("de")
    assert pairs.source == "hub" and pairs == [STSPair("A.", "B.", 2.0)]
    assert pairs.skipped == {"score out of range": 1}
    assert "PhilipMay/stsb_multi_mt" in pairs.paths[0]
    nli = [{"premise": "P.", "hypothesis": "E.", "label": 0},
           {"premise": "P.", "hypothesis": "C.", "label": 2},
           {"premise": "P.", "hypothesis": "X.", "label": -1}]
    monkeypatch.setattr(sources, "hub_load", lambda path, name, split: nli)
    triplets = data.load_nli_triplets("en", split="test")
    assert triplets == [NLITriplet("P.", "E.", "C.")] * 2 and triplets.source == "hub"
    assert triplets.skipped == {"no gold label": 2}

    def broken(path, name, split):
        raise ConnectionError("hub down")

    monkeypatch.setattr(sources, "hub_load", broken)
    # 0.1 switched to generated sentences here without a word on some call sites: now an error
    with pytest.raises(data.DataSourceError, match="hub down.*LACOS_DATA_SOURCE=generated"):
        data.load_sts("de")
    with pytest.raises(data.DataSourceError, match="hub down"):
        data.load_sts("de", source="hub")


# --------------------------------------------------------------------------- generated

def test_generated_fallback_is_valid(generated, lacos_log):
    assert not runtime.hub_reachable()
    for lang in ("en", "de", "zh"):
        for split, size in generated_module.GENERATED_STS_SIZES.items():
            pairs = data.load_sts(lang, split)
            assert pairs.source == "generated" and len(pairs) == size and not pairs.skipped
            assert all(p.sentence1 and p.sentence2 and 0 <= p.score <= 5 for p in pairs)
    assert {p.score for p in pairs} == {0.0, 1.25, 2.5, 3.75, 5.0}
    assert (generated / "MANIFEST.json").is_file()
    nli = data.load_nli_triplets(["en", "fr"])
    assert "from generated" in lacos_log.take()
    assert len(nli) == 4 * generated_module.GENERATED_EN_NLI_PREMISES + sum(
        generated_module.GENERATED_XNLI_PREMISES.values())
    assert nli.source == "generated" and not nli.skipped
    assert all(t.hard_negative and len({t.anchor, t.positive, t.hard_negative}) == 3 for t in nli)


def test_generated_cross_lingual_and_construction(generated):
    en = data.load_sts("en")
    cross = data.load_sts(("de", "en"))
    assert [p.sentence2 for p in cross] == [p.sentence2 for p in en]
    assert [p.score for p in cross] == [p.score for p in en]
    meanings = data.generated_sts_meanings("test")
    assert len(meanings) == len(en)
    lexicon = generated_module._LEXICON
    for pair, (m1, m2, score) in zip(en, meanings):
        shared = sum(a == b for a, b in zip(m1, m2))
        assert pair.score == score == 5 * shared / 4
        if m1 == m2:
            assert pair.score == 5 and pair.sentence1 != pair.sentence2
        if shared == 0:
            assert pair.score == 0
        for sentence, meaning in ((pair.sentence1, m1), (pair.sentence2, m2)):
            # the text carries the meaning
            for slot, concept in zip(generated_module.SLOTS, meaning):
                assert any(form.lower() in sentence.lower()
                           for form in lexicon[slot][concept]["en"])
    assert any(m1 == m2 for m1, m2, _ in meanings)
    assert any(s == 0 for _, _, s in meanings)


def test_generated_uncovered_language(generated):
    with pytest.raises(ValueError, match="covers en, de, es, fr"):
        data.load_nli_triplets("sw", source="generated")


def test_generated_is_deterministic_and_versioned(tmp_path, generated, monkeypatch):
    a = data.generate_dataset(tmp_path / "a")
    b = data.generate_dataset(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 3 * 10 + 4 + 2 * 10 + 1
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # a missing file or another generator version triggers a rebuild
    (a / "stsb_multi_mt" / "stsb-en-test.csv").unlink()
    monkeypatch.setattr(generated_module, "GENERATOR_VERSION", data.GENERATOR_VERSION + 1)
    data.ensure_generated(a)
    assert (a / "stsb_multi_mt" / "stsb-en-test.csv").is_file()
    assert f'"generator_version": {generated_module.GENERATOR_VERSION}' in \
        (a / "MANIFEST.json").read_text()
    # the new version changes the random streams, so the content differs from b
    assert (a / "stsb_multi_mt" / "stsb-de-test.csv").read_bytes() != \
        (b / "stsb_multi_mt" / "stsb-de-test.csv").read_bytes()


# --------------------------------------------------------------------------- cross-lingual NLI

def _row_of(triplets_by_lang: dict, text: str) -> set[tuple[str, int, str]]:
    """(language, row, role) of every place ``text`` sits in the per-language triplets."""
    return {(lang, i, role) for lang, rows in triplets_by_lang.items()
            for i, t in enumerate(rows) for role in ("anchor", "positive", "hard_negative")
            if getattr(t, role) == text}


@pytest.mark.parametrize("fixture", ["shared_data", "generated"])
def test_crosslingual_triplets_pair_one_row_in_two_languages(fixture, request):
    request.getfixturevalue(fixture)
    langs = ("en", "de", "fr")
    per_lang = data.nli.aligned_xnli_triplets(langs)
    assert list(per_lang) == list(langs)
    assert len({len(rows) for rows in per_lang.values()}) == 1  # aligned
    assert per_lang["de"] == data.nli._load_nli_one("de", None, None, None, xnli=True)
    triplets = data.nli.crosslingual_triplets(langs, 2, seed=3)
    assert len(triplets) == 2 * len(per_lang["en"])
    assert triplets == data.nli.crosslingual_triplets(langs, 2, seed=3)  # seeded
    assert triplets != data.nli.crosslingual_triplets(langs, 2, seed=4)
    kinds = set()
    for t in triplets[:60]:
        anchor, positive = _row_of(per_lang, t.anchor), _row_of(per_lang, t.positive)
        # some row i holds the anchor in language a and positive + hard negative in b != a
        match = [(a, p) for a in anchor for p in positive
                 if a[1] == p[1] and a[0] != p[0] and a[2] != "hard_negative"
                 and p[2] != "hard_negative" and (a[2], p[2]) != ("positive", "anchor")
                 and per_lang[p[0]][p[1]].hard_negative == t.hard_negative]
        assert match, t
        kinds |= {(a[2], p[2]) for a, p in match}
    assert kinds == {("anchor", "positive"), ("anchor", "anchor"), ("positive", "positive")}
    assert data.nli.crosslingual_triplets(langs, 0) == []


def test_crosslingual_triplets_bad_input(tmp_path):
    with pytest.raises(ValueError, match="two languages or more"):
        data.nli.crosslingual_triplets(("de", "de"), 1, data_dir=tmp_path)
    with pytest.raises(ValueError, match="XNLI language"):
        data.nli.crosslingual_triplets(("de", "xx"), 1, data_dir=tmp_path)
    header = "id\tpremise\thypothesis\tlabel\n"
    rows = ["0\tP one.\tH one.\t0\n", "1\tP one.\tC one.\t2\n", "2\tP two.\tH two.\t0\n"]
    for lang, kept in (("de", rows), ("fr", rows[:2])):
        for split in ("validation", "test"):
            _write(tmp_path / "xnli" / f"xnli_{split}_{lang}.tsv", header + "".join(kept))
    with pytest.raises(ValueError, match="not aligned.*'de': 4, 'fr': 2"):
        data.nli.crosslingual_triplets(("de", "fr"), 1, source="local", data_dir=tmp_path)


def test_run_triplets_are_the_languages_then_the_crosslingual_ones(generated):
    from lacos_helpers import config

    spec = config.DataConfig(train_langs=("en", "de"), nli_limit=40, crosslingual=1)
    within = data.load_nli_triplets(("en", "de"), limit=40, seed=5)
    cross = data.nli.crosslingual_triplets(("en", "de"), 1, seed=5)
    assert data.run_triplets(spec, 5) == within + cross and len(cross) > 0
    plain = config.DataConfig(train_langs=("en",), nli_limit=40)  # one language: none across
    assert data.run_triplets(plain, 5) == data.load_nli_triplets("en", limit=40, seed=5)
