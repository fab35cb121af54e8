"""A trained run as a sentence-transformers model folder, checked against the run's encoder.

``export_run(run, out, mode="merged")`` writes a folder that ``SentenceTransformer(out)`` loads
with nothing of this package installed: the float32 backbone with LoRA folded in
(:mod:`~lacos_helpers.export.backbone`), ``Pooling`` and ``Normalize`` modules, the tokenizer
with right padding (:mod:`~lacos_helpers.export.folder` says why), a model card
(:mod:`~lacos_helpers.export.card`) and ``lacos_export.json``. The export loads the folder back
and records the largest difference from the run's encoder (in float32) on probe sentences, with
the saved and with left padding. ``mode="adapter"``: the float base in ``out/base`` and the
peft adapter in ``out`` (loaded through transformers' peft integration).
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from packaging.version import Version

from lacos_helpers.export.backbone import float_backbone
from lacos_helpers.export.card import model_card, run_eval_tables
from lacos_helpers.export.folder import st_pooling_mode, write_st_files
from lacos_helpers.runtime import atomic_folder

log = logging.getLogger(__name__)

EXPORT_MODES = ("merged", "adapter")
RECORD_FILE = "lacos_export.json"
EXPORT_PADDING_SIDE = "right"
PARITY_TOLERANCE = 1e-4  # max abs difference per embedding component (unit vectors)

# Sentences of different lengths and scripts, one longer than any max_length (truncation):
# batches of them are padded, so the parity check covers padding and truncation.
PROBE_SENTENCES = (
    "A man is playing a guitar.",
    "Ein Mann spielt Gitarre.",
    "Un homme joue de la guitare sur la scène devant un public nombreux.",
    "Dos perros corren por el campo.",
    "Кошка спит на диване.",
    "一个女人正在切洋葱。",
    "The stock market fell sharply on Monday after the central bank raised interest rates "
    "for the third time this year, surprising analysts who had expected a pause, and the "
    "losses spread from banks to technology companies, retailers and energy producers within "
    "the first hour of trading in New York, London and Frankfurt." * 2,
    "Yes.",
)


class ExportError(RuntimeError):
    """An export that cannot be made (the message says why and what to do instead)."""


@dataclass
class ExportResult:
    """What :func:`export_run` wrote and measured: ``max_abs_diff`` from the run's encoder on
    ``probe_count`` sentences (None without sentence-transformers), ``left_padding_diff`` from
    switching the tokenizer to left padding (``left_padding_safe``: within float rounding),
    ``exact_compute``: whether ``max_abs_diff`` should be float rounding only."""

    folder: Path
    mode: str
    run: str
    pooling: str
    st_pooling: str
    normalize: bool
    max_seq_length: int
    padding_side: str
    exact_compute: bool
    max_abs_diff: float | None = None
    left_padding_diff: float | None = None
    left_padding_safe: bool | None = None
    probe_count: int = 0
    checked_with: str | None = None
    versions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "folder": str(self.folder)}


# --------------------------------------------------------------------------- what can be exported

def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def integration_peft_version() -> str | None:
    """``MIN_PEFT_VERSION`` of transformers' peft integration (None if it names none)."""
    try:
        from transformers.integrations import peft as hf_peft
    except ImportError:  # pragma: no cover - transformers without the integration
        return None
    return getattr(hf_peft, "MIN_PEFT_VERSION", None)


def _refuse_early(pooling: str, mode: str) -> str:
    """sentence-transformers' name for ``pooling``; refuses before any work an unknown
    ``mode``, a pooling it lacks, an adapter export without peft (whether the adapter folder
    loads is checked after writing it)."""
    if mode not in EXPORT_MODES:
        raise ValueError(f"unknown export mode {mode!r}; valid: {', '.join(EXPORT_MODES)}")
    st_mode = st_pooling_mode(pooling)
    if mode == "adapter" and _version("peft") is None:
        raise ExportError("--adapter export refused: peft is not installed (sentence-transformers "
                          "loads an adapter folder with peft). Export with --merged (LoRA "
                          "folded into the float weights: needs no peft) or install peft.")
    return st_mode


def adapter_load_error(exc: Exception) -> ExportError:
    """The refusal when sentence-transformers could not load the adapter folder just written:
    its error, the versions involved, what to do instead."""
    needed = integration_peft_version()
    peft_version = _version("peft")
    hint = (f"; transformers' peft integration asks for peft >= {needed}"
            if needed and peft_version and Version(peft_version) < Version(needed) else "")
    return ExportError(
        f"--adapter export refused: sentence-transformers {_version('sentence-transformers')} "
        f"could not load the adapter folder with peft {peft_version} and transformers "
        f"{_version('transformers')}{hint} ({type(exc).__name__}: {exc}). Export with --merged "
        "(LoRA folded into the float weights: needs no peft) or upgrade peft; nothing was kept.")


