"""A local data file that cannot be decoded or parsed is an error naming the file and the line
(never a bare ``UnicodeDecodeError`` or ``csv.Error``); rows that are skipped on purpose are
still counted, and the log says where they are. Damaged copies live in a temporary data folder
laid out as ``shared/data``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lacos_helpers import data
from lacos_helpers.data import sources
from lacos_helpers.data.layout import nli_en_path, sts_path, xnli_path

NLI_HEAD = b"pairID,sentence1,sentence2,label\n"
NLI_FILES = ("snli_1.0_dev.csv", "snli_1.0_test.csv", "multinli_1.0_dev_matched.csv",
             "multinli_1.0_dev_mismatched.csv")
XNLI_HEAD = b"id\tpremise\thypothesis\tlabel\n"


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """An empty data folder that the loaders read (``LACOS_DATA_DIR``)."""
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    return tmp_path


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _nli_en(root: Path, damaged: bytes) -> Path:
    """``snli_1.0_dev.csv`` = ``damaged``; the other English dev/test files are fine."""
    for name in NLI_FILES[1:]:
        _write(nli_en_path(root, name), NLI_HEAD + b"1,P.,H.,entailment\n")
    return _write(nli_en_path(root, NLI_FILES[0]), damaged)


def _raises_at(path: Path, line: int, what: str):
    """``pytest.raises`` for a :class:`ValueError` whose message starts with ``path, line N:``
    and says ``what``."""
    return pytest.raises(ValueError, match=rf"^{re.escape(str(path))}, line {line}: .*{what}")


# --------------------------------------------------------------------------- not UTF-8

def test_sts_invalid_utf8_names_file_line_and_byte(root):
    path = _write(sts_path(root, "en", "test"),
                  b"A cat.,A dog.,1.0\nA man.,A person.,2.0\nA b.,C \xff d.,3.0\n")
    with _raises_at(path, 3, r"not valid UTF-8 \(byte 0xff at offset 46.*re-download") as err:
        data.load_sts("en")
    assert isinstance(err.value, data.DataFileError)
    assert (err.value.path, err.value.line) == (path, 3)


def test_invalid_utf8_far_into_a_file_gives_the_file_line(root):
    """Past the first read chunk (8 KiB) the decoder's own position is chunk-relative."""
    rows = b"".join(b"Sentence %d here.,Another one %d.,2.5\n" % (i, i) for i in range(999))
    bad = b"Caf\xc3 au lait.,Coffee.,4.0\n"
    path = _write(sts_path(root, "de", "dev"), rows + bad + b"A.,B.,1.0\n")
    with _raises_at(path, 1000, rf"byte 0xc3 at offset {len(rows) + 3}"):
        data.load_sts("de", "dev")


def test_truncated_utf8_at_the_end_of_a_file(root):
    path = _write(sts_path(root, "en", "dev"), b"A.,B.,1.0\nA.,caf\xc3")
    with _raises_at(path, 2, "not valid UTF-8.*unexpected end of data"):
        data.load_sts("en", "dev")


def test_nli_csv_invalid_utf8_names_file_and_line(root):
    path = _nli_en(root, NLI_HEAD + b"1,P.,H.,entailment\n2,P.,H \xe9t\xe9.,contradiction\n")
    with _raises_at(path, 3, "not valid UTF-8 \\(byte 0xe9"):
        data.load_nli_triplets("en", split="devtest")


def test_nli_csv_invalid_utf8_in_the_header(root):
    path = _nli_en(root, b"pairID,sentence1,sentence2,lab\x80el\n1,P.,H.,entailment\n")
    with _raises_at(path, 1, "not valid UTF-8 \\(byte 0x80"):
        data.load_nli_triplets("en", split="devtest")


def test_xnli_tsv_invalid_utf8_names_file_and_line(root):
    path = _write(xnli_path(root, "validation", "fr"),
                  XNLI_HEAD + b"0\tP.\tH.\t0\n1\tP.\tH.\t2\n2\tP\xfe.\tH.\t1\n")
    with _raises_at(path, 4, "not valid UTF-8 \\(byte 0xfe"):
        data.load_nli_triplets("fr", split="validation")


