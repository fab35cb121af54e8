"""Figures shared by the notebooks. Each function returns the matplotlib ``Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
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
    """The LACoS-BLOOM recipe in one picture: 8-bit base (LLM.int8, row-wise) + LoRA in a Siamese
    net with MNR loss, trained by 8-bit Adam (blockwise states)."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.set_xlim(0, 13.2)
    ax.set_ylim(0, 4.6)
    ax.axis("off")
    _box(ax, (0.1, 3.2), "BLOOM weights\nfp16 / fp32", STAGE_COLORS[0])
    _box(ax, (2.9, 3.2), "8-bit LLM.int8\n(row-wise, frozen) ch.1", STAGE_COLORS[1])
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
    ax.text(8.6, 3.7, "8-bit Adam (states blockwise\n8-bit, ch.1/3) updates only\nthe LoRA weights",
            fontsize=9, va="center")
    ax.set_title("LACoS-BLOOM: a decoder LLM becomes a sentence-embedding model", fontsize=12)
    fig.tight_layout()
    return fig


def plot_score_histograms(scores_by_name: Mapping[str, Sequence[float]],
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
        ax.hist(list(scores_by_name[name]), bins=20, range=(0, 5), color="#4c72b0")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("gold score (0-5)", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_bars(values: Mapping[str, float], ylabel: str, title: str = ""):
    """A labelled bar chart (e.g. tokens per sentence by language, bytes by dtype)."""
    if not values:
        raise ValueError("plot_bars needs at least one value")
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(values) + 2), 3))
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color="#4c72b0")
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- STS evaluation