def exact_compute(cfg) -> bool:
    """Whether the float export computes what the run's encoder does (up to rounding): a float
    base or weight-only 8-bit compute, not LLM.int8 (which also rounds activations)."""
    return cfg.quant.backend == "none" or (cfg.quant.backend == "lacos"
                                          and cfg.quant.compute == "dequantize")


# --------------------------------------------------------------------------- the export

def _prepare_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty: choose a new folder or pass overwrite=True "
                          "(CLI: --overwrite)")


def _versions() -> dict[str, str]:
    from lacos_helpers import __version__

    names = ("sentence_transformers", "transformers", "torch", "peft")
    found = {name: _version(name.replace("_", "-")) for name in names}
    return {"lacos_helpers": __version__, **{k: v for k, v in found.items() if v}}


def _st_model(folder: str | os.PathLike):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _st_embeddings(model, sentences, padding_side: str) -> torch.Tensor:
    """``model.encode(sentences)`` -> float32 [n, d], its tokenizer padding on
    ``padding_side`` for this call (restored afterwards)."""
    tokenizer = model.tokenizer
    saved, tokenizer.padding_side = tokenizer.padding_side, padding_side
    try:
        out = model.encode(list(sentences), batch_size=32, convert_to_tensor=True,
                           show_progress_bar=False)
    finally:
        tokenizer.padding_side = saved
    return out.detach().float().cpu()


def _max_diff(theirs: torch.Tensor, reference: torch.Tensor) -> float:
    if theirs.shape != reference.shape:
        raise ExportError(f"sentence-transformers returned {tuple(theirs.shape)} for "
                          f"{tuple(reference.shape)} reference embeddings")
    return float((theirs - reference).abs().max())


def parity(folder: Path, reference: torch.Tensor, sentences) -> tuple[float, float, str] | None:
    """``(max_abs_diff, left_padding_diff, checked_with)``: the largest |difference| between
    sentence-transformers' embeddings of ``sentences`` from ``folder`` and ``reference`` [n, d],
    and what switching its tokenizer to left padding changes; None without
    sentence-transformers."""
    version = _version("sentence-transformers")
    if version is None:
        log.warning("[export] sentence-transformers is not installed: the folder was not "
                    "loaded back to check it (pip install sentence-transformers)")
        return None
    model = _st_model(folder)
    saved = _st_embeddings(model, sentences, model.tokenizer.padding_side)
    left = _st_embeddings(model, sentences, "left")
    return (_max_diff(saved, reference), _max_diff(left, saved),
            f"sentence-transformers {version}")


def _record_parity(result: ExportResult, max_abs_diff: float, left_padding_diff: float,
                   checked_with: str) -> None:
    """Record what :func:`parity` measured in ``result``; refuse a difference beyond float
    rounding where the export should compute what the run's encoder does."""
    result.max_abs_diff, result.checked_with = max_abs_diff, checked_with
    result.left_padding_diff = left_padding_diff
    result.left_padding_safe = left_padding_diff <= PARITY_TOLERANCE
    if not result.left_padding_safe:
        log.warning("[export] with %s, a left-padded tokenizer gives other embeddings (max "
                    "|diff| %.2e, pooling %s): keep the folder's right padding (the model card "
                    "says so)", checked_with, left_padding_diff, result.st_pooling)
    if result.exact_compute and result.max_abs_diff > PARITY_TOLERANCE:
        raise ExportError(
            f"the exported model differs from the run's encoder by up to "
            f"{result.max_abs_diff:.2e} (> {PARITY_TOLERANCE:g}) on {result.probe_count} probe "
            "sentences; nothing was kept. Please report this with the run's run.json.")
    if not result.exact_compute:
        log.warning("[export] LLM.int8 runs compute with int8 activations; the float export "
                    "differs from the run's encoder by up to %.2e per component",
                    result.max_abs_diff)


ADAPTER_BASE_DIR = "base"