def test_damaged_copy_of_the_real_sts_file(shared_data, tmp_path, monkeypatch):
    """The real STS-B en test file with one byte replaced on line 700."""
    lines = (shared_data / "stsb_multi_mt" / "stsb-en-test.csv").read_bytes().split(b"\n")
    lines[699] = b"\xff" + lines[699]
    path = _write(sts_path(tmp_path, "en", "test"), b"\n".join(lines))
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path))
    with _raises_at(path, 700, "not valid UTF-8 \\(byte 0xff"):
        data.load_sts("en")


# --------------------------------------------------------------------------- malformed rows

def test_sts_unclosed_quote_names_the_line_it_opens(root):
    """An opening quote without its closing one swallows the rest of the file into one field:
    past the csv module's field limit that was a bare ``csv.Error``."""
    path = _write(sts_path(root, "en", "test"),
                  b'A.,B.,1.0\n"A cat, sitting.,A cat.,4.0\n' + b"C.,D.,2.0\n" * 20000)
    with _raises_at(path, 2, "malformed CSV.*field larger than field limit"):
        data.load_sts("en")


def test_sts_unclosed_quote_in_a_small_file(root):
    """Below the field limit it silently ate every later row ("missing field 1")."""
    path = _write(sts_path(root, "en", "test"),
                  b'A.,B.,1.0\nC.,"D.,2.0\nE.,F.,3.0\nG.,H.,4.0\n')
    with _raises_at(path, 2, "runs on to line 4.*quote"):
        data.load_sts("en")


def test_nli_csv_unclosed_quote_names_the_line(root):
    path = _nli_en(root, NLI_HEAD + b'1,P.,H.,entailment\n2,"P.,H.,neutral\n'
                   + b"3,P.,H.,contradiction\n" * 20000)
    with _raises_at(path, 3, "malformed CSV"):
        data.load_nli_triplets("en", split="devtest")


def test_xnli_tsv_overlong_line_names_the_line(root):
    path = _write(xnli_path(root, "test", "de"),
                  XNLI_HEAD + b"0\tP.\tH.\t0\n1\t" + b"x" * 200_000 + b"\tH.\t1\n")
    with _raises_at(path, 3, "malformed TSV"):
        data.load_nli_triplets("de", split="test")


def test_nli_header_without_the_columns_names_line_one(root):
    path = _nli_en(root, b"pairID,premise,hypothesis,label\n1,P.,H.,entailment\n")
    with _raises_at(path, 1, "header lacks column"):
        data.load_nli_triplets("en", split="devtest")


# --------------------------------------------------------------------------- skipped rows

def test_skipped_rows_are_counted_and_located(root, lacos_log):
    """Rows with a missing field, an extra field or a bad score are skipped on purpose and
    counted; the log names the file and their lines."""
    path = _write(sts_path(root, "en", "test"),
                  b"A.,B.,1.0\nonly one\nA.,B.,abc\nA.,B.,9\nA.,B.,2.0,extra\nC.,D.,0\n")
    pairs = data.load_sts("en")
    assert pairs == [data.STSPair("A.", "B.", 1.0), data.STSPair("C.", "D.", 0.0)]
    assert pairs.skipped == {"missing field": 1, "bad score": 1, "score out of range": 1,
                             "extra field": 1}
    assert (f"{path}: 4 rows skipped: bad score (line 3), extra field (line 5), missing field "
            f"(line 2), score out of range (line 4)") in lacos_log.text

    path = _nli_en(root, NLI_HEAD + b"1,P.,H.,-\n2,P.,,entailment\n3,P.,H.,maybe\n")
    triplets = data.load_nli_triplets("en", split="devtest")
    assert triplets.skipped == {"no gold label": 1, "missing field": 1, "unknown label": 1}
    assert (f"{path}: 3 rows skipped: missing field (line 3), no gold label (line 2), unknown "
            "label (line 4)") in lacos_log.text
