"""NLI training triplets and STS evaluation pairs, with one API whatever the source.

Sources, tried in this order when ``source=None`` (auto):

1. **local**: a folder of plain files (``data_dir=`` or ``LACOS_DATA_DIR``), laid out as
   ``stsb_multi_mt/stsb-{lang}-{split}.csv``, ``nli_en/{snli,multinli}_*.csv`` and
   ``xnli/xnli_{split}_{lang}.tsv`` (see ``shared/data/README.md``);
2. **hub**: the same datasets from the Hugging Face Hub through ``datasets`` (only when
   :func:`hub_available`); a Hub error falls through to 3 with a printed reason;
3. **generated**: a small templated multilingual dataset that the package writes to
   ``config.cache_dir()/generated/`` in exactly the local layout, so the same readers parse it.
   Its gold similarity is known by construction (see :func:`generate_dataset`).

Loaders return :class:`Rows` (a ``list``) of :class:`NLITriplet` or :class:`STSPair`, in file
order (no shuffling unless a ``seed`` is given), so ``limit=N`` takes nested, stable prefixes.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from lacos_helpers import config
from lacos_helpers.env import hub_reachable as hub_available

STS_SPLITS = ("train", "dev", "test")
XNLI_SPLITS = ("validation", "test")
SOURCES = ("local", "hub", "generated")
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


class NLITriplet(NamedTuple):
    """(premise, entailment hypothesis, contradiction hypothesis of the same premise or None)."""

    anchor: str
    positive: str
    hard_negative: str | None


class STSPair(NamedTuple):
    """Two sentences and their gold similarity (float, 0 = unrelated ... 5 = same meaning)."""

    sentence1: str
    sentence2: str
    score: float


class Rows(list):
    """A list of rows that remembers where it came from.

    ``source``: "local" | "hub" | "generated"; ``paths``: files read (or Hub ids);
    ``skipped``: ``Counter`` of malformed rows left out, reason -> count.
    """

    def __init__(self, items: Iterable = (), *, source: str = "", paths: Iterable = (),
                 skipped: Counter | dict | None = None):
        super().__init__(items)
        self.source = source
        self.paths = [str(p) for p in paths]
        self.skipped = Counter(skipped or {})

    def __repr__(self) -> str:
        return (f"Rows({len(self)} rows, source={self.source!r}, "
                f"skipped={sum(self.skipped.values())})")


class DataSourceError(RuntimeError):
    """A requested data source cannot be used (e.g. ``source="local"`` without a data dir)."""


Raw = STSPair | str  # a parsed row, or the reason it was skipped


# --------------------------------------------------------------------------- Hub access

def _hub_load(path: str, name: str | None, split: str):
    """``datasets.load_dataset`` (one place, so tests can replace it)."""
    from datasets import load_dataset

    return load_dataset(path, name, split=split)


# --------------------------------------------------------------------------- validation

def _check_choice(value, valid: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")


def _pick_source(source: str | None, data_dir: str | os.PathLike | None) -> tuple[str, Path | None]:
    """Resolve ``source`` (None/"auto" = local if a data dir is known, else hub if reachable,
    else generated) to (kind, local root or None)."""
    if source not in (None, "auto", *SOURCES):
        raise ValueError(f"unknown source {source!r}; valid: None (auto), {', '.join(SOURCES)}")
    if source == "local" or (source in (None, "auto") and (data_dir or config.data_dir())):
        root = Path(data_dir).expanduser() if data_dir else config.data_dir()
        if root is None:
            raise DataSourceError("source='local' needs a data directory: set LACOS_DATA_DIR "
                                  "or pass data_dir=")
        if not root.is_dir():
            raise FileNotFoundError(f"data directory {root} does not exist")
        return "local", root
    if source in ("hub", "generated"):
        return source, None
    return ("hub" if hub_available() else "generated"), None


def _load(source: str | None, data_dir, read_files: Callable[[Path], Rows],
          read_hub: Callable[[], Rows], langs: Sequence[str], verbose: bool) -> Rows:
    """Run the reader of the chosen source; an auto Hub failure falls through to generated."""
    kind, root = _pick_source(source, data_dir)
    if kind == "hub":
        try:
            rows = read_hub()
            rows.source = "hub"
            return rows
        except Exception as exc:  # network, missing dataset, schema change...
            if source == "hub":
                raise
            if verbose:
                print(f"[data] Hub failed ({type(exc).__name__}: {str(exc)[:200]}); "
                      "using generated data")
            kind = "generated"
    if kind == "generated":
        missing = [lang for lang in langs if lang not in GENERATED_LANGS]
        if missing:
            raise ValueError(f"the generated dataset does not cover {missing}; it covers "
                             f"{', '.join(GENERATED_LANGS)}")
        root = ensure_generated(verbose=verbose)
    rows = read_files(root)
    rows.source = kind
    return rows


def _where(rows: Rows) -> str:
    if rows.source == "hub":
        return f"hub {', '.join(dict.fromkeys(rows.paths))}"
    parents = dict.fromkeys(str(Path(p).parent) for p in rows.paths)
    return f"{rows.source} {', '.join(parents)}"


def _skipped_text(skipped: Counter) -> str:
    total = sum(skipped.values())
    if not total:
        return "0 skipped"
    return f"{total} skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))


# --------------------------------------------------------------------------- STS

def _parse_sts_row(row: Sequence) -> Raw:
    """One ``sentence1, sentence2, score`` row -> STSPair, or the reason it is skipped."""
    if len(row) < 3 or any(x is None for x in row[:3]):
        return "missing field"
    if len(row) > 3:
        return "extra field"
    s1, s2 = str(row[0]).strip(), str(row[1]).strip()
    if not s1 or not s2:
        return "missing field"
    try:
        score = float(row[2])
    except (TypeError, ValueError):
        return "bad score"
    if not 0.0 <= score <= 5.0:  # also rejects NaN
        return "score out of range"
    return STSPair(s1, s2, score)


def sts_path(root: str | os.PathLike, lang: str, split: str) -> Path:
    """``root/stsb_multi_mt/stsb-{lang}-{split}.csv``."""
    return Path(root) / "stsb_multi_mt" / f"stsb-{lang}-{split}.csv"


def _read_sts_file(path: Path) -> list[Raw]:
    if not path.is_file():
        raise FileNotFoundError(f"STS file not found: {path}")
    with open(path, encoding="utf-8", newline="") as fh:
        return [_parse_sts_row(row) for row in csv.reader(fh) if row]


def _read_sts_hub(lang: str, split: str) -> list[Raw]:
    ds = _hub_load(HUB_STS, lang, split)
    return [_parse_sts_row([r.get("sentence1"), r.get("sentence2"), r.get("similarity_score")])
            for r in ds]


def _align(raw_x: list[Raw], raw_y: list[Raw], names: tuple[str, str]) -> list[Raw]:
    """Row i of language X (sentence1) with row i of language Y (sentence2); gold scores must
    agree."""
    if len(raw_x) != len(raw_y):
        raise ValueError(f"cross-lingual STS: {names[0]} has {len(raw_x)} rows but {names[1]} "
                         f"has {len(raw_y)}; the files are not aligned")
    out: list[Raw] = []
    for i, (a, b) in enumerate(zip(raw_x, raw_y)):
        if isinstance(a, str) or isinstance(b, str):
            out.append(a if isinstance(a, str) else b)
        elif abs(a.score - b.score) > 1e-6:
            raise ValueError(f"cross-lingual STS: row {i} has score {a.score} in {names[0]} but "
                             f"{b.score} in {names[1]}; the files are not aligned")
        else:
            out.append(STSPair(a.sentence1, b.sentence2, a.score))
    return out


def _sts_rows(raw: list[Raw], limit: int | None, paths) -> Rows:
    pairs = [r for r in raw if isinstance(r, STSPair)]
    skipped = Counter(r for r in raw if isinstance(r, str))
    return Rows(pairs[:limit] if limit is not None else pairs, paths=paths, skipped=skipped)


def load_sts(lang: str | Sequence[str] = "en", split: str = "test", limit: int | None = None,
             *, source: str | None = None, data_dir: str | os.PathLike | None = None,
             verbose: bool = True) -> Rows:
    """STS-B multi-mt pairs (:class:`STSPair`, score 0-5) for one language, in file order.

    ``lang`` is one of ``config.STS_LANGS`` or a pair ``("de", "en")``: cross-lingual pairs
    with sentence1 from row i in German and sentence2 from row i in English (same gold score).
    ``split``: train (5749 rows), dev (1500), test (1379). ``limit``: first N pairs.
    ``source``: None (auto) | "local" | "hub" | "generated".
    """
    langs = (lang,) if isinstance(lang, str) else tuple(lang)
    if len(langs) not in (1, 2):
        raise ValueError(f"lang must be a code or a pair of codes, got {lang!r}")
    for code in langs:
        _check_choice(code, config.STS_LANGS, "STS language")
    _check_choice(split, STS_SPLITS, "STS split")
    _check_limit(limit)

    def combine(raws: list[list[Raw]], paths: list) -> Rows:
        raw = raws[0] if len(raws) == 1 else _align(raws[0], raws[1], langs)
        return _sts_rows(raw, limit, paths)

    def read_files(root: Path) -> Rows:
        paths = [sts_path(root, code, split) for code in langs]
        return combine([_read_sts_file(p) for p in paths], paths)

    def read_hub() -> Rows:
        return combine([_read_sts_hub(code, split) for code in langs],
                       [f"{HUB_STS}:{code}/{split}" for code in langs])

    rows = _load(source, data_dir, read_files, read_hub, langs, verbose)
    if verbose:
        print(f"[data] STS-B {'-'.join(langs)}/{split}: {len(rows)} pairs from {_where(rows)} "
              f"({_skipped_text(rows.skipped)})")
    return rows


def sts_sentences(pairs: Iterable[STSPair]) -> list[str]:
    """Unique sentences of ``pairs`` (sentence1 and sentence2), in first-seen order."""
    return list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))


# --------------------------------------------------------------------------- NLI

Record = tuple | str  # (premise, hypothesis, label name), or a skip reason


def _nli_record(premise, hypothesis, label: str | None) -> Record:
    if premise is None or hypothesis is None or label is None:
        return "missing field"
    premise, hypothesis, label = str(premise).strip(), str(hypothesis).strip(), label.strip()
    if not premise or not hypothesis:
        return "missing field"
    if label == "-":
        return "no gold label"
    if label not in NLI_LABELS:
        return "unknown label"
    return premise, hypothesis, label


def _read_table(path: Path, delimiter: str, columns: tuple[str, ...], **kw) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"NLI file not found: {path}")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, **kw)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {missing}; found {reader.fieldnames}")
        return list(reader)


def _read_nli_csv(path: Path) -> list[Record]:
    """SNLI/MultiNLI CSV (``pairID,sentence1,sentence2,label``; label name or '-')."""
    rows = _read_table(path, ",", ("sentence1", "sentence2", "label"))
    return [_nli_record(r["sentence1"], r["sentence2"], r["label"]) for r in rows]


def _read_xnli_tsv(path: Path) -> list[Record]:
    """XNLI TSV (``id premise hypothesis label``; 0 entailment, 1 neutral, 2 contradiction)."""
    rows = _read_table(path, "\t", ("premise", "hypothesis", "label"), quoting=csv.QUOTE_NONE)
    out = []
    for r in rows:
        label = r["label"]
        label = XNLI_LABELS.get(label.strip(), "?") if label is not None else None
        out.append(_nli_record(r["premise"], r["hypothesis"], label))
    return out


def _read_nli_hub(path: str, name: str | None, split: str) -> list[Record]:
    ds = _hub_load(path, name, split)
    return [_nli_record(r.get("premise"), r.get("hypothesis"), HUB_LABELS.get(r.get("label"), "?"))
            for r in ds]


def _triplets(records: list[Record]) -> tuple[list[NLITriplet], Counter]:
    """Entailment rows -> triplets, in file order. The hard negative is a contradiction
    hypothesis of the same premise in the same file (cycling when a premise has several)."""
    skipped = Counter(r for r in records if isinstance(r, str))
    good = [r for r in records if not isinstance(r, str)]
    contradictions: dict[str, list[str]] = {}
    for premise, hypothesis, label in good:
        if label == "contradiction":
            contradictions.setdefault(premise, []).append(hypothesis)
    seen: Counter = Counter()
    out = []
    for premise, hypothesis, label in good:
        if label == "entailment":
            negs = contradictions.get(premise)
            out.append(NLITriplet(premise, hypothesis,
                                  negs[seen[premise] % len(negs)] if negs else None))
            seen[premise] += 1
    return out, skipped


def _nli_parts(lang: str, split: str | None) -> list[tuple[str, tuple]]:
    """(local path relative to the data root, Hub (id, config, split)) for one language."""
    if lang == "en":
        return [(f"nli_en/{f}", (hub, None, hub_split))
                for f, hub, hub_split, ours in EN_NLI_PARTS if split in (None, ours)]
    return [(f"xnli/xnli_{s}_{lang}.tsv", (HUB_XNLI, lang, s))
            for s in XNLI_SPLITS if split in (None, s)]


def _load_nli_one(lang: str, split: str | None, source, data_dir, verbose: bool) -> Rows:
    parts = _nli_parts(lang, split)

    def build(groups: list[list[Record]], paths: list) -> Rows:
        rows = Rows(paths=paths)
        for records in groups:  # hard negatives are looked up within one file only
            triplets, skipped = _triplets(records)
            rows.extend(triplets)
            rows.skipped.update(skipped)
        return rows

    def read_files(root: Path) -> Rows:
        paths = [root / rel for rel, _ in parts]
        reader = _read_nli_csv if lang == "en" else _read_xnli_tsv
        return build([reader(p) for p in paths], paths)

    def read_hub() -> Rows:
        return build([_read_nli_hub(*hub) for _, hub in parts],
                     [f"{h[0]}:{h[1] + '/' if h[1] else ''}{h[2]}" for _, h in parts])

    return _load(source, data_dir, read_files, read_hub, (lang,), verbose)


def _share(sizes: list[int], limit: int) -> list[int]:
    """Split ``limit`` rows as evenly as possible over languages with ``sizes`` rows (water
    filling: a small language gives its unused share to the others; monotone in ``limit``)."""
    take = [0] * len(sizes)
    left = limit
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    for rank, i in enumerate(order):
        take[i] = min(sizes[i], left // (len(sizes) - rank))
        left -= take[i]
    return take


def load_nli_triplets(lang: str | Sequence[str] = "en", limit: int | None = None, *,
                      split: str | None = None, seed: int | None = None,
                      source: str | None = None, data_dir: str | os.PathLike | None = None,
                      verbose: bool = True) -> Rows:
    """NLI (anchor, positive, hard_negative) triplets for MNR training.

    ``lang``: a code of ``config.XNLI_LANGS`` or a sequence of codes (concatenated in that
    order). ``en`` = SNLI dev+test + MultiNLI dev matched+mismatched (13,639 triplets); other
    languages = XNLI validation+test entailment rows (830 + 1670). ``split``: None (all),
    "validation" (XNLI validation; en: SNLI dev + MNLI dev-matched) or "test" (XNLI test; en:
    SNLI test + MNLI dev-mismatched). Rows keep file order unless ``seed`` is an int, which
    shuffles each language deterministically. ``limit``: at most N triplets in total, shared
    evenly over the languages (first N per language, so smaller limits give subsets).
    """
    langs = [lang] if isinstance(lang, str) else list(lang)
    if not langs:
        raise ValueError("lang must name at least one language")
    for code in langs:
        _check_choice(code, config.XNLI_LANGS, "NLI language")
    if split is not None:
        _check_choice(split, XNLI_SPLITS, "NLI split")
    _check_limit(limit)

    parts = [_load_nli_one(code, split, source, data_dir, verbose=verbose) for code in langs]
    if seed is not None:
        for part in parts:
            random.Random(seed).shuffle(part)
    takes = _share([len(p) for p in parts], limit) if limit is not None else [len(p) for p in parts]
    out = Rows(source=parts[0].source)
    for code, part, take in zip(langs, parts, takes):
        out.extend(part[:take])
        out.paths.extend(part.paths)
        out.skipped.update(part.skipped)
        if part.source != out.source:
            out.source = "mixed"
        if verbose:
            name = "SNLI+MultiNLI" if code == "en" else "XNLI"
            hard = sum(t.hard_negative is not None for t in part[:take])
            print(f"[data] NLI {code} ({name} {split or 'all splits'}): {take} triplets "
                  f"({hard} with hard negative) from {_where(part)} "
                  f"({_skipped_text(part.skipped)})")
    if verbose and len(langs) > 1:
        print(f"[data] NLI total: {len(out)} triplets in {len(langs)} languages")
    return out


def available_sources(data_dir: str | os.PathLike | None = None) -> dict:
    """What each source offers here: {"local": path or None, "hub": bool, "generated": langs}."""
    try:
        local = Path(data_dir) if data_dir else config.data_dir()
    except FileNotFoundError:
        local = None
    return {"local": str(local) if local else None, "hub": hub_available(),
            "generated": GENERATED_LANGS}


# --------------------------------------------------------------------------- generated data
#
# A meaning is four slot ids (subject, verb, object, place). Each concept has one or two surface
# forms ("variant 0|variant 1") per language; two templates per language order the slots
# differently, so a paraphrase (same meaning, other template, other variants) never equals its
# source text. Sentence i uses the same meaning, template and variants in every language.

GENERATOR_VERSION = 1
GENERATOR_SEED = 1234
GENERATED_STS_SIZES = {"train": 1000, "dev": 300, "test": 500}  # pairs per language
GENERATED_XNLI_PREMISES = {"validation": 300, "test": 600}  # x3 rows (e, n, c) per language
GENERATED_EN_NLI_PREMISES = 750  # per nli_en file (4 files), x3 rows
SLOTS = ("subject", "verb", "object", "place")

# Templates: {S} {V} {O} {P}; {T} = optional time phrase (neutral NLI hypotheses) with its
# leading separator. Slot phrases are stored in the case each slot needs (objects accusative).
_TEMPLATES = {
    "en": ("{S} {V} {O} {P}{T}.", "{P}{T}, {S} {V} {O}."),
    "de": ("{S} {V}{T} {O} {P}.", "{P} {V} {S}{T} {O}."),
    "es": ("{S} {V} {O} {P}{T}.", "{P}{T}, {S} {V} {O}."),
    "fr": ("{S} {V} {O} {P}{T}.", "{P}{T}, {S} {V} {O}."),
    "it": ("{S} {V} {O} {P}{T}.", "{P}{T}, {S} {V} {O}."),
    "nl": ("{S} {V}{T} {O} {P}.", "{P} {V} {S}{T} {O}."),
    "pl": ("{S} {V} {O} {P}{T}.", "{P}{T} {S} {V} {O}."),
    "pt": ("{S} {V} {O} {P}{T}.", "{P}{T}, {S} {V} {O}."),
    "ru": ("{S} {V} {O} {P}{T}.", "{P}{T} {S} {V} {O}."),
    "zh": ("{S}{T}在{P}{V}{O}。", "在{P}，{S}{T}{V}{O}。"),
}
GENERATED_LANGS = tuple(lang for lang in config.STS_LANGS if lang in _TEMPLATES)

_L = ("en", "de", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh")


def _concepts(*rows: tuple[str, ...]) -> list[dict[str, tuple[str, ...]]]:
    return [{lang: tuple(form.split("|")) for lang, form in zip(_L, row)} for row in rows]


_LEXICON: dict[str, list[dict[str, tuple[str, ...]]]] = {
    "subject": _concepts(
        ("the man|the gentleman", "der Mann|der Herr", "el hombre|el señor",
         "l'homme|le monsieur", "l'uomo|il signore", "de man|de meneer", "mężczyzna|pan",
         "o homem|o senhor", "мужчина|господин", "男人|男子"),
        ("the woman|the lady", "die Frau|die Dame", "la mujer|la señora", "la femme|la dame",
         "la donna|la signora", "de vrouw|de dame", "kobieta|pani", "a mulher|a senhora",
         "женщина|дама", "女人|女子"),
        ("the child|the kid", "das Kind", "el niño|el chico", "l'enfant|le gamin",
         "il bambino|il bimbo", "het kind", "dziecko|maluch", "a criança", "ребёнок|малыш",
         "孩子|小孩"),
        ("the doctor|the physician", "der Arzt|der Doktor", "el médico|el doctor",
         "le médecin|le docteur", "il medico|il dottore", "de arts|de dokter", "lekarz|doktor",
         "o médico|o doutor", "врач|доктор", "医生|大夫"),
        ("the teacher|the instructor", "der Lehrer|die Lehrkraft", "el profesor|el maestro",
         "le professeur|l'enseignant", "l'insegnante|il professore", "de leraar|de docent",
         "nauczyciel", "o professor|o docente", "учитель|преподаватель", "老师|教师"),
        ("the cook|the chef", "der Koch|der Küchenchef", "el cocinero|el chef",
         "le cuisinier|le chef", "il cuoco|lo chef", "de kok|de chef-kok", "kucharz|szef kuchni",
         "o cozinheiro|o chef", "повар|шеф-повар", "厨师|大厨"),
        ("the student|the pupil", "der Student|der Studierende", "el estudiante|el alumno",
         "l'étudiant|l'élève", "lo studente|l'alunno", "de student|de leerling", "student|uczeń",
         "o estudante|o aluno", "студент|учащийся", "学生|学员"),
        ("the police officer|the policeman", "der Polizist|der Polizeibeamte",
         "el policía|el agente", "le policier|l'agent", "il poliziotto|l'agente",
         "de agent|de politieagent", "policjant|funkcjonariusz", "o policial|o agente",
         "полицейский", "警察|警官"),
    ),
    "verb": _concepts(
        ("buys|purchases", "kauft|erwirbt", "compra|adquiere", "achète|acquiert",
         "compra|acquista", "koopt", "kupuje", "compra|adquire", "покупает|приобретает",
         "买|购买"),
        ("sells", "verkauft", "vende", "vend", "vende", "verkoopt", "sprzedaje", "vende",
         "продаёт", "卖|出售"),
        ("carries|is carrying", "trägt", "lleva|carga", "porte|transporte", "porta|trasporta",
         "draagt", "niesie|nosi", "carrega|leva", "несёт", "拿着|提着"),
        ("cleans|is cleaning", "putzt|reinigt", "limpia", "nettoie", "pulisce",
         "reinigt|poetst", "czyści", "limpa", "чистит", "擦|清理"),
        ("draws|sketches", "zeichnet|skizziert", "dibuja|esboza", "dessine|esquisse",
         "disegna|abbozza", "tekent|schetst", "rysuje|szkicuje", "desenha|esboça", "рисует",
         "画|描绘"),
        ("finds|discovers", "findet|entdeckt", "encuentra|halla", "trouve|découvre",
         "trova|scopre", "vindt|ontdekt", "znajduje|odnajduje", "encontra|acha",
         "находит|обнаруживает", "找到|发现"),
        ("repairs|fixes", "repariert|flickt", "repara|arregla", "répare", "ripara|aggiusta",
         "repareert|herstelt", "naprawia|reperuje", "conserta|repara", "чинит|ремонтирует",
         "修理|修"),
        ("photographs|takes a photo of", "fotografiert", "fotografía", "photographie",
         "fotografa", "fotografeert", "fotografuje", "fotografa", "фотографирует|снимает",
         "拍摄|拍"),
    ),
    "object": _concepts(
        ("a book", "ein Buch", "un libro", "un livre", "un libro", "een boek", "książkę",
         "um livro", "книгу", "一本书"),
        ("a bicycle|a bike", "ein Fahrrad|ein Rad", "una bicicleta|una bici",
         "un vélo|une bicyclette", "una bicicletta|una bici", "een fiets|een rijwiel", "rower",
         "uma bicicleta", "велосипед", "一辆自行车|一辆单车"),
        ("a guitar", "eine Gitarre", "una guitarra", "une guitare", "una chitarra", "een gitaar",
         "gitarę", "um violão|uma guitarra", "гитару", "一把吉他"),
        ("a lamp", "eine Lampe|eine Leuchte", "una lámpara", "une lampe", "una lampada",
         "een lamp", "lampę", "uma luminária", "лампу|светильник", "一盏灯|一盏台灯"),
        ("a chair", "einen Stuhl", "una silla", "une chaise", "una sedia", "een stoel",
         "krzesło", "uma cadeira", "стул", "一把椅子"),
        ("a bag", "eine Tasche", "una bolsa|un bolso", "un sac", "una borsa", "een tas",
         "torbę", "uma bolsa|uma sacola", "сумку", "一个包|一个袋子"),
        ("a ball", "einen Ball", "una pelota|un balón", "un ballon|une balle",
         "un pallone|una palla", "een bal", "piłkę", "uma bola", "мяч", "一个球"),
        ("a box", "eine Kiste|eine Schachtel", "una caja", "une boîte|un carton", "una scatola",
         "een doos", "pudełko|pudło", "uma caixa", "коробку|ящик", "一个盒子|一个箱子"),
    ),
    "place": _concepts(
        ("in the park|at the park", "im Park", "en el parque", "dans le parc|au parc",
         "nel parco|al parco", "in het park", "w parku", "no parque", "в парке", "公园里|公园中"),
        ("in the kitchen", "in der Küche", "en la cocina", "dans la cuisine",
         "in cucina|nella cucina", "in de keuken", "w kuchni", "na cozinha", "на кухне",
         "厨房里"),
        ("in the garden|in the yard", "im Garten", "en el jardín", "dans le jardin",
         "in giardino|nel giardino", "in de tuin", "w ogrodzie", "no jardim", "в саду", "花园里"),
        ("on the street|in the street", "auf der Straße", "en la calle", "dans la rue",
         "per strada|in strada", "op straat", "na ulicy", "na rua", "на улице", "街上|大街上"),
        ("in the office|at the office", "im Büro", "en la oficina", "au bureau", "in ufficio",
         "op kantoor|in het kantoor", "w biurze", "no escritório", "в офисе", "办公室里"),
        ("on the beach|at the beach", "am Strand", "en la playa", "sur la plage|à la plage",
         "in spiaggia|sulla spiaggia", "op het strand", "na plaży", "na praia", "на пляже",
         "海滩上|沙滩上"),
        ("at the station|at the train station", "am Bahnhof", "en la estación", "à la gare",
         "alla stazione", "op het station", "na dworcu|na stacji", "na estação",
         "на вокзале|на станции", "车站|火车站"),
        ("at the market|at the marketplace", "auf dem Markt|auf dem Marktplatz",
         "en el mercado", "au marché", "al mercato", "op de markt", "na targu|na rynku",
         "no mercado|na feira", "на рынке|на базаре", "市场上|集市上"),
    ),
}
_TIMES = _concepts(
    ("in the morning", "am Morgen", "por la mañana", "le matin", "la mattina", "'s ochtends",
     "rano", "de manhã", "утром", "早上"),
    ("in the evening", "am Abend", "por la tarde", "le soir", "la sera", "'s avonds",
     "wieczorem", "à tarde", "вечером", "晚上"),
    ("at night", "in der Nacht", "por la noche", "la nuit", "di notte", "'s nachts", "w nocy",
     "à noite", "ночью", "夜里"),
    ("on Sunday", "am Sonntag", "el domingo", "le dimanche", "la domenica", "op zondag",
     "w niedzielę", "no domingo", "в воскресенье", "星期天"),
)

Meaning = tuple  # (subject id, verb id, object id, place id)


def render(lang: str, meaning: Meaning, template: int = 0, variants: Sequence[int] = (0, 0, 0, 0),
           time: int | None = None) -> str:
    """One generated sentence: ``meaning`` (4 concept ids) in ``lang`` with template 0/1 and a
    surface variant 0/1 per slot; ``time`` adds a time phrase (neutral NLI hypotheses)."""
    if lang not in _TEMPLATES:
        raise ValueError(f"the generator does not cover {lang!r}; it covers "
                         f"{', '.join(GENERATED_LANGS)}")
    forms = []
    for slot, concept, variant in zip(SLOTS, meaning, variants):
        options = _LEXICON[slot][concept][lang]
        forms.append(options[variant % len(options)])
    sep = "" if lang == "zh" else " "
    t = "" if time is None else sep + _TIMES[time][lang][0]
    text = _TEMPLATES[lang][template].format(S=forms[0], V=forms[1], O=forms[2], P=forms[3], T=t)
    return text[0].upper() + text[1:]


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(f"lacos-generated-v{GENERATOR_VERSION}-{seed}-{name}")  # str: sha512


def _random_meaning(rng: random.Random) -> Meaning:
    return tuple(rng.randrange(len(_LEXICON[s])) for s in SLOTS)


def _other(rng: random.Random, slot: str, concept: int) -> int:
    return (concept + rng.randrange(1, len(_LEXICON[slot]))) % len(_LEXICON[slot])


def _sts_plan(split: str, seed: int) -> list[tuple]:
    """Language-independent STS rows: (meaning1, meaning2, template1, variants1, variants2)."""
    rng = _rng(seed, f"sts-{split}")
    plan = []
    for _ in range(GENERATED_STS_SIZES[split]):
        m1 = _random_meaning(rng)
        shared = set(rng.sample(range(len(SLOTS)), rng.randint(0, len(SLOTS))))
        m2 = tuple(c if i in shared else _other(rng, SLOTS[i], c) for i, c in enumerate(m1))
        v1 = tuple(rng.randrange(2) for _ in SLOTS)
        plan.append((m1, m2, rng.randrange(2), v1, tuple(1 - v for v in v1)))
    return plan


def generated_sts_meanings(split: str = "test", seed: int = GENERATOR_SEED) -> list[tuple]:
    """(meaning1, meaning2, gold score) of each generated STS row; score = 5 * shared slots / 4."""
    _check_choice(split, STS_SPLITS, "STS split")
    return [(m1, m2, _gold(m1, m2)) for m1, m2, *_ in _sts_plan(split, seed)]


def _gold(m1: Meaning, m2: Meaning) -> float:
    return 5.0 * sum(a == b for a, b in zip(m1, m2)) / len(SLOTS)


def _nli_plan(name: str, premises: int, seed: int) -> list[tuple]:
    """Per premise, rows (label, meaning, template, variants, time) in the order n, e, c."""
    rng = _rng(seed, f"nli-{name}")
    plan = []
    for _ in range(premises):
        m = _random_meaning(rng)
        t = rng.randrange(2)
        v = tuple(rng.randrange(2) for _ in SLOTS)
        changed = rng.randrange(len(SLOTS))
        mc = tuple(_other(rng, SLOTS[i], c) if i == changed else c for i, c in enumerate(m))
        anchor = (m, t, v, None)
        plan.append((anchor, [
            ("neutral", (m, rng.randrange(2), v, rng.randrange(len(_TIMES)))),
            ("entailment", (m, 1 - t, tuple(1 - x for x in v), None)),
            ("contradiction", (mc, rng.randrange(2), v, None)),
        ]))
    return plan


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def _csv_text(rows: Iterable[Sequence]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _expected_files(out: Path, langs: Sequence[str]) -> list[Path]:
    files = [sts_path(out, lang, split) for lang in langs for split in STS_SPLITS]
    files += [out / "nli_en" / part[0] for part in EN_NLI_PARTS]
    files += [out / "xnli" / f"xnli_{s}_{lang}.tsv" for s in XNLI_SPLITS for lang in langs]
    return files


def _manifest(seed: int, langs: Sequence[str]) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "langs": list(langs),
            "sts_pairs": GENERATED_STS_SIZES, "xnli_premises": GENERATED_XNLI_PREMISES,
            "nli_en_premises_per_file": GENERATED_EN_NLI_PREMISES}


def generate_dataset(out_dir: str | os.PathLike | None = None, *, seed: int = GENERATOR_SEED,
                     langs: Sequence[str] = GENERATED_LANGS) -> Path:
    """Write the generated dataset to ``out_dir`` (default ``cache_dir()/generated``) in the
    local layout; deterministic (same seed -> byte-identical files). Returns ``out_dir``.

    STS: train/dev/test = 1000/300/500 pairs per language, aligned across languages; sentence2
    shares k of 4 meaning slots with sentence1 (k uniform in 0..4), gold = 5 * k / 4, rendered
    with the other template and other synonyms. NLI: per premise an entailment (paraphrase), a
    neutral (paraphrase + time phrase) and a contradiction (one slot changed) hypothesis;
    nli_en: 4 files x 750 premises (English), xnli: 300 validation / 600 test premises per
    language.
    """
    for lang in langs:
        if lang not in _TEMPLATES:
            raise ValueError(f"the generator does not cover {lang!r}; it covers "
                             f"{', '.join(GENERATED_LANGS)}")
    out = Path(out_dir) if out_dir is not None else config.cache_dir() / "generated"
    for split in STS_SPLITS:
        plan = _sts_plan(split, seed)
        for lang in langs:
            rows = [(render(lang, m1, t, v1), render(lang, m2, 1 - t, v2), str(_gold(m1, m2)))
                    for m1, m2, t, v1, v2 in plan]
            _write_atomic(sts_path(out, lang, split), _csv_text(rows))
    for fname, _, _, _ in EN_NLI_PARTS:
        rows = [("pairID", "sentence1", "sentence2", "label")]
        for i, (anchor, hyps) in enumerate(_nli_plan(fname, GENERATED_EN_NLI_PREMISES, seed)):
            premise = render("en", *anchor)
            rows += [(f"gen{i}{label[0]}", premise, render("en", *h), label) for label, h in hyps]
        _write_atomic(out / "nli_en" / fname, _csv_text(rows))
    ids = {v: k for k, v in XNLI_LABELS.items()}
    for split in XNLI_SPLITS:
        plan = _nli_plan(f"xnli-{split}", GENERATED_XNLI_PREMISES[split], seed)
        for lang in langs:
            lines, n = ["id\tpremise\thypothesis\tlabel"], 0
            for anchor, hyps in plan:
                premise = render(lang, *anchor)
                for label, h in hyps:
                    lines.append(f"{n}\t{premise}\t{render(lang, *h)}\t{ids[label]}")
                    n += 1
            _write_atomic(out / "xnli" / f"xnli_{split}_{lang}.tsv", "\n".join(lines) + "\n")
    _write_atomic(out / "MANIFEST.json",
                  json.dumps(_manifest(seed, langs), indent=1, sort_keys=True) + "\n")
    return out


def ensure_generated(out_dir: str | os.PathLike | None = None, verbose: bool = True) -> Path:
    """The generated dataset folder, (re)built when missing, incomplete or from another
    generator version."""
    out = Path(out_dir) if out_dir is not None else config.cache_dir() / "generated"
    try:
        manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    fresh = manifest == json.loads(json.dumps(_manifest(GENERATOR_SEED, GENERATED_LANGS)))
    if not fresh or not all(p.is_file() for p in _expected_files(out, GENERATED_LANGS)):
        if verbose:
            print(f"[data] generating the offline dataset (v{GENERATOR_VERSION}) in {out}")
        generate_dataset(out)
    return out


__all__ = [
    "GENERATED_LANGS",
    "GENERATOR_VERSION",
    "SOURCES",
    "STS_SPLITS",
    "XNLI_SPLITS",
    "DataSourceError",
    "NLITriplet",
    "Rows",
    "STSPair",
    "available_sources",
    "ensure_generated",
    "generate_dataset",
    "generated_sts_meanings",
    "hub_available",
    "load_nli_triplets",
    "load_sts",
    "render",
    "sts_path",
    "sts_sentences",
]


# --------------------------------------------------------------------------------------------
# training batches with no text twice (in-batch negatives must be true negatives)
# --------------------------------------------------------------------------------------------

def text_key(text: str) -> str:
    """What counts as "the same text" within a batch: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def _triplet_keys(triplet, index: int) -> frozenset[str]:
    """The :func:`text_key` of a triplet's texts (anchor, positive, hard negative if any)."""
    if isinstance(triplet, str) or not isinstance(triplet, Sequence) \
            or len(triplet) not in (2, 3):
        raise TypeError(f"triplets[{index}] must be an NLITriplet or an (anchor, positive[, "
                        f"hard_negative]) tuple, got {type(triplet).__name__}")
    texts = [t for t in triplet[2:] if t is not None] + list(triplet[:2])
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"triplets[{index}] needs str anchor and positive (hard_negative str or "
                        f"None), got {tuple(type(t).__name__ for t in triplet)}")
    return frozenset(text_key(t) for t in texts)


