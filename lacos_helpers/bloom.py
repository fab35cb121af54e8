"""BLOOM's facts in one place: the public checkpoints' shapes, vocabulary, special tokens, the
names and shapes of its linear layers (LoRA targets) and exact parameter counts.

Everything here is computed from the published ``BloomConfig`` values of ``bigscience/bloom-*``;
nothing is downloaded.
"""

from __future__ import annotations

from typing import NamedTuple

VOCAB_SIZE = 250880
# BLOOM's special tokens, in BLOOM's id order (<unk>=0, <s>=1, </s>=2, <pad>=3).
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")


class BloomShape(NamedTuple):
    """The architecture numbers of one BLOOM checkpoint."""

    hidden_size: int
    n_layer: int
    n_head: int


# Public BloomConfig values of bigscience/bloom-<size>.
SHAPES: dict[str, BloomShape] = {
    "560m": BloomShape(1024, 24, 16),
    "1b1": BloomShape(1536, 24, 16),
    "1b7": BloomShape(2048, 24, 16),
    "3b": BloomShape(2560, 30, 32),
    "7b1": BloomShape(4096, 30, 32),
    "176b": BloomShape(14336, 70, 112),
}
# (in, out) of the four linear layers of a BLOOM block, as multiples of hidden_size h.
LINEAR_SHAPES = {
    "query_key_value": (1, 3),
    "dense": (1, 1),
    "dense_h_to_4h": (1, 4),
    "dense_4h_to_h": (4, 1),
}
LORA_TARGETS = ("query_key_value",)  # the fused attention projection (LACoS-BLOOM's target)
ALL_LINEARS = tuple(LINEAR_SHAPES)


def shape(size: str | tuple[int, int, int]) -> BloomShape:
    """The shape of a public ``size`` (``"560m"`` or ``"bloom-560m"`` ...; unknown sizes are an
    error that lists the known ones), or of any ``(hidden_size, n_layer, n_head)``."""
    if not isinstance(size, str):
        return BloomShape(*size)
    key = size.removeprefix("bigscience/").removeprefix("bloom-")
    if key not in SHAPES:
        raise ValueError(f"unknown BLOOM size {size!r}; known: {tuple(SHAPES)}")
    return SHAPES[key]


def param_count(hidden_size: int, n_layer: int, vocab_size: int = VOCAB_SIZE) -> dict[str, int]:
    """Exact parameter counts of BLOOM (``BloomForCausalLM``, lm_head tied to embeddings).

    Embeddings ``V*h`` + embedding LayerNorm ``2h``; per block: 2 LayerNorms (``4h``),
    query_key_value ``3h*h + 3h``, dense ``h*h + h``, dense_h_to_4h ``4h*h + 4h``,
    dense_4h_to_h ``h*4h + h``; final LayerNorm ``2h``.

    Returns ``total``, ``linear_weights`` (the matrices LLM.int8 quantizes: ``in x out`` of
    each of :data:`LINEAR_SHAPES`, ``12 h^2`` per block), ``linear_rows`` (their output rows =
    fp32 scales, ``9h`` per block), ``embeddings`` (``V*h``) and ``other`` (embeddings,
    LayerNorms, biases).
    """
    h = hidden_size
    linear_weights = n_layer * sum(linear_sizes(h))
    rows_per_block = sum(out for _, out in LINEAR_SHAPES.values()) * h  # = the biases
    per_block_other = 4 * h + rows_per_block  # LayerNorms + biases
    other = vocab_size * h + 2 * h + n_layer * per_block_other + 2 * h
    return {"total": linear_weights + other, "linear_weights": linear_weights,
            "linear_rows": n_layer * rows_per_block, "embeddings": vocab_size * h,
            "other": other}


def linear_sizes(hidden_size: int) -> list[int]:
    """Weights of the linear layers of one block (:data:`LINEAR_SHAPES` order: qkv, dense,
    h->4h, 4h->h)."""
    return [i * o * hidden_size ** 2 for i, o in LINEAR_SHAPES.values()]


def bloom_config(size_or_shape: str | BloomShape, vocab_size: int = VOCAB_SIZE, **overrides):
    """A ``transformers.BloomConfig`` of a public size (or any :class:`BloomShape`), with
    BLOOM's special-token ids."""
    from transformers import BloomConfig

    s = shape(size_or_shape)
    if s.hidden_size % s.n_head:
        raise ValueError(f"hidden_size {s.hidden_size} is not divisible by n_head {s.n_head}")
    values = dict(vocab_size=vocab_size, hidden_size=s.hidden_size, n_layer=s.n_layer,
                  n_head=s.n_head, unk_token_id=0, bos_token_id=1, eos_token_id=2,
                  pad_token_id=3)
    values.update(overrides)
    return BloomConfig(**values)
