"""Figures shared by the notebooks. Each function returns the matplotlib ``Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

STAGE_COLORS = ("#dbe9f6", "#fde2c8", "#d9f0d3", "#f3d9f0", "#fff2b3")


def _box(ax, xy, text, color, width=2.1, height=1.0):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.08",
                                fc=color, ec="#333333", lw=1.2))
    ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, text=""):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.2,
                                 color="#333333"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.15, text, ha="center",
                fontsize=8, color="#555555")


def plot_lacos_overview():
    """The LACoS-BLOOM recipe in one picture: 8-bit base + LoRA in a Siamese net with MNR loss."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.set_xlim(0, 13.2)
    ax.set_ylim(0, 4.6)
    ax.axis("off")
    _box(ax, (0.1, 3.2), "BLOOM weights\nfp16 / fp32", STAGE_COLORS[0])
    _box(ax, (2.9, 3.2), "blockwise 8-bit\n(frozen)  ch.1", STAGE_COLORS[1])
    _box(ax, (5.7, 3.2), "+ LoRA adapters\n(trainable) ch.2", STAGE_COLORS[2])
    _arrow(ax, (2.2, 3.7), (2.9, 3.7), "quantize")
    _arrow(ax, (5.0, 3.7), (5.7, 3.7), "inject")
    for row, (label, text) in enumerate((("anchor", "premise"), ("positive", "entailment"))):
        y = 1.6 - row * 1.3
        _box(ax, (0.1, y), f"{label}:\n{text}", "#ffffff")
        _box(ax, (5.7, y), "shared encoder\n+ pooling  ch.3", STAGE_COLORS[2])
        _arrow(ax, (2.2, y + 0.5), (5.7, y + 0.5))
        _arrow(ax, (7.8, y + 0.5), (8.6, y + 0.5), "embedding")
    _arrow(ax, (6.75, 3.2), (6.75, 2.6))
    _box(ax, (8.6, 0.95), "MNR loss\ncos sim x scale\nvs. in-batch\nnegatives  ch.3",
         STAGE_COLORS[3], width=2.0, height=1.3)
    _box(ax, (11.0, 0.95), "STS eval\nSpearman,\n10 languages\nch.4-5", STAGE_COLORS[4],
         width=2.0, height=1.3)
    _arrow(ax, (10.6, 1.6), (11.0, 1.6))
    ax.text(8.6, 3.7, "8-bit Adam updates\nonly the LoRA weights", fontsize=9, va="center")
    ax.set_title("LACoS-BLOOM: a decoder LLM becomes a sentence-embedding model", fontsize=12)
    fig.tight_layout()
    return fig


def plot_score_histograms(scores_by_name: Mapping[str, Sequence[float]], bins: int = 20,
                          title: str = "STS gold scores"):
    """One histogram panel per dataset name; scores are on the 0-5 STS scale."""
    names = list(scores_by_name)
    if not names:
        raise ValueError("plot_score_histograms needs at least one dataset")
    cols = min(5, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False,
                             sharex=True)
    for ax, name in zip(axes.flat, names):
        ax.hist(list(scores_by_name[name]), bins=bins, range=(0, 5), color="#4c72b0")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("gold score (0-5)", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_bars(values: Mapping[str, float], ylabel: str, title: str = "", color="#4c72b0"):
    """A labelled bar chart (e.g. tokens per sentence by language, bytes by dtype)."""
    if not values:
        raise ValueError("plot_bars needs at least one value")
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(values) + 2), 3))
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color=color)
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
