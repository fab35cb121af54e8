"""Training the Siamese encoder with the MNR loss: schedule, logs, checkpoints and resume.

One optimizer *step* = ``grad_accum`` micro-batches of ``batch_size`` NLI triplets. The
in-batch negatives of the MNR loss come from one micro-batch only: gradient accumulation makes
the update average over more pairs, but it does **not** give each anchor more negatives (that
needs a larger ``batch_size``).

A run directory holds::

    run.json                      profile + training settings (what load_encoder rebuilds)
    log.jsonl, log.csv            one record per step (loss, lr, pairs/s) and per evaluation
    checkpoints/step-000040/      adapter (peft format) + trainer_state.pt (optimizer,
                                  scheduler, RNG, step, history)
    checkpoints/latest            name of the newest complete checkpoint
    adapter/                      the final adapter (peft format)

A run that is killed resumes from ``checkpoints/latest`` and ends with the same adapter as an
uninterrupted run (the data order is a function of the step; the RNG state is restored).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lacos_helpers import config as config_module
from lacos_helpers import data as data_module
from lacos_helpers.config import Profile

SCHEDULES = ("constant", "linear", "cosine")
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"
RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
# Settings that must match to resume a run (others, like eval_every, may change).
RESUME_KEYS = ("steps", "batch_size", "grad_accum", "learning_rate", "warmup_steps", "schedule",
               "hard_negatives", "scale", "symmetric", "seed", "n_triplets")


class TrainingDivergedError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainSettings:
    """What one training run does (defaults come from the profile)."""

    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    schedule: str = "linear"
    grad_accum: int = 1
    hard_negatives: bool = True
    scale: float = 20.0
    symmetric: bool = False
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0
    optimizer: str = "adam8bit"
    seed: int = 42
    eval_every: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    n_triplets: int = 0

    @classmethod
    def from_profile(cls, cfg: Profile, **overrides) -> TrainSettings:
        base = dict(steps=cfg.train_steps, batch_size=cfg.batch_size,
                    learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                    optimizer=cfg.optimizer, seed=cfg.seed)
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(f"unknown training setting(s) {unknown}; valid: {sorted(valid)}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**base)
        settings.check()
        return settings

    def check(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (MNR needs in-batch negatives), got "
                             f"{self.batch_size}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be >= 1")


@dataclass
class TrainResult:
    """What :func:`train` did. ``history`` has one dict per step (``kind="train"``) and per
    evaluation (``kind="eval"``)."""

    out_dir: Path
    step: int
    settings: TrainSettings
    history: list[dict] = field(default_factory=list)
    resumed_from: int | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.history if r["kind"] == "train"]

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.history if r["kind"] == "eval"]


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------

def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "linear") -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based): linear
    warmup over ``warmup_steps``, then constant, linear decay to 0 or cosine decay to 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, settings.warmup_steps, settings.steps,
                                          settings.schedule))


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

def _has_8bit_layers(model: nn.Module) -> bool:
    from lacos_helpers.quantization import Int8Linear

    names = {type(m).__name__ for m in model.modules()}
    return any(isinstance(m, Int8Linear) for m in model.modules()) or "Linear8bitLt" in names


def quantize_backbone(cfg: Profile, backbone: nn.Module, verbose: bool = True) -> nn.Module:
    """Cast the frozen linear layers to 8 bits as the profile says (no-op if already 8-bit,
    e.g. loaded with ``load_in_8bit``, or ``cfg.quantization == "none"``)."""
    from lacos_helpers import quantization

    if cfg.quantization == "none" or _has_8bit_layers(backbone):
        return backbone
    compute = cfg.quant_compute if cfg.quantization == "lacos" else "int8"
    quantization.quantize_model(backbone, backend=cfg.quantization, compute=compute)
    if verbose:
        n = len(backbone.lacos_quantization["replaced"])
        print(f"[model] {n} linear layers cast to 8 bits ({cfg.quantization}, {compute})")
    return backbone


def build_encoder(cfg: Profile, backbone: nn.Module | None = None, tokenizer=None, *,
                  verbose: bool = True):
    """The trainable LACoS encoder for a profile: backbone (loaded if not given) -> 8-bit
    (``cfg.quantization``) -> LoRA on ``cfg.lora_targets`` -> :class:`SiameseEncoder` with
    ``cfg.pooling``. Only the LoRA matrices require grad."""
    from lacos_helpers import lora, models
    from lacos_helpers.siamese import SiameseEncoder

    if backbone is None or tokenizer is None:
        backbone, tokenizer = models.load_backbone(cfg, verbose=verbose)
    quantize_backbone(cfg, backbone, verbose=verbose)
    lora.prepare_for_kbit_training(backbone, gradient_checkpointing=cfg.gradient_checkpointing)
    lora.inject_lora(backbone, target_modules=cfg.lora_targets, r=cfg.lora_r,
                     alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    if verbose:
        print("[model] " + lora.format_trainable_report(lora.trainable_report(backbone)))
    return SiameseEncoder(backbone, tokenizer, pooling=cfg.pooling, max_length=cfg.max_length)


def _trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters: inject LoRA first "
                         "(lacos_helpers.lora.inject_lora or training.build_encoder)")
    return params


# --------------------------------------------------------------------------------------------
# Data order
# --------------------------------------------------------------------------------------------

class BatchPlan:
    """Micro-batch ``m`` (0-based, over all epochs) as a pure function of ``m``: the batches of
    :func:`data.no_duplicate_batches` for epoch 0, 1, ... (each with its own shuffle) laid end
    to end. Epochs may differ in length (deferred duplicates can drop a last partial batch)."""

    def __init__(self, triplets: Sequence, batch_size: int, seed: int):
        self.triplets, self.batch_size, self.seed = list(triplets), batch_size, seed
        self._starts: list[int] = [0]  # first micro-batch index of each computed epoch
        self._epoch, self._batches = None, None
        self.batches_per_epoch = len(self._epoch_batches(0))
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(self.triplets)} triplets do not fill one batch of "
                             f"{batch_size}")

    def _epoch_batches(self, epoch: int):
        if epoch != self._epoch:
            self._batches = data_module.no_duplicate_batches(
                self.triplets, self.batch_size, seed=self.seed, epoch=epoch)
            self._epoch = epoch
        return self._batches

    def _locate(self, m: int) -> tuple[int, int]:
        epoch = 0
        while True:
            if epoch + 1 >= len(self._starts):
                self._starts.append(self._starts[epoch] + len(self._epoch_batches(epoch)))
            if m < self._starts[epoch + 1]:
                return epoch, m - self._starts[epoch]
            epoch += 1

    def __getitem__(self, m: int):
        if m < 0:
            raise IndexError(f"micro-batch index must be >= 0, got {m}")
        epoch, index = self._locate(m)
        return self._epoch_batches(epoch)[index]


def usable_triplets(triplets: Sequence, hard_negatives: bool) -> list:
    """The triplets a run trains on: with ``hard_negatives`` only those that have one."""
    if not triplets:
        raise ValueError("no training triplets (empty data)")
    if not hard_negatives:
        return list(triplets)
    kept = [t for t in triplets if t.hard_negative]
    if not kept:
        raise ValueError("hard_negatives=True but no triplet has a hard negative")
    return kept


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    root = Path(out_dir) / CHECKPOINT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def _write_checkpoint(out_dir: Path, encoder, optimizer, scheduler, scaler, step: int,
                      rng: dict, history: list[dict], keep: int) -> Path:
    from lacos_helpers import lora

    root = out_dir / CHECKPOINT_DIR
    name = f"step-{step:06d}"
    final, tmp = root / name, root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lora.save_adapter(encoder.backbone, tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng, "history": history}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = root / f"{LATEST}.tmp"
    pointer_tmp.write_text(name)
    os.replace(pointer_tmp, root / LATEST)  # the pointer moves only once the checkpoint is whole
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for path in old[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def _write_logs(out_dir: Path, history: list[dict]) -> None:
    with open(out_dir / "log.jsonl", "w", encoding="utf-8") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    keys: list[str] = []
    for record in history:
        keys += [k for k in record if k not in keys]
    with open(out_dir / "log.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _append_log(out_dir: Path, record: dict) -> None:
    with open(out_dir / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of a run (``log.jsonl``)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _run_record(cfg: Profile, settings: TrainSettings, encoder) -> dict:
    return {"profile": cfg.to_dict(), "settings": dataclasses.asdict(settings),
            "encoder": encoder.to_config(), "lacos_helpers": _package_version()}


def _package_version() -> str:
    from lacos_helpers import __version__

    return __version__


def _check_resumable(out_dir: Path, record: dict) -> None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    diffs = [f"{k}: {old['settings'].get(k)!r} -> {record['settings'].get(k)!r}"
             for k in RESUME_KEYS if old["settings"].get(k) != record["settings"].get(k)]
    for key in ("model_id", "model_kind", "lora_r", "lora_alpha", "lora_targets", "quantization"):
        a, b = old["profile"].get(key), record["profile"].get(key)
        if (list(a) if isinstance(a, (list, tuple)) else a) != \
                (list(b) if isinstance(b, (list, tuple)) else b):
            diffs.append(f"{key}: {a!r} -> {b!r}")
    if diffs:
        raise ValueError(f"{out_dir} holds a run with different settings ({'; '.join(diffs)}); "
                         "use a new output directory or resume=False to start over")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

def _autocast(device: torch.device):
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _make_scaler(device: torch.device):
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.amp.GradScaler("cuda")
    return None


def batch_loss(encoder, batch: Sequence, settings: TrainSettings) -> torch.Tensor:
    """MNR loss of one micro-batch of triplets: anchors, positives and (optionally) hard
    negatives are embedded in one forward pass of the shared encoder."""
    from lacos_helpers.losses import mnr_loss

    b = len(batch)
    texts = [t.anchor for t in batch] + [t.positive for t in batch]
    if settings.hard_negatives:
        texts += [t.hard_negative for t in batch]
    emb = encoder.embed(texts)
    if not bool(torch.isfinite(emb).all()):  # diverged: let the caller's NaN check stop
        return emb.new_tensor(float("nan"))
    negatives = emb[2 * b:] if settings.hard_negatives else None
    return mnr_loss(emb[:b], emb[b:2 * b], negatives, scale=settings.scale,
                    symmetric=settings.symmetric)


def _evaluate(encoder, dev_pairs, batch_size: int) -> dict:
    from lacos_helpers.evaluation import evaluate_sts

    return evaluate_sts(encoder, dev_pairs, batch_size=batch_size)


def train(cfg: Profile, encoder, triplets: Sequence, *, out_dir: str | os.PathLike,
          dev_pairs: Sequence | None = None, resume: bool = True,
          stop_after: int | None = None, show_progress: bool = True,
          callback: Callable[[dict], None] | None = None, **overrides) -> TrainResult:
    """Train the LoRA parameters of ``encoder`` (a :class:`~lacos_helpers.siamese.SiameseEncoder`
    from :func:`build_encoder`) on NLI ``triplets`` with the MNR loss.

    Settings default to the profile (``train_steps``, ``batch_size``, ``learning_rate``,
    ``warmup_steps``, ``optimizer``, ``seed``); keyword ``overrides`` set any
    :class:`TrainSettings` field (``steps=``, ``schedule="cosine"``, ``grad_accum=``,
    ``hard_negatives=``, ``eval_every=``, ``checkpoint_every=`` ...).

    ``dev_pairs``: STS pairs evaluated every ``eval_every`` steps and at the end.
    ``resume``: continue from ``out_dir``'s latest checkpoint if there is one.
    ``stop_after``: stop after that step *without* saving, as if the process were killed
    (used to test resume). ``callback(record)`` is called after every step and evaluation.
    A non-finite loss raises :class:`TrainingDivergedError`; the last checkpoint is kept.
    """
    from tqdm.auto import tqdm

    from lacos_helpers import lora
    from lacos_helpers.optim import make_optimizer

    train_set = usable_triplets(triplets, overrides.get("hard_negatives", True))
    settings = TrainSettings.from_profile(cfg, n_triplets=len(train_set), **overrides)
    if settings.eval_every and not dev_pairs:
        raise ValueError("eval_every is set but no dev_pairs were given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _run_record(cfg, settings, encoder)
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        _check_resumable(out_dir, record)
    elif not resume:
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    (out_dir / RUN_FILE).write_text(json.dumps(record, indent=1))

    device = next(encoder.parameters()).device
    params = _trainable_parameters(encoder)
    optimizer = make_optimizer(settings.optimizer, params, lr=settings.learning_rate,
                               weight_decay=settings.weight_decay)
    scheduler = make_scheduler(optimizer, settings)
    scaler = _make_scaler(device)
    plan = BatchPlan(train_set, settings.batch_size, settings.seed)

    step, history, resumed_from = 0, [], None
    if checkpoint is not None:
        state = torch.load(checkpoint / STATE_FILE, map_location=device, weights_only=False)
        lora.load_adapter(encoder.backbone, checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        step, history, resumed_from = state["step"], state["history"], state["step"]
        if show_progress:
            print(f"[train] resumed from {checkpoint} (step {step} of {settings.steps})")
    else:
        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
    _write_logs(out_dir, history)

    result = TrainResult(out_dir, step, settings, history, resumed_from)
    t_start = time.perf_counter()
    rng_at_step = _rng_state()
    last_good = checkpoint
    bar = tqdm(total=settings.steps, initial=step, desc="train", unit="step",
               disable=not show_progress, dynamic_ncols=True)
    encoder.train()
    try:
        while step < settings.steps:
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for k in range(settings.grad_accum):
                batch = plan[step * settings.grad_accum + k]
                with _autocast(device):
                    loss = batch_loss(encoder, batch, settings)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"loss is {loss.item()} at step {step + 1}; training stopped. "
                        f"Last good checkpoint: {last_good or 'none yet'}. Lower the learning "
                        "rate or check the data.")
                scaled = loss / settings.grad_accum
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                total += loss.item() / settings.grad_accum
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = None
            if settings.max_grad_norm:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm).item()
                if not math.isfinite(grad_norm) and scaler is None:
                    raise TrainingDivergedError(
                        f"gradient norm is {grad_norm} at step {step + 1}; training stopped. "
                        f"Last good checkpoint: {last_good or 'none yet'}.")
            lr = optimizer.param_groups[0]["lr"]
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step += 1
            rng_at_step = _rng_state()  # what a checkpoint of this step must restore
            seconds = time.perf_counter() - t0
            rec = {"kind": "train", "step": step, "loss": total, "lr": lr,
                   "grad_norm": grad_norm, "seconds": round(seconds, 4),
                   "pairs_per_s": round(settings.batch_size * settings.grad_accum / seconds, 2)}
            history.append(rec)
            _append_log(out_dir, rec)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2e}")
            if callback:
                callback(rec)
            if dev_pairs and settings.eval_every and (step % settings.eval_every == 0
                                                      or step == settings.steps):
                ev = {"kind": "eval", "step": step, **_evaluate(encoder, dev_pairs,
                                                                cfg.eval_batch_size)}
                history.append(ev)
                _append_log(out_dir, ev)
                bar.write(f"[eval] step {step}: STS dev Spearman {ev['spearman']:.4f}")
                if callback:
                    callback(ev)
            if stop_after is not None and step >= stop_after and step < settings.steps:
                result.interrupted = True
                break
            if (settings.checkpoint_every and step % settings.checkpoint_every == 0) \
                    or step == settings.steps:
                last_good = _write_checkpoint(out_dir, encoder, optimizer, scheduler, scaler,
                                              step, rng_at_step, history,
                                              settings.keep_checkpoints)
    except KeyboardInterrupt:
        # Keep the finished steps: checkpoint the state as it was when this step began.
        if step > 0 and (last_good is None or not last_good.name.endswith(f"{step:06d}")):
            optimizer.zero_grad(set_to_none=True)
            path = _write_checkpoint(out_dir, encoder, optimizer, scheduler, scaler, step,
                                     rng_at_step, history, settings.keep_checkpoints)
            print(f"\n[train] interrupted: state after step {step} saved to {path}; run "
                  "again with resume=True to continue")
        raise
    finally:
        bar.close()
        encoder.eval()
        _write_logs(out_dir, history)
    result.step, result.history = step, history
    result.seconds = time.perf_counter() - t_start
    if step >= settings.steps:
        lora.save_adapter(encoder.backbone, out_dir / ADAPTER_DIR)
    return result


def course_run_settings(cfg: Profile) -> dict:
    """The schedule the notebooks train with (chapter 3 trains it, chapters 4-5 resume or reuse
    it): ``cfg.course_steps`` steps, 10% warmup, four checkpoints, STS dev at the end."""
    steps = cfg.course_steps
    return {"steps": steps, "warmup_steps": max(1, steps // 10),
            "checkpoint_every": max(1, steps // 4), "eval_every": steps}


def course_run_dir(cfg: Profile) -> Path:
    """Where chapter 3 trains the notebooks' shared run: ``runs/course-<profile>``."""
    return Path("runs") / f"course-{cfg.name}"


