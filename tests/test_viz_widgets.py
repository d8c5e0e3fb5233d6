"""The explorer wrapper: interact in a live session, one static call in batch runs."""

from __future__ import annotations

import pytest

from emclip.viz import widgets


def test_batch_mode_calls_the_callback_once_with_initial_values(monkeypatch, capsys):
    ipywidgets = pytest.importorskip("ipywidgets")
    monkeypatch.setenv(widgets.NO_WIDGETS_ENV, "1")
    calls = []

    def callback(k, lam, name, fixed):
        calls.append((k, lam, name, fixed))
        return k * lam

    out = widgets.explore(callback, k=ipywidgets.IntSlider(value=4, min=1, max=9), lam=(0.0, 2.0),
                          name=["a", "b"], fixed=7)
    assert calls == [(4, 1.0, "a", 7)]
    assert out == 4.0
    assert "explorer off" in capsys.readouterr().out


def test_live_mode_returns_the_explorer_widget(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    monkeypatch.delenv(widgets.NO_WIDGETS_ENV, raising=False)
    assert widgets.widgets_enabled()
    seen = []

    def callback(k):
        seen.append(k)

    box = widgets.explore(callback, k=ipywidgets.IntSlider(value=3, min=1, max=5))
    assert isinstance(box, ipywidgets.Widget) and not callable(box), "the widget, not interact's callback"
    assert seen == [3]  # rendered once at the start
    slider, output = box.children
    assert isinstance(output, ipywidgets.Output) and slider.description == "k"
    slider.value = 5  # moving the control reruns the callback
    assert seen == [3, 5]


def test_live_mode_shows_labels_in_full(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    monkeypatch.delenv(widgets.NO_WIDGETS_ENV, raising=False)
    dropdown = ipywidgets.Dropdown(options=["fundus domain1", "cardiac A"])
    fixed_width = ipywidgets.IntSlider(value=1, min=0, max=3, style={"description_width": "60px"})
    box = widgets.explore(lambda task_domain, index: None, task_domain=dropdown, index=fixed_width)
    assert dropdown.description == "task_domain" and dropdown.style.description_width == "initial"
    assert fixed_width.style.description_width == "60px"  # a width the notebook chose is kept
    assert len(box.children) == 3
