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


def test_explore_needs_a_slider():
    with pytest.raises(ValueError):
        widgets.explore(lambda: None)
