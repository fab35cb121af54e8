import pytest

from lacos_helpers.course import widgets


def test_static_mode_calls_with_defaults(monkeypatch):
    monkeypatch.setenv("LACOS_STATIC_WIDGETS", "1")
    assert widgets.static_mode()
    assert widgets.explore(lambda block, rank: (block, rank), block=([64, 256, 4096], 256),
                           rank=((1, 64, 1), 8)) == (256, 8)


def test_interactive_mode_builds_sliders(monkeypatch):
    monkeypatch.delenv("LACOS_STATIC_WIDGETS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert not widgets.static_mode()
    seen = []
    w = widgets.explore(lambda block: seen.append(block), block=([64, 256], 64))
    assert w is not None and seen and seen[-1] == 64


def test_interactive_mode_runs_once_with_defaults_and_on_each_move(monkeypatch):
    """ipywidgets 7 (Colab's) runs the function only when a front end reports the widget
    displayed, ipywidgets 8 when it is built: either way it runs once with the defaults, and
    again when a slider moves."""
    import ipywidgets

    monkeypatch.delenv("LACOS_STATIC_WIDGETS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    seen = []
    box = widgets.explore(lambda block, rank: seen.append((block, rank)),
                          block=([64, 256, 4096], 256), rank=((1, 64, 1), 8))
    assert isinstance(box, ipywidgets.interactive)
    block, rank = box.children[:2]
    assert isinstance(block, ipywidgets.SelectionSlider) and block.value == 256
    assert isinstance(rank, ipywidgets.IntSlider) and (rank.min, rank.max, rank.value) == (1, 64, 8)
    assert seen == [(256, 8)]
    block.value = 4096
    assert seen[-1] == (4096, 8) and len(seen) == 2


def test_explore_needs_a_slider():
    with pytest.raises(ValueError):
        widgets.explore(lambda: None)
