"""A generated multilingual dataset, so the course also runs with no internet and no data
folder: templated sentences in the 10 STS-B languages whose similarity is known by construction,
written to ``cache_dir()/generated/`` in exactly the local layout (the same readers parse it).

A meaning is four slot ids (subject, verb, object, place). Each concept has one or two surface
forms ("variant 0|variant 1") per language; two templates per language order the slots
differently, so a paraphrase (same meaning, other template, other variants) never equals its
source text. Sentence i uses the same meaning, template and variants in every language.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from lacos_helpers import runtime
from lacos_helpers.checks import check_choice
from lacos_helpers.data.layout import (
    EN_NLI_PARTS,
    STS_LANGS,
    STS_SPLITS,
    XNLI_LABELS,
    XNLI_SPLITS,
    nli_en_path,
    sts_path,
    xnli_path,
)

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
GENERATOR_SEED = 1234
GENERATED_STS_SIZES = {"train": 1000, "dev": 300, "test": 500}  # pairs per language
GENERATED_XNLI_PREMISES = {"validation": 300, "test": 600}  # x3 rows (e, n, c) per language
GENERATED_EN_NLI_PREMISES = 750  # per nli_en file (4 files), x3 rows
SLOTS = ("subject", "verb", "object", "place")

# Templates: {S} {V} {O} {P}; {T} = optional time phrase (neutral NLI hypotheses) with its
# leading separator. Slot phrases are stored in the case each slot needs (objects accusative).
_SVO = ("{S} {V} {O} {P}{T}.", "{P}{T}, {S} {V} {O}.")
_VERB_SECOND = ("{S} {V}{T} {O} {P}.", "{P} {V} {S}{T} {O}.")
_NO_COMMA = ("{S} {V} {O} {P}{T}.", "{P}{T} {S} {V} {O}.")
_TEMPLATES = {"en": _SVO, "de": _VERB_SECOND, "es": _SVO, "fr": _SVO, "it": _SVO,
              "nl": _VERB_SECOND, "pl": _NO_COMMA, "pt": _SVO, "ru": _NO_COMMA,
              "zh": ("{S}{T}在{P}{V}{O}。", "在{P}，{S}{T}{V}{O}。")}
GENERATED_LANGS = tuple(lang for lang in STS_LANGS if lang in _TEMPLATES)


def _concepts(*rows: tuple[str, ...]) -> list[dict[str, tuple[str, ...]]]:
    """One dict per concept: language (the order of ``STS_LANGS``) -> its surface forms."""
    return [{lang: tuple(form.split("|")) for lang, form in zip(STS_LANGS, row)} for row in rows]


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
    check_choice(lang, GENERATED_LANGS, "generated-data language")
    forms = []
    for slot, concept, variant in zip(SLOTS, meaning, variants):
        options = _LEXICON[slot][concept][lang]
        forms.append(options[variant % len(options)])
    sep = "" if lang == "zh" else " "
    t = "" if time is None else sep + _TIMES[time][lang][0]
    text = _TEMPLATES[lang][template].format(S=forms[0], V=forms[1], O=forms[2], P=forms[3], T=t)
    return text[0].upper() + text[1:]


def _rng(name: str) -> random.Random:
    # a str seed is hashed with sha512: the same stream on every machine
    return random.Random(f"lacos-generated-v{GENERATOR_VERSION}-{GENERATOR_SEED}-{name}")


def _random_meaning(rng: random.Random) -> Meaning:
    return tuple(rng.randrange(len(_LEXICON[s])) for s in SLOTS)


def _other(rng: random.Random, slot: str, concept: int) -> int:
    return (concept + rng.randrange(1, len(_LEXICON[slot]))) % len(_LEXICON[slot])


def _sts_plan(split: str) -> list[tuple]:
    """Language-independent STS rows: (meaning1, meaning2, template1, variants1, variants2)."""
    rng = _rng(f"sts-{split}")
    plan = []
    for _ in range(GENERATED_STS_SIZES[split]):
        m1 = _random_meaning(rng)
        shared = set(rng.sample(range(len(SLOTS)), rng.randint(0, len(SLOTS))))
        m2 = tuple(c if i in shared else _other(rng, SLOTS[i], c) for i, c in enumerate(m1))
        v1 = tuple(rng.randrange(2) for _ in SLOTS)
        plan.append((m1, m2, rng.randrange(2), v1, tuple(1 - v for v in v1)))
    return plan


def generated_sts_meanings(split: str = "test") -> list[tuple]:
    """(meaning1, meaning2, gold score) of each generated STS row; score = 5 * shared slots / 4."""
    check_choice(split, STS_SPLITS, "STS split")
    return [(m1, m2, _gold(m1, m2)) for m1, m2, *_ in _sts_plan(split)]


def _gold(m1: Meaning, m2: Meaning) -> float:
    return 5.0 * sum(a == b for a, b in zip(m1, m2)) / len(SLOTS)


def _nli_plan(name: str, premises: int) -> list[tuple]:
    """Per premise, rows (label, meaning, template, variants, time) in the order n, e, c."""
    rng = _rng(f"nli-{name}")
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


def _csv_text(rows: Iterable[Sequence]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _expected_files(out: Path) -> list[Path]:
    files = [sts_path(out, lang, split) for lang in GENERATED_LANGS for split in STS_SPLITS]
    files += [nli_en_path(out, part[0]) for part in EN_NLI_PARTS]
    files += [xnli_path(out, s, lang) for s in XNLI_SPLITS for lang in GENERATED_LANGS]
    return files


def _manifest() -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": GENERATOR_SEED,
            "langs": list(GENERATED_LANGS), "sts_pairs": GENERATED_STS_SIZES,
            "xnli_premises": GENERATED_XNLI_PREMISES,
            "nli_en_premises_per_file": GENERATED_EN_NLI_PREMISES}


def generate_dataset(out_dir: str | os.PathLike | None = None) -> Path:
    """Write the generated dataset to ``out_dir`` (default ``cache_dir()/generated``) in the
    local layout, byte-identical every time; returns ``out_dir``.

    STS (``GENERATED_STS_SIZES`` pairs per language, aligned across languages): sentence2 shares
    k of 4 meaning slots with sentence1 (k uniform in 0..4), gold = 5 * k / 4, rendered with the
    other template and other synonyms. NLI (``GENERATED_*_PREMISES``): per premise an entailment
    (paraphrase), a neutral (paraphrase + time phrase) and a contradiction (one slot changed).
    """
    out = Path(out_dir) if out_dir is not None else runtime.cache_dir() / "generated"
    for split in STS_SPLITS:
        plan = _sts_plan(split)
        for lang in GENERATED_LANGS:
            rows = [(render(lang, m1, t, v1), render(lang, m2, 1 - t, v2), str(_gold(m1, m2)))
                    for m1, m2, t, v1, v2 in plan]
            runtime.write_atomic(sts_path(out, lang, split), _csv_text(rows))
    for fname, _, _, _ in EN_NLI_PARTS:
        rows = [(f"gen{i}{label[0]}", render("en", *anchor), render("en", *h), label)
                for i, (anchor, hyps) in enumerate(_nli_plan(fname, GENERATED_EN_NLI_PREMISES))
                for label, h in hyps]
        runtime.write_atomic(nli_en_path(out, fname),
                             _csv_text([("pairID", "sentence1", "sentence2", "label"), *rows]))
    ids = {v: k for k, v in XNLI_LABELS.items()}
    for split in XNLI_SPLITS:
        plan = _nli_plan(f"xnli-{split}", GENERATED_XNLI_PREMISES[split])
        for lang in GENERATED_LANGS:
            rows = enumerate((render(lang, *anchor), render(lang, *h), ids[label])
                             for anchor, hyps in plan for label, h in hyps)
            lines = [f"{n}\t{p}\t{h}\t{y}" for n, (p, h, y) in rows]
            runtime.write_atomic(xnli_path(out, split, lang),
                                 "\n".join(["id\tpremise\thypothesis\tlabel", *lines]) + "\n")
    runtime.write_atomic(out / "MANIFEST.json",
                         json.dumps(_manifest(), indent=1, sort_keys=True) + "\n")
    return out


def ensure_generated(out_dir: str | os.PathLike | None = None) -> Path:
    """The generated dataset folder, (re)built when missing, incomplete or from another
    generator version."""
    out = Path(out_dir) if out_dir is not None else runtime.cache_dir() / "generated"
    try:
        manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if manifest != _manifest() or not all(p.is_file() for p in _expected_files(out)):
        log.info("[data] generating the offline dataset (v%d) in %s", GENERATOR_VERSION, out)
        generate_dataset(out)
    return out
