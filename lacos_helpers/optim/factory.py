"""Optimizers by name (ours, bitsandbytes' or torch's) and what their state really holds."""

from __future__ import annotations

import torch
from torch import nn

from lacos_helpers.checks import check_choice
from lacos_helpers.config import OPTIMIZER_NAMES
from lacos_helpers.optim.adam8bit import Adam8bit


def _trainable_params(params) -> list:
    """``params`` (a module, tensors or param-group dicts) reduced to trainable tensors;
    groups keep their settings. Raises ``ValueError`` if no trainable tensor is left."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    if isinstance(params, torch.Tensor):
        raise TypeError("params must be an iterable of tensors or param groups (dicts), "
                        "not a single tensor")
    items = list(params)
    if items and all(isinstance(item, dict) for item in items):
        groups = [{**g, "params": [p for p in _as_list(g["params"]) if p.requires_grad]}
                  for g in items]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError("no trainable tensor (requires_grad=True) in the param groups")
        return groups
    if not all(isinstance(item, torch.Tensor) for item in items):
        raise TypeError("params must be tensors or param groups (dicts), not a mix of both "
                        "or other objects")
    trainable = [p for p in items if p.requires_grad]
    if not trainable:
        raise ValueError(f"no trainable tensor (requires_grad=True) among the {len(items)} "
                         f"given: freeze the base model but leave the adapters trainable")
    return trainable


def _as_list(params) -> list:
    return [params] if isinstance(params, torch.Tensor) else list(params)


def make_optimizer(
    name: str,
    params,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    **options,
) -> torch.optim.Optimizer:
    """Optimizer ``name`` (``"adam8bit"``: :class:`Adam8bit`, ``"bnb-adam8bit"``:
    bitsandbytes', ``"adamw"`` / ``"adam"``: torch's) over the *trainable* tensors of
    ``params`` (an ``nn.Module``, tensors or param groups); ``options`` are passed on. Weight
    decay is decoupled for all but ``"adam"``, which adds ``wd * p`` to the gradient (L2).
    ``ValueError`` for an unknown name or no trainable tensor."""
    check_choice(name, OPTIMIZER_NAMES, "optimizer")
    trainable = _trainable_params(params)
    settings = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **options)
    if name == "adam8bit":
        return Adam8bit(trainable, **settings)
    if name == "bnb-adam8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as error:  # pragma: no cover - bitsandbytes is a course dependency
            raise ImportError("'bnb-adam8bit' needs bitsandbytes (pip install bitsandbytes); "
                              "'adam8bit' is the pure-PyTorch equivalent") from error
        return bnb.optim.Adam8bit(trainable, **settings)
    if name == "adamw":
        return torch.optim.AdamW(trainable, **settings)
    return torch.optim.Adam(trainable, **settings)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in ``optimizer.state`` (all parameters, all entries).

    Each storage is counted once (bitsandbytes shares its two 256-value maps between
    parameters). State is created lazily: measure after at least one ``step()``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    storages = {(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
                for state in optimizer.state.values() for t in state.values()
                if isinstance(t, torch.Tensor)}
    return sum(nbytes for _, nbytes in storages)


def state_bytes_per_param(optimizer: torch.optim.Optimizer) -> float:
    """:func:`optimizer_state_bytes` divided by the number of parameter elements the
    optimizer manages (each tensor counted once). After one step: ~8 for (torch) Adam/AdamW,
    ``2 + 8 / 256`` for 8-bit Adam on tensors of at least ``min_8bit_size`` elements."""
    params = {id(p): p for group in optimizer.param_groups for p in group["params"]}
    numel = sum(p.numel() for p in params.values())
    if numel == 0:
        raise ValueError("the optimizer manages no parameter elements")
    return optimizer_state_bytes(optimizer) / numel