def epoch_order(n: int, seed: int = 42, epoch: int = 0) -> list[int]:
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)`` (same on every
    machine and Python version)."""
    order = list(range(n))
    random.Random(f"no-duplicates:{seed}:{epoch}").shuffle(order)
    return order


def no_duplicate_batches(triplets: Sequence[NLITriplet], batch_size: int, seed: int = 42,
                         epoch: int = 0, drop_last: bool = True) -> list[list[NLITriplet]]:
    """One epoch of batches in which no text (anchor, positive or hard negative, compared by
    :func:`text_key`) belongs to two triplets of the same batch: a repeated text would be a false
    in-batch negative for MNR.

    Like sentence-transformers' ``NoDuplicatesBatchSampler``: the triplets are shuffled by
    ``(seed, epoch)``; each batch is filled greedily in that order, skipping a triplet that shares
    a text with the batch so far (it waits for a later batch). A pure function of its arguments,
    so batch i of epoch e is always the same (resume = recompute and skip). Each triplet appears
    at most once per epoch; with ``drop_last`` batches that cannot be filled to ``batch_size``
    are dropped (their triplets skip this epoch), else they are kept (smaller, possibly of one).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2 (in-batch negatives need another "
                         f"pair), got {batch_size!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    items = list(triplets)
    if not items:
        raise ValueError("no triplets to batch (empty input)")
    keys = [_triplet_keys(t, i) for i, t in enumerate(items)]
    remaining = dict.fromkeys(epoch_order(len(items), seed, epoch))  # ordered set
    batches: list[list[NLITriplet]] = []
    while remaining:
        chosen = _fill_batch(remaining, keys, batch_size)
        if len(chosen) == batch_size or not drop_last:
            batches.append([items[i] for i in chosen])
        for i in chosen:
            del remaining[i]
    return batches


def _fill_batch(remaining: dict, keys: list[frozenset[str]], batch_size: int) -> list[int]:
    """Indices of the first triplets of ``remaining`` (in order) that share no text with each
    other, at most ``batch_size`` of them."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i in remaining:
        if keys[i] & seen:
            continue
        chosen.append(i)
        seen |= keys[i]
        if len(chosen) == batch_size:
            break
    return chosen


def batch_count(triplets: Sequence[NLITriplet], batch_size: int, seed: int = 42,
                epoch: int = 0, drop_last: bool = True) -> int:
    """Number of batches :func:`no_duplicate_batches` gives for these arguments (with
    ``drop_last`` it can differ by epoch when texts repeat)."""
    return len(no_duplicate_batches(triplets, batch_size, seed=seed, epoch=epoch,
                                    drop_last=drop_last))


__all__ += ["batch_count", "epoch_order", "no_duplicate_batches", "text_key"]
