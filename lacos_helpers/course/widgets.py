"""Explorer widgets: ``ipywidgets`` sliders in JupyterLab; headless (``LACOS_STATIC_WIDGETS=1``,
set by ``make``, or ``CI``) the function runs once with the default values."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from lacos_helpers.runtime import env_flag

log = logging.getLogger(__name__)


def static_mode() -> bool:
    """True when widgets cannot be used interactively (headless execution)."""
    return env_flag("LACOS_STATIC_WIDGETS") or env_flag("CI")


def _slider(widgets, name: str, options, default):
    """An ``Int``/``FloatSlider`` for ``(min, max, step)``, a ``SelectionSlider`` for a list."""
    if isinstance(options, tuple) and len(options) == 3:
        lo, hi, step = options
        cls = widgets.IntSlider if all(isinstance(v, int) for v in options) else \
            widgets.FloatSlider
        return cls(value=default, min=lo, max=hi, step=step, description=name,
                   continuous_update=False)
    return widgets.SelectionSlider(options=list(options), value=default, description=name,
                                   continuous_update=False)


def explore(fn: Callable, **sliders):
    """Interactive ``fn(**values)``, one slider per keyword ``name=(options, default)``
    (``options``: a list of values or ``(min, max, step)``). Returns ``fn``'s result in static
    mode, else the displayed ``ipywidgets.interactive``; ``fn`` runs once with the defaults
    either way (ipywidgets 7, Colab's, waits for a front end a headless kernel lacks)."""
    if not sliders:
        raise ValueError("explore() needs at least one slider")
    defaults = {name: default for name, (_, default) in sliders.items()}
    if static_mode():
        return fn(**defaults)
    import ipywidgets as widgets
    from IPython.display import display

    calls = []

    @functools.wraps(fn)  # interactive() reads fn's signature through __wrapped__
    def counted(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    controls = {name: _slider(widgets, name, options, default)
                for name, (options, default) in sliders.items()}
    box = widgets.interactive(counted, **controls)
    display(box)
    if not calls:  # ipywidgets 7 without a front end: show the defaults' output now
        log.debug("[widgets] %s not run on display: running it with the defaults",
                  getattr(fn, "__name__", fn))
        box.update()
    return box


class LiveLossPlot:
    """Training callback (``train(..., callbacks=[LiveLossPlot()])``): redraws the run's
    :func:`~lacos_helpers.course.plotting.plot_training_log` every ``every`` steps, not headless."""

    def __init__(self, every: int = 5):
        self.every = every
        self.history: list[dict] = []
        self.losses: list[float] = []
        self._handle = None

    def __call__(self, record: dict) -> None:
        self.history.append(record)
        if record.get("kind") == "train":
            self.losses.append(record["loss"])
        # an eval record carries the step of the training record just before it
        if not static_mode() and self.losses and record["step"] % self.every == 0:
            self._redraw()

    def _redraw(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        from lacos_helpers.course.plotting import plot_training_log

        fig = plot_training_log(self.history)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


__all__ = ["LiveLossPlot", "explore", "static_mode"]
