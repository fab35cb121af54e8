"""The Siamese encoder: one shared decoder turns every sentence into one vector.

:class:`SiameseEncoder` wraps a backbone (any transformers base model returning
``last_hidden_state``; 8-bit and LoRA layers included), its tokenizer and a pooling mode
(:mod:`lacos_helpers.encoder.pooling`): :meth:`~SiameseEncoder.embed` for training (with grad),
:meth:`~SiameseEncoder.encode` for evaluation (as sentence-transformers').

Both padding sides give the same embedding: BLOOM derives its ALiBi positions from the attention
mask, and backbones whose ``forward`` takes ``position_ids`` (Gemma 3, Llama) get positions
counted from the first real token.

``cpu_bf16=True`` runs the backbone under bfloat16 autocast on a CPU that multiplies bfloat16
natively (:func:`lacos_helpers.runtime.cpu_native_bf16`, about twice the float32 speed); the
hidden states come back as float32, so pooling and the loss stay float32.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lacos_helpers.checks import check_int
from lacos_helpers.encoder.pooling import check_pooling, pool
from lacos_helpers.runtime import cpu_native_bf16


def as_sentence_list(sentences: str | Sequence[str]) -> list[str]:
    """``sentences`` as a list of str: a single string becomes a list of one; any item that is
    not a str is a TypeError naming its index."""
    if isinstance(sentences, str):
        return [sentences]
    if not isinstance(sentences, Iterable) or isinstance(sentences, (bytes, bytearray, Tensor)):
        raise TypeError(f"sentences must be a string or a list of strings, got "
                        f"{type(sentences).__name__}")
    items = list(sentences)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"sentences[{i}] is {type(item).__name__} ({item!r:.60}), "
                            "expected str")
    return items


def padded_width(length: int, multiple: int = 1) -> int:
    """``length`` tokens rounded up to a multiple of ``multiple`` (few distinct shapes: the
    CPU's matmul library builds a kernel per shape)."""
    return -(-length // multiple) * multiple


def pad_token_ids(rows: Sequence[Sequence[int]], pad_id: int,
                  side: str = "left", multiple: int = 1) -> tuple[Tensor, Tensor]:
    """Pad token id lists to the longest (rounded up to a multiple of ``multiple``):
    ``(input_ids [b, t], attention_mask [b, t])`` (long), padding on ``side``."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    width = padded_width(max((len(r) for r in rows), default=0), multiple)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def _forward_parameters(backbone: nn.Module) -> set[str]:
    """Names of the explicit parameters of the backbone's ``forward`` (through a peft wrapper)."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    params = inspect.signature(base.forward).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids [b, t] counted from the first real token (0, 1, ...), 0 on left padding:
    the same positions for a sentence whatever the padding side."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


# Cost of one extra forward call, in padded tokens: what a group of similar lengths must save in
# padding to be worth its own call (measured on 2 CPU cores with Gemma-3-270M; see
# benchmarks/bench_training.py --grouping).
GROUP_OVERHEAD_TOKENS = 192


def length_groups(lengths: Sequence[int], overhead_tokens: int = GROUP_OVERHEAD_TOKENS,
                  multiple: int = 1) -> list[list[int]]:
    """Split sentences into groups of similar length, each padded only to its own longest
    (rounded up to a multiple of ``multiple``): indices into ``lengths`` (every index once),
    groups ordered by length. The split minimises ``padded tokens + overhead_tokens per group``
    exactly (dynamic programming over the sorted lengths)."""
    if overhead_tokens < 0:
        raise ValueError(f"overhead_tokens must be >= 0, got {overhead_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest split of the j shortest
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        width = padded_width(lengths[order[j - 1]], multiple)
        for i in range(j):
            cost = best[i] + (j - i) * width + overhead_tokens
            if cost < best[j]:
                best[j], start[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[start[j]:j])
        j = start[j]
    return groups[::-1]


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode, then restore each submodule's own training flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


class SiameseEncoder(nn.Module):
    """One shared backbone + pooling: sentences -> embeddings [n, hidden] (float32).

    ``tokenizer`` must have a pad token (:func:`lacos_helpers.backbones.prepare_tokenizer`),
    either padding side; sentences are truncated to ``max_length`` tokens (:meth:`token_ids`).
    ``pooling``: a mode of :mod:`lacos_helpers.encoder.pooling`; ``cpu_bf16``: see the module
    docstring; ``pad_multiple``: every forward call padded to a multiple of that many tokens
    (the same embeddings; fewer distinct shapes).
    """

    def __init__(self, backbone: nn.Module, tokenizer, pooling: str = "mean",
                 max_length: int = 64, cpu_bf16: bool = False, pad_multiple: int = 1):
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad token: call "
                             "lacos_helpers.backbones.prepare_tokenizer(tokenizer) first")
        self.max_length = check_int(max_length, "max_length")
        self.pad_multiple = check_int(pad_multiple, "pad_multiple")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = check_pooling(pooling)
        if not isinstance(cpu_bf16, bool):
            raise ValueError(f"cpu_bf16 must be True or False, got {cpu_bf16!r}")
        self.cpu_bf16 = cpu_bf16
        accepted = _forward_parameters(backbone)
        self._pass_position_ids = "position_ids" in accepted
        self._pass_use_cache = "use_cache" in accepted

    # ---- facts ----------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        """Size d of one embedding (the backbone's hidden size)."""
        hidden = getattr(getattr(self.backbone, "config", None), "hidden_size", None)
        if hidden is None:
            hidden = self.backbone.get_input_embeddings().embedding_dim
        return int(hidden)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the backbone's input embeddings."""
        get = getattr(self.backbone, "get_input_embeddings", None)
        layer = get() if get is not None else None
        if layer is not None and getattr(layer, "weight", None) is not None:
            return layer.weight.device
        return next(self.backbone.parameters()).device

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the backbone's forward here: bfloat16 when ``cpu_bf16`` and
        the backbone is on a CPU with native bfloat16, else None (the weights' own dtype)."""
        if self.cpu_bf16 and self.device.type == "cpu" and cpu_native_bf16():
            return torch.bfloat16
        return None

    @contextlib.contextmanager
    def float32(self) -> Iterator[None]:
        """Within this block the backbone computes in its weights' dtype (no bfloat16
        autocast): e.g. to compare with a float32 copy of the model."""
        saved, self.cpu_bf16 = self.cpu_bf16, False
        try:
            yield
        finally:
            self.cpu_bf16 = saved

    def to_config(self) -> dict:
        """What a checkpoint needs to rebuild this encoder around the same backbone:
        ``SiameseEncoder(backbone, tokenizer, **encoder.to_config())``."""
        return {"pooling": self.pooling, "max_length": self.max_length,
                "cpu_bf16": self.cpu_bf16}

    def extra_repr(self) -> str:
        extra = ", cpu_bf16=True" if self.cpu_bf16 else ""
        return f"pooling={self.pooling!r}, max_length={self.max_length}{extra}"

    # ---- tokens ---------------------------------------------------------------------------

    def token_ids(self, sentences: str | Sequence[str]) -> list[list[int]]:
        """Token ids per sentence (special tokens included), truncated to ``max_length``; an
        empty result becomes ``[BOS]`` (else EOS, else pad), so every embedding is finite."""
        texts = as_sentence_list(sentences)
        if not texts:
            return []
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                                 padding=False, return_attention_mask=False)
        tok = self.tokenizer  # the constructor checked that it has a pad token
        fallback = [next(int(t) for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
                         if t is not None)]
        return [list(row) if len(row) else fallback for row in encoded["input_ids"]]

    def collate(self, rows: Sequence[Sequence[int]]):
        """Pad token id lists (tokenizer's pad id and side) into a BatchEncoding of
        ``input_ids`` and ``attention_mask`` [b, t] on :attr:`device`."""
        from transformers import BatchEncoding

        ids, mask = pad_token_ids(rows, self.tokenizer.pad_token_id,
                                  getattr(self.tokenizer, "padding_side", "left"),
                                  self.pad_multiple)
        return BatchEncoding({"input_ids": ids, "attention_mask": mask}).to(self.device)

    def tokenize(self, sentences: str | Sequence[str]):
        """Sentences -> BatchEncoding (``input_ids``, ``attention_mask`` [b, t], padded on the
        tokenizer's side, truncated to ``max_length``, on :attr:`device`)."""
        return self.collate(self.token_ids(sentences))

    # ---- embeddings -----------------------------------------------------------------------

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Token ids [b, t] and mask [b, t] -> the backbone's last hidden states [b, t, d]
        (float32), with position ids counted from the first real token when the backbone
        takes them; under bfloat16 autocast where :attr:`compute_dtype` says so."""
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"input_ids and attention_mask must both be [batch, tokens], got "
                             f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._pass_position_ids:
            kwargs["position_ids"] = positions_from_mask(attention_mask)
        if self._pass_use_cache:
            kwargs["use_cache"] = False
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.compute_dtype is not None):
            output = self.backbone(**kwargs)
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        return hidden.float()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Token ids [b, t] and mask [b, t] -> pooled embeddings [b, d] (float32)."""
        return pool(self.hidden_states(input_ids, attention_mask), attention_mask, self.pooling)

    def embed(self, sentences: str | Sequence[str], group_by_length: bool = True) -> Tensor:
        """Sentences -> embeddings [n, d] (float32, not normalized; [0, d] for none) with grad,
        in the current training mode. ``group_by_length``: one forward call per group of similar
        length (:func:`length_groups`): the same embeddings for fewer padded tokens."""
        rows = self.token_ids(sentences)
        if not rows:
            return torch.empty(0, self.embedding_dim, device=self.device)
        groups = (length_groups([len(r) for r in rows], multiple=self.pad_multiple)
                  if group_by_length else [list(range(len(rows)))])
        if len(groups) == 1:
            return self(**self.collate(rows))
        parts = [self(**self.collate([rows[i] for i in group])) for group in groups]
        order = torch.tensor([i for group in groups for i in group], device=parts[0].device)
        return torch.cat(parts).index_select(0, torch.argsort(order))

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32,
               normalize: bool = True, show_progress: bool = True,
               convert_to_tensor: bool = True):
        """Sentences -> embeddings [n, d] (float32, on the CPU; unit length when ``normalize``),
        like ``SentenceTransformer.encode``: eval mode and no grad (the training flags are
        restored afterwards), batches of similar length (longest first), input order kept.
        A single string gives [1, d]; ``convert_to_tensor=False`` gives a numpy array."""
        check_int(batch_size, "batch_size")
        rows = self.token_ids(sentences)
        out = torch.empty(len(rows), self.embedding_dim, dtype=torch.float32)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        starts = range(0, len(rows), batch_size)
        if show_progress and len(starts) > 0:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch", leave=False)
        with eval_mode(self), torch.no_grad():
            for start in starts:
                index = order[start:start + batch_size]
                emb = self(**self.collate([rows[i] for i in index]))
                if normalize:
                    emb = F.normalize(emb, p=2, dim=-1)
                out[index] = emb.float().cpu()
        return out if convert_to_tensor else out.numpy()
