"""The figure of chapter 1 that puts the two 8-bit layouts side by side."""
import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from lacos_helpers.course import plotting  # noqa: E402


def test_quantization_layouts_counts_blocks_and_rows():
    state = torch.linspace(-1, 1, 40)
    weight = torch.randn(6, 12)
    fig = plotting.plot_quantization_layouts(state, weight, outlier_columns=[7], block_size=16)
    left, right = fig.axes[:2]
    assert "3 scales" in left.get_title() and "blocks of 16" in left.get_title()
    assert "6 scales" in right.get_title() and "one absmax per row" in right.get_title()
    assert "outlier" in right.get_xlabel()
    texts = [t.get_text() for t in left.texts]
    assert texts == [f"absmax\n{b.abs().max():.2f}" for b in state.split(16)]
    matplotlib.pyplot.close(fig)


def test_overview_names_both_schemes():
    fig = plotting.plot_lacos_overview()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "LLM.int8" in texts and "row-wise" in texts and "blockwise" in texts
    matplotlib.pyplot.close(fig)
