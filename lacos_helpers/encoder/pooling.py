"""Pooling: a decoder gives one hidden state per token (``[batch, tokens, hidden]``); pooling
reduces them to one sentence embedding (``[batch, hidden]``), ignoring the padding positions:
``mean`` (of the real tokens), ``weightedmean`` (SGPT's position-weighted mean: later tokens,
which in a decoder have attended to more of the sentence, count more) and ``lasttoken`` (the
only token that has seen the whole sentence).

The paper's text does not state its pooling. The profiles' choices: ``ci`` the plain mean
(cheap, padding-proof), ``cpu`` the last token (best after training Gemma-3-270M: STS-B en dev
0.828 vs 0.821 for the weighted mean), ``colab`` / ``paper`` the weighted mean SGPT recommends
for decoders. Chapter 5 ablates them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _real_token_mask(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """``attention_mask`` as a bool tensor [b, t], after checking shapes, 0/1 values and that
    every row has at least one real token."""
    if not isinstance(hidden, Tensor) or hidden.dim() != 3:
        raise ValueError(f"hidden must be a tensor [batch, tokens, dim], got "
                         f"{tuple(getattr(hidden, 'shape', ())) or type(hidden).__name__}")
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"attention_mask must be a tensor of shape {tuple(hidden.shape[:2])} "
                         f"(batch, tokens), got "
                         f"{tuple(getattr(attention_mask, 'shape', ())) or type(attention_mask)}")
    if attention_mask.dtype != torch.bool and not bool(
            ((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    mask = attention_mask.bool()
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"attention_mask rows {empty} have no real token: nothing to pool "
                         "(SiameseEncoder.tokenize always keeps at least one token)")
    return mask


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the real tokens' hidden states: [b, t, d], [b, t] -> [b, d] (hidden's dtype).
    Padding positions are ignored even when they hold NaN or inf."""
    mask = _real_token_mask(hidden, attention_mask)
    summed = hidden.masked_fill(~mask.unsqueeze(-1), 0).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).to(hidden.dtype)


def position_weights(attention_mask: Tensor) -> Tensor:
    """SGPT weights [b, t] (float32): the i-th real token gets ``i / (1 + 2 + ... + n)``
    (i counted from 1 at the first real token), padding gets 0; each row sums to 1. Counting
    from the first *real* token makes it independent of the padding side (sentence-transformers'
    ``weightedmean`` counts from position 0 and so differs under left padding)."""
    mask = attention_mask.bool()
    rank = mask.long().cumsum(dim=1).masked_fill(~mask, 0).to(torch.float32)
    return rank / rank.sum(dim=1, keepdim=True).clamp(min=1.0)


def weighted_mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """SGPT position-weighted mean (see :func:`position_weights`): [b, t, d], [b, t] -> [b, d].
    Independent of the padding side."""
    mask = _real_token_mask(hidden, attention_mask)
    weights = position_weights(mask).to(hidden.dtype).unsqueeze(-1)
    return (hidden.masked_fill(~mask.unsqueeze(-1), 0) * weights).sum(dim=1)


def last_token_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Hidden state of the last real token (left or right padding): [b, t, d], [b, t] -> [b, d]."""
    mask = _real_token_mask(hidden, attention_mask)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions.masked_fill(~mask, -1).amax(dim=1)]


_POOLERS = {
    "mean": mean_pool,
    "weightedmean": weighted_mean_pool,
    "lasttoken": last_token_pool,
}
POOLING_MODES = tuple(_POOLERS)


def check_pooling(mode: str) -> str:
    """The canonical pooling name (case, ``_`` and ``-`` ignored: ``"weighted_mean"`` ->
    ``"weightedmean"``); an unknown mode is a ValueError listing the valid ones."""
    key = mode.lower().replace("_", "").replace("-", "") if isinstance(mode, str) else None
    if key not in _POOLERS:
        raise ValueError(f"unknown pooling {mode!r}; valid modes: {', '.join(POOLING_MODES)}")
    return key


def pool(hidden: Tensor, attention_mask: Tensor, mode: str = "mean") -> Tensor:
    """Pool [b, t, d] hidden states over the real tokens of ``attention_mask`` [b, t] with
    ``mode`` in :data:`POOLING_MODES` -> [b, d]."""
    return _POOLERS[check_pooling(mode)](hidden, attention_mask)