def _as_floats(values, name: str) -> list[float]:
    """A 1-D list of floats from a Tensor, array or sequence."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().flatten().tolist()
    elif hasattr(values, "tolist"):
        values = values.tolist()
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{name} is empty")
    return values


def plot_sts_scatter(predicted, gold, title: str = "STS"):
    """Predicted similarity (Tensor[n]) vs gold score (0-5), Spearman x100 in the title."""
    from lacos_helpers.evaluation import spearman

    pred, ref = _as_floats(predicted, "predicted"), _as_floats(gold, "gold")
    if len(pred) != len(ref):
        raise ValueError(f"predicted and gold differ in length: {len(pred)} vs {len(ref)}")
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.scatter(ref, pred, s=8, alpha=0.4, color="#4c72b0", edgecolors="none")
    ax.set_xlabel("gold score (0-5)")
    ax.set_ylabel("predicted cosine similarity")
    ax.set_title(f"{title}  (Spearman x100 = {100 * spearman(pred, ref):.2f}, n={len(ref)})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _metric_by_label(table, metric: str) -> dict[str, float]:
    """{row label: metric} from an STSTable (rows of dicts) or a plain mapping label -> value."""
    if hasattr(table, "rows") and hasattr(table, "columns"):
        key = table.columns[0]
        if metric not in table.columns:
            raise ValueError(f"metric {metric!r} not in table columns {table.columns}")
        return {str(r[key]): float(r[metric]) for r in table.rows}
    if isinstance(table, Mapping):
        return {str(k): float(v) for k, v in table.items()}
    raise TypeError(f"expected an STSTable or a mapping label -> value, got {type(table).__name__}")


def plot_language_bars(tables: Mapping[str, object], metric: str = "spearman",
                       title: str = "STS per language", *,
                       reference: Mapping[str, float] | None = None,
                       reference_label: str = "published"):
    """Bars of ``metric`` x100 per language, one per table of ``tables`` ({label: STSTable or
    {language: value in [-1, 1]}}); ``reference`` {language: value x100}: black markers."""
    if not tables:
        raise ValueError("plot_language_bars needs at least one table")
    values = {name: _metric_by_label(t, metric) for name, t in tables.items()}
    langs = list(dict.fromkeys(lang for v in values.values() for lang in v))
    width = 0.8 / len(values)
    fig, ax = plt.subplots(figsize=(max(5, 0.3 * len(langs) * (1 + len(values)) + 1.5), 3.4))
    for i, (name, by_lang) in enumerate(values.items()):
        xs = [j + (i - (len(values) - 1) / 2) * width for j, lang in enumerate(langs)
              if lang in by_lang]
        ys = [100 * by_lang[lang] for lang in langs if lang in by_lang]
        ax.bar(xs, ys, width=width, label=name)
    ref = [(j, reference[lang]) for j, lang in enumerate(langs) if lang in (reference or {})]
    if ref:
        ax.scatter(*zip(*ref), marker="D", color="black", zorder=3, label=reference_label)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylabel(f"{metric} x100")
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _heatmap_grid(table_or_matrix, metric: str):
    """(row labels, column labels, values[r][c] or nan) from an STSTable with rows "x-y" (or
    "x" = "x-x") or a mapping {(x, y): value}."""
    cells = {}
    if hasattr(table_or_matrix, "rows") and hasattr(table_or_matrix, "columns"):
        for label, value in _metric_by_label(table_or_matrix, metric).items():
            x, _, y = label.partition("-")
            cells[(x, y or x)] = value
    elif isinstance(table_or_matrix, Mapping):
        for key, value in table_or_matrix.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"matrix keys must be (row, column) tuples, got {key!r}")
            cells[(str(key[0]), str(key[1]))] = float(value)
    else:
        raise TypeError("expected an STSTable or a mapping {(row, column): value}, got "
                        f"{type(table_or_matrix).__name__}")
    if not cells:
        raise ValueError("nothing to plot")
    rows = list(dict.fromkeys(x for x, _ in cells))
    cols = list(dict.fromkeys(y for _, y in cells))
    grid = [[cells.get((x, y), float("nan")) for y in cols] for x in rows]
    return rows, cols, grid


def _annotated_heatmap(ax, rows, cols, values, xlabel: str, ylabel: str, *, digits: int,
                       fontsize: int, middle: float, **scale):
    """Draw ``values`` [rows, cols] (nan: blank) on ``ax``, each cell written with ``digits``
    decimals (white below ``middle``); returns the image for a colour bar."""
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto", **scale)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.{digits}f}", ha="center", va="center", fontsize=fontsize,
                    color="white" if v < middle else "black")
    return image


def plot_crosslingual_heatmap(table_or_matrix, metric: str = "spearman",
                              title: str = "Cross-lingual STS"):
    """Annotated heatmap of ``metric`` x100 per (sentence1 language, sentence2 language), from
    an STSTable of ``crosslingual_table`` (rows "de-en") or {(x, y): value in [-1, 1]} such as
    ``evaluation.crosslingual_matrix``; missing cells stay blank."""
    rows, cols, grid = _heatmap_grid(table_or_matrix, metric)
    values = 100 * np.array(grid, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(cols) + 1.2, 1.0 + 0.5 * len(rows)))
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    image = _annotated_heatmap(ax, rows, cols, values, "sentence2 language",
                               "sentence1 language", digits=1, fontsize=8, middle=middle)
    fig.colorbar(image, ax=ax, label=f"{metric} x100")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_cosine_histograms(cosines_by_label: Mapping[str, object],
                           title: str = "Cosine similarity of random sentence pairs"):
    """Overlaid histograms of cosine similarities in [-1, 1] (e.g. ``random_pair_cosines``
    before / after training: anisotropy), with each mean as a dashed line."""
    if not cosines_by_label:
        raise ValueError("plot_cosine_histograms needs at least one set of cosines")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, (label, cosines) in enumerate(cosines_by_label.items()):
        values = _as_floats(cosines, f"cosines {label!r}")
        color = f"C{i}"
        mean = sum(values) / len(values)
        ax.hist(values, bins=50, range=(-1, 1), alpha=0.45, color=color,
                label=f"{label} (mean {mean:.2f})")
        ax.axvline(mean, color=color, ls="--", lw=1.2)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------- chapter 6: using them

def plot_grouped_bars(values: Mapping[str, Mapping[str, float]], ylabel: str, title: str = ""):
    """Bars x100 of ``{model: {metric: value in [0, 1]}}``: metrics on the x axis, one colour
    per model."""
    if not values:
        raise ValueError("plot_grouped_bars needs at least one model")
    models = list(values)
    metrics = list(dict.fromkeys(m for row in values.values() for m in row))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(metrics) + 2), 3.2))
    for i, model in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(metrics))]
        ys = [100 * values[model].get(m, float("nan")) for m in metrics]
        bars = ax.bar(xs, ys, width, label=model, color=f"C{i}")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel(f"{ylabel} x100")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_recall_speed(curves: Mapping[str, Sequence[tuple[str, float, float]]],
                      title: str = "Approximate search: recall against the exact index", *,
                      exact_qps: float | None = None):
    """Recall (0-1) vs queries per second (log scale), one line per index kind:
    ``{kind: [(setting label, recall, queries/s), ...]}``; ``exact_qps``: the exact index's
    speed as a dashed line."""
    if not curves:
        raise ValueError("plot_recall_speed needs at least one curve")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (kind, points) in enumerate(curves.items()):
        if not points:
            continue
        labels, recall, speed = zip(*points)
        ax.plot(speed, recall, marker="o", color=f"C{i}", label=kind)
        for text, y, x in zip(labels, recall, speed):
            ax.annotate(str(text), (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=f"C{i}")
    if exact_qps is not None:
        ax.axvline(exact_qps, color="grey", ls="--", lw=1, label="exact index")
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (log scale)")
    ax.set_ylabel("neighbour recall@10")
    ax.set_ylim(top=1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_projections(points: Mapping[str, object], colour_by: Mapping[str, Sequence[str]],
                     title: str = "Embeddings in 2-D (PCA)"):
    """Scatter plots of 2-D projections [n, 2]: one row per embedding model
    (``{"untrained": xy, "trained": xy}``), one column per labelling
    (``{"genre": labels, "language": langs}``, each of length n)."""
    if not points or not colour_by:
        raise ValueError("plot_projections needs projections and at least one labelling")
    models, kinds = list(points), list(colour_by)
    fig, axes = plt.subplots(len(models), len(kinds), squeeze=False,
                             figsize=(4.2 * len(kinds), 3.6 * len(models)))
    for r, model in enumerate(models):
        xy = points[model]
        xy = xy.detach().cpu().numpy() if hasattr(xy, "detach") else xy
        for c, kind in enumerate(kinds):
            labels = list(colour_by[kind])
            if len(labels) != len(xy):
                raise ValueError(f"{kind}: {len(labels)} labels for {len(xy)} points")
            ax = axes[r][c]
            names = list(dict.fromkeys(labels))
            cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
            for i, name in enumerate(names):
                chosen = [j for j, x in enumerate(labels) if x == name]
                ax.scatter(xy[chosen, 0], xy[chosen, 1], s=6, alpha=0.55, color=cmap(i % 20),
                           edgecolors="none", label=name)
            ax.set_title(f"{model}: coloured by {kind}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if len(names) <= 12:
                ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


MEMORY_PARTS = (("weights", ("weights_int8", "weights_scales", "weights_float")),
                ("LoRA + gradients + optimizer", ("lora", "gradients", "optimizer")),
                ("activations", ("activations",)),
                ("transients", ("upcast_transient", "load_transient", "matmul_transient",
                                "step_overhead", "runtime")))


def plot_training_memory(tables: Mapping[str, Sequence[Mapping]],
                         title: str = "GPU memory of one training step"):
    """Stacked bars (:data:`MEMORY_PARTS`) of :func:`lacos_helpers.memory.bloom_training_table`
    rows, a group per model, a bar per table (``{"standard": rows, "lean": rows}``)."""
    if not tables:
        raise ValueError("plot_training_memory needs at least one table")
    names = list(tables)
    models = [row["model"] for row in next(iter(tables.values()))]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(names)
    colours = ("#4c72b0", "#dd8452", "#55a868", "#c7c7c7")
    for k, name in enumerate(names):
        rows = tables[name]
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(rows))]
        bottom = [0.0] * len(rows)
        for (label, parts), colour in zip(MEMORY_PARTS, colours):
            heights = [sum(row.get(p, 0.0) for p in parts) for row in rows]
            ax.bar(xs, heights, width * 0.95, bottom=bottom, color=colour,
                   label=label if k == 0 else None, edgecolor="white", linewidth=0.5)
            bottom = [b + h for b, h in zip(bottom, heights)]
        for x, row in zip(xs, rows):
            ax.text(x, row["total_gb"], f"{row['total_gb']:.1f}\n{name}", ha="center",
                    va="bottom", fontsize=6)
    for gb in (12, 16, 24, 32, 40, 80):
        ax.axhline(gb, color="red", ls="--", lw=0.7, alpha=0.6)
        ax.text(len(models) - 0.45, gb, f"{gb:g} GB", color="red", fontsize=7, va="bottom")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("GB (peak)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_memory_check(records: Sequence[Mapping], title: str = "Memory model vs measurement"):
    """Predicted against measured peak (GB) of rehearsal records, one marker per backend and
    recipe, with the 15% band around the diagonal."""
    if not records:
        raise ValueError("plot_memory_check needs at least one record")
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    measured = [r["peak_cuda_gb"] if r.get("peak_cuda_gb") is not None else r["peak_anon_gb"]
                for r in records]
    predicted = [r["predicted_gb"] for r in records]
    top = max(measured + predicted) * 1.1
    ax.plot([0, top], [0, top], color="gray", lw=0.8)
    ax.fill_between([0, top], [0, 0.85 * top], [0, 1.15 * top], color="gray", alpha=0.12,
                    label="within 15%")
    for key in dict.fromkeys((r["backend"], r["recipe"]) for r in records):
        chosen = [i for i, r in enumerate(records) if (r["backend"], r["recipe"]) == key]
        ax.scatter([measured[i] for i in chosen], [predicted[i] for i in chosen], s=25,
                   label=f"{key[0]}, {key[1]}")
        for i in chosen:
            ax.annotate(records[i]["size"].removeprefix("bloom-"), (measured[i], predicted[i]),
                        fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("measured peak (GB)")
    ax.set_ylabel("predicted peak (GB)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_heatmaps(matrices: Mapping[str, Mapping[tuple[str, str], float]],
                  title: str = "Bitext mining accuracy@1"):
    """Side-by-side heatmaps x100 on one scale of ``{model: {(query language, searched
    language): accuracy@1 in [0, 1]}}``; missing cells (the diagonal) stay blank."""
    if not matrices:
        raise ValueError("plot_heatmaps needs at least one matrix")
    grids = {}
    for name, cells in matrices.items():
        labels = list(dict.fromkeys(x for key in cells for x in key))
        grids[name] = labels, [[float(cells.get((a, b), float("nan"))) for b in labels]
                               for a in labels]
    size = max(len(labels) for labels, _ in grids.values())
    fig, axes = plt.subplots(1, len(grids), squeeze=False, layout="constrained",
                             figsize=(len(grids) * (1.5 + 0.55 * size) + 1.2, 1.6 + 0.5 * size))
    for ax, (name, (labels, grid)) in zip(axes[0], grids.items()):
        image = _annotated_heatmap(ax, labels, labels, 100 * np.array(grid, dtype=float),
                                   "searched language", "query language", digits=0,
                                   fontsize=7, middle=50, vmin=0, vmax=100)
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=list(axes[0]), label="accuracy@1 x100")
    fig.suptitle(title)
    return fig


def plot_quantization_layouts(state, weight, outlier_columns=(), block_size: int = 8):
    """Where the absmax scales sit. Left, blockwise (8-bit Adam's states): ``state`` (a few
    dozen values) in blocks of ``block_size``. Right, row-wise LLM.int8 (frozen weights): one
    per output row of ``weight`` [out, in], ``outlier_columns`` marked as kept in 16-bit."""
    state = np.asarray(state, dtype=float).ravel()
    weight = np.asarray(weight, dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6),
                                      gridspec_kw={"width_ratios": [1.35, 1]})
    n_blocks = -(-len(state) // block_size)
    width = min(len(state), 4 * block_size)
    grid = np.full((-(-len(state) // width), width), np.nan)
    grid.flat[: len(state)] = np.abs(state)
    left.imshow(grid, cmap="Blues", aspect="auto")
    for b in range(n_blocks):
        start = b * block_size
        row, col = divmod(start, width)
        block = np.abs(state[start: start + block_size])
        left.add_patch(plt.Rectangle((col - 0.5, row - 0.5), len(block), 1, fill=False,
                                     ec=f"C{b % 10}", lw=2.5))
        left.text(col + len(block) / 2 - 0.5, row, f"absmax\n{block.max():.2f}", ha="center",
                  va="center", fontsize=7)
    left.set_xticks([])
    left.set_yticks([])
    left.set_title(f"Blockwise (8-bit Adam states): flattened, blocks of {block_size}, "
                   f"{n_blocks} scales", fontsize=9)
    right.imshow(np.abs(weight), cmap="Oranges", aspect="auto")
    for c in outlier_columns:
        right.add_patch(plt.Rectangle((c - 0.5, -0.5), 1, weight.shape[0], fill=False,
                                      ec="red", lw=2, hatch="//"))
    for r in range(weight.shape[0]):
        right.text(weight.shape[1] - 0.4, r, f" {np.abs(weight[r]).max():.2f}", va="center",
                   fontsize=7)
    right.set_xlim(-0.5, weight.shape[1] + 1.2)
    right.set_xlabel("input feature (red: outlier columns, kept in 16-bit)")
    right.set_ylabel("output row")
    right.set_title(f"Row-wise LLM.int8 (frozen weights): one absmax per row, "
                    f"{weight.shape[0]} scales", fontsize=9)
    fig.tight_layout()
    return fig


def plot_training_log(history: Sequence[Mapping], title: str = "MNR training loss"):
    """The loss curve (and STS dev points) of a run's records (``training.read_log`` or
    ``TrainResult.history``); ``ValueError`` when they hold no training step."""
    steps = [r["step"] for r in history if r.get("kind") == "train"]
    losses = [r["loss"] for r in history if r.get("kind") == "train"]
    if not steps:
        raise ValueError("the run's log holds no training step")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(steps, losses, lw=1, label="loss")
    if len(losses) >= 10:
        k = max(2, len(losses) // 10)
        smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, lw=2, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("MNR loss")
    ax.set_title(title)
    evals = [(r["step"], r["spearman"]) for r in history if r.get("kind") == "eval"]
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", color="C3", label="STS dev Spearman")
        ax2.set_ylabel("STS dev Spearman", color="C3")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