def trained_run_dir(cfg: Profile) -> Path:
    """The run chapters 4 and 5 evaluate: ``LACOS_RUN`` if set (e.g. a full run from
    ``python -m lacos_helpers train``), else :func:`course_run_dir`."""
    value = os.environ.get("LACOS_RUN", "").strip()
    return Path(value) if value else course_run_dir(cfg)


# --------------------------------------------------------------------------------------------
# Loading a trained run
# --------------------------------------------------------------------------------------------

def _profile_from_dict(d: dict) -> Profile:
    d = dict(d)
    if d.get("tiny"):
        d["tiny"] = config_module.TinyBloomSpec(**d["tiny"])
    for key, value in d.items():
        if isinstance(value, list):
            d[key] = tuple(value)
    valid = {f.name for f in dataclasses.fields(Profile)}
    return Profile(**{k: v for k, v in d.items() if k in valid})


def load_run_profile(run_dir: str | os.PathLike) -> Profile:
    """The profile a run was trained with (from its ``run.json``)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: {path} is missing")
    return _profile_from_dict(json.loads(path.read_text())["profile"])


def run_adapter_dir(run_dir: str | os.PathLike) -> Path:
    """The final adapter of a run, or its latest checkpoint if training did not finish."""
    final = Path(run_dir) / ADAPTER_DIR
    if (final / "adapter_config.json").is_file():
        return final
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has neither a final adapter nor a checkpoint")
    return checkpoint


def load_encoder(run_dir: str | os.PathLike, *, backbone=None, tokenizer=None,
                 verbose: bool = True):
    """The trained :class:`~lacos_helpers.siamese.SiameseEncoder` of a run directory: backbone
    of its profile, 8-bit as trained, LoRA adapter loaded, pooling and max_length restored.
    Pass ``backbone``/``tokenizer`` to reuse an already loaded (unmodified) base model."""
    from lacos_helpers import lora
    from lacos_helpers.siamese import SiameseEncoder

    run_dir = Path(run_dir)
    cfg = load_run_profile(run_dir)
    encoder_cfg = json.loads((run_dir / RUN_FILE).read_text()).get("encoder", {})
    encoder = build_encoder(cfg, backbone, tokenizer, verbose=verbose)
    adapter = run_adapter_dir(run_dir)
    lora.load_adapter(encoder.backbone, adapter)
    encoder = SiameseEncoder(encoder.backbone, encoder.tokenizer,
                             pooling=encoder_cfg.get("pooling", cfg.pooling),
                             max_length=encoder_cfg.get("max_length", cfg.max_length))
    encoder.eval()
    if verbose:
        print(f"[model] adapter loaded from {adapter}")
    return encoder


__all__ = [
    "SCHEDULES", "TrainingDivergedError", "TrainSettings", "TrainResult", "BatchPlan",
    "lr_factor", "make_scheduler", "quantize_backbone", "build_encoder", "usable_triplets",
    "batch_loss", "train", "latest_checkpoint", "read_log", "load_run_profile",
    "run_adapter_dir", "load_encoder", "course_run_settings", "course_run_dir",
    "trained_run_dir",
]