def write_model_folder(encoder, folder: str | os.PathLike, mode: str = "merged") -> Path:
    """The transformer and tokenizer (right padding) files of ``folder``; converts the
    encoder's backbone in place. ``"merged"``: the float32 backbone with LoRA folded in.
    ``"adapter"``: the peft adapter in ``folder`` and the float32 base (no LoRA) in
    ``folder/base``, which the adapter config names by its absolute path."""
    from lacos_helpers import lora

    folder = base = Path(folder)
    if mode == "adapter":
        base = folder / ADAPTER_BASE_DIR
        lora.save_adapter(encoder.backbone, folder)
        set_adapter_base(folder, base)
    float_backbone(encoder.backbone, merge=mode == "merged")
    encoder.backbone.save_pretrained(str(base), safe_serialization=True)
    tokenizer = copy.deepcopy(encoder.tokenizer)  # right padding, also in its saved config
    tokenizer.padding_side = EXPORT_PADDING_SIDE
    tokenizer.init_kwargs["padding_side"] = EXPORT_PADDING_SIDE
    tokenizer.model_max_length = int(encoder.max_length)
    tokenizer.save_pretrained(str(folder))
    return folder


def set_adapter_base(folder: str | os.PathLike, base: str | os.PathLike) -> None:
    """Point the adapter config of ``folder`` at the base model folder ``base`` (absolute)."""
    from lacos_helpers.lora import ADAPTER_CONFIG_NAME

    path = Path(folder) / ADAPTER_CONFIG_NAME
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(Path(base).resolve())
    path.write_text(json.dumps(config, indent=2) + "\n")


def export_encoder(encoder, out: str | os.PathLike, *, cfg=None, run_dir=None,
                   mode: str = "merged", normalize: bool = True, overwrite: bool = False,
                   run_record: dict | None = None) -> ExportResult:
    """Write ``encoder`` (a trained :class:`~lacos_helpers.encoder.SiameseEncoder`; its
    backbone is converted **in place**: do not use it afterwards) as a sentence-transformers
    folder ``out`` and check it. ``cfg`` (its RunConfig) and ``run_dir`` feed the model card.
    Raises :class:`ExportError` or :class:`~lacos_helpers.export.folder.UnsupportedPoolingError`
    and leaves nothing in ``out`` when it fails."""
    st_mode = _refuse_early(encoder.pooling, mode)
    out = Path(out)
    _prepare_target(out, overwrite)
    with encoder.float32():  # the export is float32: compare with the encoder in float32
        reference = encoder.encode(PROBE_SENTENCES, normalize=normalize, show_progress=False)
    result = ExportResult(
        folder=out, mode=mode, run=str(run_dir or ""), pooling=encoder.pooling,
        st_pooling=st_mode, normalize=normalize, max_seq_length=encoder.max_length,
        padding_side=EXPORT_PADDING_SIDE, probe_count=len(PROBE_SENTENCES), versions=_versions(),
        exact_compute=True if cfg is None else exact_compute(cfg))
    with atomic_folder(out) as tmp:  # nothing is left in out when a step fails
        write_model_folder(encoder, tmp, mode)
        write_st_files(tmp, dim=encoder.embedding_dim, pooling=encoder.pooling,
                       max_seq_length=encoder.max_length, normalize=normalize,
                       versions=result.versions)
        try:
            found = parity(tmp, reference, PROBE_SENTENCES)
        except Exception as exc:  # loading failed: say why, in the export's terms
            if mode == "adapter":
                raise adapter_load_error(exc) from exc
            raise
        if found is not None:
            _record_parity(result, *found)
        if mode == "adapter":  # checked in the temporary folder: now name the final one
            set_adapter_base(tmp, out / ADAPTER_BASE_DIR)
        (tmp / "README.md").write_text(model_card(result, cfg, run_eval_tables(run_dir),
                                                  run_record), encoding="utf-8")
        (tmp / RECORD_FILE).write_text(json.dumps(result.to_dict(), indent=1) + "\n",
                                       encoding="utf-8")
    log.info("[export] %s model written to %s (pooling %s%s; parity %s)", mode, out,
             result.st_pooling, " + normalize" if normalize else "",
             "not checked" if result.max_abs_diff is None else
             f"max |diff| {result.max_abs_diff:.1e} with {result.checked_with}")
    return result


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, mode: str = "merged",
               normalize: bool = True, overwrite: bool = False) -> ExportResult:
    """Export the trained encoder of ``run_dir`` (final adapter, else its latest checkpoint) as
    a sentence-transformers folder ``out``: see :func:`export_encoder`."""
    from lacos_helpers import training

    cfg = training.load_run_config(run_dir)
    _refuse_early(cfg.encoder.pooling, mode)  # before loading the model
    encoder = training.load_encoder(run_dir)
    return export_encoder(encoder, out, cfg=cfg, run_dir=run_dir, mode=mode,
                          normalize=normalize, overwrite=overwrite,
                          run_record=training.read_run(run_dir))
